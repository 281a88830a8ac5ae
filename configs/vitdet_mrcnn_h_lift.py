# Stage two: ViTDet-H Mask R-CNN + LiFT-H (the preset for 1280 channels), vitdet_mrcnn_lift.py's
# recipe on vitdet_mrcnn_h.py: ViT and LiFT frozen, pyramid and heads finetuned for 5 epochs.
#   stage one: configs/lift_stage1_coco_h.py writes the LiFT file
from lift_det.config import lift_backbone, set_image_size

from .vitdet_mrcnn_h import dataloader, model, optimizer
from .vitdet_mrcnn_lift import lr_multiplier, train  # stage two's schedule

model.backbone = lift_backbone(
    model.backbone,
    "LiFT-H",
    lift_weights="output/lift_stage1_coco_h/lift_final.pth",
    freeze=True,
    placement="half",
)
# "up": the detector sees 2048 px, the ViT and LiFT 1024 px (ViTDet's own view); every ViTDet
# tensor loads, none is new. vitdet_mrcnn_h_lift_down.py: 1024 px (ViT at 512),
# vitdet_mrcnn_h_lift_s8.py: the stride-8 pyramid
set_image_size(model, dataloader, 2048)
# ViTDet-H Mask R-CNN from detectron2's ViTDet model zoo
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/mask_rcnn_vitdet_h/f329145471/model_final_7224f1.pkl"
)
