# configs/lift_stage1_timm_dino_s16.py on the built-in mini data (CPU friendly): LiFT-S against a
# 2-block timm ViT-S/16 at 256x256. Give the ViT's weights as a local timm checkpoint:
#   tools/train_net.py --config-file configs/mini/lift_stage1_timm.py \
#       model.source.weights=/path/to/vit_s16_depth2.pth train.output_dir=/tmp/s1timm
import torch

from detectron2.config import LazyCall as L

from lift_det.data import ensure_mini_coco
from lift_det.data.stage1 import stage1_dataset_dicts

from ..lift_stage1_timm_dino_s16 import dataloader, model, optimizer, stage1_schedule, train

model.source.update(model_name="vit_small_patch16_224", depth=2)  # depth: timm's argument
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
train.output_dir = "./output/mini_lift_stage1_timm"
# configs/mini/lift_stage1.py's schedule: 25 ep = 500 iters * 8 images/iter / 160 images/ep
train.max_iter = 500
lr_multiplier = stage1_schedule(train.max_iter, warmup_iters=20)
train.eval_period = train.max_iter  # evaluate at the end
train.checkpointer.period = 100
train.log_period = 20
