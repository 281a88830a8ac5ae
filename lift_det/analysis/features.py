"""Small feature analyses of the paper's §6: linear CKA between representations (Fig. 4) and
self-similarity maps (Fig. 5) of the dense features of a ViT, its controls and (recursive) LiFT.

Linear CKA: Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019.
"""

from typing import Tuple
import torch
import torch.nn.functional as F

from ..modeling import LIFT_PRESETS, ViTLiFT, build_upsampler

# "vit": the ViT at stride p; "bilinear": + bilinear 2^k x; "vit_2x": the ViT on a 2x image;
# "lift": LiFT applied k times (stride p / 2^k).
FEATURE_METHODS = ("vit", "bilinear", "vit_2x", "lift")


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA in [0, 1] of two (n, d1) and (n, d2) representations of the same n examples,
    in float64 with the feature-space formula (no n x n Gram matrices)."""
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(
            f"linear_cka expects 2-D (n, d) inputs, got shapes {tuple(x.shape)} and "
            f"{tuple(y.shape)}."
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"linear_cka compares the same examples: got {x.shape[0]} rows in x and "
            f"{y.shape[0]} in y."
        )
    if x.shape[0] < 2:
        raise ValueError(f"linear_cka needs at least 2 examples, got {x.shape[0]}.")
    x, y = (t.detach().to(torch.float64) for t in (x, y))
    x, y = x - x.mean(dim=0, keepdim=True), y - y.mean(dim=0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    denom = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if denom <= 0:
        raise ValueError("linear_cka is undefined for a constant representation (zero variance).")
    return float(cross / denom)


def resize_features(features: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize (B, C, h, w) features to ``size`` (antialiased when shrinking)."""
    if tuple(features.shape[-2:]) == tuple(size):
        return features
    shrink = features.shape[-2] > size[0] or features.shape[-1] > size[1]
    return F.interpolate(
        features.float(), size=size, mode="bilinear", align_corners=False, antialias=shrink
    )


def feature_map_cka(a: torch.Tensor, b: torch.Tensor, size: Tuple[int, int]) -> float:
    """Linear CKA of two (B, C, h, w) feature maps of the same B images, both resized to the grid
    ``size``: each of the B*H*W (image, location) pairs is one example."""
    if a.dim() != 4 or b.dim() != 4 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"feature_map_cka expects (B, C, h, w) maps of the same B images, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )
    a = resize_features(a, size).permute(0, 2, 3, 1).reshape(-1, a.shape[1])
    b = resize_features(b, size).permute(0, 2, 3, 1).reshape(-1, b.shape[1])
    return linear_cka(a, b)


@torch.no_grad()
def dense_features(net: ViTLiFT, image: torch.Tensor, method: str, num_passes: int) -> torch.Tensor:
    """(B, C, h, w) features of a normalized (B, 3, H, W) image by one of
    :data:`FEATURE_METHODS`; ``num_passes``: k of "bilinear" and "lift" (paper Table 8)."""
    if method not in FEATURE_METHODS:
        raise ValueError(f"Unknown feature method {method!r}; use one of {FEATURE_METHODS}.")
    if method == "vit_2x":
        big = F.interpolate(image, scale_factor=2.0, mode="bilinear", align_corners=False)
        return net.vit_forward(big)
    features = net.vit_forward(image)
    if method == "vit":
        return features
    if method == "bilinear":
        upsampler = build_upsampler("bilinear", net.lift.in_channels, net.lift.patch_size)
        return upsampler(image, features, num_passes=num_passes)
    return net.lift(image, features, num_passes=num_passes)


def method_label(net: ViTLiFT, method: str, num_passes: int = 1) -> str:
    """A short panel/legend label, e.g. "ViT+LiFT-S", "ViT+2xLiFT-S", "ViT, 2x input"."""
    lift_name = getattr(net.lift, "preset", "LiFT")
    lift_name = lift_name if lift_name in LIFT_PRESETS else type(net.lift).__name__
    k = f"{num_passes}x" if num_passes > 1 else ""
    labels = dict(vit="ViT", bilinear=f"ViT+{k}bilinear", vit_2x="ViT, 2x input")
    return {**labels, "lift": f"ViT+{k}{lift_name}"}[method]


def self_similarity(features: torch.Tensor, query: Tuple[int, int]) -> torch.Tensor:
    """Cosine similarity (h, w) of every location's feature of a (C, h, w) or (1, C, h, w) map to
    the feature at ``query`` (row, col)."""
    if features.dim() == 4:
        if features.shape[0] != 1:
            raise ValueError(f"self_similarity takes one feature map, got {features.shape[0]}.")
        features = features[0]
    if features.dim() != 3:
        raise ValueError(f"self_similarity expects (C, h, w) features, got {features.shape}.")
    row, col = query
    h, w = features.shape[-2:]
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"Query {query} is outside the {h}x{w} feature grid.")
    features = F.normalize(features.float(), dim=0)
    return torch.einsum("chw,c->hw", features, features[:, row, col])


def query_to_grid(
    query_xy: Tuple[float, float], image_hw: Tuple[int, int], grid_hw: Tuple[int, int]
) -> Tuple[int, int]:
    """(x, y) in image pixels -> (row, col) of the cell of a grid covering the image."""
    x, y = query_xy
    (H, W), (h, w) = image_hw, grid_hw
    if not (0 <= x < W and 0 <= y < H):
        raise ValueError(f"Query (x={x}, y={y}) is outside the {W}x{H} image.")
    return min(int(y * h / H), h - 1), min(int(x * w / W), w - 1)
