# Stage two: ViTDet-H Cascade Mask R-CNN + LiFT-H: vitdet_mrcnn_h_lift.py with cascade heads.
from .common.cascade import to_cascade
from .vitdet_mrcnn_h_lift import dataloader, lr_multiplier, model, optimizer, train

model = to_cascade(model)
# ViTDet-H Cascade Mask R-CNN from detectron2's ViTDet model zoo
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/cascade_mask_rcnn_vitdet_h/f328730692/model_final_f05665.pkl"
)
