#!/usr/bin/env python3
"""
Scale invariance of dense features (paper Fig. 4): linear CKA between the features of the same
images at several input scales, for the ViT, ViT + bilinear and ViT + LiFT. Writes a PNG (heatmaps
and per-source-scale curves) and the numbers as JSON.

--config: a stage-one config (default: configs/mini/lift_stage1.py) or a ViTDet detector config.
Without --images: a photograph that ships with matplotlib.
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import argparse
import json
import os
import torch

from detectron2.utils.logger import setup_logger

from lift_det.analysis import feature_model
from lift_det.analysis.feature_model import image_paths
from lift_det.analysis.scale import plot_scale_cka, scale_invariance
from lift_det.checkpoint import atomic_write_text
from lift_det.utils import run_main


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--json", default="", help="JSON to write (default: next to the PNG)")
    parser.add_argument("--images", nargs="*", default=[], help="image files, folders or globs")
    parser.add_argument("--max-images", type=int, default=16, help="use at most this many")
    parser.add_argument("--config", default=None, help="stage-one or detector LazyConfig")
    parser.add_argument("--weights", default="", help="detector / stage-one checkpoint")
    parser.add_argument("--lift-weights", default="", help="LiFT file (lift_final.pth)")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5, 2.0])
    parser.add_argument("--size", type=int, default=0, help="base image side (default: ViT's)")
    parser.add_argument("--grid", type=int, default=0, help="common grid (default: 2*size/p)")
    parser.add_argument("--passes", type=int, default=1, help="LiFT / bilinear passes")
    return parser


def main(args):
    logger = setup_logger(name="lift_det", abbrev_name="lift_det")
    net, loaded, caveat = feature_model.load_feature_model(args)
    found = image_paths(args.images, None)
    paths = found[: args.max_images]
    images = [torch.as_tensor(feature_model.read_rgb(p).copy()).permute(2, 0, 1) for p in paths]
    size = args.size or feature_model.native_image_size(net)
    grid = (args.grid, args.grid) if args.grid else None
    logger.info(f"CKA over scales {args.scales} of {size}px, {len(paths)} image(s)...")
    results = scale_invariance(net, images, args.scales, size, grid, num_passes=args.passes)
    used = f"{len(paths)} images"
    if len(paths) < len(found):
        used = f"the first {len(paths)} of {len(found)} images, --max-images {args.max_images}"
    logger.info(f"images: {used}")
    title = f"Linear CKA across input scales (base {size}px, {used})"
    if caveat:
        title += f"; {caveat}"
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    plot_scale_cka(results, args.scales, args.output, title=title)
    json_path = args.json or os.path.splitext(args.output)[0] + ".json"
    side = 2 * size // net.lift.patch_size  # the default grid's
    info = dict(scales=args.scales, base_size=size, grid=list(grid or (side, side)))
    info.update(images=paths, images_found=len(found), weights_loaded=loaded, passes=args.passes)
    atomic_write_text(json_path, json.dumps({**info, "cka": results}, indent=2))
    for label, matrix in results.items():
        off = [v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j]
        logger.info(f"  {label}: mean CKA across scales {sum(off) / len(off):.3f}")
    logger.info(f"Wrote {args.output} and {json_path}.")
    return title


if __name__ == "__main__":
    run_main(main, get_parser())  # bad arguments, missing or refused weights: one line, exit 2
