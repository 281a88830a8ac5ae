# The plain mini ViTDet with Cascade Mask R-CNN heads: the baseline beside
# configs/mini/vitdet_cascade_lift.py (same data, ViT and schedule as configs/mini/vitdet_mrcnn.py).
from ..common.cascade import to_cascade
from .vitdet_mrcnn import dataloader, lr_multiplier, model, optimizer, train

model = to_cascade(model)
train.output_dir = "./output/mini/vitdet_cascade"
