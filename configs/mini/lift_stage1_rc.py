# The paper's resize-conv (RC) control for stage one: a learned 2x upsampler (bilinear resize +
# conv, no image input) in LiFT's place, trained with LiFT's objective, data and budget.
from detectron2.config import LazyCall as L

from lift_det.modeling import build_upsampler

from .lift_stage1 import dataloader, lr_multiplier, model, optimizer, train

model.lift = L(build_upsampler)(
    name="resize_conv",
    in_channels="${..source.net.embed_dim}",
    patch_size="${..source.net.patch_size}",
)
train.output_dir = "./output/mini_rc_stage1"
