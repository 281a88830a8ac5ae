# Stage one on the built-in mini data (CPU friendly): LiFT-S against the small ViT of the mini
# detection configs, at 256x256. Point train.init_checkpoint at a trained mini detector
# (OUTPUT_DIR/model_final.pth); left empty, the ViT is random (the export hook warns).
#   tools/train_lift.py --config-file configs/mini/lift_stage1.py train.output_dir=/tmp/s1mini
from functools import partial

from torch import nn

from detectron2.config import LazyCall as L
from detectron2.modeling import ViT

from lift_det.data import ensure_mini_coco
from lift_det.data.stage1 import stage1_dataset_dicts
from lift_det.modeling.lift import LiFT

from ..common.lift_stage1 import dataloader, model, optimizer, stage1_schedule, train

# exactly the ViT of the mini detection configs: stage one runs against their trained ViT
model.source.net = L(ViT)(
    img_size=256,
    patch_size=16,
    embed_dim=192,
    depth=4,
    num_heads=3,
    window_size=8,
    window_block_indexes=[0, 2],
    use_rel_pos=True,
    mlp_ratio=4,
    qkv_bias=True,
    norm_layer=partial(nn.LayerNorm, eps=1e-6),
    pretrain_img_size=224,
    pretrain_use_cls_token=True,
    drop_path_rate=0.0,
    out_feature="last_feat",
)
# the paper's LiFT-S layout, for 192 channels
model.lift = L(LiFT.from_preset)(name="LiFT-S", in_channels=192, patch_size=16)
model.square_pad = 256

dataloader.train.dataset = L(stage1_dataset_dicts)(names=L(ensure_mini_coco)(split="train"))
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 0
dataloader.test.dataset = L(stage1_dataset_dicts)(names=L(ensure_mini_coco)(split="val"))
dataloader.test.batch_size = 8
dataloader.test.num_workers = 0

train.device = "cpu"
train.amp.enabled = False
train.seed = 0  # deterministic color jitter and sampling
train.init_checkpoint = ""
train.output_dir = "./output/mini_lift_stage1"
# on CPU, DistributedDataParallel takes no device_ids (detectron2's create_ddp_model sets them)
train.ddp.device_ids = None
# 15 ep = 300 iters * 8 images/iter / 160 images/ep
train.max_iter = 300
lr_multiplier = stage1_schedule(train.max_iter, warmup_iters=20)
train.eval_period = 300  # evaluate at the end
train.checkpointer.period = 100
train.log_period = 20
