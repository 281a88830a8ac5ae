# vitdet_cascade_l_lift.py in the "down" placement: the detector at ViTDet's 1024 px, the ViT
# and LiFT at 512 px (a quarter of the ViT's cost), LiFT restoring the stride-16 features of the
# 1024 px image; every ViTDet-L Cascade Mask R-CNN tensor loads, none is new.
from lift_det.config import set_image_size

from .vitdet_cascade_l_lift import dataloader, lr_multiplier, model, optimizer, train

set_image_size(model, dataloader, 1024)
