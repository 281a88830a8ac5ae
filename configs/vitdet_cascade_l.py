# Baseline: ViTDet-L Cascade Mask R-CNN (upstream cascade_mask_rcnn_vitdet_l_*ep.py).
from .common.cascade import to_cascade
from .vitdet_mrcnn_l import dataloader, lr_multiplier, model, optimizer, train

model = to_cascade(model)
