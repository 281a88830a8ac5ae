"""LiFT: a Lightweight Feature Transform that doubles the resolution of frozen ViT features.

Suri, Walmer, Gupta, Shrivastava, "LiFT: A Surprisingly Simple Lightweight Feature Transform for
Dense ViT Descriptors", ECCV 2024 (§3.2): a U-Net-style conv net fuses the ViT features (stride p)
with shallow conv features of the image into features at stride p/2. LiFT-S is the paper's layout
(384 channels); LiFT-B ours for ViT-B (Appendix B: wider, one more encoder block; most capacity at
stride p, a narrow stride-p/2 decoder); LiFT-L / LiFT-H scale LiFT-B with the ViT's width."""

from typing import Dict, Optional
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import get_norm

# Widths of the presets. Channels and patch size come from the ViT and are passed separately.
LIFT_PRESETS: Dict[str, Dict] = {
    # The paper's module (official code) for in_channels=384.
    "LiFT-S": dict(image_channels=32, num_image_blocks=3, fuse_channels=0, decoder_channels=None),
    # ViT-B (768 ch): 4 image-encoder blocks, a 3x3 fusion block at stride p, a 192-wide decoder.
    "LiFT-B": dict(image_channels=64, num_image_blocks=4, fuse_channels=480, decoder_channels=192),
    # ViT-L (1024 ch) and ViT-H (1280 ch): LiFT-B's layout, fusion and decoder widths scaled as
    # 5/8 and 1/4 of the ViT's channels; the image branch (image detail) stays as LiFT-B's.
    "LiFT-L": dict(image_channels=64, num_image_blocks=4, fuse_channels=640, decoder_channels=256),
    "LiFT-H": dict(image_channels=64, num_image_blocks=4, fuse_channels=800, decoder_channels=320),
}


def check_num_passes(num_passes) -> int:
    """The one check of a number of upsampling passes (an integer >= 1), as an int."""
    if isinstance(num_passes, torch.Tensor) and not num_passes.is_floating_point():
        num_passes = int(num_passes)  # torch.onnx.export (TorchScript) passes defaults as tensors
    if isinstance(num_passes, bool) or not isinstance(num_passes, int) or num_passes < 1:
        raise ValueError(f"num_passes must be an integer >= 1, got {num_passes!r}.")
    return num_passes


def fit_image_to_features(module: nn.Module, image: torch.Tensor, features: torch.Tensor):
    """Check an upsampler's (image, features) pair against its ``in_channels`` and ``patch_size``,
    and crop or zero-pad the image to exactly the feature grid times p."""
    name, C, p = type(module).__name__, module.in_channels, module.patch_size
    if features.dim() != 4 or features.shape[1] != C:
        got = features.shape[1] if features.dim() > 1 else "?"
        raise ValueError(
            f"{name} was built for {C}-channel features, got {got} (features of shape "
            f"{tuple(features.shape)}; expected features of shape (B,{C},h,w)). Use one with "
            f"in_channels={got} for this ViT."
        )
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(
            f"{name} expects a 4-D, 3-channel image (B,3,H,W), got {tuple(image.shape)}."
        )
    if image.shape[0] != features.shape[0]:
        raise ValueError(
            f"Batch sizes differ: {name} expects an image of shape ({features.shape[0]},3,H,W) for "
            f"features of shape {tuple(features.shape)}, got {tuple(image.shape)}."
        )
    (H, W), (h, w) = image.shape[-2:], features.shape[-2:]
    # The ViT's patch embedding floors (H // p, detectron2 and timm) or pads (ceil) a size that is
    # not a multiple of p; both are accepted: the image is cropped or zero-padded (zero = the mean
    # color after normalization, ViTDet's padding) to exactly (h*p, w*p).
    valid_h, valid_w = (H // p, -(-H // p)), (W // p, -(-W // p))
    if h not in valid_h or w not in valid_w:
        raise ValueError(
            f"Image size {H}x{W} and feature size {h}x{w} disagree with patch size {p}: expected "
            f"features of {H // p}x{W // p} (or {valid_h[1]}x{valid_w[1]} when the ViT pads), i.e. "
            f"an image of {h * p}x{w * p} for these features."
        )
    if (H, W) != (h * p, w * p):
        image = image[:, :, : h * p, : w * p]
        image = F.pad(image, (0, w * p - image.shape[-1], 0, h * p - image.shape[-2]))
    return image


def check_upsampler_fits(upsampler: nn.Module, embed_dim: int, patch_size: int, what: str):
    """Refuse LiFT or a control built for other channels or another patch size than ``what``'s."""
    if upsampler.in_channels != embed_dim or upsampler.patch_size != patch_size:
        raise ValueError(
            f"{type(upsampler).__name__} was built for {upsampler.in_channels} channels and patch "
            f"size {upsampler.patch_size}, but {what} has embed_dim={embed_dim} and patch_size="
            f"{patch_size}. Build it with in_channels={embed_dim}, patch_size={patch_size}."
        )


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> ReLU.

    Submodules are named ``conv`` and ``norm_layer``: never ``norm`` or ``proj``, so detectron2's
    suffix-matching checkpoint heuristics cannot load MAE's ``norm.*`` tensors into LiFT."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "BN"):
        super().__init__()
        norm_layer = get_norm(norm, out_channels) if norm else None
        self.conv = nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=1, bias=norm_layer is None
        )
        if norm_layer is not None:
            self.norm_layer = norm_layer
        self.act = nn.ReLU(inplace=True)


