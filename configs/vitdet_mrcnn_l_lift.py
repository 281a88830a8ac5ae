# Stage two: ViTDet-L Mask R-CNN + LiFT-L (the preset for 1024 channels), vitdet_mrcnn_lift.py's
# recipe on vitdet_mrcnn_l.py: ViT and LiFT frozen, pyramid and heads finetuned for 5 epochs.
#   stage one: configs/lift_stage1_coco_l.py writes the LiFT file
from lift_det.config import lift_backbone, set_image_size

from .vitdet_mrcnn_l import dataloader, model, optimizer
from .vitdet_mrcnn_lift import lr_multiplier, train  # stage two's schedule

model.backbone = lift_backbone(
    model.backbone,
    "LiFT-L",
    lift_weights="output/lift_stage1_coco_l/lift_final.pth",
    freeze=True,
    placement="half",
)
# "up": the detector sees 2048 px, the ViT and LiFT 1024 px (ViTDet's own view); every ViTDet
# tensor loads, none is new. vitdet_mrcnn_l_lift_down.py: 1024 px (ViT at 512),
# vitdet_mrcnn_l_lift_s8.py: the stride-8 pyramid
set_image_size(model, dataloader, 2048)
# ViTDet-L Mask R-CNN from detectron2's ViTDet model zoo
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/mask_rcnn_vitdet_l/f325599698/model_final_6146ed.pkl"
)
