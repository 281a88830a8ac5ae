"""Learned, image-guided 2x upsamplers that can take LiFT's place (controls from the literature):
:class:`JBUUpsampler` (FeatUp's JBU, Fu et al., ICLR 2024) and :class:`AttentionUpsampler` (local
attention, as JAFAR, Couairon et al., 2025, and UPLiFT, 2025).

Both give each output pixel a convex combination (softmax weights) of the low-resolution features in
the k x k window of cells around it (edge cells replicated). Output pixel (2i+a, 2j+b) lies at cell
(i - 1/4 + a/2, j - 1/4 + b/2); the four sub-pixel phases (a, b) are computed at the low-resolution
grid and interleaved by ``pixel_shuffle``."""

import math
import torch
import torch.nn.functional as F
from torch import nn

from .lift import check_num_passes, fit_image_to_features


class _GuidedUpsampler(nn.Module):
    """Size rules, the recursion and the window sum shared by the two upsamplers."""

    def __init__(self, in_channels: int, patch_size: int, kernel_size: int):
        super().__init__()
        if in_channels <= 0:
            raise ValueError(f"in_channels must be positive, got {in_channels}.")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"The window size must be a positive odd number, got {kernel_size}.")
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.kernel_size = kernel_size
        r = kernel_size // 2
        # squared distance (in cells) from each sub-pixel phase to each window cell: (4, k*k, 1)
        cells = torch.arange(-r, r + 1, dtype=torch.float32)
        d = (cells[None, :] - torch.tensor([-0.25, 0.25])[:, None]) ** 2  # (2 phases, k)
        dist2 = d[:, None, :, None] + d[None, :, None, :]  # (a, b, di, dj)
        self.register_buffer("dist2", dist2.reshape(4, kernel_size**2, 1), persistent=False)

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C, k*k, h*w): the window of cells around each cell."""
        r, (B, C, h, w) = self.kernel_size // 2, x.shape
        x = F.pad(x, (r, r, r, r), mode="replicate")
        return F.unfold(x, self.kernel_size).reshape(B, C, self.kernel_size**2, h * w)

    def _phases(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 2h, 2w) -> (B, C, 4, h*w): the four sub-pixel phases of each cell."""
        B, C, H, W = x.shape
        return F.pixel_unshuffle(x, 2).reshape(B, C, 4, H * W // 4)

    def window_weights(self, guide: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """(B, 3, 2h, 2w) image at the output grid, (B, C, h, w) -> (B, 4, k*k, h*w) weights."""
        raise NotImplementedError

    def _forward_once(self, image: torch.Tensor, features: torch.Tensor, cell: float):
        B, C, h, w = features.shape
        # the image at the output grid: the mean over each output cell (cell x cell pixels)
        if cell == int(cell):  # a constant kernel (exports to ONNX)
            guide = F.avg_pool2d(image, int(cell))
        else:
            guide = F.adaptive_avg_pool2d(image, (2 * h, 2 * w))
        weights = self.window_weights(guide, features)
        out = torch.einsum("bckn,bpkn->bcpn", self._windows(features), weights)
        # (B, C, 4, h*w) -> (B, 4C, h, w) -> (B, C, 2h, 2w)
        return F.pixel_shuffle(out.reshape(B, 4 * C, h, w), 2)

    def forward(
        self, image: torch.Tensor, features: torch.Tensor, num_passes: int = 1
    ) -> torch.Tensor:
        """As :meth:`LiFT.forward`; every pass reads the image area-averaged to its output grid."""
        image = fit_image_to_features(self, image, features)
        for i in range(check_num_passes(num_passes)):
            features = self._forward_once(image, features, self.patch_size / 2 ** (i + 1))
        return features

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, patch_size={self.patch_size}, arch={self.arch}"


class JBUUpsampler(_GuidedUpsampler):
    """A learned joint bilateral upsampler (FeatUp's JBU): the weight of window cell q for output
    pixel x is a softmax over the window of ``temperature * cos(g(x), g(q)) - |x - q|^2 / (2
    sigma^2)`` (a spatial Gaussian times a range kernel on learned guidance embeddings g).

    Unlike FeatUp, the window holds the low-resolution cells around x (guidance area-averaged over
    the cell). Initialized to sigma = 0.5 cells, temperature 1: close to bilinear."""

    def __init__(
        self,
        in_channels: int,
        patch_size: int = 16,
        kernel_size: int = 5,
        guidance_channels: int = 32,
    ):
        """``in_channels``, ``patch_size``: the ViT's; ``kernel_size``: odd size k of the window;
        ``guidance_channels``: width of the image's guidance embedding."""
        super().__init__(in_channels, patch_size, kernel_size)
        self.preset = "jbu"
        self.arch = dict(kernel_size=kernel_size, guidance_channels=guidance_channels)
        g = guidance_channels
        self.guidance = nn.Sequential(
            nn.Conv2d(3, g, kernel_size=3, padding=1), nn.GELU(), nn.Conv2d(g, g, kernel_size=1)
        )
        self.log_sigma = nn.Parameter(torch.tensor(math.log(0.5)))
        self.log_temperature = nn.Parameter(torch.tensor(0.0))

    def window_weights(self, guide: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        g = self.guidance(guide)  # (B, g, 2h, 2w)
        query = self._phases(F.normalize(g, dim=1))  # (B, g, 4, h*w)
        key = self._windows(F.normalize(F.avg_pool2d(g, 2), dim=1))  # (B, g, k*k, h*w)
        similarity = torch.einsum("bgpn,bgkn->bpkn", query, key)
        spatial = self.dist2 / (2 * torch.exp(2 * self.log_sigma))
        return torch.softmax(self.log_temperature.exp() * similarity - spatial, dim=2)


class AttentionUpsampler(_GuidedUpsampler):
    """Local cross-attention from the image to the ViT's features (JAFAR, UPLiFT): queries from a
    conv encoding of the image at the output grid; keys from the layer-normalized features plus the
    image encoding averaged over each cell; values are the features. Logits ``q . k / sqrt(d)`` plus
    a learned bias per phase and window cell, initialized (zero queries) to a Gaussian of the
    distance (sigma = 0.5 cells): a close-to-bilinear start."""

    def __init__(
        self,
        in_channels: int,
        patch_size: int = 16,
        window_size: int = 3,
        image_channels: int = 64,
        key_channels: int = 64,
    ):
        """``in_channels``, ``patch_size``: the ViT's; ``window_size``: odd size k of the window
        attended to; ``image_channels``, ``key_channels``: widths of the image encoder and the
        queries and keys."""
        super().__init__(in_channels, patch_size, window_size)
        self.preset = "attention"
        self.arch = dict(
            window_size=window_size, image_channels=image_channels, key_channels=key_channels
        )
        e, d = image_channels, key_channels
        self.image_encoder = nn.Sequential(
            nn.Conv2d(3, e, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(e, e, kernel_size=3, padding=1),
            nn.GELU(),
        )
        self.query_conv = nn.Conv2d(e, d, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels, d, kernel_size=1)
        self.key_image_conv = nn.Conv2d(e, d, kernel_size=1, bias=False)
        nn.init.zeros_(self.query_conv.weight)
        nn.init.zeros_(self.query_conv.bias)
        self.position_bias = nn.Parameter(-self.dist2[..., 0] / (2 * 0.5**2))  # (4, k*k)

    def window_weights(self, guide: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        image = self.image_encoder(guide)  # (B, e, 2h, 2w)
        query = self._phases(self.query_conv(image))  # (B, d, 4, h*w)
        # NCHW -> NHWC for a per-cell layer norm of the features (no affine: key_conv follows)
        normed = F.layer_norm(features.permute(0, 2, 3, 1), (self.in_channels,))
        cells = F.avg_pool2d(image, 2)  # the image encoding averaged over each cell
        key = self.key_conv(normed.permute(0, 3, 1, 2)) + self.key_image_conv(cells)
        logits = torch.einsum("bdpn,bdkn->bpkn", query, self._windows(key))
        logits = logits / math.sqrt(query.shape[1]) + self.position_bias[:, :, None]
        return torch.softmax(logits, dim=2)
