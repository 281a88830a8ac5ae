# The floor of the "down" placement (vitdet_mrcnn_lift_down.py): the trained mini ViTDet on the
# half image (128 px), ViT at lr 0 and pyramid + heads finetuned with the same budget as
# configs/mini/vitdet_mrcnn_ft.py.
from lift_det.config import set_image_size

from .vitdet_mrcnn_ft import dataloader, lr_multiplier, model, optimizer, train

set_image_size(model, dataloader, 128)
train.output_dir = "./output/mini/vitdet_mrcnn_half"
