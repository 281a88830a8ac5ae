#!/usr/bin/env python3
"""
The main job on the built-in mini data (README's `make main`): baseline ViTDet -> stage one ->
stage two (+LiFT, +bilinear control, baseline with the same extra iterations) -> COCO eval table.

    .venv/bin/python tools/run_mini.py --output-dir output/mini [--baseline-iters 400 \\
        --stage1-iters 500 --stage2-iters 160] [--resume | --overwrite] [key=value ...]

key=value overrides are passed to every step. --resume skips finished steps and resumes an
interrupted one; --overwrite reruns every step from scratch.
"""

import argparse

from mini_pipeline import run_pipeline  # tools/mini_pipeline.py, next to this file


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="output/mini")
    parser.add_argument("--baseline-iters", type=int, default=400)
    parser.add_argument("--stage1-iters", type=int, default=500)
    parser.add_argument("--stage2-iters", type=int, default=160)
    switch = parser.add_mutually_exclusive_group()
    switch.add_argument("--resume", action="store_true", help="skip steps that finished")
    switch.add_argument("--overwrite", action="store_true", help="rerun every step afresh")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="key=value for every step")
    return parser


if __name__ == "__main__":
    args = get_parser().parse_args()
    run_pipeline(
        args.output_dir,
        args.baseline_iters,
        args.stage1_iters,
        args.stage2_iters,
        extra=[o for o in args.opts if o != "--"],
        resume=args.resume,
        overwrite=args.overwrite,
    )
