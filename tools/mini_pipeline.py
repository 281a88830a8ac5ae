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
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from provenance import provenance  # tools/provenance.py

__all__ = ["Step", "mini_steps", "run_pipeline", "read_final_metrics", "format_table"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAVEAT = (
    "One seed is noise-limited: a rerun on another machine can move these APs by several points, "
    'so read small differences with care (see the README section "Results"; a multi-seed '
    "`make study` is planned, issue 10)."
)
_ECHO = re.compile(r"eta: |Inference done|copypaste: \d|lift_quality|Error|error:|Traceback")


def _condense(line: str, width: int = 150) -> str:
    """A child's log line without its timestamp prefix, cut to ``width`` characters."""
    line = re.sub(r"^\[\d\d/\d\d \d\d:\d\d:\d\d [\w.]+\]: ", "", line.rstrip())
    return line if len(line) <= width else line[: width - 3] + "..."


@dataclass
class Step:
    name: str
    final: str  # the file a finished step leaves in its folder
    config: str
    iters: int
    overrides: Dict[str, str] = field(default_factory=dict)
    label: str = ""


def mini_steps(out: str, baseline_iters: int, stage1_iters: int, stage2_iters: int) -> List[Step]:
    """The pipeline's steps; each step's output folder is ``out/<name>``."""
    base_ckpt = os.path.join(out, "baseline", "model_final.pth")
    lift_file = os.path.join(out, "stage1", "lift_final.pth")
    stage2 = {"train.init_checkpoint": base_ckpt, "train.eval_period": str(stage2_iters)}
    return [
        Step("baseline", "model_final.pth", "vitdet_mrcnn", baseline_iters,
             {"train.eval_period": str(baseline_iters)}, "ViTDet (baseline)"),
        Step("stage1", "lift_final.pth", "lift_stage1", stage1_iters,
             {"train.init_checkpoint": base_ckpt, "train.eval_period": str(stage1_iters)},
             "stage one: LiFT-S on the frozen ViT"),
        Step("baseline_ft", "model_final.pth", "vitdet_mrcnn_ft", stage2_iters, dict(stage2),
             "ViTDet + same extra iterations"),
        Step("bilinear", "model_final.pth", "vitdet_mrcnn_bilinear", stage2_iters, dict(stage2),
             "ViTDet + bilinear 2x (control)"),
        Step("lift", "model_final.pth", "vitdet_mrcnn_lift", stage2_iters,
             {**stage2, "model.backbone.net.lift_weights": lift_file}, "ViTDet + LiFT"),
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
    return "\n".join(lines)


def _run_step(step: Step, out: str, extra: List[str]) -> float:
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
    print(f"[main] $ {' '.join(cmd)}", flush=True)
    start = time.time()
    with open(os.path.join(step_dir, "pipeline_stdout.txt"), "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


def run_pipeline(
    out: str,
    baseline_iters: int = 400,
    stage1_iters: int = 500,
    stage2_iters: int = 160,
    extra: Optional[List[str]] = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Dict:
    """Run every step and write the table. ``resume``: skip the steps that finished and resume
    an interrupted one from its last checkpoint; ``overwrite``: rerun every step from scratch
    (without either, a folder that holds a run is refused by tools/train_net.py)."""
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    steps = mini_steps(out, baseline_iters, stage1_iters, stage2_iters)
    total_iters = sum(s.iters for s in steps)
    done_iters, spent, t0 = 0, 0.0, time.time()
    results: Dict[str, Dict] = {}
    for i, step in enumerate(steps):
        step_dir = os.path.join(out, step.name)
        if resume and os.path.exists(os.path.join(step_dir, step.final)):
            print(f"[main] step {i + 1}/{len(steps)} {step.name}: done before, skipped")
        else:
            print(f"[main] step {i + 1}/{len(steps)} {step.name}: {step.iters} iterations")
            switch = ["--resume"] if resume else ["--overwrite"] if overwrite else []
            spent += _run_step(step, out, switch + list(extra or []))
            done_iters += step.iters
        results[step.name] = {**read_final_metrics(step_dir), "iterations": step.iters}
        left = sum(s.iters for s in steps[i + 1 :])
        eta = spent / max(done_iters, 1) * left
        print(
            f"[main] {i + 1}/{len(steps)} steps done, elapsed {time.time() - t0:.0f} s, "
            f"ETA {eta:.0f} s ({left}/{total_iters} iterations left)",
            flush=True,
        )
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
