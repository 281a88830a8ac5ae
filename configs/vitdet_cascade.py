# Baseline: ViTDet-B Cascade Mask R-CNN, 100 epochs (upstream cascade_mask_rcnn_vitdet_b_100ep.py).
from .common.cascade import to_cascade
from .vitdet_mrcnn import dataloader, lr_multiplier, model, optimizer, train

model = to_cascade(model)
