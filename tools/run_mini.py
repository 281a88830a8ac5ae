#!/usr/bin/env python
"""
The main job on the built-in mini data (README's `make main`): baseline ViTDet -> stage one ->
stage two (+LiFT, +bilinear control, baseline with the same extra iterations) -> COCO eval table.

    tools/run_mini.py --output-dir output/mini [--baseline-iters 400 --stage1-iters 500
        --stage2-iters 160] [--resume] [-- key=value ...  (passed to every step)]
"""

import argparse
from lift_det.engine.mini_pipeline import run_pipeline

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="output/mini")
    parser.add_argument("--baseline-iters", type=int, default=400)
    parser.add_argument("--stage1-iters", type=int, default=500)
    parser.add_argument("--stage2-iters", type=int, default=160)
    parser.add_argument("--resume", action="store_true", help="skip steps that finished")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="key=value for every step")
    args = parser.parse_args()
    opts = [o for o in args.opts if o != "--"]
    run_pipeline(
        args.output_dir,
        args.baseline_iters,
        args.stage1_iters,
        args.stage2_iters,
        extra=opts,
        resume=args.resume,
    )
