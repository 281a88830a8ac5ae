# ViT-L and ViT-H as in upstream's projects/ViTDet/configs/COCO/{mask,cascade_mask}_rcnn_vitdet_
# {l_100ep,h_75ep}.py, for model.backbone.net.update(**VIT_L). ViT-B is the default of
# detectron2's common/models/mask_rcnn_vitdet.py. The sizes are lift_det.config.VIT_SIZES.
from functools import partial

from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate

from lift_det.config import vitdet_vit_args

VIT_L = vitdet_vit_args("L")  # global: 5, 11, 17, 23
VIT_L_LR_DECAY = partial(get_vit_lr_decay_rate, lr_decay_rate=0.8, num_layers=VIT_L["depth"])
VIT_H = vitdet_vit_args("H")  # global: 7, 15, 23, 31
VIT_H_LR_DECAY = partial(get_vit_lr_decay_rate, lr_decay_rate=0.9, num_layers=VIT_H["depth"])
