# Cascade Mask R-CNN + LiFT-S on the mini data (stage two); see configs/mini/vitdet_mrcnn_lift.py.
# Its baseline: configs/mini/vitdet_cascade.py (train it, then pass its model_final.pth as
# train.init_checkpoint).
from ..common.cascade import to_cascade
from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

model = to_cascade(model)
train.output_dir = "./output/mini/vitdet_cascade_lift"
