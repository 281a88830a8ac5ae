"""Steps that each run tools/train_net.py in a subprocess, exactly as a user would, and the runner
that takes them, each after the steps it needs, a few at a time, with an ETA from a simulation of
its schedule (used by :mod:`.main_job` and :mod:`.run`)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..utils import REPO
from ..utils.cli import UserError

# Seconds a step's process spends outside its iterations (imports, building, data, checkpoints).
STEP_OVERHEAD_S = 20.0
_ECHO = re.compile(r"eta: |Inference done|copypaste: \d|lift_quality|Error|error:|Traceback")


def _condense(line: str, width: int = 150) -> str:
    """A child's log line without its timestamp prefix, cut to ``width`` characters."""
    line = re.sub(r"^\[\d\d/\d\d \d\d:\d\d:\d\d [\w.]+\]: ", "", line.rstrip())
    return line if len(line) <= width else line[: width - 3] + "..."


class StepFailed(RuntimeError):
    """A step's process failed; the message has its last output line and where its log is."""


@dataclass
class Step:
    name: str  # its output folder, relative to the pipeline's
    final: str  # the file a finished step leaves in its folder
    config: str  # configs/mini/<config>.py
    iters: int
    overrides: Dict[str, str] = field(default_factory=dict)
    label: str = ""
    needs: Tuple[str, ...] = ()  # steps that must finish first
    threads: Optional[int] = None  # OMP_NUM_THREADS of its process; None: inherited
    cost: float = 1.0  # seconds per iteration, relative (for the ETA only)
    flags: Tuple[str, ...] = ()  # train_net switches, e.g. ("--loss-trace", "10")


def evaluations(output_dir: str) -> List[Dict[str, float]]:
    """The evaluations detectron2's JSONWriter wrote to ``metrics.json``, in order (the step's
    final metrics last); a step without any raises."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: the step did not finish; see its log.txt")
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    rows = [r for r in rows if any(k.startswith(("bbox/", "segm/", "lift_quality/")) for k in r)]
    if not rows:
        raise RuntimeError(f"{path} has no evaluation results; was train.eval_period > max_iter?")
    return rows


def _final_metrics(out: str, step: Step) -> Dict[str, float]:
    """A finished step's final metrics, from the metrics.json beside its final file (in its own
    folder, or the evaluation's for ``--eval-only``)."""
    return evaluations(os.path.dirname(os.path.join(out, step.name, step.final)))[-1]


