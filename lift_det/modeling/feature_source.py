"""Frozen ViT feature sources: the teacher F of LiFT's stage one (paper §3.3), a pretrained ViT
at ``net`` (``backbone.net.*`` in the model, as in ViTDet's checkpoints) that is never trained."""

from contextlib import nullcontext
from typing import Any, Dict, Sequence, Tuple
import torch
from torch import nn

from detectron2 import model_zoo
from detectron2.config import LazyConfig
from detectron2.modeling import ViT

from .backbone import vit_identity

# ViTDet's normalization of 0-255 RGB input, read from detectron2's model zoo
# (common/data/constants.py: imagenet_rgb256_mean / _std), the values its configs use
_CONSTANTS = LazyConfig.load(model_zoo.get_config_file("common/data/constants.py")).constants
IMAGENET_MEAN: Tuple[float, float, float] = tuple(_CONSTANTS.imagenet_rgb256_mean)
IMAGENET_STD: Tuple[float, float, float] = tuple(_CONSTANTS.imagenet_rgb256_std)


def _rgb_tuple(values: Sequence[float], name: str) -> Tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (R, G, B), got {values}.")
    return values


class FrozenFeatureSource(nn.Module):
    """Base class of the frozen feature sources: ``self.net`` frozen, in eval mode whatever
    ``train()`` is called with, run under ``no_grad`` (and autocast on CUDA). Subclasses set
    ``embed_dim``, ``patch_size``, ``pixel_mean``, ``pixel_std`` (for 0-255 RGB input) and implement
    :meth:`features` and :meth:`identity` (what LiFT files record about the ViT)."""

    embed_dim: int
    patch_size: int
    pixel_mean: Tuple[float, float, float]
    pixel_std: Tuple[float, float, float]

    def __init__(self, net: nn.Module, autocast: bool = True):
        super().__init__()
        self.net = net
        self.autocast = autocast
        self.freeze()

    def freeze(self) -> "FrozenFeatureSource":
        """No gradients to the ViT; eval mode (no dropout / drop path)."""
        return self.requires_grad_(False).train(False)

    def train(self, mode: bool = True) -> "FrozenFeatureSource":
        # the teacher is always in eval mode (SimpleTrainer calls model.train() on the whole model)
        return super().train(False)

    def identity(self) -> Dict[str, Any]:
        raise NotImplementedError

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized images (B, 3, H, W), H and W multiples of ``patch_size`` -> float32
        features (B, embed_dim, H / patch_size, W / patch_size), no grad."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Expected images of shape (B, 3, H, W), got {tuple(images.shape)}.")
        H, W = images.shape[-2:]
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(
                f"Input height ({H}) and width ({W}) should be divisible by patch size ({p})."
            )
        use_amp = self.autocast and images.is_cuda
        amp = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
        with torch.no_grad(), amp:
            return self.features(images).float()

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, patch_size={self.patch_size}, frozen=True"


class D2ViTSource(FrozenFeatureSource):
    """detectron2's :class:`ViT` (ViTDet's backbone) as a frozen feature source: its
    ``out_feature``; smaller inputs (x/2, x/4) work as in ViTDet (interpolated positions)."""

    def __init__(
        self,
        net: ViT,
        pixel_mean: Sequence[float] = IMAGENET_MEAN,
        pixel_std: Sequence[float] = IMAGENET_STD,
        autocast: bool = True,
    ):
        """``net``'s weights load with the model's checkpoint; ``pixel_mean``, ``pixel_std``: the
        normalization of 0-255 RGB input (ViTDet's by default); ``autocast``: fp16 on CUDA."""
        if not isinstance(net, ViT):
            raise TypeError(f"D2ViTSource needs a detectron2 ViT, got {type(net).__name__}.")
        super().__init__(net, autocast=autocast)
        self._out_feature = net._out_features[0]
        self.embed_dim = int(net._out_feature_channels[self._out_feature])
        self.patch_size = int(net._out_feature_strides[self._out_feature])
        self.pixel_mean = _rgb_tuple(pixel_mean, "pixel_mean")
        self.pixel_std = _rgb_tuple(pixel_std, "pixel_std")

    def identity(self) -> Dict[str, Any]:
        """:func:`vit_identity` of the ViT (what stage two's ViTLiFT is checked against)."""
        return vit_identity(self.net)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)[self._out_feature]
