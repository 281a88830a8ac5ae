# configs/lift_stage1_timm_dino_s16.py on the built-in mini data (CPU friendly): LiFT-S against a
# 2-block timm ViT-S/16 at 256x256, with configs/mini/lift_stage1.py's data and schedule. Give the
# ViT's weights as a local timm checkpoint:
#   tools/train_net.py --config-file configs/mini/lift_stage1_timm.py \
#       model.source.weights=/path/to/vit_s16_depth2.pth train.output_dir=/tmp/s1timm
from ..lift_stage1_timm_dino_s16 import model
from .lift_stage1 import dataloader, lr_multiplier, optimizer, train

model.source.update(model_name="vit_small_patch16_224", depth=2)  # depth: timm's argument
model.square_pad = 256
dataloader.train.mapper.patch_size = 16  # the mini config reads it from a detectron2 ViT

train.export[0].update(teacher_weights="${model.source.weights}", feature_layer="forward_features")
train.output_dir = "./output/mini_lift_stage1_timm"
