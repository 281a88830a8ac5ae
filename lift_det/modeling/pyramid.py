"""ViTDet's simple feature pyramid for a ViT+LiFT net (paper §3.5, Appendix B).

Stage names are the contract with ViTDet checkpoints: a stage that applies scale factor ``s`` is
named ``simfp_<log2(p / s)>``, as the ViTDet stage that applies the same scale to stride-p ViT
features. "half" (:func:`lift_det.config.lift_backbone`) builds upstream's ``simfp_2``-``simfp_5``;
"stride8" ``simfp_3``-``simfp_5`` (p2-p4), p5 and p6 subsampled from p4 (ViTDet's ``simfp_2``
unused); other ``scale_factors`` may build a new stage (reported as new on loading)."""

import math
from functools import partial
from typing import Optional, Sequence
import torch.nn.functional as F
from torch import nn

from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, SimpleFeaturePyramid, ViT
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from ..checkpoint import report_part
from .backbone import ViTLiFT, vit_identity
from .upsample import build_upsampler

VITDET_SCALES = (4.0, 2.0, 1.0, 0.5)  # upstream ViTDet's pyramid on the stride-p ViT


class LastLevelsMaxPool(nn.Module):
    """``num_levels`` coarser levels from ``in_feature``, each a stride-2 subsampling of the one
    before (detectron2's ``LastLevelMaxPool`` is ``num_levels=1`` on "p5"). No parameters."""

    def __init__(self, in_feature: str = "p4", num_levels: int = 2):
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}.")
        self.num_levels = num_levels
        self.in_feature = in_feature

    def forward(self, x):
        return [x := F.max_pool2d(x, kernel_size=1, stride=2) for _ in range(self.num_levels)]


def _stage_name(ref_stride: int, scale: float) -> str:
    return f"simfp_{int(math.log2(ref_stride / scale))}"


def _report_stages(module, state_dict, prefix, *args) -> None:
    """load_state_dict pre-hook: tell the loading checkpointer which stages a ViTDet checkpoint
    cannot have (new) and which of its stages this pyramid does not have (unused)."""
    own, vitdet = module._own_stages, module._vitdet_stages
    held = {k[len(prefix) :].split(".")[0] for k in state_dict if k.startswith(prefix)}
    for name in (n for n in own if n not in vitdet and n not in held):
        reason = f"{name} is the new {own[name]:g}x stage (ViTDet checkpoints have none)"
        report_part(f"{prefix}{name}.", "new", reason=reason)
    for name in (n for n in vitdet if n not in own and n in held):
        reason = f"ViTDet's {vitdet[name]:g}x stage {name} has no counterpart here"
        report_part(f"{prefix}{name}.", "unused", reason=reason)


def _stage(scale: float, dim: int, out_channels: int, norm: str) -> nn.Sequential:
    """Upstream's stage for ``scale`` (same layers and indices); 0.25 / 0.125: a 4x / 8x pool."""
    if scale == 4.0:
        layers = [
            nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2),
            get_norm(norm, dim // 2),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 2, dim // 4, kernel_size=2, stride=2),
        ]
    elif scale == 2.0:
        layers = [nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2)]
    elif scale == 1.0:
        layers = []
    elif scale in (0.5, 0.25, 0.125):
        layers = [nn.MaxPool2d(kernel_size=int(1 / scale), stride=int(1 / scale))]
    else:
        raise NotImplementedError(
            f"scale_factor={scale} is not supported (use 4, 2, 1, 0.5, 0.25 or 0.125)."
        )
    out_dim = dim // int(max(scale, 1))  # each transposed conv halves the channels
    conv = dict(bias=norm == "")
    layers += [
        Conv2d(out_dim, out_channels, kernel_size=1, norm=get_norm(norm, out_channels), **conv),
        Conv2d(out_channels, out_channels, 3, padding=1, norm=get_norm(norm, out_channels), **conv),
    ]
    return nn.Sequential(*layers)


