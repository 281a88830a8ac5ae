"""
Config helpers. LazyConfig: :func:`lift_backbone` turns any ViTDet backbone config into its
ViT+LiFT stage-two config; :func:`stage2_lr_multiplier` and :func:`frozen_vit_lr_factor` are the
stage-two schedule and the frozen-ViT control; :data:`VIT_SIZES` / :func:`vitdet_vit_args` are the
ViT sizes and :data:`LIFT_PRESET_FOR_WIDTH` the LiFT preset of each. yacs: :func:`add_lift_config`.
"""

import copy
import inspect
from typing import Any, Dict, Optional
from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import CfgNode as CN
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone.vit import ViT
from detectron2.solver import WarmupParamScheduler

__all__ = [
    "add_lift_config",
    "VIT_SIZES",
    "vitdet_vit_args",
    "LIFT_PRESET_FOR_WIDTH",
    "upsampler_config",
    "PLACEMENTS",
    "lift_backbone",
    "set_image_size",
    "stage2_lr_multiplier",
    "frozen_vit_lr_factor",
]


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
    # the ViT's attention: "eager" (detectron2's) or "sdpa" (same weights, fused kernels)
    c.ATTN_IMPL = "eager"
    # a name for build_upsampler: "LiFT-S/B/L/H", or the controls "bilinear", "resize_conv",
    # "jbu", "attention"
    c.UPSAMPLER = "LiFT-B"
    c.LIFT_NORM = "BN"
    # the stage-one LiFT file; read when a checkpoint without backbone.net.lift.* is loaded
    c.LIFT_WEIGHTS = ""
    # recursive LiFT: stride 16 / 2**NUM_PASSES; the pyramid still gives p2-p6
    c.NUM_PASSES = 1
    # where LiFT enters ViTDet (see lift_backbone): "half" (the ViT and LiFT see the input at half
    # size, upstream's pyramid) or "stride8" (p5, p6 subsampled from p4)
    c.PLACEMENT = "half"
    c.FREEZE_VIT = False
    c.FREEZE_LIFT = False
    # train with a frozen LiFT that nothing loaded (otherwise an error at the first step)
    c.ALLOW_RANDOM_LIFT = False
    c.FREEZE_PYRAMID = False
    return cfg


# detectron2 ViT arguments of each ViT size. B, L, H as upstream's projects/ViTDet/configs/COCO
# (mask_rcnn_vitdet_b_100ep.py, _l_100ep.py, _h_75ep.py); S, which ViTDet has not, is DINO's
# ViT-S/16 (LiFT-S's ViT in the paper) with ViT-B's drop path
VIT_SIZES = {
    "S": dict(embed_dim=384, depth=12, num_heads=6, drop_path_rate=0.1),
    "B": dict(embed_dim=768, depth=12, num_heads=12, drop_path_rate=0.1),
    "L": dict(embed_dim=1024, depth=24, num_heads=16, drop_path_rate=0.4),
    "H": dict(embed_dim=1280, depth=32, num_heads=16, drop_path_rate=0.5),
}


def vitdet_vit_args(size: str) -> Dict[str, Any]:
    """
    ViTDet's ViT of a size ("S", "B", "L", "H"), as arguments of detectron2's ``ViT``: the
    :data:`VIT_SIZES` entry and ``window_block_indexes``, windowed attention in every block except
    the last of each quarter (global: 2, 5, 8, 11 at depth 12; 5, 11, 17, 23 at 24).
    """
    if size not in VIT_SIZES:
        raise KeyError(f"No ViT size {size!r}; sizes: {', '.join(VIT_SIZES)}.")
    args = dict(VIT_SIZES[size])
    quarter = args["depth"] // 4
    args["window_block_indexes"] = [i for i in range(args["depth"]) if (i + 1) % quarter]
    return args


# the LiFT preset that matches a ViT's width (paper: LiFT-S for ViT-S; ours for ViT-B/L/H)
LIFT_PRESET_FOR_WIDTH = {args["embed_dim"]: f"LiFT-{size}" for size, args in VIT_SIZES.items()}


def upsampler_config(name: str, **kwargs):
    """
    The LazyCall of an upsampler for ``ViTLiFT(lift=...)``: a LiFT preset ("LiFT-S", "LiFT-B",
    "LiFT-L", "LiFT-H") or a control ("bilinear", "resize_conv", "jbu", "attention"); ``kwargs``
    go to :func:`build_upsampler`. Channels and patch size follow the enclosing ViT by
    interpolation (``${..embed_dim}``, ``${..patch_size}``).
    """
    from .modeling import build_upsampler

    shape = dict(in_channels="${..embed_dim}", patch_size="${..patch_size}")
    return L(build_upsampler)(name=name, **shape, **kwargs)


PLACEMENTS = ("half", "stride8")


