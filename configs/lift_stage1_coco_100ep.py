# Stage one on COCO with the paper's 100 epochs (App. B): lift_stage1_coco.py four times longer,
# beyond a GPU-day. On the mini data, LiFT from a stage one 4x longer than the GPU-day recipe's
# epoch count measured more box AP in the up placement (docs/mini_study.md, "Stage-one recipe");
# on COCO that is not measured. Writes output/lift_stage1_coco_100ep/lift_final.pth: give it to
# stage two as model.backbone.net.lift_weights.
#   tools/train_lift.py --config-file configs/lift_stage1_coco_100ep.py --num-gpus 8
from .common.lift_stage1 import stage1_schedule
from .lift_stage1_coco import dataloader, model, optimizer, train

train.output_dir = "./output/lift_stage1_coco_100ep"
# 100 ep = 184828 iters * 64 images/iter / 118287 images/ep. One H200 ran 40.47 images/s in
# lift_stage1_coco.py's AMP step (batch 8, docs/gpu/nvidia-h200.md):
# 100 ep x 2923 s = 81.2 GPU-hours, about 10 hours on 8 GPUs
train.max_iter = 184828
lr_multiplier = stage1_schedule(train.max_iter, warmup_iters=500)
# every 10 epochs
train.eval_period = 18483
train.checkpointer.period = 18483
