"""The ViTDet+LiFT backbone: detectron2's ViT, then LiFT (or a control) on its last feature, then
a simple feature pyramid built for the stride-p/2 map (paper §3.5, Appendix B).

Parameter names are the contract with official checkpoints:

* the ViT keeps ViTDet's names, ``backbone.net.<vit params>`` (:class:`ViTLiFT` *is* a ViT);
* LiFT lives at ``backbone.net.lift.*`` with no name ending like an MAE key;
* pyramid stages are registered under the name of the ViTDet stage that applies the same scale
  factor: LiFT features at stride 8 stand for ViT features of a 2x image, so the ViTDet stage that
  maps stride-16 features with scale s also maps our stride-8 features with scale s (one level
  finer). ``simfp_3`` (2x), ``simfp_4`` (1x) and ``simfp_5`` (0.5x) load ViTDet weights
  unchanged; ``simfp_6`` (0.25x, new) starts fresh; ViTDet's 4x stage ``simfp_2`` has no
  counterpart (LiFT replaces its upsampling) and is reported as unused when loading.
"""

import torch
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, SimpleFeaturePyramid, ViT

import logging
import math
from contextlib import nullcontext
from typing import Any, Dict, Optional, Sequence

from ..checkpoint import load_lift_file

__all__ = ["ViTLiFT", "LiFTSimpleFeaturePyramid", "build_vit_lift_backbone", "vit_identity"]


