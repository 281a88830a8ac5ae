# The costly upper bound for LiFT: the trained mini ViTDet on the 2x image (512 px, a stride-8 grid
# of the original bought with 4x the tokens), ViT at lr 0 and pyramid + heads finetuned with the
# same budget as configs/mini/vitdet_mrcnn_ft.py. The ViT keeps img_size=256, so the checkpoint
# loads unchanged; detectron2's ViT interpolates its position embeddings to the larger grid.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .vitdet_mrcnn_ft import dataloader, lr_multiplier, model, optimizer, train

image_size = 512
model.backbone.square_pad = image_size
dataloader.train.mapper.augmentations[1].target_height = image_size
dataloader.train.mapper.augmentations[1].target_width = image_size
dataloader.train.mapper.augmentations[2].crop_size = (image_size, image_size)
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size),
]
train.output_dir = "./output/mini/vitdet_mrcnn_2x"
