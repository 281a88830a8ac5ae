# Control for configs/mini/vitdet_mrcnn_lift.py: the attention upsampler trained in stage one
# (configs/mini/lift_stage1_attn.py) in LiFT's place, frozen like LiFT. Its file is passed as
#   model.backbone.net.lift_weights=<attention stage one>/lift_final.pth
from lift_det.config import upsampler_config

from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.lift = upsampler_config("attention")
train.output_dir = "./output/mini/vitdet_mrcnn_attn"