class LiFTSimpleFeaturePyramid(SimpleFeaturePyramid):
    """:class:`SimpleFeaturePyramid` (ViTDet, upstream's ``forward``) whose stages are built from
    the net's actual stride, named after the ViTDet stage with the same scale factor (see the module
    docstring); by default strides 4-32 and the top block's, as ViTDet's heads expect."""

    def __init__(
        self,
        net: Backbone,
        in_feature: str,
        out_channels: int,
        scale_factors: Optional[Sequence[float]] = None,
        top_block: Optional[nn.Module] = None,
        norm: str = "LN",
        square_pad: int = 0,
        freeze: bool = False,
    ):
        """Arguments as :class:`SimpleFeaturePyramid`'s, but ``scale_factors``: any of 4, 2, 1,
        0.5, 0.25 and 0.125 (None: those that give strides 4, 8, ... up to the level ``top_block``
        reads, p5 without one); ``freeze``: no gradients to the pyramid's own stages (not to
        ``net``)."""
        # the stages are built here (upstream's loop, extended), so SimpleFeaturePyramid's
        # __init__ (which names stages from the input stride) is not called
        Backbone.__init__(self)
        if not isinstance(net, Backbone):
            raise TypeError(f"net must be a detectron2 Backbone, got {type(net).__name__}.")
        in_shape = net.output_shape()[in_feature]
        if scale_factors is None:
            if in_shape.stride < 4:
                passes = getattr(net, "num_passes", None)
                raise ValueError(
                    f"The pyramid's finest level (p2) has stride 4, but '{in_feature}' has stride "
                    f"{in_shape.stride}"
                    + (f" (LiFT applied num_passes={passes} times)" if passes else "")
                    + ": nothing can be pooled to it without discarding the upsampling. Use fewer "
                    "LiFT passes (stride = patch size / 2**num_passes >= 4), or give scale_factors."
                )
            last = int(top_block.in_feature[1:]) if top_block is not None else 5
            scale_factors = [in_shape.stride / 2**k for k in range(2, last + 1)]
        self.scale_factors = tuple(float(s) for s in scale_factors)
        strides = [in_shape.stride / s for s in self.scale_factors]
        doubling = all(b == 2 * a for a, b in zip(strides, strides[1:]))
        if not doubling or any(s != int(s) or s < 1 for s in strides):
            raise ValueError(
                f"scale_factors={list(self.scale_factors)} on the stride-{in_shape.stride} input "
                f"'{in_feature}' give strides {strides}; they must be whole and double from one "
                f"level to the next. Use scale_factors=None for strides 4, 8, 16, 32."
            )
        strides = [int(s) for s in strides]
        # names follow the ViTDet stage with the same scale factor on the ViT's patch stride
        ref_stride = vit_identity(net)["patch_size"] if isinstance(net, ViT) else in_shape.stride
        self._vitdet_stages = {_stage_name(ref_stride, s): s for s in VITDET_SCALES}
        self._own_stages = {_stage_name(ref_stride, s): s for s in self.scale_factors}
        self.stages = []
        for name, scale in self._own_stages.items():
            self.stages.append(_stage(scale, in_shape.channels, out_channels, norm))
            self.add_module(name, self.stages[-1])
        self.register_load_state_dict_pre_hook(_report_stages)

        self.net = net
        self.in_feature = in_feature
        self.top_block = top_block
        self._out_feature_strides = {f"p{int(math.log2(s))}": s for s in strides}
        if top_block is not None:
            if top_block.in_feature not in self._out_feature_strides:
                raise ValueError(
                    f"top_block reads '{top_block.in_feature}', but the pyramid builds "
                    f"{list(self._out_feature_strides)} (strides {strides}) from the "
                    f"stride-{in_shape.stride} input with scale_factors="
                    f"{list(self.scale_factors)}. Use scale_factors=None (strides 4-32, "
                    f"p2-p5, as ViTDet's heads expect)."
                )
            last = int(math.log2(strides[-1]))
            for s in range(last + 1, last + 1 + top_block.num_levels):
                self._out_feature_strides[f"p{s}"] = 2**s
        self._out_features = list(self._out_feature_strides)
        self._out_feature_channels = {k: out_channels for k in self._out_features}
        # upstream's: the stride of the last level the stages and the top block build but one
        levels = getattr(top_block, "num_levels", 1)
        self._size_divisibility = max(strides) * 2 ** max(levels - 1, 0)
        self._square_pad = square_pad
        self.freeze = freeze
        if freeze:
            for stage in self.stages:
                stage.requires_grad_(False)


@BACKBONE_REGISTRY.register()
def build_vit_lift_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """yacs builder (``MODEL.BACKBONE.NAME = "build_vit_lift_backbone"``) of the ViT+LiFT backbone
    configured by ``cfg.MODEL.VIT_LIFT`` (:func:`add_lift_config`)."""
    c = cfg.MODEL.VIT_LIFT
    if c.PLACEMENT not in ("half", "stride8"):
        raise ValueError(f"MODEL.VIT_LIFT.PLACEMENT={c.PLACEMENT!r}: use 'half' or 'stride8'.")
    half = c.PLACEMENT == "half"
    options = {"norm": c.LIFT_NORM} if c.UPSAMPLER.startswith("LiFT-") else {}
    try:
        lift = build_upsampler(c.UPSAMPLER, c.EMBED_DIM, c.PATCH_SIZE, **options)
    except ValueError as e:
        raise ValueError(f"MODEL.VIT_LIFT.UPSAMPLER: {e}") from e
    # the MODEL.VIT_LIFT keys that are ViTLiFT's arguments, upper-cased
    same = "LIFT_WEIGHTS NUM_PASSES FREEZE_VIT FREEZE_LIFT ALLOW_RANDOM_LIFT IMG_SIZE PATCH_SIZE"
    same += " EMBED_DIM DEPTH NUM_HEADS DROP_PATH_RATE WINDOW_SIZE ATTN_IMPL"
    net = ViTLiFT(
        lift=lift,
        **{key.lower(): c[key] for key in same.split()},
        window_block_indexes=list(c.WINDOW_BLOCK_INDEXES),
        mlp_ratio=4,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        in_chans=input_shape.channels,
        image_scale=0.5 if half else 1.0,
    )
    return LiFTSimpleFeaturePyramid(
        net,
        in_feature="last_feat",
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        scale_factors=None,  # strides 4 ... the top block's input, from the net's stride
        top_block=LastLevelMaxPool() if half else LastLevelsMaxPool("p4", num_levels=2),
        norm="LN",
        square_pad=c.IMG_SIZE,
        freeze=c.FREEZE_PYRAMID,
    )
