# Stage one on COCO for ViTDet-L: lift_stage1_coco.py with ViT-L as the frozen teacher and
# LiFT-L (the preset for 1024 channels). Writes output/lift_stage1_coco_l/lift_final.pth for
# configs/vitdet_{mrcnn,cascade}_l_lift.py.
from .common.lift_stage1 import stage1_schedule
from .common.vit_sizes import VIT_L as _VIT_L  # (underscore: not a config key)
from .lift_stage1_coco import dataloader, model, optimizer, train

model.source.net.update(**_VIT_L)
model.source.net.drop_path_rate = 0.0  # the teacher runs in eval mode; no stochastic depth
model.lift.name = "LiFT-L"
# the ViT of ViTDet-L Mask R-CNN from detectron2's ViTDet model zoo
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/mask_rcnn_vitdet_l/f325599698/model_final_6146ed.pkl"
)
train.output_dir = "./output/lift_stage1_coco_l"
# within a GPU-day: 8 ep = 14786 iters * 64 images/iter / 118287 images/ep. Estimated, not
# measured: ViT-B's 2923 s per epoch on one H200 (docs/gpu/nvidia-h200.md) scaled by the teacher's
# width^2 x depth (3.56x ViT-B's): 8 ep x 10393 s = 23.1 GPU-hours
train.max_iter = 14786
lr_multiplier = stage1_schedule(train.max_iter, warmup_iters=500)
train.eval_period = 3697
train.checkpointer.period = 3697
