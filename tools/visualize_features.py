#!/usr/bin/env python3
"""
Self-similarity maps of dense features (paper Fig. 5): the cosine similarity of every location's
feature to the feature at a query location, for the ViT, ViT + bilinear, the ViT at 2x input,
ViT + LiFT and k x recursive LiFT (k = 2..--passes, paper Table 8), as one PNG.

--config: a stage-one config (default: configs/mini/lift_stage1.py, a 4-block, 192-channel ViT at
256 + LiFT-S) or a ViTDet detector config (configs/vitdet_mrcnn_lift.py, ...). Without
--image: a photograph that ships with matplotlib. Without weights the maps come from random weights.
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import argparse
import numpy as np
import os
from typing import List, Sequence, Tuple
import torch

from detectron2.utils.logger import setup_logger

from lift_det import analysis
from lift_det.analysis import feature_model
from lift_det.modeling import ViTLiFT
from lift_det.utils import UserError, run_main


def self_similarity_maps(
    net: ViTLiFT, image: torch.Tensor, query_xy: Tuple[float, float], num_passes: int = 2
) -> List[Tuple[str, torch.Tensor]]:
    """The maps of Fig. 5 for one normalized image (1, 3, H, W) and a query (x, y) in its pixels:
    ViT, ViT+bilinear, the ViT at 2x input, k x LiFT for k = 1..num_passes, as (label, map)."""
    runs = [("vit", 1), ("bilinear", 1), ("vit_2x", 1)]
    runs += [("lift", k) for k in range(1, max(num_passes, 1) + 1)]
    out = []
    for method, k in runs:
        features = analysis.dense_features(net, image, method, num_passes=k)
        query = analysis.query_to_grid(query_xy, image.shape[-2:], features.shape[-2:])
        label = analysis.method_label(net, method, k)
        out.append((label, analysis.self_similarity(features, query)))
    return out


def plot_self_similarity(
    image: np.ndarray,
    maps: Sequence[Tuple[str, torch.Tensor]],
    query_xy: Tuple[float, float],
    path: str,
    title: str = "",
) -> None:
    """Write a PNG grid: the (H, W, 3) uint8 image, then every map of
    :func:`self_similarity_maps` (brighter = more similar), the query (x, y) marked on each."""
    from matplotlib.figure import Figure

    H, W = image.shape[:2]
    n = len(maps) + 1
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(3.0 * ncols, 3.0 * H / W * nrows + 0.6))  # 3-inch panels
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.reshape(-1):
        ax.axis("off")
    panels = [("image", None)] + list(maps)
    for ax, (label, sim) in zip(axes.reshape(-1), panels):
        if sim is None:
            ax.imshow(image)
            ax.set_title(f"image ({H}x{W})", fontsize=9)
        else:
            h, w = sim.shape
            ax.imshow(sim.numpy(), cmap="inferno", extent=(0, W, H, 0), interpolation="nearest")
            ax.set_title(f"{label} ({h}x{w})", fontsize=9)
        ax.plot(*query_xy, marker="o", markersize=7, markerfacecolor="none", color="red", mew=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--image", default="", help="an image (default: matplotlib's photo)")
    parser.add_argument("--config", default=None, help="stage-one or detector LazyConfig")
    parser.add_argument("--weights", default="", help="detector / stage-one checkpoint")
    parser.add_argument("--lift-weights", default="", help="LiFT file (lift_final.pth)")
    parser.add_argument("--passes", type=int, default=2, help="show LiFT applied 1..K times")
    parser.add_argument("--query", default="", help="x,y in the image's pixels (default: center)")
    parser.add_argument(
        "--size",
        type=int,
        default=0,
        help="longer image side (default: the ViT's "
        "img_size; the 2x-input map of ViT-B at 1024 needs ~36 GB: use 512 on a small machine)",
    )
    return parser


def main(args):
    logger = setup_logger(name="lift_det", abbrev_name="lift_det")
    net, _, caveat = feature_model.load_feature_model(args)
    path = args.image or feature_model.default_image_path()
    original = feature_model.read_rgb(path)
    size = args.size or feature_model.native_image_size(net)
    x, image = feature_model.prepare_image(original, size, net.lift.patch_size)
    qx, qy = original.shape[1] / 2.0, original.shape[0] / 2.0  # default: the center
    if args.query:
        try:
            qx, qy = (float(v) for v in args.query.split(","))
        except ValueError:
            raise UserError(f"--query must be 'x,y' in pixels, got {args.query!r}.") from None
    # the query in the resized image's pixels
    query = (qx * image.shape[1] / original.shape[1], qy * image.shape[0] / original.shape[0])
    maps = self_similarity_maps(net, x, query, num_passes=args.passes)
    title = f"{os.path.basename(path)}: self-similarity to the red query"
    if caveat:
        title += f" ({caveat})"
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    plot_self_similarity(image, maps, query, args.output, title=title)
    logger.info(f"Wrote {args.output} ({len(maps)} maps, image {image.shape[0]}x{image.shape[1]}).")
    return title


if __name__ == "__main__":
    run_main(main, get_parser())  # bad arguments, missing or refused weights: one line, exit 2
