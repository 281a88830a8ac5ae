# Baseline: ViTDet-H Mask R-CNN, 75 epochs on COCO from MAE (upstream mask_rcnn_vitdet_h_75ep.py).
from .common.vit_sizes import VIT_H as _VIT_H  # (underscore: not a config key)
from .common.vit_sizes import VIT_H_LR_DECAY
from .vitdet_mrcnn import dataloader, lr_multiplier, model, optimizer, train

train.init_checkpoint = (
    "detectron2://ImageNetPretrained/MAE/mae_pretrain_vit_huge_p14to16.pth?matching_heuristics=True"
)
model.backbone.net.update(**_VIT_H)
optimizer.params.lr_factor_func = VIT_H_LR_DECAY
optimizer.params.overrides = {}
optimizer.params.weight_decay_norm = None

train.max_iter = train.max_iter * 3 // 4  # 100ep -> 75ep
lr_multiplier.scheduler.milestones = [m * 3 // 4 for m in lr_multiplier.scheduler.milestones]
lr_multiplier.scheduler.num_updates = train.max_iter
