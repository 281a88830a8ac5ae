#!/usr/bin/env python3
"""
The main job on the built-in mini data (README's `make main`): baseline ViTDet -> stage one ->
stage two (+LiFT, +bilinear control, baseline with the same extra iterations) -> COCO eval table.
With --seeds N, the multi-seed study instead (README's `make study`): a converged baseline shared
by every seed, LiFT, every control and the other learned upsamplers per seed, on 240 val images;
statistics, costs and figures (lift_det/study/run.py).
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import argparse
import sys

from lift_det.study.main_job import MAIN_ITERS, run_pipeline
from lift_det.study.pipeline import StepFailed
from lift_det.study.schedule import ARMS, STUDY_ITERS
from lift_det.utils.cli import UserError, run_main

# (main job, study) defaults
DEFAULT_ITERS = {k: (MAIN_ITERS[k], STUDY_ITERS[k]) for k in STUDY_ITERS}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default=None, help="default: output/mini or output/study")
    parser.add_argument("--seeds", type=int, default=0, help="run the study with seeds 0..N-1")
    parser.add_argument("--jobs", type=int, default=None, help="study: steps run at once (2)")
    parser.add_argument("--arms", nargs="+", default=None, help="study: a subset of the arms")
    parser.add_argument("--report-dir", default=None, help="study: where mini_study.* go")
    parser.add_argument("--val-images", type=int, default=None, help="study: val images (240)")
    for name in DEFAULT_ITERS:
        parser.add_argument(
            f"--{name}-iters",
            type=int,
            default=None,
            help="(main, study): " f"{DEFAULT_ITERS[name]}",
        )
    switch = parser.add_mutually_exclusive_group()
    switch.add_argument("--resume", action="store_true", help="skip steps that finished")
    switch.add_argument("--overwrite", action="store_true", help="rerun every step afresh")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="key=value for every step")
    return parser


def main(args) -> None:
    if args.seeds < 0:
        raise UserError(
            f"--seeds must be >= 1 (the study) or left out (the main job): {args.seeds}"
        )
    study = args.seeds > 0
    if not study and (args.jobs, args.arms, args.report_dir, args.val_images) != (None,) * 4:
        raise UserError(
            "--jobs, --arms, --report-dir and --val-images belong to the study: add --seeds N"
        )
    defaults = {f"{k}-iters": v[study] for k, v in DEFAULT_ITERS.items()}
    counts = {}
    for flag, default in {**defaults, "jobs": 2, "val-images": 240}.items():
        given = getattr(args, flag.replace("-", "_"))
        counts[flag] = default if given is None else given
        if counts[flag] < 1:
            raise UserError(f"--{flag} must be >= 1, got {counts[flag]}")
    unknown = sorted(set(args.arms or ()) - {a.name for a in ARMS})
    if unknown:
        raise UserError(f"unknown --arms {unknown}; the arms are {[a.name for a in ARMS]}")
    budgets = [counts[f"{k}-iters"] for k in DEFAULT_ITERS]
    kwargs = dict(
        extra=[o for o in args.opts if o != "--"], resume=args.resume, overwrite=args.overwrite
    )
    if not study:
        run_pipeline(args.output_dir or "output/mini", *budgets, **kwargs)
        return
    from lift_det.study.run import run_study

    kwargs.update(
        jobs=counts["jobs"],
        arms=args.arms,
        report_dir=args.report_dir,
        val_images=counts["val-images"],
    )
    run_study(args.output_dir or "output/study", list(range(args.seeds)), *budgets, **kwargs)


if __name__ == "__main__":
    try:
        run_main(main, get_parser())
    except StepFailed as e:  # one line: the step, its last output line and its log
        sys.exit(f"run_mini.py: {e}")
