# Control for vitdet_mrcnn_lift.py: bilinear 2x upsampling in LiFT's place, with the same pyramid,
# initialization and finetuning schedule.
from detectron2.config import LazyCall as L

from lift_det.modeling import BilinearUpsampler

from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.lift = L(BilinearUpsampler)(
    in_channels="${..embed_dim}", patch_size="${..patch_size}"
)
model.backbone.net.lift_weights = ""
