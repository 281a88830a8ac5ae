"""Small feature analyses of the paper's §6: linear CKA between representations (Fig. 4) and
self-similarity maps (Fig. 5) of the dense features of a ViT, its controls and (recursive) LiFT.

Linear CKA: Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019.
"""

from typing import Tuple
import torch
import torch.nn.functional as F

from ..modeling import LIFT_PRESETS, ViTLiFT, build_upsampler

__all__ = [
    "linear_cka",
    "resize_features",
    "feature_map_cka",
    "FEATURE_METHODS",
    "dense_features",
    "method_label",
    "self_similarity",
    "query_to_grid",
]

# "vit": the ViT at stride p; "bilinear": + bilinear 2^k x; "vit_2x": the ViT on a 2x image;
# "lift": LiFT applied k times (stride p / 2^k).
FEATURE_METHODS = ("vit", "bilinear", "vit_2x", "lift")


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """
    Linear CKA of two representations of the same examples.

    Args:
        x: (n, d1) features, one row per example.
        y: (n, d2) features of the same n examples.

    Returns:
        float in [0, 1]. Computed in float64 with the feature-space formula (no n x n Gram
        matrices), so n can be large.
    """
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(
            f"linear_cka expects 2-D (n, d) inputs, got shapes {tuple(x.shape)} and "
            f"{tuple(y.shape)}."
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"linear_cka compares the same examples: got {x.shape[0]} rows in x and {y.shape[0]} "
            f"in y."
        )
    if x.shape[0] < 2:
        raise ValueError(f"linear_cka needs at least 2 examples, got {x.shape[0]}.")
    x = x.detach().to(torch.float64)
    y = y.detach().to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm_x = torch.linalg.matrix_norm(x.T @ x)
    norm_y = torch.linalg.matrix_norm(y.T @ y)
    denom = norm_x * norm_y
    if denom <= 0:
        raise ValueError("linear_cka is undefined for a constant representation (zero variance).")
    return float(cross / denom)


def resize_features(features: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """
    Bilinearly resize (B, C, h, w) features to ``size`` (antialiased when shrinking).
    """
    if tuple(features.shape[-2:]) == tuple(size):
        return features
    shrink = features.shape[-2] > size[0] or features.shape[-1] > size[1]
    return F.interpolate(
        features.float(), size=size, mode="bilinear", align_corners=False, antialias=shrink
    )


def feature_map_cka(a: torch.Tensor, b: torch.Tensor, size: Tuple[int, int]) -> float:
    """
    Linear CKA of two feature maps of the same images, possibly of different grid sizes.

    Args:
        a: (B, C1, h1, w1) features.
        b: (B, C2, h2, w2) features of the same B images.
        size: the common grid (H, W) both are resized to; each of the B*H*W (image, location)
            pairs is one example.
    """
    if a.dim() != 4 or b.dim() != 4 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"feature_map_cka expects (B, C, h, w) maps of the same B images, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )
    # NCHW -> (N*H*W, C)
    a = resize_features(a, size).permute(0, 2, 3, 1).reshape(-1, a.shape[1])
    b = resize_features(b, size).permute(0, 2, 3, 1).reshape(-1, b.shape[1])
    return linear_cka(a, b)


@torch.no_grad()
def dense_features(
    net: ViTLiFT, image: torch.Tensor, method: str = "lift", num_passes: int = 1
) -> torch.Tensor:
    """
    Dense features of a normalized image by one of :data:`FEATURE_METHODS`.

    Args:
        net: a ViT + LiFT (:class:`ViTLiFT`).
        image: (B, 3, H, W), normalized like ViTDet.
        method: "vit" (stride p), "bilinear" (ViT then bilinear 2^k x), "vit_2x" (the ViT on the
            image bilinearly resized 2x: stride p/2 in the original pixels), "lift" (``net.lift``
            applied ``num_passes`` times: stride p / 2^k, paper Table 8).
        num_passes: k, for "bilinear" and "lift".

    Returns:
        (B, C, h, w) features.
    """
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
    return {
        "vit": "ViT",
        "bilinear": f"ViT+{k}bilinear",
        "vit_2x": "ViT, 2x input",
        "lift": f"ViT+{k}{lift_name}",
    }[method]


def self_similarity(features: torch.Tensor, query: Tuple[int, int]) -> torch.Tensor:
    """
    Cosine similarity of every location's feature to the feature at ``query``.

    Args:
        features: (C, h, w) or (1, C, h, w).
        query: (row, col) on the feature grid.

    Returns:
        (h, w) float tensor in [-1, 1]; 1 at the query.
    """
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
