# ViT-L and ViT-H as in upstream's projects/ViTDet/configs/COCO/{mask,cascade_mask}_rcnn_vitdet_
# {l_100ep,h_75ep}.py, for model.backbone.net.update(**VIT_L). ViT-B is the default of
# detectron2's common/models/mask_rcnn_vitdet.py.
from functools import partial

from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate

VIT_L = dict(
    embed_dim=1024,
    depth=24,
    num_heads=16,
    drop_path_rate=0.4,
    # 5, 11, 17, 23 for global attention
    window_block_indexes=(
        list(range(0, 5)) + list(range(6, 11)) + list(range(12, 17)) + list(range(18, 23))
    ),
)
VIT_L_LR_DECAY = partial(get_vit_lr_decay_rate, lr_decay_rate=0.8, num_layers=24)

VIT_H = dict(
    embed_dim=1280,
    depth=32,
    num_heads=16,
    drop_path_rate=0.5,
    # 7, 15, 23, 31 for global attention
    window_block_indexes=(
        list(range(0, 7)) + list(range(8, 15)) + list(range(16, 23)) + list(range(24, 31))
    ),
)
VIT_H_LR_DECAY = partial(get_vit_lr_decay_rate, lr_decay_rate=0.9, num_layers=32)
