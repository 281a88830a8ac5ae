"""Linear CKA between feature maps, and the scale-invariance analysis of LiFT (paper §6, Fig. 4).

Centered Kernel Alignment (Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network
Representations Revisited", ICML 2019) compares two representations of the same n examples. With a
linear kernel and column-centered X (n, d1), Y (n, d2)::

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)

It is 1 for identical representations and invariant to orthogonal transforms and isotropic scaling
of either side, but not to arbitrary invertible linear maps.

For Fig. 4 the same images are fed to a model at several input scales; every output feature map is
resized to a common grid and every (image, grid location) pair is one example. LiFT's paper reports
that its features are more similar across scales (higher CKA) than the ViT's or bilinearly
upsampled ViT features.
"""

import torch
import torch.nn.functional as F

import json
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "linear_cka",
    "feature_map_cka",
    "resize_features",
    "scale_cka_matrix",
    "scale_invariance",
    "plot_scale_cka",
    "save_scale_cka_json",
]


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


def scale_cka_matrix(
    extract: Callable[[float], torch.Tensor],
    scales: Sequence[float],
    grid: Tuple[int, int],
) -> List[List[float]]:
    """
    CKA between the features of the same images at every pair of input scales.

    Args:
        extract: ``extract(scale)`` returns (B, C, h, w) features of the images at that scale.
        scales: input scales (relative to a base size).
        grid: the common grid the maps are resized to.

    Returns:
        a symmetric len(scales) x len(scales) matrix (list of lists) with ones on the diagonal.
    """
    feats = [resize_features(extract(s), grid) for s in scales]
    n = len(scales)
    out = [[1.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            out[i][j] = out[j][i] = feature_map_cka(feats[i], feats[j], grid)
    return out


def scale_invariance(
    net,
    images: Sequence[torch.Tensor],
    scales: Sequence[float] = (0.5, 0.75, 1.0, 1.5, 2.0),
    base_size: int = 256,
    grid: Optional[Tuple[int, int]] = None,
    methods: Sequence[str] = ("vit", "bilinear", "lift"),
    num_passes: int = 1,
) -> Dict[str, List[List[float]]]:
    """
    Fig. 4: linear CKA between the features of the same images at every pair of input scales,
    for each feature method.

    Args:
        net: a :class:`~lift_det.modeling.ViTLiFT` in eval mode.
        images: (3, H, W) float 0-255 RGB images; each is resized to a square of
            ``base_size * scale`` (rounded to the patch size) and normalized like ViTDet.
        scales: input scales relative to ``base_size``.
        grid: the common grid (default: the stride-p/2 grid of the base size, 2 * base / p).
            A map already on this grid is used as it is, the others are resampled (antialiased
            when shrinking), which low-passes them: a map with much energy at its own grid's
            frequency (e.g. an untrained LiFT's checkerboard) then agrees less with the others
            at the one scale where it is not resampled.
        methods: any of :data:`~lift_det.analysis.similarity.FEATURE_METHODS`.
        num_passes: LiFT / bilinear passes.

    Returns:
        {label: CKA matrix over ``scales``}, labels from
        :func:`~lift_det.analysis.similarity.method_label`.
    """
    from .similarity import IMAGENET_RGB256_MEAN, IMAGENET_RGB256_STD, dense_features, method_label

    p = net.patch_embed.proj.kernel_size[0]
    if grid is None:
        grid = (2 * base_size // p, 2 * base_size // p)
    mean = torch.tensor(IMAGENET_RGB256_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_RGB256_STD).view(1, 3, 1, 1)

    def batch_at(scale: float) -> torch.Tensor:
        side = max(p, int(round(base_size * scale / p)) * p)
        resized = [
            F.interpolate(
                img[None].float(), size=(side, side), mode="bilinear", antialias=True
            ).clamp(0, 255)
            for img in images
        ]
        return (torch.cat(resized) - mean) / std

    batches = {s: batch_at(s) for s in scales}
    results = {}
    for method in methods:

        def extract(scale: float) -> torch.Tensor:
            return dense_features(net, batches[scale], method, num_passes=num_passes)

        results[method_label(net, method, num_passes)] = scale_cka_matrix(extract, scales, grid)
    return results


def plot_scale_cka(
    results: Dict[str, List[List[float]]],
    scales: Sequence[float],
    path: str,
    title: str = "",
    source_scales: Optional[Sequence[float]] = None,
) -> None:
    """
    Write Fig. 4 as a PNG: one CKA heatmap (source x destination scale) per method, and below
    them one panel per source scale with CKA against the destination scale, a curve per method.

    Args:
        results: method name -> CKA matrix from :func:`scale_cka_matrix`, all over ``scales``.
        scales: the input scales of the matrices' rows and columns.
        path: output PNG.
        title: figure title.
        source_scales: scales that get a curve panel (default: up to four of ``scales``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = list(scales)
    if source_scales is None:
        source_scales = scales if len(scales) <= 4 else scales[:: max(1, len(scales) // 4)][:4]
    methods = list(results)
    ncols = max(len(methods), len(source_scales))
    fig, axes = plt.subplots(
        2, ncols, figsize=(3.6 * ncols, 7.2), squeeze=False, constrained_layout=True
    )
    labels = [f"{s:g}" for s in scales]
    for ax, method in zip(axes[0], methods):
        im = ax.imshow(results[method], vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(method, fontsize=10)
        ax.set_xticks(range(len(scales)), labels, fontsize=8)
        ax.set_yticks(range(len(scales)), labels, fontsize=8)
        ax.set_xlabel("destination scale", fontsize=8)
        ax.set_ylabel("source scale", fontsize=8)
        for i in range(len(scales)):
            for j in range(len(scales)):
                value = results[method][i][j]
                color = "black" if value > 0.6 else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=axes[0][len(methods) - 1], shrink=0.9, label="linear CKA")
    for ax, src in zip(axes[1], source_scales):
        i = scales.index(src)
        for method in methods:
            ax.plot(scales, results[method][i], marker="o", label=method)
        ax.set_title(f"source scale {src:g}", fontsize=10)
        ax.set_xlabel("destination scale", fontsize=8)
        ax.set_ylabel("linear CKA", fontsize=8)
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    axes[1][0].legend(fontsize=8)
    for ax in list(axes[0][len(methods) :]) + list(axes[1][len(source_scales) :]):
        fig.delaxes(ax)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_scale_cka_json(path: str, results: Dict[str, List[List[float]]], **info) -> None:
    """Write the CKA matrices and ``info`` (scales, sizes, weights used, ...) as JSON."""
    with open(path, "w") as f:
        json.dump({**info, "cka": results}, f, indent=2)
