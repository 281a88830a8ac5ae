# ViT-L and ViT-H as in upstream's projects/ViTDet/configs/COCO/{mask,cascade_mask}_rcnn_vitdet_
# {l_100ep,h_75ep}.py, for model.backbone.net.update(**VIT_L). ViT-B is the default of
# detectron2's common/models/mask_rcnn_vitdet.py.
from functools import partial

from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate


def vitdet_vit(embed_dim, depth, num_heads, drop_path_rate):
    """ViTDet's ViT of a size: windowed attention except the last block of each quarter."""
    quarter = depth // 4
    windowed = [i for i in range(depth) if (i + 1) % quarter]
    return dict(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        drop_path_rate=drop_path_rate,
        window_block_indexes=windowed,
    )


VIT_L = vitdet_vit(1024, depth=24, num_heads=16, drop_path_rate=0.4)  # global: 5, 11, 17, 23
VIT_L_LR_DECAY = partial(get_vit_lr_decay_rate, lr_decay_rate=0.8, num_layers=24)
VIT_H = vitdet_vit(1280, depth=32, num_heads=16, drop_path_rate=0.5)  # global: 7, 15, 23, 31
VIT_H_LR_DECAY = partial(get_vit_lr_decay_rate, lr_decay_rate=0.9, num_layers=32)
