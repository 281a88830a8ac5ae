# configs/mini/vitdet_mrcnn_lift_s8.py with LiFT applied twice (stride 16 -> 8 -> 4): ViTDet's 1x
# and 0.5x stages and a new 0.25x stage give p2-p4, p5 and p6 are subsampled.
from .vitdet_mrcnn_lift_s8 import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.num_passes = 2
train.output_dir = "./output/mini/vitdet_mrcnn_lift2"
