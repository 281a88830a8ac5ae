# Control for configs/mini/vitdet_mrcnn_lift.py (its placement): bilinear upsampling in LiFT's
# place.
from lift_det.config import upsampler_config

from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.lift = upsampler_config("bilinear")
train.output_dir = "./output/mini/vitdet_mrcnn_bilinear"
