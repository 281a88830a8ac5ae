"""Config helpers. LazyConfig: :func:`lift_backbone` turns any ViTDet backbone config into its
ViT+LiFT stage-two config; :func:`stage2_lr_multiplier` and :func:`frozen_vit_lr_factor` are the
stage-two schedule and the frozen-ViT control; :data:`VIT_SIZES` / :func:`vitdet_vit_args` are the
ViT sizes and :data:`LIFT_PRESET_FOR_WIDTH` the LiFT preset of each. yacs:
:func:`add_lift_config`."""

import copy
import inspect
from typing import Any, Dict, Optional
from fvcore.common.param_scheduler import MultiStepParamScheduler

import detectron2.data.transforms as T
from detectron2.config import CfgNode as CN
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone.vit import ViT
from detectron2.solver import WarmupParamScheduler


def add_lift_config(cfg: CN) -> CN:
    """Add ``cfg.MODEL.VIT_LIFT`` (ViT-B/16 as in ViTDet, LiFT-B, the simple feature pyramid),
    read by ``MODEL.BACKBONE.NAME = "build_vit_lift_backbone"``."""
    c = cfg.MODEL.VIT_LIFT = CN()
    c.IMG_SIZE = 1024
    c.PATCH_SIZE = 16
    # EMBED_DIM, DEPTH, NUM_HEADS, DROP_PATH_RATE, WINDOW_BLOCK_INDEXES (2, 5, 8, 11 global)
    for key, value in vitdet_vit_args("B").items():
        c[key.upper()] = value
    c.WINDOW_SIZE = 14
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
    """ViTDet's ViT of a size ("S", "B", "L", "H") as arguments of detectron2's ``ViT``: the
    :data:`VIT_SIZES` entry and windowed attention in every block but the last of each quarter."""
    if size not in VIT_SIZES:
        raise KeyError(f"No ViT size {size!r}; sizes: {', '.join(VIT_SIZES)}.")
    args = dict(VIT_SIZES[size])
    quarter = args["depth"] // 4
    args["window_block_indexes"] = [i for i in range(args["depth"]) if (i + 1) % quarter]
    return args


# the LiFT preset that matches a ViT's width (paper: LiFT-S for ViT-S; ours for ViT-B/L/H)
LIFT_PRESET_FOR_WIDTH = {args["embed_dim"]: f"LiFT-{size}" for size, args in VIT_SIZES.items()}


def upsampler_config(name: str, **kwargs):
    """The LazyCall of :func:`build_upsampler` ``(name, **kwargs)`` for ``ViTLiFT(lift=...)``,
    channels and patch size interpolated from the enclosing ViT."""
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
    """Turn ViTDet's backbone config ``vitdet_backbone`` (``L(SimpleFeaturePyramid)(net=L(ViT)(
    ...))``) into a new stage-two ViT+LiFT backbone config: the same ViT, the upsampler after it,
    ViTDet's pyramid. ``upsampler``: a name for :func:`upsampler_config` (default: the LiFT preset
    for the ViT's width, :data:`LIFT_PRESET_FOR_WIDTH`), built with ``lift_kwargs`` (e.g.
    ``norm="SyncBN"``); ``lift_weights``: the stage-one LiFT file ("" when
    ``train.init_checkpoint`` holds LiFT); ``freeze``: stage two (paper §3.5), ViT and LiFT frozen,
    pyramid and heads trained. ``placement`` "half": the ViT and LiFT see the detector's image at
    half size, LiFT's output feeds upstream's pyramid unchanged (on a 2x image "up", on ViTDet's
    size "down"); "stride8": the ViT sees the detector's image, LiFT's stride-8 output gives p2-p4,
    p5 and p6 subsampled from p4. Every ViTDet tensor loads in both."""
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
    """Give a detector LazyConfig another input size, in place: ``square_pad``, the training
    augmentations' target and crop, the test resize (the ViT's ``img_size`` stays)."""
    model.backbone.square_pad = size
    for aug in dataloader.train.mapper.augmentations:
        if "target_height" in aug:
            aug.target_height = aug.target_width = size
        if "crop_size" in aug:
            aug.crop_size = (size, size)
    resize = L(T.ResizeShortestEdge)(short_edge_length=size, max_size=size)
    dataloader.test.mapper.augmentations = [resize]


def stage2_lr_multiplier(max_iter: int):
    """Stage two's short schedule (paper §3.5): one 10x drop at 90% of ``max_iter``, linear
    warmup over ``min(100, max_iter // 10)`` iterations."""
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[1.0, 0.1], milestones=[int(max_iter * 0.9)], num_updates=max_iter
        ),
        warmup_length=min(100, max_iter // 10) / max_iter,
        warmup_factor=0.001,
    )


def frozen_vit_lr_factor(name: str) -> float:
    """``optimizer.params.lr_factor_func``: lr 0 for a plain ViTDet's ViT (``backbone.net``)."""
    return 0.0 if name.startswith("backbone.net.") else 1.0