def lift_backbone(
    vitdet_backbone,
    upsampler: Optional[str] = None,
    *,
    lift_weights: str,
    freeze: bool,
    placement: str = "half",
    **lift_kwargs,
):
    """
    Turn ViTDet's backbone config (``L(SimpleFeaturePyramid)(net=L(ViT)(...))``, as in detectron2's
    ``common/models/mask_rcnn_vitdet.py`` and every ViTDet B/L/H config) into the stage-two
    ViT+LiFT backbone config: the same ViT arguments, the upsampler after it, ViTDet's pyramid
    where LiFT's output enters it. Returns a new config; the argument is not modified.

    Args:
        vitdet_backbone: ``model.backbone`` of a ViTDet LazyConfig.
        upsampler (str): a name for :func:`upsampler_config`; default: the LiFT preset for the
            ViT's width (:data:`LIFT_PRESET_FOR_WIDTH`: LiFT-B for ViT-B, -L for ViT-L, ...).
        lift_weights (str): the stage-one LiFT file (``lift_final.pth``); "" only when LiFT's
            weights come from ``train.init_checkpoint`` (a trained +LiFT checkpoint) or for the
            parameter-free bilinear control.
        freeze (bool): stage two (paper §3.5): ViT and LiFT frozen, pyramid and heads trained.
        placement (str): where LiFT enters ViTDet (nothing new to learn in either):
            "half": the ViT and LiFT see the detector's image at half size and LiFT's output
            (stride 16 of the detector's image) feeds upstream's pyramid unchanged: every ViTDet
            tensor loads, none is new or unused. On an image twice ViTDet's size it stands in for
            ViTDet on that image ("up", see :func:`set_image_size`); on ViTDet's size it runs the
            ViT on a quarter of the pixels ("down").
            "stride8": the ViT sees the detector's image, LiFT's stride-8 output gives p2-p4
            through ViTDet's 2x, 1x and 0.5x stages, p5 and p6 are subsampled from p4
            (:class:`~lift_det.modeling.LastLevelsMaxPool`); ViTDet's 4x stage is unused.
        lift_kwargs: passed to the upsampler (e.g. ``norm="SyncBN"``).
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement={placement!r}: use one of {PLACEMENTS}.")
    vit_defaults = inspect.signature(ViT).parameters
    net = copy.deepcopy(vitdet_backbone.net)
    for key in ("embed_dim", "patch_size"):  # read by the upsampler's interpolation
        net.setdefault(key, vit_defaults[key].default)
    if upsampler is None:
        if net.embed_dim not in LIFT_PRESET_FOR_WIDTH:
            raise ValueError(
                f"No LiFT preset for a ViT of width embed_dim={net.embed_dim}; pass one, e.g. "
                f"lift_backbone(backbone, 'LiFT-S', ...). Presets: {LIFT_PRESET_FOR_WIDTH}."
            )
        upsampler = LIFT_PRESET_FOR_WIDTH[net.embed_dim]
    from .modeling import LastLevelsMaxPool, LiFTSimpleFeaturePyramid, ViTLiFT

    net.update(
        _target_=ViTLiFT,
        lift=upsampler_config(upsampler, **lift_kwargs),
        lift_weights=lift_weights,
        freeze_vit=freeze,
        freeze_lift=freeze,
        image_scale=0.5 if placement == "half" else 1.0,
    )
    backbone = copy.deepcopy(vitdet_backbone)
    # scales follow the net's stride up to the level the top block reads: half: 4, 2, 1, 0.5
    # (upstream's); stride8: 2, 1, 0.5 (and 1, 0.5, 0.25 with model.backbone.net.num_passes=2)
    backbone.update(_target_=LiFTSimpleFeaturePyramid, net=net, scale_factors=None, freeze=False)
    if placement == "stride8":
        backbone.top_block = L(LastLevelsMaxPool)(in_feature="p4", num_levels=2)
    return backbone


def set_image_size(model, dataloader, size: int) -> None:
    """
    Give a detector LazyConfig (ViTDet's, or one from :func:`lift_backbone`) another input size:
    the padded square (``square_pad``), the large-scale-jitter target and crop of the training
    augmentations (ViTDet's ``ResizeScale`` and ``FixedSizeCrop``) and the test resize. The ViT's
    ``img_size`` stays, so its checkpoint loads unchanged (detectron2's ViT interpolates its
    position embeddings to the grid it sees). Changes ``model`` and ``dataloader`` in place.
    """
    import detectron2.data.transforms as T

    model.backbone.square_pad = size
    for aug in dataloader.train.mapper.augmentations:
        if "target_height" in aug:
            aug.target_height = aug.target_width = size
        if "crop_size" in aug:
            aug.crop_size = (size, size)
    dataloader.test.mapper.augmentations = [
        L(T.ResizeShortestEdge)(short_edge_length=size, max_size=size),
    ]


def stage2_lr_multiplier(max_iter: int, warmup_iters: Optional[int] = None):
    """
    Stage two's short schedule (paper §3.5, "briefly finetune"): constant lr with one 10x drop at
    90% of ``max_iter``, linear warmup over ``warmup_iters`` (default ``min(100, max_iter // 10)``).
    Set ``train.max_iter`` to the same number.
    """
    if warmup_iters is None:
        warmup_iters = min(100, max_iter // 10)
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[1.0, 0.1], milestones=[int(max_iter * 0.9)], num_updates=max_iter
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_factor=0.001,
    )


def frozen_vit_lr_factor(name: str) -> float:
    """
    ``optimizer.params.lr_factor_func`` giving lr 0 to the ViT (``backbone.net.*``), for a plain
    ViTDet, which has no freeze switch: the same-budget control trains what stage two trains.
    """
    return 0.0 if name.startswith("backbone.net.") else 1.0
