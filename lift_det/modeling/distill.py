"""Stage one of LiFT (paper §3.3-3.4): train LiFT Θ against a frozen ViT F, self-supervised, with
the multi-scale reconstruction objective (paper Eq. 1)::

    L = d(F(x), Θ(x/2, F(x/2))) + d(F(x/2), Θ(x/4, F(x/4)))
"""

from typing import Any, Dict, List, Sequence, Tuple
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.structures import ImageList

from .lift import check_upsampler_fits

DISTANCES = ("cosine", "l1", "l2")
DOWNSCALES = ("bilinear-antialias", "bilinear")


class LiFTDistiller(nn.Module):
    """LiFT's stage-one model, a detectron2 model (stock trainers, hooks and checkpointer run it): a
    frozen feature source F at ``backbone`` (its ViT at ``backbone.net``, ViTDet's names) and the
    LiFT being trained at ``lift``. Training returns ``{"loss_lift_s2", "loss_lift_s4"}``, eval
    per-image cosines for :class:`lift_det.evaluation.FeatureQualityEvaluator`.

    Images are normalized and zero-padded as ViTDet does; x/2 and x/4 are the padded batch resized
    (bilinear, antialiased: what the ViT sees at half resolution). Losses and similarities average
    over the feature cells that cover image content."""

    def __init__(
        self,
        *,
        source: nn.Module,
        lift: nn.Module,
        distance: str = "cosine",
        downscale: str = "bilinear-antialias",
        square_pad: int = 0,
        ignore_padding: bool = True,
    ):
        """``source``: a frozen feature source (:class:`D2ViTSource`, :class:`TimmViTSource`);
        ``lift``: :class:`LiFT` or a control for its channels and patch size; ``distance``: d in
        Eq. 1, per feature cell: "cosine" (the paper's), "l1" or "l2" (mean absolute / squared
        error over channels); ``downscale``: how x/2 and x/4 are made; ``square_pad``: if > 0, pad
        every batch to this square size (a multiple of 4p); ``ignore_padding``: average losses /
        similarities only over cells with content."""
        super().__init__()
        choices = {"distance": (distance, DISTANCES), "downscale": (downscale, DOWNSCALES)}
        for name, (value, valid) in choices.items():
            if value not in valid:
                raise NotImplementedError(f"{name}={value!r} is not supported; use {valid}.")
        for attr in ("embed_dim", "patch_size", "pixel_mean", "pixel_std", "identity"):
            if not hasattr(source, attr):
                raise TypeError(f"source {type(source).__name__} has no '{attr}'.")
        check_upsampler_fits(lift, source.embed_dim, source.patch_size, "the feature source")
        self.size_divisibility = 4 * source.patch_size
        if square_pad % self.size_divisibility:
            raise ValueError(
                f"square_pad={square_pad} must be a multiple of 4 * patch_size = "
                f"{self.size_divisibility} (x/4 must be a whole number of patches)."
            )
        self.backbone = source
        self.lift = lift
        self.distance = distance
        self.downscale = downscale
        self.square_pad = square_pad
        self.ignore_padding = ignore_padding
        for name in ("pixel_mean", "pixel_std"):
            value = torch.tensor(getattr(source, name)).view(-1, 1, 1)
            self.register_buffer(name, value, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict[str, Any]]) -> ImageList:
        """Normalize 0-255 RGB images and pad them (zeros = mean color) as ViTDet does."""
        images = []
        for x in batched_inputs:
            image = x["image"]
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"Expected an RGB image tensor (3, H, W), got shape {tuple(image.shape)} "
                    f"({x.get('file_name', 'unnamed image')})."
                )
            image = image.to(self.device, non_blocking=True).float()
            images.append((image - self.pixel_mean) / self.pixel_std)
        pad = {"square_size": self.square_pad}
        return ImageList.from_tensors(images, self.size_divisibility, padding_constraints=pad)

    def _resize(self, x: torch.Tensor, factor: int) -> torch.Tensor:
        size = (x.shape[-2] // factor, x.shape[-1] // factor)
        antialias = self.downscale == "bilinear-antialias"  # align_corners=False, the default
        return F.interpolate(x, size=size, mode="bilinear", antialias=antialias)

    def _content_mask(self, image_sizes: Sequence[Tuple[int, int]], grid: torch.Size, stride: int):
        """(B, h, w) bool: feature cells (stride ``stride`` in x) that see image content."""
        mask = torch.full((len(image_sizes), *grid), not self.ignore_padding, device=self.device)
        for i, (h, w) in enumerate(image_sizes):
            mask[i, : -(-int(h) // stride), : -(-int(w) // stride)] = True
        return mask

    def _cell_distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) x 2 -> (B, h, w) distance per cell, in float32."""
        pred, target = pred.float(), target.float()
        if self.distance == "cosine":
            return 1.0 - F.cosine_similarity(pred, target, dim=1, eps=1e-6)
        if self.distance == "l1":
            return (pred - target).abs().mean(dim=1)
        return (pred - target).square().mean(dim=1)

    @staticmethod
    def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(values.dtype)
        return (values * mask).sum() / mask.sum().clamp(min=1.0)

    def features(self, images: ImageList):
        """x, x/2, x/4 and F of each (F computed once per scale, under no_grad)."""
        x = images.tensor
        x2, x4 = self._resize(x, 2), self._resize(x, 4)
        return (x, x2, x4), (self.backbone(x), self.backbone(x2), self.backbone(x4))

    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """``batched_inputs``: dicts with "image", a (3, H, W) RGB tensor in 0-255
        (:class:`lift_det.data.Stage1DatasetMapper`). Training returns ``{"loss_lift_s2": d(F(x),
        Θ(x/2, F(x/2))), "loss_lift_s4": d(F(x/2), Θ(x/4, F(x/4)))}``; eval, per image, the mean
        cosine to F(x) of Θ(x/2, F(x/2)) ("cos_lift"), and of bilinear and nearest 2x upsampling
        of F(x/2)."""
        images = self.preprocess_image(batched_inputs)
        (_, x2, x4), (f1, f2, f4) = self.features(images)
        p = self.backbone.patch_size
        mask1 = self._content_mask(images.image_sizes, f1.shape[-2:], p)
        if self.training:
            mask2 = self._content_mask(images.image_sizes, f2.shape[-2:], 2 * p)
            d2 = self._cell_distance(self.lift(x2, f2), f1)
            d4 = self._cell_distance(self.lift(x4, f4), f2)
            return {
                "loss_lift_s2": self._masked_mean(d2, mask1),
                "loss_lift_s4": self._masked_mean(d4, mask2),
            }
        candidates = {
            "cos_lift": self.lift(x2, f2),
            "cos_bilinear": F.interpolate(f2, scale_factor=2.0, mode="bilinear"),
            "cos_nearest": F.interpolate(f2, scale_factor=2.0, mode="nearest"),
        }
        sims = {
            k: F.cosine_similarity(v.float(), f1, dim=1, eps=1e-6) for k, v in candidates.items()
        }
        return [{k: float(s[i][m].mean()) for k, s in sims.items()} for i, m in enumerate(mask1)]
