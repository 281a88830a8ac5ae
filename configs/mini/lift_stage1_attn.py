# The local attention upsampler ("attention", after JAFAR / UPLiFT) in LiFT's place for stage
# one: same objective, data and budget as configs/mini/lift_stage1.py.
from detectron2.config import LazyCall as L

from lift_det.modeling import build_upsampler

from .lift_stage1 import dataloader, lr_multiplier, model, optimizer, train

model.lift = L(build_upsampler)(
    name="attention",
    in_channels="${..source.net.embed_dim}",
    patch_size="${..source.net.patch_size}",
)
train.output_dir = "./output/mini_attn_stage1"
