# Control for vitdet_mrcnn_lift.py: bilinear 2x upsampling in LiFT's place, with the same pyramid,
# initialization and finetuning schedule.
from lift_det.config import upsampler_config

from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.lift = upsampler_config("bilinear")
model.backbone.net.lift_weights = ""  # no parameters, no stage one
