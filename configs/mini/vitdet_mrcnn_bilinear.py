# Control for configs/mini/vitdet_mrcnn_lift.py: bilinear upsampling in LiFT's place.
from detectron2.config import LazyCall as L

from lift_det.modeling import BilinearUpsampler

from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.lift = L(BilinearUpsampler)(
    in_channels="${..embed_dim}", patch_size="${..patch_size}"
)
train.output_dir = "./output/mini/vitdet_mrcnn_bilinear"
