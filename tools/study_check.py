#!/usr/bin/env python3
"""
Does this machine reproduce the study's arithmetic? (README's `make study-check`; its time on
each machine is in the README's table.) Replays the first iterations of the study's baseline, LiFT
stage one and stage two (lift_det/study/probe.py) and compares their losses bit for bit
with the trace `make study` wrote: per step, identical or the first iteration that differs and by
how much. Machines are compared by class (CPU vendor, family, model, torch's CPU capability, CPUs,
library versions: lift_det.utils.provenance.cpu_class): a class other than the trace's may compute
other bits, which is a finding, recorded (--record) and compared with that class's record when
there is one. Exit code 0: identical, or as this class's record, or a class not recorded before;
1: a difference within the trace's class or from this class's record; 2: no usable trace file
(or a bad argument). The probe's files are kept only with --output-dir.
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import argparse
import os
import shutil
import sys
import tempfile
import time

from lift_det.study import probe, schedule
from lift_det.study.check import check_steps, compare_steps, earlier_record, record
from lift_det.utils import REPO, UserError, run_main
from lift_det.utils.provenance import class_name, versions

DEFAULT_TRACE = os.path.relpath(os.path.join(REPO, "docs", "mini_study_trace.json"))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", default=DEFAULT_TRACE, help="the trace to compare with")
    parser.add_argument(
        "--record",
        default="",
        metavar="DIR",
        help="also write the check's result to DIR/<machine>-torch-<version>.json (make "
        "study-check: docs/study_checks, which the README lists)",
    )
    parser.add_argument(
        "--output-dir",
        default="",
        help="where the probe runs (default: a " "temporary folder, removed if the check passes)",
    )
    switch = parser.add_mutually_exclusive_group()
    switch.add_argument("--resume", action="store_true", help="reuse the probe's finished steps")
    switch.add_argument("--overwrite", action="store_true", help="rerun every probe step afresh")
    parser.add_argument(
        "--write",
        default="",
        metavar="PATH",
        help="run the probe and write its " "trace to PATH instead of checking (make study does)",
    )
    budgets = " ".join(map(str, schedule.STUDY_ITERS.values()))
    parser.add_argument(
        "--study-iters",
        type=int,
        nargs=3,
        metavar=("BASELINE", "STAGE1", "STAGE2"),
        help=f"--write: the study's iterations per step (default: make " f"study's, {budgets})",
    )
    parser.add_argument(
        "--iters",
        type=int,
        default=None,
        help=f"--write: iterations per step " f"({probe.PROBE_ITERS}); a check replays the trace's",
    )
    return parser


def main(args) -> int:
    out = os.path.abspath(args.output_dir) if args.output_dir else ""
    switches = dict(resume=args.resume, overwrite=args.overwrite)  # for the probe's steps
    held = any(os.path.exists(os.path.join(out, n)) for n in ("baseline", "seed0", "data"))
    if out and not (args.resume or args.overwrite) and held:
        raise UserError(
            f"--output-dir {out} holds a probe: give --resume to reuse its finished "
            f"steps, --overwrite to rerun them, or another folder"
        )
    if args.write:
        budgets = args.study_iters or list(schedule.STUDY_ITERS.values())
        iters = probe.PROBE_ITERS if args.iters is None else args.iters
        if not 1 <= iters <= min(budgets):
            raise UserError(f"--iters must be in [1, {min(budgets)}], got {iters}")
        work = out or tempfile.mkdtemp(prefix="study_probe_")
        probe.write_trace(work, args.write, *budgets, iters=iters, **switches)
        return 0

    try:
        expected = probe.read_trace(args.trace)
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) else str(e)
        raise UserError(
            f"cannot use the trace {args.trace} ({why}): `make study` writes it (or "
            f"tools/study_check.py --write {args.trace} --study-iters ...)"
        ) from None
    if args.iters is not None and args.iters != expected["iters"]:
        raise UserError(f"--iters {args.iters}: a check replays the trace's {expected['iters']}")
    if args.study_iters is not None:
        raise UserError("--study-iters belongs to --write: a check replays the trace's")
    iters = expected["iters"]

    start = time.time()
    work = out or tempfile.mkdtemp(prefix="study_check_")
    try:
        check_steps(args.trace, expected, work)  # the trace's probe is this checkout's
        budgets = probe.trace_budgets(expected)
        got = probe.run_probe(work, iters, *budgets, extra=expected["extra"], **switches)
    except RuntimeError as e:  # a step failed: its log is named
        print(f"[study-check] the probe did not finish: {e}", file=sys.stderr)
        return 1
    finally:
        if not out:  # its files are kept only where asked (--output-dir)
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n[study-check] the trace {args.trace}: made {expected.get('date')} at commit "
        f"{expected.get('commit')} on {expected.get('machine')}, {versions(expected)}\n"
        f"[study-check] this run: commit {got['commit']} on {got['machine']}, "
        f"{versions(got)}"
    )
    identical, results = compare_steps(expected, got)
    mine, theirs = class_name(got), class_name(expected)
    known = earlier_record(args.record, expected, got)  # before this run's record replaces it
    wall = time.time() - start
    print(
        f"[study-check] machine class: {mine or 'unknown'} (the trace's: {theirs or 'unknown'});"
        f" {wall:.0f} s"
    )
    if args.record:
        print(f"[study-check] recorded in {record(args.record, expected, got, results, wall)}")
    if identical:
        print(
            f"[study-check] identical: this machine reproduces the study's first {iters} "
            f"iterations of each step bit for bit"
        )
        return 0
    kept = f"the probe's runs and logs: {work}" if out else "--output-dir DIR keeps the runs"
    print(
        f"[study-check] NOT identical ({kept}). Where the first difference is in the last bits "
        f"and grows, the arithmetic differs (another CPU, BLAS/OpenMP build or torch version); "
        f"where it is larger than rounding at iteration 0, the runs start differently "
        f"(initialization, random streams or data of other versions)"
    )
    if got["torch"] != expected.get("torch"):
        print(
            f"[study-check] this run's torch {got['torch']} is not the trace's "
            f"{expected.get('torch')}: another torch version may initialize the models "
            f"differently (nn.init.trunc_normal_ changed between torch 2.11 and 2.14.1: README); "
            f"check with the torch dev/setup_env.sh pins"
        )
    if mine is not None and mine != theirs:  # another class: a finding, unless its record differs
        if known is None:
            recorded = "recorded" if args.record else "not recorded (give --record DIR)"
            print(
                f"[study-check] this machine class has no record: its difference is a finding, "
                f"{recorded}"
            )
            return 0
        keys = ("name", "identical", "first_iter", "max_abs", "max_rel")
        same = [{k: s.get(k) for k in keys} for s in known["steps"]] == [
            {k: s[k] for k in keys} for s in results
        ]
        print(
            f"[study-check] {'as' if same else 'NOT as'} this class's earlier record "
            f"(commit {known.get('commit')}, {known.get('date')})"
        )
        if same:
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(run_main(main, get_parser()))
