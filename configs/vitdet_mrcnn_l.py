# Baseline: ViTDet-L Mask R-CNN, 100 epochs on COCO from MAE (upstream mask_rcnn_vitdet_l_100ep.py).
from .common.vit_sizes import VIT_L as _VIT_L  # (underscore: not a config key)
from .common.vit_sizes import VIT_L_LR_DECAY
from .vitdet_mrcnn import dataloader, lr_multiplier, model, optimizer, train

train.init_checkpoint = (
    "detectron2://ImageNetPretrained/MAE/mae_pretrain_vit_large.pth?matching_heuristics=True"
)
model.backbone.net.update(**_VIT_L)
optimizer.params.lr_factor_func = VIT_L_LR_DECAY
