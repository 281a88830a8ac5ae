"""The main job on the built-in mini data (README's `make main`): baseline ViTDet training -> stage
one (LiFT against the trained, frozen ViT) -> stage two for +LiFT, for the +bilinear control and for
the baseline given the same extra iterations -> COCO evaluation of each, as one table (markdown +
JSON). Its steps run with :func:`lift_det.study.pipeline.run_steps`."""

import json
import os
import time
from typing import Dict, List, Optional

from ..checkpoint import atomic_write_text
from ..utils.provenance import provenance
from ..utils.tables import md_block
from .pipeline import Step, run_steps

# `make main`'s iterations per step: the baseline, stage one, each stage-two arm
MAIN_ITERS = {"baseline": 400, "stage1": 500, "stage2": 160}

CAVEAT = (
    "One seed is noise-limited: a rerun on another machine can move these APs by several points, "
    "so read small differences with care. The evidence is the multi-seed study: `make study` "
    "(tools/run_mini.py --seeds 3), committed as docs/mini_study.md and shown in the README."
)


def mini_steps(out: str, baseline_iters: int, stage1_iters: int, stage2_iters: int) -> List[Step]:
    """The pipeline's steps; each step's output folder is ``out/<name>``."""
    base_ckpt = os.path.join(out, "baseline", "model_final.pth")
    lift_file = os.path.join(out, "stage1", "lift_final.pth")
    steps = []
    for name, config, iters, label, cost in [
        ("baseline", "vitdet_mrcnn", baseline_iters, "ViTDet (baseline)", 1.0),
        ("stage1", "lift_stage1", stage1_iters, "stage one: LiFT-S on the frozen ViT", 0.35),
        ("baseline_ft", "vitdet_mrcnn_ft", stage2_iters, "ViTDet + same extra iterations", 1.0),
        ("bilinear", "vitdet_mrcnn_bilinear", stage2_iters, "ViTDet + bilinear 2x (control)", 0.9),
        ("lift", "vitdet_mrcnn_lift", stage2_iters, "ViTDet + LiFT", 0.9),
    ]:
        overrides = {} if name == "baseline" else {"train.init_checkpoint": base_ckpt}
        overrides["train.eval_period"] = str(iters)
        needs = () if name == "baseline" else ("baseline",)
        if name == "lift":
            overrides["model.backbone.net.lift_weights"] = lift_file
            needs += ("stage1",)
        final = "lift_final.pth" if name == "stage1" else "model_final.pth"
        steps.append(Step(name, final, config, iters, overrides, label, needs, cost=cost))
    return steps


KEYS = ("bbox/AP", "bbox/AP50", "bbox/AP75", "bbox/APs", "segm/AP")  # the table's metrics
COSINES = ("lift", "bilinear", "nearest")


def _fmt(v: Optional[float]) -> str:
    return "n/a" if v is None or v != v else f"{v:.2f}"


def format_table(results: Dict[str, Dict], steps: List[Step]) -> str:
    """Markdown: one row per detector (box AP, AP50, AP75, APs, mask AP) + stage one's cosines."""
    rows = []
    for s in steps:
        r = results.get(s.name, {})
        if s.final != "model_final.pth":  # stage one: its cosines below
            continue
        iters = f"{results['baseline'].get('iterations', '?')}"
        if s.name != "baseline":
            iters += f" + {r.get('iterations', '?')}"
        rows.append([s.label, iters, *(_fmt(r.get(k)) for k in KEYS)])
    blocks = [md_block(["model", "iterations", "box AP", "AP50", "AP75", "APs", "mask AP"], rows)]
    s1 = results.get("stage1", {})
    if s1:
        cosines = [f"{s1.get(f'lift_quality/cos_{k}', float('nan')):.4f}" for k in COSINES]
        blocks += [
            "Stage one, held-out mean cosine similarity to the ViT's features of the 2x image:",
            md_block(["LiFT", "bilinear", "nearest"], [cosines]),
        ]
        if s1.get("lift_quality/cos_lift", 1.0) < s1.get("lift_quality/cos_bilinear", 0.0):
            blocks.append(
                "**LiFT is UNDERTRAINED**: its held-out cosine is below bilinear upsampling's. "
                "Train stage one longer; the +LiFT rows above say little about LiFT."
            )
    return "\n\n".join(blocks)


def run_pipeline(out: str, *budgets: int, **kwargs) -> Dict:
    """The main job: run every step (one at a time; ``budgets``: :func:`mini_steps`' iterations,
    default :data:`MAIN_ITERS`; ``kwargs``: :func:`run_steps`' ``extra``, ``resume``,
    ``overwrite``) and write the table."""
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    steps = mini_steps(out, *(budgets or MAIN_ITERS.values()))
    results = run_steps(steps, out, **kwargs)
    for r in results.values():
        r.pop("seconds", None)
    table = format_table(results, steps)
    atomic_write_text(os.path.join(out, "results.md"), f"{table}\n\n{CAVEAT}\n")
    steps_json = {s.name: {"label": s.label, **results[s.name]} for s in steps}
    summary = dict(steps=steps_json, wall_time_s=time.time() - t0, **provenance())
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(summary, indent=2))
    print(f"\n{table}\n\n{CAVEAT}\n[main] wrote {out}/results.md and results.json", flush=True)
    return summary