class ViTLiFT(ViT):
    """
    detectron2's :class:`ViT` followed by LiFT (or a control upsampler) on its output: a
    Backbone whose single output, named like the ViT's (``out_feature``), has the ViT's channels
    and stride ``patch_size / 2**num_passes``.
    """

    def __init__(
        self,
        *,
        lift: nn.Module,
        lift_weights: str = "",
        num_passes: int = 1,
        freeze_vit: bool = False,
        freeze_lift: bool = False,
        **vit_kwargs: Any,
    ):
        """
        Args:
            lift (nn.Module): a :class:`LiFT` or a control (:class:`BilinearUpsampler`, ...),
                called as ``lift(image, features, num_passes=...)``; its ``in_channels`` and
                ``patch_size`` must match the ViT's.
            lift_weights (str): a LiFT file from stage one (``lift_final.pth``) to load into
                ``lift``; refused if it was trained for another width, patch size or ViT.
                Empty: keep ``lift``'s initialization.
            num_passes (int): recursive LiFT passes (stride halves with each).
            freeze_vit (bool): no gradients to the ViT, which runs in eval mode (no drop path)
                and under ``no_grad`` whatever ``train()`` is called with.
            freeze_lift (bool): the same for LiFT, including its BatchNorm statistics.
            vit_kwargs: arguments of :class:`detectron2.modeling.ViT`.
        """
        super().__init__(**vit_kwargs)
        embed_dim = vit_kwargs.get("embed_dim", 768)
        patch_size = vit_kwargs.get("patch_size", 16)
        self._identity = {
            "type": "detectron2.ViT",
            "embed_dim": embed_dim,
            "depth": vit_kwargs.get("depth", 12),
            "num_heads": vit_kwargs.get("num_heads", 12),
            "patch_size": patch_size,
        }
        if lift.in_channels != embed_dim or lift.patch_size != patch_size:
            raise ValueError(
                f"{type(lift).__name__} was built for {lift.in_channels} channels and patch size "
                f"{lift.patch_size}, but the ViT has embed_dim={embed_dim} and patch_size="
                f"{patch_size}. Build it with in_channels={embed_dim}, patch_size={patch_size}."
            )
        if patch_size % (2**num_passes):
            raise ValueError(f"patch_size={patch_size} cannot be halved {num_passes} times.")
        self.lift = lift
        self.num_passes = num_passes
        self.freeze_vit = freeze_vit
        self.freeze_lift = freeze_lift
        if lift_weights:
            load_lift_file(self.lift, lift_weights, backbone=self.backbone_identity())
        elif freeze_lift and any(True for _ in lift.parameters()):
            logging.getLogger(__name__).warning(
                f"{type(lift).__name__} is frozen but no lift_weights were given: unless a "
                f"checkpoint loaded later holds backbone.net.lift.*, it stays at random init. "
                f"Pass the stage-one file (model.backbone.net.lift_weights=.../lift_final.pth)."
            )
        for name, p in self.named_parameters():
            is_lift = name.startswith("lift.")
            if (freeze_lift and is_lift) or (freeze_vit and not is_lift):
                p.requires_grad_(False)
        name = self._out_features[0]
        self._out_feature_strides = {name: patch_size // 2**num_passes}
        self.train()

    def backbone_identity(self) -> Dict[str, Any]:
        """What a LiFT file records about the ViT it was trained on, and is checked against."""
        return dict(self._identity)

    def train(self, mode: bool = True) -> "ViTLiFT":
        super().train(mode)
        if self.freeze_vit:
            for name, child in self.named_children():
                if name != "lift":
                    child.eval()
        if self.freeze_lift:
            self.lift.eval()
        return self

    def vit_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The plain ViT's output feature (B, C, H/p, W/p)."""
        return super().forward(x)[self._out_features[0]]

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        with torch.no_grad() if self.freeze_vit else nullcontext():
            features = self.vit_forward(x)
        return {self._out_features[0]: self.lift(x, features, num_passes=self.num_passes)}


class _ShapeOnly(Backbone):
    """A stand-in net that only reports an output shape (used to build one pyramid stage)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self._out_features = ["x"]
        self._out_feature_channels = {"x": channels}
        self._out_feature_strides = {"x": stride}

    def forward(self, x):
        raise NotImplementedError("_ShapeOnly only describes a shape.")


class LiFTSimpleFeaturePyramid(SimpleFeaturePyramid):
    """
    :class:`SimpleFeaturePyramid` for a stride-8 input (ViT+LiFT): scale factors 2, 1, 0.5 and
    0.25 give p2-p5 at strides 4-32, and ``top_block`` (LastLevelMaxPool) p6 at 64, so ViTDet's
    RPN and ROI heads run unchanged. Stages are named after the ViTDet stage with the same scale
    factor (see the module docstring), so ViTDet checkpoints load into them.
    """

    def __init__(
        self,
        net: Backbone,
        in_feature: str,
        out_channels: int,
        scale_factors: Sequence[float] = (2.0, 1.0, 0.5, 0.25),
        top_block: Optional[nn.Module] = None,
        norm: str = "LN",
        square_pad: int = 0,
        freeze: bool = False,
    ):
        """
        Args:
            net, in_feature, out_channels, top_block, norm, square_pad: as in
                :class:`SimpleFeaturePyramid`.
            scale_factors (list[float]): any of 4, 2, 1, 0.5 (built by detectron2) and 0.25 (a
                4x max-pool before the same 1x1 and 3x3 convs).
            freeze (bool): no gradients to the pyramid's own stages (not to ``net``).
        """
        scale_factors = tuple(float(s) for s in scale_factors)
        base_scales = tuple(s for s in scale_factors if s != 0.25)
        if base_scales + ((0.25,) if 0.25 in scale_factors else ()) != scale_factors:
            raise ValueError(f"scale_factors must be decreasing with 0.25 last: {scale_factors}")
        super().__init__(net, in_feature, out_channels, base_scales, None, norm, square_pad)
        in_shape = net.output_shape()[in_feature]
        if 0.25 in scale_factors:
            # detectron2 builds the 0.5 stage; our 0.25 stage is that stage with a 4x pool
            ref = SimpleFeaturePyramid(
                _ShapeOnly(in_shape.channels, in_shape.stride), "x", out_channels, [0.5], norm=norm
            )
            stage = next(iter(ref.children()))
            stage[0] = nn.MaxPool2d(kernel_size=4, stride=4)
            self.stages.append(stage)
        self.scale_factors = scale_factors

        # register stages under ViTDet's names for the same scale factor
        for name in [n for n, _ in self.named_children() if n.startswith("simfp_")]:
            delattr(self, name)
        for scale, stage in zip(scale_factors, self.stages):
            self.add_module(f"simfp_{int(math.log2(16 / scale))}", stage)

        strides = [int(in_shape.stride / s) for s in scale_factors]
        self._out_feature_strides = {f"p{int(math.log2(s))}": s for s in strides}
        self.top_block = top_block
        if top_block is not None:
            last = int(math.log2(strides[-1]))
            for s in range(last + 1, last + 1 + top_block.num_levels):
                self._out_feature_strides[f"p{s}"] = 2**s
        self._out_features = list(self._out_feature_strides)
        self._out_feature_channels = {k: out_channels for k in self._out_features}
        self._size_divisibility = strides[-1]
        self.freeze = freeze
        if freeze:
            for stage in self.stages:
                for p in stage.parameters():
                    p.requires_grad_(False)


@BACKBONE_REGISTRY.register()
def build_vit_lift_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """
    yacs builder (``MODEL.BACKBONE.NAME = "build_vit_lift_backbone"``): ViTDet-B + LiFT-B +
    stride-8 pyramid, configured by ``cfg.MODEL.VIT_LIFT`` (see :func:`add_lift_config`).
    """
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool

    from functools import partial

    from .lift import LiFT
    from .upsample import BilinearUpsampler, ResizeConvUpsampler

    c = cfg.MODEL.VIT_LIFT
    if c.UPSAMPLER in ("LiFT-S", "LiFT-B"):
        lift = LiFT.from_preset(c.UPSAMPLER, c.EMBED_DIM, c.PATCH_SIZE, norm=c.LIFT_NORM)
    elif c.UPSAMPLER == "bilinear":
        lift = BilinearUpsampler(c.EMBED_DIM, c.PATCH_SIZE)
    elif c.UPSAMPLER == "resize_conv":
        lift = ResizeConvUpsampler(c.EMBED_DIM, c.PATCH_SIZE)
    else:
        raise ValueError(
            f"MODEL.VIT_LIFT.UPSAMPLER={c.UPSAMPLER!r}; use LiFT-S, LiFT-B, bilinear, resize_conv."
        )
    net = ViTLiFT(
        lift=lift,
        lift_weights=c.LIFT_WEIGHTS,
        freeze_vit=c.FREEZE_VIT,
        freeze_lift=c.FREEZE_LIFT,
        img_size=c.IMG_SIZE,
        patch_size=c.PATCH_SIZE,
        embed_dim=c.EMBED_DIM,
        depth=c.DEPTH,
        num_heads=c.NUM_HEADS,
        drop_path_rate=c.DROP_PATH_RATE,
        window_size=c.WINDOW_SIZE,
        mlp_ratio=4,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        window_block_indexes=list(c.WINDOW_BLOCK_INDEXES),
        use_rel_pos=True,
        in_chans=input_shape.channels,
    )
    return LiFTSimpleFeaturePyramid(
        net,
        in_feature="last_feat",
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        scale_factors=(2.0, 1.0, 0.5, 0.25),
        top_block=LastLevelMaxPool(),
        norm="LN",
        square_pad=c.IMG_SIZE,
        freeze=c.FREEZE_PYRAMID,
    )


def vit_identity(vit: nn.Module) -> Dict[str, Any]:
    """What a LiFT file records about a detectron2 ViT (or a ViTLiFT), read from the module."""
    return {
        "type": "detectron2.ViT",
        "embed_dim": int(vit.patch_embed.proj.out_channels),
        "depth": len(vit.blocks),
        "num_heads": int(vit.blocks[0].attn.num_heads),
        "patch_size": int(vit.patch_embed.proj.kernel_size[0]),
    }
