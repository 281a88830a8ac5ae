# configs/mini/vitdet_mrcnn_lift.py with the stride-8 placement on the usual 256 px image: the ViT
# sees the detector's image, LiFT doubles its features to stride 8, ViTDet's 2x, 1x and 0.5x
# stages give p2-p4 and p5, p6 are subsampled from p4 (nothing new; ViTDet's 4x stage unused).
from lift_det.config import lift_backbone, set_image_size

from .vitdet_mrcnn import model as _vitdet
from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

model.backbone = lift_backbone(
    _vitdet.backbone, "LiFT-S", lift_weights="", freeze=True, placement="stride8"
)
set_image_size(model, dataloader, 256)
train.output_dir = "./output/mini/vitdet_mrcnn_lift_s8"