class LiFT(nn.Module):
    """LiFT block: (image, ViT features at stride p) -> features at stride p/2.

    Layout (names in brackets)::

        image (B,3,H,W) -> [image_encoder] stride-2, stride-2 conv blocks (+ stride-1 blocks)
                         -> adaptive max-pool to the stride-p/2 grid          = img_half
                         -> [image_down] stride-2 conv block, stride p        = img_full
        cat(features, img_full) -> [fuse] optional 3x3 conv blocks at stride p
                         -> [upsample] 2x2 transposed conv to stride p/2
        cat(., img_half) -> [decoder] two 3x3 conv blocks -> [out_conv] 1x1 to in_channels

    Fully convolutional: any image size. See :meth:`forward` for the size rules and for recursive
    application (stride p / 2^k).
    """

    def __init__(
        self,
        in_channels: int,
        patch_size: int = 16,
        image_channels: int = 32,
        num_image_blocks: int = 3,
        fuse_channels: int = 0,
        up_channels: Optional[int] = None,
        decoder_channels: Optional[int] = None,
        norm: str = "BN",
    ):
        """``in_channels`` and the patch size p (8, 14 or 16) are the ViT's: its features, at stride
        p, and the output have ``in_channels``. The image branch has ``num_image_blocks`` (>= 3)
        conv blocks of ``image_channels``; ``fuse_channels`` is the width of the fusion blocks at
        stride p (0: none, LiFT-S); ``up_channels`` and ``decoder_channels`` that of the transposed
        conv and of the decoder (default: half their input width and ``in_channels // 2``, the
        paper's); ``norm`` follows each conv (a :func:`detectron2.layers.get_norm` name)."""
        super().__init__()
        if patch_size not in (8, 14, 16):
            raise NotImplementedError(f"patch_size={patch_size} is not supported (use 8, 14, 16).")
        if num_image_blocks < 3:
            raise ValueError(f"num_image_blocks must be >= 3, got {num_image_blocks}.")
        if in_channels <= 0:
            raise ValueError(f"in_channels must be positive, got {in_channels}.")
        self.in_channels = in_channels
        self.patch_size = patch_size
        # constructor arguments, checked by stage two against the LiFT file
        self.arch = dict(
            in_channels=in_channels,
            patch_size=patch_size,
            image_channels=image_channels,
            num_image_blocks=num_image_blocks,
            fuse_channels=fuse_channels,
            up_channels=up_channels,
            decoder_channels=decoder_channels,
            norm=norm,
        )
        self.preset = "custom"

        w = image_channels
        blocks = [ConvNormAct(3, w, stride=2, norm=norm), ConvNormAct(w, w, stride=2, norm=norm)]
        blocks += [ConvNormAct(w, w, norm=norm) for _ in range(num_image_blocks - 3)]
        self.image_encoder = nn.Sequential(*blocks)
        self.image_down = ConvNormAct(w, w, stride=2, norm=norm)

        fused = in_channels + w
        if fuse_channels > 0:
            self.fuse = nn.Sequential(
                ConvNormAct(fused, fuse_channels, norm=norm),
                ConvNormAct(fuse_channels, fuse_channels, norm=norm),
            )
            fused = fuse_channels
        else:
            self.fuse = nn.Identity()
        up_channels = up_channels or fused // 2
        decoder_channels = decoder_channels or in_channels // 2
        self.upsample = nn.ConvTranspose2d(fused, up_channels, kernel_size=2, stride=2)
        self.decoder = nn.Sequential(
            ConvNormAct(up_channels + w, decoder_channels, norm=norm),
            ConvNormAct(decoder_channels, decoder_channels, norm=norm),
        )
        self.out_conv = nn.Conv2d(decoder_channels, in_channels, kernel_size=1)

    @classmethod
    def from_preset(cls, name: str, in_channels: int, patch_size: int = 16, **kwargs) -> "LiFT":
        """Build a preset ("LiFT-S", "LiFT-B", "LiFT-L", "LiFT-H") for a ViT with ``in_channels``
        and ``patch_size``. Keyword arguments override the preset's widths (e.g.
        ``norm="SyncBN"``)."""
        if name not in LIFT_PRESETS:
            raise KeyError(f"Unknown LiFT preset '{name}'; available: {sorted(LIFT_PRESETS)}.")
        args = {**LIFT_PRESETS[name], **kwargs}  # the presets hold numbers and None only
        lift = cls(in_channels=in_channels, patch_size=patch_size, **args)
        lift.preset = name
        return lift

    def _forward_once(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        image = fit_image_to_features(self, image, features)
        h, w = features.shape[-2:]
        img = self.image_encoder(image)  # stride 4
        img_half = F.adaptive_max_pool2d(img, (2 * h, 2 * w))  # stride p/2
        img_full = self.image_down(img_half)  # stride p
        x = torch.cat([features, img_full], dim=1)
        x = self.upsample(self.fuse(x))  # stride p -> p/2
        return self.out_conv(self.decoder(torch.cat([x, img_half], dim=1)))

    def forward(
        self, image: torch.Tensor, features: torch.Tensor, num_passes: int = 1
    ) -> torch.Tensor:
        """(B, C, 2^k h, 2^k w) features at stride p / 2^k from an ``image`` (B, 3, H, W) normalized
        exactly as the ViT saw it and its ViT ``features`` (B, C, h, w) at stride p: h = H // p (or
        ceil(H / p) for a ViT that pads; the image is cropped/zero-padded to (h*p, w*p)).
        ``num_passes`` k >= 1 applies LiFT recursively (paper §6), each pass on the image
        bilinearly resized to the current feature grid times p."""
        num_passes = check_num_passes(num_passes)
        x = self._forward_once(image, features)
        p = self.patch_size
        for _ in range(num_passes - 1):
            size = (x.shape[-2] * p, x.shape[-1] * p)
            resized = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
            x = self._forward_once(resized, x)
        return x

    def extra_repr(self) -> str:
        return f"preset={self.preset}, in_channels={self.in_channels}, patch_size={self.patch_size}"
