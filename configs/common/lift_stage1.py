# Stage one (paper §3.3-3.4): LiFT-B learns F(x/2) -> F(x) and F(x/4) -> F(x/2) against ViTDet-B's
# frozen ViT. Shared by configs/lift_stage1_coco.py and configs/mini/lift_stage1.py.
from fvcore.common.param_scheduler import CosineParamScheduler
from omegaconf import OmegaConf

from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.solver import WarmupParamScheduler

from lift_det.data.stage1 import Stage1DatasetMapper, stage1_dataset_dicts
from lift_det.engine.hooks import ExportLiFTFile
from lift_det.evaluation import FeatureQualityEvaluator
from lift_det.modeling.attention import AttnViT
from lift_det.modeling.distill import LiFTDistiller
from lift_det.modeling.feature_source import D2ViTSource
from lift_det.modeling.lift import LiFT

vitdet = model_zoo.get_config("common/models/mask_rcnn_vitdet.py").model
vit = vitdet.backbone.net
vit.drop_path_rate = 0.0  # the teacher runs in eval mode; no stochastic depth
vit.update(_target_=AttnViT, attn_impl="eager")  # "sdpa": same weights, fused attention

model = L(LiFTDistiller)(
    # ViTDet's ViT at backbone.net, normalized as the detector normalizes
    source=L(D2ViTSource)(net=vit, pixel_mean=vitdet.pixel_mean, pixel_std=vitdet.pixel_std),
    lift=L(LiFT.from_preset)(
        name="LiFT-B",
        in_channels="${..source.net.embed_dim}",
        patch_size="${..source.net.patch_size}",
    ),
    distance="cosine",  # paper App. A.3
    downscale="bilinear-antialias",
    square_pad=vitdet.backbone.square_pad,  # ViTDet's 1024x1024 view
)

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(stage1_dataset_dicts)(names="coco_2017_train"),
    mapper=L(Stage1DatasetMapper)(
        is_train=True,
        image_size="${model.square_pad}",
        patch_size="${model.source.net.patch_size}",
        color_jitter_strength=0.4,  # the only augmentation (paper §3.4)
    ),
    total_batch_size=64,
    aspect_ratio_grouping=False,  # every batch is padded to the same square anyway
    num_workers=4,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(stage1_dataset_dicts)(names="coco_2017_val"),
    mapper=L(Stage1DatasetMapper)(
        is_train=False,
        image_size="${...train.mapper.image_size}",
        patch_size="${...train.mapper.patch_size}",
        skip_bad_images=False,
    ),
    batch_size=4,
    num_workers=4,
)
dataloader.evaluator = L(FeatureQualityEvaluator)()

train = model_zoo.get_config("common/train.py").train
train.amp.enabled = True
train.init_checkpoint = ""
# writes OUTPUT_DIR/lift_final.pth for stage two (ViTLiFT(lift_weights=...)) after training
train.export = [L(ExportLiFTFile)(teacher_weights="${...init_checkpoint}")]

# the paper's lr (§3.4); it reports no weight decay. Only LiFT has trainable parameters.
optimizer = model_zoo.get_config("common/optim.py").AdamW
optimizer.lr = 1e-3
optimizer.weight_decay = 0.0


def stage1_schedule(max_iter, warmup_iters):
    """Linear warmup over ``warmup_iters``, then cosine decay to 1% of the lr at ``max_iter``."""
    return L(WarmupParamScheduler)(
        scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.01),
        warmup_length=warmup_iters / max_iter,
        warmup_factor=0.001,
    )
