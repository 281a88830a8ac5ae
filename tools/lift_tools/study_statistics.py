"""
The multi-seed study's statistics: mean and std over seeds, paired differences against the
same-budget control with 95% t intervals, and the baseline's convergence (plateau) rule.
"""

import json
import math
import numpy as np
import os
from typing import Dict, List, Sequence

from lift_tools.study_schedule import CONTROL

__all__ = ["METRICS", "COSINES", "paired_interval", "summarize", "plateau", "read_curve"]

METRICS = [
    ("bbox/AP", "box AP"),
    ("bbox/AP50", "AP50"),
    ("bbox/AP75", "AP75"),
    ("bbox/APs", "APs"),
    ("bbox/APm", "APm"),
    ("bbox/APl", "APl"),
    ("segm/AP", "mask AP"),
]
COSINES = [
    ("stage1_lift", "lift_quality/cos_lift", "LiFT"),
    ("stage1_rc", "lift_quality/cos_lift", "resize-conv"),
    ("stage1_lift", "lift_quality/cos_bilinear", "bilinear"),
    ("stage1_lift", "lift_quality/cos_nearest", "nearest"),
    ("stage1_half", "lift_quality/cos_lift", "LiFT, stage one at 128 px (held out at 128 px)"),
]
PLATEAU_AP = 1.0  # box AP gained over the last quarter of the baseline's training, at most


def paired_interval(diffs: Sequence[float], level: float = 0.95) -> Dict[str, float]:
    """Mean of paired differences and its ``level`` interval from the t distribution (n - 1
    degrees of freedom); the interval is NaN for fewer than 2 pairs."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": len(d)}
    half = float(stats.t.ppf((1 + level) / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(d)}


def _mean_std(values: Sequence[float]) -> Dict[str, float]:
    v = np.asarray(values, dtype=float)
    std = float(v.std(ddof=1)) if len(v) > 1 else math.nan
    return {"mean": float(v.mean()), "std": std, "n": len(v), "values": [float(x) for x in v]}


def summarize(per_seed: Dict[int, Dict[str, Dict[str, float]]], arms: Sequence[str]) -> Dict:
    """
    ``per_seed[seed][step]``: final metrics of each step of that seed. Returns per arm and metric
    the mean and std over seeds and, against :data:`CONTROL`, the paired difference with its 95%
    interval (``significant``: the interval excludes 0); and stage one's cosines.
    """
    seeds = sorted(per_seed)
    table: Dict[str, Dict] = {}
    for arm in arms:
        row: Dict[str, Dict] = {}
        for key, _ in METRICS:
            values = [per_seed[s][arm][key] for s in seeds]
            row[key] = _mean_std(values)
            if arm != CONTROL and CONTROL in arms:
                diff = paired_interval([per_seed[s][arm][key] - per_seed[s][CONTROL][key]
                                        for s in seeds])  # fmt: skip
                diff["significant"] = bool(diff["low"] > 0 or diff["high"] < 0)
                row[key]["vs_control"] = diff
        table[arm] = row
    cosines = {}
    for step, key, label in COSINES:
        if all(step in per_seed[s] for s in seeds):
            cosines[label] = _mean_std([per_seed[s][step][key] for s in seeds])
    return {"arms": table, "stage1_cosines": cosines, "seeds": seeds}


def plateau(curve: List[Dict[str, float]], max_gain: float = PLATEAU_AP) -> Dict:
    """
    The baseline's convergence criterion: over the last quarter of its iterations its val box
    AP rose by at most ``max_gain`` (final minus the last evaluation at or before 75%).
    """
    last = curve[-1]
    cut = 0.75 * last["iteration"]
    earlier = [c for c in curve if c["iteration"] <= cut] or curve[:1]
    gain = last["bbox/AP"] - earlier[-1]["bbox/AP"]
    return {
        "criterion": f"box AP gained from iteration {earlier[-1]['iteration']} to "
        f"{last['iteration']} (the last quarter) <= {max_gain:.1f}",
        "gain": gain,
        "plateaued": bool(gain <= max_gain),
    }


def read_curve(step_dir: str, max_iter: int) -> List[Dict[str, float]]:
    """Every evaluation in a step's ``metrics.json``: iterations done, box AP, mask AP. (A
    periodic evaluation is stored at the index of the iteration it follows, the final one at
    ``max_iter``.)"""
    curve = []
    with open(os.path.join(step_dir, "metrics.json")) as f:
        for line in f:
            row = json.loads(line)
            if "bbox/AP" in row:
                curve.append(
                    {
                        "iteration": min(row["iteration"] + 1, max_iter),
                        "bbox/AP": row["bbox/AP"],
                        "segm/AP": row.get("segm/AP", math.nan),
                    }
                )
    return curve  # fmt: skip
