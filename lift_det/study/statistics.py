"""The multi-seed study's statistics: mean and std over seeds, paired differences against the
same-budget control with 95% t intervals, and the baseline's convergence (plateau) rule."""

import itertools
import math
import numpy as np
from typing import Dict, List, Sequence

from .pipeline import evaluations
from .schedule import CONTROL

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
    ("stage1_jbu", "lift_quality/cos_lift", "JBU"),
    ("stage1_attn", "lift_quality/cos_lift", "attention upsampler"),
    ("stage1_lift", "lift_quality/cos_bilinear", "bilinear"),
    ("stage1_lift", "lift_quality/cos_nearest", "nearest"),
    ("stage1_half", "lift_quality/cos_lift", "LiFT, stage one at 128 px (held out at 128 px)"),
    ("stage1_long", "lift_quality/cos_lift", "LiFT, stage one 4x longer"),
]
# the upsamplers of the cosine-vs-AP comparison: (stage-two arm, its stage-one cosine's label)
UPSAMPLERS = [
    ("bilinear", "bilinear"),
    ("resize_conv", "resize-conv"),
    ("jbu", "JBU"),
    ("lift", "LiFT"),
    ("attn", "attention upsampler"),
]
PLATEAU_AP = 0.5  # box AP gained between the baseline's last two evaluations, at most


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


def interval(d: Dict[str, float]) -> str:
    """A paired difference as text: ``mean [low, high]``."""
    return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def paired_arms(per_seed: Dict, a: str, b: str, key: str = "bbox/AP") -> Dict:
    """The paired difference ``a - b`` over seeds (mean, 95% t interval, significant)."""
    d = paired_interval([per_seed[s][a][key] - per_seed[s][b][key] for s in sorted(per_seed)])
    d["significant"] = bool(d["low"] > 0 or d["high"] < 0)
    return d


def _mean_std(values: Sequence[float]) -> Dict[str, float]:
    v = np.asarray(values, dtype=float)
    std = float(v.std(ddof=1)) if len(v) > 1 else math.nan
    return {"mean": float(v.mean()), "std": std, "n": len(v), "values": [float(x) for x in v]}


def summarize(per_seed: Dict[int, Dict[str, Dict[str, float]]], arms: Sequence[str]) -> Dict:
    """``per_seed[seed][step]``: final metrics of each step of that seed. Returns per arm and metric
    the mean and std over seeds and, against :data:`CONTROL`, the paired difference with its 95%
    interval (``significant``: the interval excludes 0); and stage one's cosines."""
    seeds = sorted(per_seed)
    table = {
        arm: {key: _mean_std([per_seed[s][arm][key] for s in seeds]) for key, _ in METRICS}
        for arm in arms
    }
    for arm in (a for a in arms if a != CONTROL and CONTROL in arms):
        for key, _ in METRICS:
            table[arm][key]["vs_control"] = paired_arms(per_seed, arm, CONTROL, key)
    cosines = {
        label: _mean_std([per_seed[s][step][key] for s in seeds])
        for step, key, label in COSINES
        if all(step in per_seed[s] for s in seeds)
    }
    return {"arms": table, "stage1_cosines": cosines, "seeds": seeds}


def cosine_vs_ap(summary: Dict) -> Dict:
    """Each of the :data:`UPSAMPLERS` the study ran: its stage-one cosine (mean, std) against its
    paired Δ box AP from the control (mean, 95% interval); over them, Spearman's ρ (exact
    permutation p), Pearson's r and the least-squares Δ box AP per 0.01 of cosine (None with fewer
    than 3)."""
    from scipy import stats

    points = []
    for arm, label in UPSAMPLERS:
        cos = summary["stage1_cosines"].get(label)
        row = summary["arms"].get(arm, {}).get("bbox/AP", {})
        if cos is None or "vs_control" not in row:
            continue
        d = row["vs_control"]
        point = dict(arm=arm, label=label, cosine=cos["mean"], cosine_std=cos["std"])
        point.update(delta_ap=d["mean"], low=d["low"], high=d["high"], significant=d["significant"])
        points.append(point)
    keys = ("spearman", "spearman_p", "pearson", "ap_per_0.01_cosine")
    out = {"points": points, **dict.fromkeys(keys)}
    x = np.array([p["cosine"] for p in points])
    y = np.array([p["delta_ap"] for p in points])
    if len(points) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        rho = float(stats.spearmanr(x, y)[0])
        # exact two-sided p: the share of the n! orderings of y with |rho| at least as large
        perms = [stats.spearmanr(x, order)[0] for order in itertools.permutations(y)]
        p_value = float(np.mean(np.abs(perms) >= abs(rho) - 1e-12))
        out.update(spearman=rho, spearman_p=p_value, pearson=float(np.corrcoef(x, y)[0, 1]))
        out["ap_per_0.01_cosine"] = float(np.polyfit(x, y, 1)[0] / 100)
    return out


def plateau(curve: List[Dict[str, float]], drop: int, max_gain: float = PLATEAU_AP) -> Dict:
    """The baseline's convergence rule, fixed before the run: its last phase (learning rate 10x
    lower from iteration ``drop``) holds its last two evaluations, and val box AP rose by at most
    ``max_gain`` between them."""
    last = curve[-1]
    before = curve[-2] if len(curve) > 1 else None
    criterion = (
        f"box AP gained between the last two evaluations, both after the 10x "
        f"learning-rate drop at iteration {drop}, <= {max_gain:.1f}"
    )
    if before is None or before["iteration"] <= drop:
        why = "the last phase holds fewer than two evaluations"
        return dict(criterion=criterion, gain=None, plateaued=False, why=why)
    gain = last["bbox/AP"] - before["bbox/AP"]
    criterion += f" (iterations {before['iteration']} and {last['iteration']})"
    return dict(criterion=criterion, gain=gain, plateaued=bool(gain <= max_gain))


def read_curve(step_dir: str, max_iter: int) -> List[Dict[str, float]]:
    """Every evaluation in a step's ``metrics.json``: iterations done, box AP, mask AP. (A
    periodic evaluation is stored at the index of the iteration it follows, the final one at
    ``max_iter``.)"""
    curve = []
    for row in evaluations(step_dir):
        if "bbox/AP" in row:
            it, mask = min(row["iteration"] + 1, max_iter), row.get("segm/AP", math.nan)
            curve.append({"iteration": it, "bbox/AP": row["bbox/AP"], "segm/AP": mask})
    return curve
