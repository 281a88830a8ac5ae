# vitdet_mrcnn_l_lift.py in the stride-8 placement: the ViT at ViTDet's 1024 px, LiFT's stride-8
# output through ViTDet's 2x, 1x and 0.5x stages (p2-p4), p5 and p6 subsampled from p4: nothing
# new; ViTDet's 4x stage is unused.
from lift_det.config import lift_backbone, set_image_size

from .vitdet_mrcnn_l import model as _vitdet
from .vitdet_mrcnn_l_lift import dataloader, lr_multiplier, model, optimizer, train

model.backbone = lift_backbone(
    _vitdet.backbone,
    "LiFT-L",
    lift_weights=model.backbone.net.lift_weights,
    freeze=True,
    placement="stride8",
)
set_image_size(model, dataloader, 1024)
