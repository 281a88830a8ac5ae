# configs/mini/vitdet_mrcnn_lift.py with LiFT finetuned in stage two (ViT still frozen): LiFT at
# the heads' learning rate, its BatchNorm statistics updated.
from .vitdet_mrcnn_lift import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.freeze_lift = False
train.output_dir = "./output/mini/vitdet_mrcnn_lift_ft"
