# Stage two: ViTDet-L Mask R-CNN + LiFT-L (the preset for 1024 channels), vitdet_mrcnn_lift.py's
# recipe on vitdet_mrcnn_l.py: ViT and LiFT frozen, pyramid and heads finetuned for 5 epochs.
#   stage one: configs/lift_stage1_coco_l.py writes the LiFT file
from lift_det.config import lift_backbone

from .vitdet_mrcnn_l import dataloader, model, optimizer
from .vitdet_mrcnn_lift import lr_multiplier, train  # stage two's schedule

model.backbone = lift_backbone(
    model.backbone, "LiFT-L", lift_weights="output/lift_stage1_coco_l/lift_final.pth", freeze=True
)
# ViTDet-L Mask R-CNN from detectron2's ViTDet model zoo
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/mask_rcnn_vitdet_l/f325599698/model_final_6146ed.pkl"
)
