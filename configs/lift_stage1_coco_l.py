# Stage one on COCO for ViTDet-L: lift_stage1_coco.py with ViT-L as the frozen teacher and
# LiFT-L (the preset for 1024 channels). Writes output/lift_stage1_coco_l/lift_final.pth for
# configs/vitdet_{mrcnn,cascade}_l_lift.py.
from .common.vit_sizes import VIT_L as _VIT_L  # (underscore: not a config key)
from .lift_stage1_coco import dataloader, lr_multiplier, model, optimizer, train

model.source.net.update(**_VIT_L)
model.source.net.drop_path_rate = 0.0  # the teacher runs in eval mode; no stochastic depth
model.lift.name = "LiFT-L"
# the ViT of ViTDet-L Mask R-CNN from detectron2's ViTDet model zoo
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/mask_rcnn_vitdet_l/f325599698/model_final_6146ed.pkl"
)
train.output_dir = "./output/lift_stage1_coco_l"
