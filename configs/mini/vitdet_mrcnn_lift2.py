# configs/mini/vitdet_mrcnn_lift.py with LiFT applied twice (stride 16 -> 8 -> 4); the pyramid's
# scales follow the stride, so p2-p6 stay at strides 4-64.
from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.num_passes = 2
train.output_dir = "./output/mini/vitdet_mrcnn_lift2"
