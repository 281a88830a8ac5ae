# Stage two: ViTDet-L Cascade Mask R-CNN + LiFT-L: vitdet_mrcnn_l_lift.py with cascade heads.
from .common.cascade import to_cascade
from .vitdet_mrcnn_l_lift import dataloader, lr_multiplier, model, optimizer, train

model = to_cascade(model)
# ViTDet-L Cascade Mask R-CNN from detectron2's ViTDet model zoo
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/cascade_mask_rcnn_vitdet_l/f328021305/model_final_1a9f28.pkl"
)
