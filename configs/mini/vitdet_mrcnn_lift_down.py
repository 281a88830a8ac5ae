# configs/mini/vitdet_mrcnn_lift.py's placement on the usual 256 px image, the "down" placement:
# the ViT and LiFT see 128 px (a quarter of the ViT's pixels), LiFT restores the stride-16
# feature of the 256 px image for upstream's pyramid and heads. Every ViTDet tensor loads.
from lift_det.config import set_image_size

from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

set_image_size(model, dataloader, 256)
train.output_dir = "./output/mini/vitdet_mrcnn_lift_down"
