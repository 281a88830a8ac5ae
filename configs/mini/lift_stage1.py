# Stage one on the built-in mini data (CPU friendly): LiFT-S against the small ViT of the mini
# detection configs, at 256x256. Point train.init_checkpoint at a trained mini detector
# (OUTPUT_DIR/model_final.pth); left empty, the ViT is random (the export hook warns).
#   tools/train_lift.py --config-file configs/mini/lift_stage1.py train.output_dir=/tmp/s1mini
import torch

from detectron2.config import LazyCall as L

from lift_det.data import ensure_mini_coco
from lift_det.data.stage1 import stage1_dataset_dicts
from lift_det.modeling.lift import LiFT

from ..common.lift_stage1 import dataloader, model, optimizer, stage1_schedule, train
from .vitdet_mrcnn import model as _detector

# exactly the ViT of the mini detection configs: stage one runs against their trained ViT
model.source.net = _detector.backbone.net
model.source.net.drop_path_rate = 0.0  # the teacher runs in eval mode

# the paper's LiFT-S layout, for 192 channels
model.lift = L(LiFT.from_preset)(
    name="LiFT-S", in_channels="${..source.net.embed_dim}", patch_size="${..source.net.patch_size}"
)
model.square_pad = 256

dataloader.train.dataset = L(stage1_dataset_dicts)(names=L(ensure_mini_coco)(split="train"))
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 0
dataloader.test.dataset = L(stage1_dataset_dicts)(names=L(ensure_mini_coco)(split="val"))
dataloader.test.batch_size = 8
dataloader.test.num_workers = 0

train.device = "cuda" if torch.cuda.is_available() else "cpu"
train.amp.enabled = torch.cuda.is_available()
train.seed = 0  # deterministic color jitter and sampling
train.init_checkpoint = ""
train.output_dir = "./output/mini_lift_stage1"
# 25 ep = 500 iters * 8 images/iter / 160 images/ep (the loss flattens by then)
train.max_iter = 500
lr_multiplier = stage1_schedule(train.max_iter, warmup_iters=20)
train.eval_period = train.max_iter  # evaluate at the end
train.checkpointer.period = 100
train.log_period = 20
