#!/usr/bin/env python3
"""
The GPU check: what LiFT costs and whether both stages work on the device users train on. One
run on one CUDA device writes ``<output-dir>/<device-slug>.{json,md}`` (with provenance):

inference latency and peak memory of ViTDet-B with and without LiFT (random weights, fp32 and AMP,
both attentions), a stage-one step (and what the COCO schedule takes) and stage-two steps, a few
iterations of each stage on generated mini COCO data (finite, falling losses, TorchScript export
equal to eager), then ViT-L / ViT-H while ``--budget-s`` lasts. ``--toy``: the same code paths on
a CPU with the mini configs at 128x128.
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import argparse
import contextlib
import logging
import os
import tempfile
import time
from dataclasses import replace
from typing import Any, Dict
import torch
from fvcore.common.timer import Timer

from detectron2.utils.logger import setup_logger

from lift_det.benchmark import gpu_training
from lift_det.benchmark.costs import free
from lift_det.benchmark.gpu_check import GPU, TOY, inference_ratios, inference_rows, vit_size_rows
from lift_det.benchmark.gpu_report import write_report
from lift_det.data.mini import generate_mini_coco
from lift_det.utils import REPO, UserError, run_main
from lift_det.utils.provenance import provenance, slug

logger = logging.getLogger("lift_det.gpu_check")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--output-dir", default="", help="default: docs/gpu (--toy: output/gpu)")
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="seconds for all; ViT-L/H rows only if left"
    )
    parser.add_argument(
        "--batches", type=int, nargs="+", help="inference batch sizes (default: 1 4; --toy: 1 2)"
    )
    parser.add_argument(
        "--recipe-gpus",
        type=int,
        default=8,
        help="GPUs of the COCO commands: " "batch per GPU = the configs' total_batch_size / this",
    )
    parser.add_argument("--toy", action="store_true", help="tiny sizes, CPU-friendly")
    return parser


def main(args) -> int:
    setup_logger(name="lift_det", abbrev_name="lift_det")
    timer = Timer()
    has_cuda = torch.cuda.is_available()
    if not args.toy and not has_cuda:
        raise UserError("No CUDA device: the GPU check needs one (--toy runs it on a CPU).")
    device = torch.device("cuda" if has_cuda else "cpu")
    setup = TOY if args.toy else GPU
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    name = torch.cuda.get_device_name(device) if has_cuda else f"CPU ({os.cpu_count()} cores)"
    output_dir = args.output_dir or os.path.join(REPO, "output/gpu" if args.toy else "docs/gpu")
    batches = args.batches or list(setup.batches)
    memory = torch.cuda.get_device_properties(device).total_memory / 2**30 if has_cuda else None
    result: Dict[str, Any] = dict(toy=args.toy, device=name, device_slug=slug(name))
    result.update(cuda=torch.version.cuda if has_cuda else "none", gpu_memory_GiB=memory)
    result.update(amp_dtype=str(amp_dtype).replace("torch.", ""), image_size=setup.size)
    result.update(proposals=setup.heads[0], detections=setup.heads[1], budget_s=args.budget_s)
    result.update(skipped=[], failed=[], **provenance())
    sections = result["sections_s"] = {}
    base = os.path.join(output_dir, result["device_slug"])

    @contextlib.contextmanager
    def section(name):
        """A section that fails is recorded (with its error) and the next one runs; the report is
        rewritten after each, so a run cut short keeps what it measured."""
        logger.info(f"{name}...")
        start = time.perf_counter()
        try:
            yield
        except Exception as e:  # noqa: B902 (recorded in the report; exit status 1)
            logger.exception(f"{name} failed")
            result["failed"].append(dict(section=name, error=f"{type(e).__name__}: {e}"))
            free(device)
        sections[name] = time.perf_counter() - start
        result["wall_s"] = timer.seconds()
        write_report(result, base)

    with tempfile.TemporaryDirectory(prefix="lift_gpu_check_") as work:
        root = os.path.join(work, "mini")
        generate_mini_coco(root, num_train=max(8, *batches), num_val=2)
        with section("correctness"):
            s1, stage_one = gpu_training.stage_one_runs(setup, device, root, work)
            s2, model = gpu_training.stage_two_run(setup, device, root, stage_one)
            export = gpu_training.export_rows(model, setup, device)
            result["correctness"] = dict(stage_one=s1, stage_two=s2, export=export)
            del model, stage_one
            free(device)
        with section("inference"):
            rows = inference_rows(setup.detectors, setup, device, batches, amp_dtype)
            result["inference"] = dict(rows=rows, ratios=inference_ratios(rows))
        with section("up placement"):
            up = replace(setup, size=2 * setup.size)  # the ViT of the up placement: setup.size
            rows = inference_rows(setup.up, up, device, [1], amp_dtype, ("amp",), backbone=())
            result["up"] = dict(rows=rows, ratios=inference_ratios(rows), image_size=up.size)
        with section("stage one"):
            result["stage_one"] = gpu_training.stage_one_cost(setup, device, args.recipe_gpus)
        with section("stage two"):
            result["stage_two"] = gpu_training.stage_two_rows(setup, device, root, args.recipe_gpus)
        with section("ViT-L/H"):
            budget = args.budget_s
            result["vit_sizes"] = vit_size_rows(setup, device, amp_dtype, budget, timer, result)
    result["wall_s"] = timer.seconds()
    print(write_report(result, base))
    logger.info(f"Wrote {base}.json and {base}.md.")
    failed = [f["section"] for f in result["failed"]]
    if failed:
        logger.error(f"Failed: {', '.join(failed)} (see the report).")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run_main(main, get_parser()))
