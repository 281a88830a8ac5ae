#!/usr/bin/env python
"""
Scale invariance of dense features (paper Fig. 4): linear CKA between the features of the same
images at several input scales, for the ViT, ViT + bilinear and ViT + LiFT. Writes a PNG (heatmaps
and per-source-scale curves) and the numbers as JSON.

    tools/scale_invariance.py --output out/cka.png [--json out/cka.json] [--images PATH ...]
        [--config CONFIG] [--weights CHECKPOINT] [--lift-weights lift_final.pth]
        [--scales 0.5 0.75 1 1.5 2] [--size S] [--grid G] [--passes K]

--config: a stage-one config (default: configs/mini/lift_stage1.py) or a ViTDet detector config.
Without --images: a photograph that ships with
matplotlib. --images takes files, folders and globs.
"""

import torch

from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger

import argparse
import glob
import os
from lift_det.analysis.cka import plot_scale_cka, save_scale_cka_json, scale_invariance
from lift_det.analysis.similarity import (
    build_feature_model,
    default_image_path,
    load_feature_weights,
    native_image_size,
)

_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


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


def image_paths(specs, limit):
    paths = []
    for spec in specs or [default_image_path()]:
        if os.path.isdir(spec):
            found = [os.path.join(spec, n) for n in sorted(os.listdir(spec))]
        else:
            found = sorted(glob.glob(spec)) or [spec]
        paths += [p for p in found if p.lower().endswith(_IMAGE_EXTS)]
    if not paths:
        raise SystemExit(f"No images found in {specs}.")
    return paths[:limit]


def main(args):
    logger = setup_logger(name="lift_det", abbrev_name="lift_det")
    torch.manual_seed(0)  # parts left at random initialization are the same every run
    net = build_feature_model(args.config)
    loaded = load_feature_weights(net, args.weights, args.lift_weights)
    paths = image_paths(args.images, args.max_images)
    images = [torch.as_tensor(read_image(p, format="RGB").copy()).permute(2, 0, 1) for p in paths]
    size = args.size or native_image_size(net)
    grid = (args.grid, args.grid) if args.grid else None
    logger.info(f"CKA over scales {args.scales} of {size}px, {len(paths)} image(s)...")
    results = scale_invariance(net, images, args.scales, size, grid, num_passes=args.passes)
    random = [{"vit": "ViT", "lift": "LiFT"}[k] for k, v in loaded.items() if not v]
    title = f"Linear CKA across input scales (base {size}px, {len(paths)} images)"
    if random:
        title += f"; RANDOM weights: {', '.join(random)}"
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    plot_scale_cka(results, args.scales, args.output, title=title)
    json_path = args.json or os.path.splitext(args.output)[0] + ".json"
    p = net.lift.patch_size
    save_scale_cka_json(
        json_path,
        results,
        scales=args.scales,
        base_size=size,
        grid=list(grid or (2 * size // p, 2 * size // p)),
        images=paths,
        weights_loaded=loaded,
        passes=args.passes,
    )
    for label, matrix in results.items():
        off = [v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j]
        logger.info(f"  {label}: mean CKA across scales {sum(off) / len(off):.3f}")
    logger.info(f"Wrote {args.output} and {json_path}.")


if __name__ == "__main__":
    main(get_parser().parse_args())
