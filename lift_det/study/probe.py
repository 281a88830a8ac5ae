"""The study's reproducibility probe (README's `make study-check`): the shared baseline, LiFT's
stage one and stage two of seed 0, each exactly as :func:`study_steps` builds it but stopped after a
few iterations (``train_net --stop-at-iter``), recording its losses bit for bit
(``--loss-trace``)."""

import json
import math
import os
from dataclasses import replace
from typing import Any, Dict, List, Optional, Tuple

from ..checkpoint import atomic_write_text
from ..data import generate_mini_coco
from ..utils.provenance import provenance
from .pipeline import Step, run_steps
from .schedule import STUDY_ITERS, study_steps

PROBE_ITERS = 10  # iterations per step: the three steps take ~3 minutes on 2 CPU cores
# each step ends with an evaluation (the runner reads it): on a few val images, to stay short
PROBE_VAL_IMAGES = 8
TRACE_FORMAT = 1
_PROBE_DIR = "<probe>"  # the probe's folder in recorded overrides (paths differ per run)


def probe_steps(out: str, iters: int, *budgets: int) -> List[Step]:
    """The study's ``baseline``, ``seed0/stage1_lift`` and ``seed0/lift`` for its ``budgets``
    (:data:`STUDY_ITERS`' order), each stopped after its first ``iters`` iterations, recording
    their losses, in ``out``."""
    if not 1 <= iters <= min(budgets):
        raise ValueError(
            f"iters must be in [1, {min(budgets)}] (the shortest step's iterations), got {iters}"
        )
    flags = ("--stop-at-iter", str(iters), "--loss-trace", str(iters))
    # ETA: iters * cost = the iterations it runs; the probe replays training, not evaluations
    return [
        replace(
            s,
            label=f"{s.label} [first {iters} iterations]",
            flags=s.flags + flags,
            cost=s.cost * iters / s.iters,
        )
        for s in study_steps(out, [0], *budgets, arms=["lift"])
        if "--eval-only" not in s.flags
    ]


def trace_budgets(trace: Dict[str, Any]) -> Tuple[int, ...]:
    """The study's iterations per step that a trace was made for, in :data:`STUDY_ITERS`' order."""
    return tuple(trace["study_iters"][k] for k in STUDY_ITERS)


def describe(step: Step, out: str) -> Dict[str, Any]:
    """What a trace records of a step (the probe's folder as ``<probe>`` in its overrides)."""
    overrides = {k: v.replace(out, _PROBE_DIR) for k, v in step.overrides.items()}
    return dict(
        name=step.name,
        config=step.config,
        overrides=overrides,
        threads=step.threads,
        max_iter=step.iters,
    )


def run_probe(out: str, iters: int, *budgets: int, extra: Optional[List[str]] = None, **kwargs):
    """Runs :func:`probe_steps` in ``out`` (``kwargs``: :func:`run_steps`' ``resume``,
    ``overwrite``) on the study's training images and :data:`PROBE_VAL_IMAGES` val images;
    returns the trace: setup, provenance and per step :func:`describe` plus ``losses``."""
    out = os.path.abspath(out)
    steps = probe_steps(out, iters, *budgets)
    root = os.path.join(out, "data")
    generate_mini_coco(root, num_val=PROBE_VAL_IMAGES)
    env = {"LIFT_DET_MINI_ROOT": root}
    run_steps(steps, out, jobs=1, extra=extra, tag="probe", env=env, **kwargs)
    recorded = []
    for step in steps:
        path = os.path.join(out, step.name, "loss_trace.json")
        with open(path) as f:
            trace = json.load(f)
        if trace["first_iter"] != 0 or len(trace["losses"]) != iters:
            raise RuntimeError(
                f"{path} holds iterations {trace['first_iter']}.. ({len(trace['losses'])}), not "
                f"0..{iters - 1}: a resumed step? Rerun the probe with --overwrite."
            )
        recorded.append({**describe(step, out), "losses": trace["losses"]})
    setup = dict(format=TRACE_FORMAT, iters=iters, study_iters=dict(zip(STUDY_ITERS, budgets)))
    return {**setup, "extra": list(extra or []), **provenance(), "steps": recorded}


def write_trace(out: str, path: str, *budgets: int, iters: int = PROBE_ITERS, **kwargs):
    """:func:`run_probe` in ``out`` for the study's ``budgets`` (baseline, stage one, stage two;
    ``kwargs``: its keywords), then the trace to ``path``, atomically. Returns the trace."""
    trace = run_probe(out, iters, *budgets, **kwargs)
    atomic_write_text(path, json.dumps(trace, indent=1) + "\n")
    print(f"[probe] wrote the losses of {len(trace['steps'])} steps to {path}")
    return trace


def read_trace(path: str) -> Dict[str, Any]:
    """A trace :func:`write_trace` wrote; ``ValueError`` if it is not one."""
    with open(path) as f:
        try:
            trace = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not JSON ({e})") from None
    step_keys = {"name", "config", "overrides", "threads", "max_iter", "losses"}
    try:
        ok = (
            trace["format"] == TRACE_FORMAT
            and isinstance(trace["iters"], int)
            and set(trace["study_iters"]) == set(STUDY_ITERS)
            and isinstance(trace["extra"], list)
            and all(step_keys <= set(s) for s in trace["steps"])
        )
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise ValueError(f"{path} is not a probe trace of format {TRACE_FORMAT}")
    return trace


def compare_losses(expected: List[Dict[str, str]], got: List[Dict[str, str]]) -> Dict[str, Any]:
    """Two loss traces (lists of ``{name: float.hex}``, one per iteration), bit for bit:
    ``identical``; else ``first_iter`` and ``first``, where and what first differs, ``first_rel``
    the largest relative difference there; over both, the largest differences ``max_abs`` (``at``:
    iteration, name) and ``max_rel``."""
    result: Dict[str, Any] = dict(identical=True, first_iter=None, first="", first_rel=0.0)
    result.update(max_abs=0.0, max_rel=0.0, at=None)
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b and result["identical"]:
            name = next(n for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n))
            first = f"{name} {a.get(name, 'absent')} in the trace, {b.get(name, 'absent')} here"
            result.update(identical=False, first_iter=i, first=first)
        for name in sorted(set(a) & set(b)):
            x, y = float.fromhex(a[name]), float.fromhex(b[name])
            diff = abs(x - y)
            if diff > result["max_abs"]:
                result.update(max_abs=diff, at=(i, name))
            if diff > 0:
                scale = max(abs(x), abs(y))
                rel = diff / scale if scale else math.inf
                result["max_rel"] = max(result["max_rel"], rel)
                if i == result["first_iter"]:
                    result["first_rel"] = max(result["first_rel"], rel)
    if len(expected) != len(got) and result["identical"]:
        first = f"{len(expected)} iterations in the trace, {len(got)} here"
        result.update(identical=False, first_iter=min(len(expected), len(got)), first=first)
    return result
