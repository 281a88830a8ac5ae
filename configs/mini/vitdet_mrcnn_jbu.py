# Control for configs/mini/vitdet_mrcnn_lift.py: the joint bilateral upsampler trained in stage
# one (configs/mini/lift_stage1_jbu.py) in LiFT's place, frozen like LiFT. Its file is passed as
#   model.backbone.net.lift_weights=<jbu stage one>/lift_final.pth
from lift_det.config import upsampler_config

from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.lift = upsampler_config("jbu")
train.output_dir = "./output/mini/vitdet_mrcnn_jbu"
