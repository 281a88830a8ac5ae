# Stage two: ViTDet-B Cascade Mask R-CNN + LiFT-B (paper Table 4, ViTDet(CR)): the Mask R-CNN
# +LiFT config (same LiFT, freezing and schedule) with cascade heads, from the cascade checkpoint.
from .common.cascade import to_cascade
from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

model = to_cascade(model)
# ViTDet-B Cascade Mask R-CNN from detectron2's ViTDet model zoo
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/cascade_mask_rcnn_vitdet_b/f325358525/model_final_435fa9.pkl"
)
