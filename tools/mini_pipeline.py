"""
The main job on the built-in mini data: baseline ViTDet training -> stage one (LiFT against the
trained, frozen ViT) -> stage two for +LiFT, for the +bilinear control and for the baseline given
the same extra iterations -> COCO evaluation of each, as one table (markdown + JSON).

Every step runs tools/train_net.py in a subprocess, exactly as a user would, with its full log in
``<output>/<step>/log.txt``. A helper module of tools/run_mini.py (scenario code, not library).
"""

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from provenance import provenance  # tools/provenance.py

__all__ = [
    "Step",
    "mini_steps",
    "run_steps",
    "run_pipeline",
    "read_final_metrics",
    "format_table",
    "estimate_makespan",
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAVEAT = (
    "One seed is noise-limited: a rerun on another machine can move these APs by several points, "
    "so read small differences with care. The evidence is the multi-seed study: `make study` "
    "(tools/run_mini.py --seeds 3), committed as docs/mini_study.md and shown in the README."
)
# Seconds a step's process spends outside its iterations (imports, building, data, checkpoints).
STEP_OVERHEAD_S = 20.0
_ECHO = re.compile(r"eta: |Inference done|copypaste: \d|lift_quality|Error|error:|Traceback")


def _condense(line: str, width: int = 150) -> str:
    """A child's log line without its timestamp prefix, cut to ``width`` characters."""
    line = re.sub(r"^\[\d\d/\d\d \d\d:\d\d:\d\d [\w.]+\]: ", "", line.rstrip())
    return line if len(line) <= width else line[: width - 3] + "..."


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


def mini_steps(out: str, baseline_iters: int, stage1_iters: int, stage2_iters: int) -> List[Step]:
    """The pipeline's steps; each step's output folder is ``out/<name>``."""
    base_ckpt = os.path.join(out, "baseline", "model_final.pth")
    lift_file = os.path.join(out, "stage1", "lift_final.pth")
    stage2 = {"train.init_checkpoint": base_ckpt, "train.eval_period": str(stage2_iters)}
    after_base, after_s1 = ("baseline",), ("baseline", "stage1")
    return [
        Step("baseline", "model_final.pth", "vitdet_mrcnn", baseline_iters,
             {"train.eval_period": str(baseline_iters)}, "ViTDet (baseline)"),
        Step("stage1", "lift_final.pth", "lift_stage1", stage1_iters,
             {"train.init_checkpoint": base_ckpt, "train.eval_period": str(stage1_iters)},
             "stage one: LiFT-S on the frozen ViT", after_base, cost=0.35),
        Step("baseline_ft", "model_final.pth", "vitdet_mrcnn_ft", stage2_iters, dict(stage2),
             "ViTDet + same extra iterations", after_base),
        Step("bilinear", "model_final.pth", "vitdet_mrcnn_bilinear", stage2_iters, dict(stage2),
             "ViTDet + bilinear 2x (control)", after_base, cost=0.9),
        Step("lift", "model_final.pth", "vitdet_mrcnn_lift", stage2_iters,
             {**stage2, "model.backbone.net.lift_weights": lift_file}, "ViTDet + LiFT", after_s1,
             cost=0.9),
    ]  # fmt: skip


def read_final_metrics(output_dir: str) -> Dict[str, float]:
    """The last evaluation written to ``metrics.json`` by detectron2's JSONWriter."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: the step did not finish; see its log.txt")
    last = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if any(k.startswith(("bbox/", "segm/", "lift_quality/")) for k in row):
                last = row
    if not last:
        raise RuntimeError(f"{path} has no evaluation results; was train.eval_period > max_iter?")
    return last


def _fmt(v: Optional[float]) -> str:
    return "n/a" if v is None or v != v else f"{v:.2f}"


def format_table(results: Dict[str, Dict], steps: List[Step]) -> str:
    """Markdown: one row per detector (box AP, AP50, AP75, APs, mask AP) + stage one's cosines."""
    lines = [
        "| model | iterations | box AP | AP50 | AP75 | APs | mask AP |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        r = results.get(s.name, {})
        if s.final != "model_final.pth":  # stage one: its cosines below
            continue
        iters = f"{results['baseline'].get('iterations', '?')}"
        if s.name != "baseline":
            iters += f" + {r.get('iterations', '?')}"
        lines.append(
            f"| {s.label} | {iters} | {_fmt(r.get('bbox/AP'))} | {_fmt(r.get('bbox/AP50'))} | "
            f"{_fmt(r.get('bbox/AP75'))} | {_fmt(r.get('bbox/APs'))} | {_fmt(r.get('segm/AP'))} |"
        )
    s1 = results.get("stage1", {})
    if s1:
        lines += [
            "",
            "Stage one, held-out mean cosine similarity to the ViT's features of the 2x image:",
            "",
            "| LiFT | bilinear | nearest |",
            "|---|---|---|",
            f"| {s1.get('lift_quality/cos_lift', float('nan')):.4f} | "
            f"{s1.get('lift_quality/cos_bilinear', float('nan')):.4f} | "
            f"{s1.get('lift_quality/cos_nearest', float('nan')):.4f} |",
        ]
        if s1.get("lift_quality/cos_lift", 1.0) < s1.get("lift_quality/cos_bilinear", 0.0):
            lines += [
                "",
                "**LiFT is UNDERTRAINED**: its held-out cosine is below bilinear upsampling's. "
                "Train stage one longer; the +LiFT rows above say little about LiFT.",
            ]
    return "\n".join(lines)


def _run_step(step: Step, out: str, extra: List[str]) -> float:
    """Run one step's tools/train_net.py; returns its wall time. Its output goes to its
    ``pipeline_stdout.txt``; progress and result lines are echoed, prefixed with its name."""
    step_dir = os.path.join(out, step.name)
    os.makedirs(step_dir, exist_ok=True)
    cmd = [
        sys.executable,
        os.path.join(REPO, "tools", "train_net.py"),
        "--config-file",
        os.path.join(REPO, "configs", "mini", f"{step.config}.py"),
        f"train.output_dir={step_dir}",
        f"train.max_iter={step.iters}",
        *[f"{k}={v}" for k, v in step.overrides.items()],
        *extra,
    ]
    env = dict(os.environ)
    if step.threads is not None:  # pinned: the same seed gives the same numbers, however run
        env.update(OMP_NUM_THREADS=str(step.threads), MKL_NUM_THREADS=str(step.threads))
    threads = f"OMP_NUM_THREADS={step.threads} " if step.threads is not None else ""
    print(f"  [{step.name}] $ {threads}{' '.join(cmd)}", flush=True)
    start = time.time()
    with open(os.path.join(step_dir, "pipeline_stdout.txt"), "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        for line in proc.stdout:
            log.write(line)
            if _ECHO.search(line):
                print(f"  [{step.name}] {_condense(line)}", flush=True)
        code = proc.wait()
    if code != 0:
        raise RuntimeError(
            f"step '{step.name}' failed (exit {code}); full output in "
            f"{os.path.join(step_dir, 'pipeline_stdout.txt')}"
        )
    return time.time() - start


def estimate_makespan(
    steps: Sequence[Step],
    seconds: Dict[str, float],
    jobs: int,
    running: Optional[Dict[str, float]] = None,
) -> float:
    """
    Seconds until every step in ``steps`` (those not done) has finished, by simulating the
    scheduler of :func:`run_steps`: ``jobs`` workers take the first step whose ``needs`` are done,
    in list order. ``seconds[name]``: a step's estimated duration; ``running``: the steps under
    way and the seconds they have run (their remaining time is the estimate minus that, >= 0).
    """
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
        if not busy:  # nothing can start: a dependency is missing
            raise ValueError(f"steps {[s.name for s in pending]} wait on steps that never run")
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
) -> Dict[str, Dict]:
    """
    Run ``steps`` (each after its ``needs``), up to ``jobs`` at a time, printing progress and an
    ETA; returns each step's final metrics (+ ``iterations`` and ``seconds``). ``resume``: skip
    the steps that finished and resume an interrupted one from its last checkpoint;
    ``overwrite``: rerun every step from scratch (without either, a folder that holds a run is
    refused by tools/train_net.py). The ETA simulates the schedule with each step's estimated
    time, ``STEP_OVERHEAD_S + iters * cost`` scaled by how fast this machine ran the steps done.
    """
    switch = ["--resume"] if resume else ["--overwrite"] if overwrite else []
    results: Dict[str, Dict] = {}
    todo: List[Step] = []
    for step in steps:
        if resume and os.path.exists(os.path.join(out, step.name, step.final)):
            print(f"[{tag}] {step.name}: done before, skipped")
            results[step.name] = {**read_final_metrics(os.path.join(out, step.name))}
        else:
            todo.append(step)
    prior = {s.name: STEP_OVERHEAD_S + s.iters * s.cost for s in steps}
    spent: Dict[str, float] = {}  # wall seconds of the steps run here
    t0 = time.time()
    started: Dict[str, float] = {}
    futures = {}
    failed: List[BaseException] = []

    def scale() -> float:
        # s/it of this machine vs the costs' unit, from the steps finished here
        done = [n for n in spent if spent[n] > 0]
        return sum(spent[n] for n in done) / sum(prior[n] for n in done) if done else 1.0

    def report(finished: str = "") -> None:
        k = scale()
        est = {n: v * k for n, v in prior.items()}
        now = time.time()
        left = [s for s in todo if s.name not in spent]
        running = {s.name: now - started[s.name] for s in left if s.name in started}
        eta = estimate_makespan(left, est, jobs, running)
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
                futures[pool.submit(_run_step, step, out, switch + list(extra or []))] = step
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
                results[step.name] = read_final_metrics(os.path.join(out, step.name))
                results[step.name]["seconds"] = spent[step.name]
                report(step.name)
    if failed:
        raise failed[0]
    for step in steps:
        results[step.name]["iterations"] = step.iters
    return results


def run_pipeline(
    out: str,
    baseline_iters: int = 400,
    stage1_iters: int = 500,
    stage2_iters: int = 160,
    extra: Optional[List[str]] = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Dict:
    """The main job: run every step (one at a time) and write the table; ``resume`` and
    ``overwrite`` as in :func:`run_steps`."""
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    steps = mini_steps(out, baseline_iters, stage1_iters, stage2_iters)
    results = run_steps(steps, out, extra=extra, resume=resume, overwrite=overwrite)
    for r in results.values():
        r.pop("seconds", None)
    table = format_table(results, steps)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(f"{table}\n\n{CAVEAT}\n")
    summary = {
        "steps": {s.name: {"label": s.label, **results[s.name]} for s in steps},
        "wall_time_s": time.time() - t0,
        **provenance(),
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(
        "\n" + table + f"\n\n{CAVEAT}\n[main] wrote {out}/results.md and results.json", flush=True
    )
    return summary
