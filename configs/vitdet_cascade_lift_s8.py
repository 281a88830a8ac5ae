# vitdet_cascade_lift.py in the stride-8 placement: the backbone of vitdet_mrcnn_lift_s8.py
# (the ViT at ViTDet's 1024 px, LiFT's stride-8 output through ViTDet's 2x, 1x and 0.5x stages,
# p5 and p6 subsampled from p4: nothing new; ViTDet's 4x stage is unused) with cascade heads.
from lift_det.config import set_image_size

from .vitdet_cascade_lift import dataloader, lr_multiplier, model, optimizer, train
from .vitdet_mrcnn_lift_s8 import model as _s8

model.backbone = _s8.backbone
set_image_size(model, dataloader, 1024)
