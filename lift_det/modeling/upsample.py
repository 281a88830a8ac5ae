"""Controls that take LiFT's place (same call signature): :class:`BilinearUpsampler` (paper's
"BL") and :class:`ResizeConvUpsampler` (paper's "RC"), which do not see the image, and
:func:`build_upsampler`, the one place where a name picks LiFT or a control."""

import inspect
from typing import Any
import torch
import torch.nn.functional as F
from torch import nn

from .learned_upsamplers import AttentionUpsampler, JBUUpsampler
from .lift import LIFT_PRESETS, LiFT


class BilinearUpsampler(nn.Module):
    """Bilinear 2x upsampling of the features; the image is ignored. No parameters."""

    def __init__(self, in_channels: int, patch_size: int = 16):
        super().__init__()
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.preset = self.__class__.__name__

    def _upsample(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.preset} expects features of shape (B,{self.in_channels},h,w), "
                f"got {tuple(features.shape)}."
            )
        return F.interpolate(features, scale_factor=2.0, mode="bilinear", align_corners=False)

    def forward(self, image: torch.Tensor, features: torch.Tensor, num_passes: int = 1):
        for _ in range(num_passes):
            features = self._upsample(features)
        return features


class ResizeConvUpsampler(BilinearUpsampler):
    """Bilinear 2x upsampling followed by a 3x3 conv (residual, zero-initialized)."""

    def __init__(self, in_channels: int, patch_size: int = 16):
        super().__init__(in_channels, patch_size)
        self.refine_conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.refine_conv.weight)
        nn.init.zeros_(self.refine_conv.bias)

    def _upsample(self, features: torch.Tensor) -> torch.Tensor:
        features = super()._upsample(features)
        return features + self.refine_conv(features)


_CONTROLS = {"bilinear": BilinearUpsampler, "resize_conv": ResizeConvUpsampler}
# controls with options (window sizes, widths: see their constructors)
_LEARNED = {"jbu": JBUUpsampler, "attention": AttentionUpsampler}
UPSAMPLER_NAMES = tuple(LIFT_PRESETS) + tuple(_CONTROLS) + tuple(_LEARNED)


def build_upsampler(name: str, in_channels: int, patch_size: int = 16, **kwargs: Any) -> nn.Module:
    """Build LiFT or a control by name (:data:`UPSAMPLER_NAMES`: a LiFT preset, "bilinear",
    "resize_conv", "jbu", "attention") for a ViT with ``in_channels`` and ``patch_size``.
    ``kwargs``: overrides of a preset's arguments (e.g. ``norm="SyncBN"``), or the options of "jbu"
    and "attention" (e.g. ``kernel_size=7``); the other controls take none."""
    if name in LIFT_PRESETS or name in _LEARNED:
        cls = LiFT if name in LIFT_PRESETS else _LEARNED[name]
        options = set(inspect.signature(cls).parameters) - {"in_channels", "patch_size"}
        unknown = sorted(set(kwargs) - options)
        if unknown:  # a misspelled config key: say so here, not as a TypeError deep inside
            raise ValueError(
                f"Unknown option(s) {unknown} for the {name!r} upsampler; its options are "
                f"{sorted(options)}. Fix the key in the config (e.g. model.backbone.net.lift.*)."
            )
        if name in LIFT_PRESETS:
            return LiFT.from_preset(name, in_channels, patch_size, **kwargs)
        return cls(in_channels, patch_size, **kwargs)
    if name not in _CONTROLS:
        raise ValueError(f"Unknown upsampler {name!r}; valid names: {', '.join(UPSAMPLER_NAMES)}.")
    if kwargs:
        raise ValueError(f"The {name!r} control takes no options, got {sorted(kwargs)}.")
    return _CONTROLS[name](in_channels, patch_size)
