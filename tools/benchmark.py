#!/usr/bin/env python3
"""
Cost of LiFT in ViTDet on this device, in one run: parameters and FLOPs (fvcore, as upstream's
tools/analyze_model.py) of every LiFT preset next to its ViT, of the controls (bilinear, and the
learned "jbu" and "attention" upsamplers) and of the Mask / Cascade Mask R-CNN detectors with and
without LiFT; inference time with / without LiFT and one stage-one step / one frozen-ViT forward
(torch.utils.benchmark, interleaved); peak memory.

FLOPs follow fvcore's convention (one fused multiply-add = one flop). Detectors run with random
weights and score threshold 0, so the mask head always sees --detections boxes.
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import argparse
import json
import logging
import torch

from detectron2.utils.logger import setup_logger

from lift_det.benchmark import lift_cost
from lift_det.checkpoint import atomic_write_text
from lift_det.model_zoo import CONFIG_DIR
from lift_det.modeling import LIFT_PRESETS
from lift_det.utils import UserError, run_main
from lift_det.utils.provenance import provenance

logger = logging.getLogger("lift_det.benchmark")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-size", type=int, default=1024, help="FLOPs of ViTs and LiFTs")
    parser.add_argument("--detector-size", type=int, default=1024, help="detector FLOPs; 0: skip")
    parser.add_argument("--time-size", type=int, default=1024, help="timings; 0: skip")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each")
    parser.add_argument(
        "--presets", nargs="+", default=list(LIFT_PRESETS), help="LiFT presets (default: all)"
    )
    parser.add_argument("--proposals", type=int, default=1000, help="RPN proposals (test)")
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--vit-2x", action="store_true", help="also count each ViT at 2x input")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few minutes on a CPU: " "--detector-size 512 --time-size 384 --repeats 2",
    )
    parser.add_argument("--config-dir", default=CONFIG_DIR, help="where vitdet_mrcnn*.py live")
    parser.add_argument("--json", default="output/benchmark/benchmark.json")
    parser.add_argument("--markdown", default="output/benchmark/benchmark.md")
    return parser


def main(args):
    setup_logger(name="lift_det", abbrev_name="lift_det")
    if args.quick:
        args.detector_size, args.time_size, args.repeats = 512, 384, 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but CUDA is not available: use --device cpu.")
    unknown = sorted(set(args.presets) - set(LIFT_PRESETS))
    if unknown:
        raise UserError(f"Unknown LiFT presets {unknown}; use some of {sorted(LIFT_PRESETS)}.")
    heads = (args.proposals, args.detections)
    result = dict(device=lift_cost.device_name(device), timings=[], flop_tables={}, **provenance())
    for k in ("image_size", "detector_size", "time_size", "repeats", "proposals", "detections"):
        result[k] = getattr(args, k)
    logger.info(f"FLOPs of {', '.join(args.presets)} and their ViTs at {args.image_size}...")
    rows, ratios = lift_cost.component_rows(
        args.presets, args.image_size, device, args.vit_2x, result["flop_tables"]
    )
    result["ratios"] = ratios = {f"flops {k}": v for k, v in ratios.items()}
    if args.detector_size:
        s = args.detector_size
        logger.info(f"FLOPs of the detectors at {s}x{s}...")
        more, detector_ratios = lift_cost.detector_rows(s, device, args.config_dir, heads)
        rows += more
        ratios.update({f"flops {k}_lift/{k}": v for k, v in detector_ratios.items()})
    if args.time_size:
        s = args.time_size
        logger.info(f"Timing inference and a stage-one step at {s}x{s}...")
        timings = lift_cost.inference_timings(s, device, args.repeats, args.config_dir, heads)
        result["timings"], ratios["time mrcnn_lift/mrcnn"] = timings
        ratio = lift_cost.stage1_ratio(s, device, args.repeats, args.config_dir)
        ratios["time stage-one step/frozen ViT-B forward"] = ratio
    result["rows"] = rows
    text = lift_cost.format_markdown(result)
    for path, content in ((args.json, json.dumps(result, indent=2) + "\n"), (args.markdown, text)):
        atomic_write_text(path, content)  # its folder made too
    print(text)
    logger.info(f"Wrote {args.json} and {args.markdown}.")
    return result


if __name__ == "__main__":
    run_main(main, get_parser())
