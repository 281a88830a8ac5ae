"""yacs defaults for users of detectron2's ``get_cfg()`` configs (LazyConfig users need none)."""

from detectron2.config import CfgNode as CN

__all__ = ["add_lift_config", "lift_backbone"]


def add_lift_config(cfg: CN) -> CN:
    """
    Add ``cfg.MODEL.VIT_LIFT`` (read by ``build_vit_lift_backbone``): ViT-B/16 as in ViTDet,
    LiFT-B after it, the simple feature pyramid on top. Set
    ``cfg.MODEL.BACKBONE.NAME = "build_vit_lift_backbone"`` to use it.
    """
    c = cfg.MODEL.VIT_LIFT = CN()
    c.IMG_SIZE = 1024
    c.PATCH_SIZE = 16
    c.EMBED_DIM = 768
    c.DEPTH = 12
    c.NUM_HEADS = 12
    c.DROP_PATH_RATE = 0.1
    c.WINDOW_SIZE = 14
    # 2, 5, 8, 11 use global attention
    c.WINDOW_BLOCK_INDEXES = [0, 1, 3, 4, 6, 7, 9, 10]
    # a name for build_upsampler: "LiFT-S/B/L/H", or the controls "bilinear", "resize_conv"
    c.UPSAMPLER = "LiFT-B"
    c.LIFT_NORM = "BN"
    # the stage-one LiFT file; read when a checkpoint without backbone.net.lift.* is loaded
    c.LIFT_WEIGHTS = ""
    # recursive LiFT: stride 16 / 2**NUM_PASSES; the pyramid still gives p2-p6
    c.NUM_PASSES = 1
    c.FREEZE_VIT = False
    c.FREEZE_LIFT = False
    # train with a frozen LiFT that nothing loaded (otherwise an error at the first step)
    c.ALLOW_RANDOM_LIFT = False
    c.FREEZE_PYRAMID = False
    return cfg


def lift_backbone(vitdet_backbone, upsampler: str = "LiFT-B", **lift_kwargs):
    """
    LazyConfig helper: turn ViTDet's backbone config (``L(SimpleFeaturePyramid)(net=L(ViT)(...))``,
    as in detectron2's ``common/models/mask_rcnn_vitdet.py``) into the ViT+LiFT backbone config:
    the same ViT arguments, ``upsampler`` after it ("LiFT-B", "LiFT-S", or the controls
    "bilinear" and "resize_conv"), and the stride-8 pyramid. The LiFT's channels and patch size
    follow the ViT's by interpolation. Switches: ``net.lift_weights``, ``net.freeze_vit``,
    ``net.freeze_lift``, ``freeze`` (pyramid).
    """
    from detectron2.config import LazyCall as L

    from .modeling import (
        LIFT_PRESETS,
        BilinearUpsampler,
        LiFT,
        LiFTSimpleFeaturePyramid,
        ResizeConvUpsampler,
        ViTLiFT,
    )

    shape = dict(in_channels="${..embed_dim}", patch_size="${..patch_size}")
    if upsampler in LIFT_PRESETS:
        lift = L(LiFT.from_preset)(name=upsampler, **shape, **lift_kwargs)
    elif upsampler == "bilinear":
        lift = L(BilinearUpsampler)(**shape)
    elif upsampler == "resize_conv":
        lift = L(ResizeConvUpsampler)(**shape)
    else:
        raise ValueError(
            f"upsampler={upsampler!r}; use one of {sorted(LIFT_PRESETS)}, 'bilinear', "
            f"'resize_conv'."
        )
    vit_args = {k: v for k, v in vitdet_backbone.net.items() if k != "_target_"}
    vit_args.setdefault("patch_size", 16)
    vit_args.setdefault("embed_dim", 768)
    return L(LiFTSimpleFeaturePyramid)(
        net=L(ViTLiFT)(lift=lift, lift_weights="", freeze_vit=False, freeze_lift=False, **vit_args),
        in_feature="${.net.out_feature}",
        out_channels=vitdet_backbone.out_channels,
        scale_factors=(2.0, 1.0, 0.5, 0.25),
        top_block=vitdet_backbone.top_block,
        norm=vitdet_backbone.norm,
        square_pad=vitdet_backbone.square_pad,
        freeze=False,
    )
