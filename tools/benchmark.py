#!/usr/bin/env python
"""
Measured cost of LiFT in ViTDet-B at 1024x1024 on this device: parameters and FLOPs of the ViT,
LiFT-B, the bilinear control, the backbones and the Mask / Cascade Mask R-CNN detectors with and
without LiFT; the ViT at 2048x2048; inference time with / without LiFT (interleaved, same run);
stage-one step time / one frozen-ViT forward; peak memory. See lift_det.analysis.flops.

    tools/benchmark.py [--quick] [--json PATH] [--markdown PATH] [--device cpu|cuda]

--quick finishes in a few minutes on 2 CPU cores (detector FLOPs at 512, timings at 384, no 2048
timing); the LiFT-B / ViT-B FLOP ratio is always counted at 1024. --tiny is for tests.
"""

import torch

from detectron2.utils.logger import setup_logger

import argparse
from lift_det.analysis.flops import run_benchmark, write_benchmark


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes on CPU")
    mode.add_argument("--tiny", action="store_true", help="for tests: the table's shape only")
    parser.add_argument("--json", default="output/benchmark/benchmark.json", help="JSON output")
    parser.add_argument(
        "--markdown", default="output/benchmark/benchmark.md", help="markdown output"
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    parser.add_argument("--config-dir", default=None, help="where vitdet_mrcnn*.py live")
    return parser


def main(args):
    logger = setup_logger(name="lift_det", abbrev_name="lift_det")
    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    result = run_benchmark(mode, args.device, args.config_dir, log=logger.info)
    print(write_benchmark(result, args.json, args.markdown))
    logger.info(f"Wrote {args.json} and {args.markdown}.")


if __name__ == "__main__":
    main(get_parser().parse_args())
