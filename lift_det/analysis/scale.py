"""Scale invariance of dense features (LiFT paper, Fig. 4): linear CKA between the features of the
same images at several input scales, and its figure (tools/scale_invariance.py)."""

import itertools
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple
import torch
import torch.nn.functional as F

from .feature_model import normalize
from .features import dense_features, feature_map_cka, method_label, resize_features


def scale_invariance(
    net,
    images: Sequence[torch.Tensor],
    scales: Sequence[float] = (0.5, 0.75, 1.0, 1.5, 2.0),
    base_size: int = 256,
    grid: Optional[Tuple[int, int]] = None,
    methods: Sequence[str] = ("vit", "bilinear", "lift"),
    num_passes: int = 1,
) -> Dict[str, List[List[float]]]:
    """Fig. 4: ``{method_label: CKA matrix over scales}`` (symmetric, ones on the diagonal) for
    each of ``methods`` (:data:`~lift_det.analysis.FEATURE_METHODS`) of a ViTLiFT ``net``.
    ``images``: (3, H, W) 0-255 RGB, each resized to a square of ``base_size * scale`` (rounded to
    the patch size). ``grid`` (default: the stride-p/2 grid of the base size): a map on it is used
    as it is, the others are resampled, which low-passes them (an untrained LiFT's checkerboard
    then agrees less with the others at the one scale where it is not resampled)."""
    p = net.patch_embed.proj.kernel_size[0]
    if grid is None:
        grid = (2 * base_size // p, 2 * base_size // p)

    batches = {}  # the images at each scale, as one batch
    for s in scales:
        side = max(p, int(round(base_size * s / p)) * p)
        resize = dict(size=(side, side), mode="bilinear", antialias=True)
        resized = [F.interpolate(img[None].float(), **resize) for img in images]
        batches[s] = normalize(torch.cat(resized).clamp(0, 255))
    n, results = len(scales), {}
    for method in methods:  # each scale's features on the common grid, then CKA of every pair
        native = (dense_features(net, batches[s], method, num_passes=num_passes) for s in scales)
        feats = [resize_features(f, grid) for f in native]
        cka = [[1.0] * n for _ in range(n)]
        for i, j in itertools.combinations(range(n), 2):
            cka[i][j] = cka[j][i] = feature_map_cka(feats[i], feats[j], grid)
        results[method_label(net, method, num_passes)] = cka
    return results


def _titles(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)


def plot_scale_cka(
    results: Dict[str, List[List[float]]], scales: Sequence[float], path: str, title: str = ""
) -> Dict[str, Any]:
    """Fig. 4 as a PNG at ``path``: one CKA heatmap (source x destination scale) per method of
    ``results`` (:func:`scale_invariance` over ``scales``), sharing one colour range, and
    below them a panel per source scale, CKA against the destination scale, a curve per method.
    Returns what was drawn (heatmaps, curves, color_range)."""
    from matplotlib.figure import Figure

    scales, methods = list(scales), list(results)
    # the colour range: from the smallest CKA of any method (rounded down to 0.05, at most 0.95)
    # to 1, so that differences between high CKA values stay visible
    low = min(min(min(row) for row in matrix) for matrix in results.values())
    vmin, vmax = min(math.floor(low * 20) / 20, 0.95), 1.0
    ncols = max(len(methods), len(scales))
    fig = Figure(figsize=(3.6 * ncols, 7.2), constrained_layout=True)
    axes = fig.subplots(2, ncols, squeeze=False)
    labels = [f"{s:g}" for s in scales]
    for ax, method in zip(axes[0], methods):
        im = ax.imshow(results[method], vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_xticks(range(len(scales)), labels, fontsize=8)
        ax.set_yticks(range(len(scales)), labels, fontsize=8)
        _titles(ax, method, "destination scale", "source scale")
        for i, j in itertools.product(range(len(scales)), repeat=2):
            value = results[method][i][j]
            color = "black" if value > (vmin + vmax) / 2 else "white"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(
        im, ax=axes[0][len(methods) - 1], shrink=0.9, label=f"linear CKA ({vmin:g} to {vmax:g})"
    )
    for i, (ax, src) in enumerate(zip(axes[1], scales)):
        for method in methods:
            ax.plot(scales, results[method][i], marker="o", label=method)
        _titles(ax, f"source scale {src:g}", "destination scale", "linear CKA")
        ax.set_ylim(vmin, 1.0 + 0.02 * (1.0 - vmin))
        ax.grid(alpha=0.3)
    axes[1][0].legend(fontsize=8)
    for ax in list(axes[0][len(methods) :]) + list(axes[1][len(scales) :]):
        fig.delaxes(ax)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=100)
    return {"heatmaps": methods, "curves": scales, "color_range": (vmin, vmax)}
