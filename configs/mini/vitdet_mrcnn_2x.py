# The costly upper bound for LiFT: the trained mini ViTDet on the 2x image (512 px, a stride-8 grid
# of the original bought with 4x the tokens), ViT at lr 0 and pyramid + heads finetuned with the
# same budget as configs/mini/vitdet_mrcnn_ft.py. The ViT keeps img_size=256, so the checkpoint
# loads unchanged; detectron2's ViT interpolates its position embeddings to the larger grid.
from lift_det.config import set_image_size

from .vitdet_mrcnn_ft import dataloader, lr_multiplier, model, optimizer, train

set_image_size(model, dataloader, 512)
train.output_dir = "./output/mini/vitdet_mrcnn_2x"