def _run_step(
    step: Step, out: str, extra: List[str], env: Optional[Dict[str, str]] = None
) -> float:
    """Run one step's tools/train_net.py; returns its wall time. Its output goes to its
    ``pipeline_stdout.txt``; progress and result lines are echoed, prefixed with its name. ``env``:
    variables set for its process on top of this one's."""
    step_dir = os.path.join(out, step.name)
    evaluation = "--eval-only" in step.flags
    if evaluation:  # an unfinished evaluation starts over, in a folder of its own
        shutil.rmtree(step_dir, ignore_errors=True)
        extra = [e for e in extra if e not in ("--resume", "--overwrite")]
    os.makedirs(step_dir, exist_ok=True)
    config = os.path.join(REPO, "configs", "mini", f"{step.config}.py")
    cmd = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file", config]
    cmd += [*step.flags, f"train.output_dir={step_dir}"]
    cmd += [] if evaluation else [f"train.max_iter={step.iters}"]
    cmd += [f"{k}={v}" for k, v in step.overrides.items()] + extra
    env = {**os.environ, **(env or {})}
    if step.threads is not None:  # pinned: the same seed gives the same numbers, however run
        env.update(OMP_NUM_THREADS=str(step.threads), MKL_NUM_THREADS=str(step.threads))
    threads = f"OMP_NUM_THREADS={step.threads} " if step.threads is not None else ""
    print(f"  [{step.name}] $ {threads}{' '.join(cmd)}", flush=True)
    start = time.time()
    with open(os.path.join(step_dir, "pipeline_stdout.txt"), "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        last = ""
        for line in proc.stdout:
            log.write(line)
            last = line.strip() or last
            if _ECHO.search(line):
                print(f"  [{step.name}] {_condense(line)}", flush=True)
        code = proc.wait()
    if code != 0:
        raise StepFailed(
            f"step '{step.name}' failed (exit {code}): {_condense(last, 300)}; full output in "
            f"{os.path.join(step_dir, 'pipeline_stdout.txt')}"
        )
    return time.time() - start


def estimate_makespan(
    steps: Sequence[Step],
    seconds: Dict[str, float],
    jobs: int,
    running: Optional[Dict[str, float]] = None,
) -> float:
    """Seconds until every step in ``steps`` has finished, simulating :func:`run_steps`'s
    scheduler (``jobs`` workers, each taking the first step whose ``needs`` are done) with
    ``seconds[name]`` per step; ``running``: the steps under way and the seconds they have run."""
    running = dict(running or {})
    names = {s.name for s in steps}
    workers = [max(seconds[n] - t, 0.0) for n, t in running.items()]  # finish times
    busy = dict(zip(running, workers))
    pending = [s for s in steps if s.name not in running]
    now, finished = 0.0, set()  # needs outside ``steps`` are done already
    while pending or busy:
        ready = [s for s in pending if all(d in finished or d not in names for d in s.needs)]
        if ready and len(busy) < jobs:
            step = ready[0]
            pending.remove(step)
            busy[step.name] = now + seconds[step.name]
            continue
        name = min(busy, key=busy.get)
        now = busy.pop(name)
        finished.add(name)
    return now


def run_steps(
    steps: List[Step],
    out: str,
    *,
    jobs: int = 1,
    extra: Optional[List[str]] = None,
    resume: bool = False,
    overwrite: bool = False,
    tag: str = "main",
    env: Optional[Dict[str, str]] = None,
) -> Dict[str, Dict]:
    """Run ``steps`` (each after its ``needs``), up to ``jobs`` at a time, printing progress and an
    ETA (:func:`estimate_makespan`, each step ``STEP_OVERHEAD_S + iters * cost`` scaled by the steps
    done); returns each step's final metrics (+ ``iterations`` and ``seconds``). ``resume``: skip
    finished steps and resume an interrupted one; ``overwrite``: rerun every step (without either,
    an ``out`` that holds a step's run is a :class:`UserError`). A failed step raises
    :class:`StepFailed`. ``env``: variables for every step's process."""
    held = [s.name for s in steps if os.path.exists(os.path.join(out, s.name, "last_checkpoint"))]
    if held and not (resume or overwrite):  # refused before any step starts
        raise UserError(
            f"{out} holds the runs of {held}: give --resume to skip the finished steps and resume "
            f"an interrupted one, --overwrite to rerun every step, or another --output-dir"
        )
    switch = ["--resume"] if resume else ["--overwrite"] if overwrite else []
    results: Dict[str, Dict] = {}
    todo: List[Step] = []
    for step in steps:
        if resume and os.path.exists(os.path.join(out, step.name, step.final)):
            print(f"[{tag}] {step.name}: done before, skipped")
            results[step.name] = _final_metrics(out, step)
        else:
            todo.append(step)
    prior = {s.name: STEP_OVERHEAD_S + s.iters * s.cost for s in steps}
    spent: Dict[str, float] = {}  # wall seconds of the steps run here
    started: Dict[str, float] = {}
    futures, failed, t0 = {}, [], time.time()

    def report(finished: str = "") -> None:
        done = [n for n in spent if spent[n] > 0]  # this machine's s/it vs the costs' unit
        k = sum(spent[n] for n in done) / sum(prior[n] for n in done) if done else 1.0
        now, left = time.time(), [s for s in todo if s.name not in spent]
        running = {s.name: now - started[s.name] for s in left if s.name in started}
        eta = estimate_makespan(left, {n: v * k for n, v in prior.items()}, jobs, running)
        what = f" ({finished} took {spent[finished]:.0f} s)" if finished else ""
        print(
            f"[{tag}] {len(steps) - len(left)}/{len(steps)} steps done{what}; running: "
            f"{', '.join(running) or '-'}; elapsed {(now - t0) / 60:.1f} min, "
            f"ETA {eta / 60:.1f} min",
            flush=True,
        )

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = list(todo)
        while (pending and not failed) or futures:
            done_names = set(results) | set(spent)
            while pending and len(futures) < jobs and not failed:
                ready = [s for s in pending if all(d in done_names for d in s.needs)]
                if not ready:
                    break
                step = ready[0]
                pending.remove(step)
                print(f"[{tag}] start {step.name}: {step.label}, {step.iters} iterations")
                started[step.name] = time.time()
                futures[pool.submit(_run_step, step, out, switch + list(extra or []), env)] = step
            if not futures:
                missing = {d for s in pending for d in s.needs} - done_names
                raise RuntimeError(f"steps wait on steps that are not in the pipeline: {missing}")
            finished, _ = wait(list(futures), timeout=300, return_when=FIRST_COMPLETED)
            if not finished:
                report()  # a heartbeat while long steps run
            for future in finished:
                step = futures.pop(future)
                try:
                    spent[step.name] = future.result()
                except Exception as e:  # let the other running steps finish, then raise
                    failed.append(e)
                    continue
                results[step.name] = {**_final_metrics(out, step), "seconds": spent[step.name]}
                report(step.name)
    if failed:
        raise failed[0]
    for step in steps:
        results[step.name]["iterations"] = step.iters
    return results
