# Stage one on COCO for ViTDet-H: lift_stage1_coco.py with ViT-H as the frozen teacher and
# LiFT-H (the preset for 1280 channels). Writes output/lift_stage1_coco_h/lift_final.pth for
# configs/vitdet_{mrcnn,cascade}_h_lift.py.
from .common.lift_stage1 import stage1_schedule
from .common.vit_sizes import VIT_H as _VIT_H  # (underscore: not a config key)
from .lift_stage1_coco import dataloader, model, optimizer, train

model.source.net.update(**_VIT_H)
model.source.net.drop_path_rate = 0.0  # the teacher runs in eval mode; no stochastic depth
model.lift.name = "LiFT-H"
# the ViT of ViTDet-H Mask R-CNN from detectron2's ViTDet model zoo
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/mask_rcnn_vitdet_h/f329145471/model_final_7224f1.pkl"
)
train.output_dir = "./output/lift_stage1_coco_h"
# within a GPU-day: 3 ep = 5545 iters * 64 images/iter / 118287 images/ep. Estimated, not
# measured: ViT-B's 2923 s per epoch on one H200 (docs/gpu/nvidia-h200.md) scaled by the teacher's
# width^2 x depth (7.41x ViT-B's): 3 ep x 21651 s = 18.0 GPU-hours
train.max_iter = 5545
lr_multiplier = stage1_schedule(train.max_iter, warmup_iters=500)
train.eval_period = 1387
train.checkpointer.period = 1387
