"""
The multi-seed mini study (README's `make study`, ``tools/run_mini.py --seeds N``): one converged
baseline ViTDet shared by every seed, then per seed three stage ones (LiFT, the resize-conv
control, LiFT at half the input size) and every stage-two arm from that same baseline, so that
within a seed the arms are paired. Statistics over seeds (mean, std, paired differences against
the same-budget baseline with 95% t intervals), each arm's parameters and GFLOPs, a PNG of box AP
vs GFLOPs, and the report ``mini_study.md`` / ``mini_study.json``. A helper module of
tools/run_mini.py (scenario code, not library).
"""

import json
import math
import numpy as np
import os
import time
from typing import Dict, List, Optional, Sequence

from mini_pipeline import Step, run_steps  # tools/mini_pipeline.py
from provenance import provenance  # tools/provenance.py

__all__ = [
    "ARMS",
    "METRICS",
    "study_steps",
    "paired_interval",
    "summarize",
    "plateau",
    "format_report",
    "run_study",
]

# Stage ones per seed: (name, config, label, relative s/it for the ETA). The unit is the
# baseline's s/it with 2 threads; the others run with 1 thread, two at a time (measured here).
STAGE_ONES = [
    ("stage1_lift", "lift_stage1", "LiFT-S", 0.49),
    ("stage1_rc", "lift_stage1_rc", "resize-conv", 0.50),
    ("stage1_half", "lift_stage1_half", "LiFT-S at 128 px", 0.17),
]
# Stage-two arms: (name, config, label, the stage one whose file it loads, relative s/it)
ARMS = [
    ("ft", "vitdet_mrcnn_ft", "ViTDet + same extra iterations", None, 1.36),
    ("bilinear", "vitdet_mrcnn_bilinear", "+ bilinear 2x", None, 1.15),
    ("resize_conv", "vitdet_mrcnn_resize_conv", "+ resize-conv (stage one)", "stage1_rc", 1.10),
    ("lift", "vitdet_mrcnn_lift", "+ LiFT, frozen", "stage1_lift", 1.14),
    ("lift_ft", "vitdet_mrcnn_lift_ft", "+ LiFT, finetuned", "stage1_lift", 1.32),
    ("lift2", "vitdet_mrcnn_lift2", "+ LiFT twice (stride 4)", "stage1_lift", 1.54),
    ("lift_half", "vitdet_mrcnn_lift", "+ LiFT, stage one at half size", "stage1_half", 1.14),
    ("image2x", "vitdet_mrcnn_2x", "ViTDet on the 2x image (upper bound)", None, 4.63),
]
CONTROL = "ft"  # the same-budget baseline every arm is paired with
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


def study_steps(
    out: str,
    seeds: Sequence[int],
    baseline_iters: int,
    stage1_iters: int,
    stage2_iters: int,
    baseline_evals: int = 10,
    arms: Optional[Sequence[str]] = None,
) -> List[Step]:
    """
    The study's steps: ``baseline`` (evaluated ``baseline_evals`` times for its curve, 2 threads),
    then per seed ``seed<k>/<stage one>`` and ``seed<k>/<arm>`` (1 thread each, ``train.seed=k``).
    ``arms``: a subset of :data:`ARMS` (default: all); the stage ones they need come with them.
    """
    names = [a[0] for a in ARMS] if arms is None else list(arms)
    unknown = set(names) - {a[0] for a in ARMS}
    if unknown:
        raise ValueError(f"unknown arms {sorted(unknown)}; the arms are {[a[0] for a in ARMS]}")
    base = os.path.join(out, "baseline", "model_final.pth")
    period = max(baseline_iters // baseline_evals, 1)
    steps = [
        Step("baseline", "model_final.pth", "vitdet_mrcnn", baseline_iters,
             {"train.eval_period": str(period), "train.checkpointer.period": str(period),
              # the config's 50 warmup iterations, whatever max_iter is
              "lr_multiplier.warmup_length": str(min(50 / baseline_iters, 0.5))},
             "baseline ViTDet (shared by every seed)", threads=2)
    ]  # fmt: skip
    arms_used = [a for a in ARMS if a[0] in names]
    # LiFT's stage one always runs: its evaluation also gives the bilinear and nearest cosines
    needed = {a[3] for a in arms_used} | ({"stage1_lift"} if arms_used else set())
    for seed in seeds:
        common = {"train.seed": str(seed), "train.init_checkpoint": base}
        for name, config, label, cost in STAGE_ONES:
            if name in needed:
                steps.append(
                    Step(f"seed{seed}/{name}", "lift_final.pth", config, stage1_iters,
                         {**common, "train.eval_period": str(stage1_iters)},
                         f"stage one: {label}, seed {seed}", ("baseline",), 1, cost)
                )  # fmt: skip
    for seed in seeds:  # the costliest first: less idle time at the end
        for name, config, label, stage_one, cost in sorted(arms_used, key=lambda a: -a[4]):
            overrides = {
                "train.seed": str(seed),
                "train.init_checkpoint": base,
                "train.eval_period": str(stage2_iters),
            }
            needs = ("baseline",)
            if stage_one:
                lift_file = os.path.join(out, f"seed{seed}", stage_one, "lift_final.pth")
                overrides["model.backbone.net.lift_weights"] = lift_file
                needs += (f"seed{seed}/{stage_one}",)
            steps.append(
                Step(f"seed{seed}/{name}", "model_final.pth", config, stage2_iters, overrides,
                     f"{label}, seed {seed}", needs, 1, cost)
            )  # fmt: skip
    return steps


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


def arm_costs(arms: Sequence[str], image: str) -> Dict[str, Dict[str, float]]:
    """Parameters and GFLOPs (fvcore: one multiply-add = one flop) of each arm's detector at the
    mini input (512 px for the 2x-image arm), at inference on one val image of the mini data,
    with random weights and the mask head on all 50 detections (score threshold 0)."""
    import torch
    from fvcore.nn import parameter_count

    from detectron2.config import LazyConfig, instantiate
    from detectron2.data.detection_utils import read_image
    from detectron2.utils.analysis import FlopCountAnalysis

    from benchmark import count_flops  # tools/benchmark.py

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    configs = {a[0]: a[1] for a in ARMS}
    costs = {}
    for arm in arms:
        cfg = LazyConfig.load(os.path.join(repo, "configs", "mini", f"{configs[arm]}.py"))
        net = cfg.model.backbone.net
        if "lift" in net:  # a ViTLiFT; costs do not depend on weights, no checkpoint is loaded
            net.allow_random_lift = True
        cfg.model.roi_heads.box_predictor.test_score_thresh = 0.0
        torch.manual_seed(0)
        model = instantiate(cfg.model).eval()
        size = cfg.model.backbone.square_pad
        img = torch.as_tensor(read_image(image, format="BGR").copy()).permute(2, 0, 1)
        img = torch.nn.functional.interpolate(img[None].float(), size=(size, size))[0]
        flops = count_flops(FlopCountAnalysis(model, [{"image": img, "height": 256, "width": 256}]))
        costs[arm] = {"params_M": parameter_count(model)[""] / 1e6, "gflops": flops / 1e9,
                      "image_size": int(size)}  # fmt: skip
    return costs


def _pm(s: Dict[str, float], digits: int = 2) -> str:
    if s["std"] != s["std"]:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _diff(d: Dict[str, float]) -> str:
    mark = " *" if d.get("significant") else ""
    return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]{mark}"


def format_report(study: Dict) -> str:
    """The markdown report (docs/mini_study.md) from the study's JSON: the same text for the
    same JSON (tests/test_readme.py checks the committed pair)."""
    arms = study["arms"]
    labels = {a[0]: a[2] for a in ARMS}
    s, setup, base = study["summary"], study["setup"], study["baseline"]
    n = len(s["seeds"])
    control = labels[CONTROL]
    lines = [
        f"Mini study, {n} seeds ({', '.join(map(str, s['seeds']))}): made by `{study['command']}` "
        f"on {study['date']} at commit {study['commit']}, {study['machine']}, torch "
        f"{study['torch']}, in {study['wall_time_s'] / 60:.0f} min.",
        "",
        f"Mean ± std over seeds. Every arm starts from the same baseline mini ViTDet "
        f"({base['iterations']} iterations, box AP {base['final']['bbox/AP']:.2f}, mask AP "
        f"{base['final']['segm/AP']:.2f}) and trains {setup['stage2_iters']} iterations with the "
        f"ViT frozen; GFLOPs at inference on one {setup['image_size']} px image (fvcore).",
        "",
        "| model | params (M) | GFLOPs | " + " | ".join(m[1] for m in METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for arm in arms:
        c, r = study["costs"][arm], s["arms"][arm]
        lines.append(
            f"| {labels[arm]} | {c['params_M']:.2f} | {c['gflops']:.2f} | "
            + " | ".join(_pm(r[k]) for k, _ in METRICS)
            + " |"
        )
    lines += [
        "",
        f"Paired difference from *{control}* (same seed, same baseline, same budget): mean and 95% "
        f"t interval over the {n} seed pairs; * marks an interval that excludes 0.",
        "",
        "| model | " + " | ".join(f"Δ {m[1]}" for m in METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for arm in arms:
        if arm == CONTROL:
            continue
        r = s["arms"][arm]
        lines.append(
            f"| {labels[arm]} | " + " | ".join(_diff(r[k]["vs_control"]) for k, _ in METRICS) + " |"
        )
    lines += ["", _in_words(study), ""]
    cos = s["stage1_cosines"]
    lines += [
        f"Stage one ({setup['stage1_iters']} iterations per seed), held-out mean cosine "
        f"similarity to the ViT's features of the 2x image:",
        "",
        "| " + " | ".join(cos) + " |",
        "|" + "---|" * len(cos),
        "| " + " | ".join(_pm(v, 4) for v in cos.values()) + " |",
        "",
        f"The shared baseline: val box AP every {base['eval_period']} iterations. Convergence "
        f"criterion, "
        f"fixed before the run: {base['plateau']['criterion']}: gained "
        f"{base['plateau']['gain']:+.2f}, "
        + ("plateaued." if base["plateau"]["plateaued"] else "**not plateaued** by it.")
        + " The learning rate drops 10x at 90%.",
        "",
        "| iteration | " + " | ".join(str(c["iteration"]) for c in base["curve"]) + " |",
        "|---|" + "---|" * len(base["curve"]),
        "| box AP | " + " | ".join(f"{c['bbox/AP']:.2f}" for c in base["curve"]) + " |",
        "| mask AP | " + " | ".join(f"{c['segm/AP']:.2f}" for c in base["curve"]) + " |",
        "",
        f"Budget: {setup['justification']}",
        "",
        f"Figure: box AP vs GFLOPs, mean ± std over seeds: `{study['figure']}`.",
    ]
    return "\n".join(lines)


def _in_words(study: Dict) -> str:
    labels = {a[0]: a[2] for a in ARMS}
    s = study["summary"]
    better, worse, neither = [], [], []
    for arm in study["arms"]:
        if arm == CONTROL:
            continue
        d = s["arms"][arm]["bbox/AP"]["vs_control"]
        text = f"{labels[arm]} ({d['mean']:+.2f} box AP)"
        (better if d["significant"] and d["mean"] > 0 else
         worse if d["significant"] else neither).append(text)  # fmt: skip
    parts = [f"In words, box AP against *{labels[CONTROL]}* at 95%:"]
    parts.append(f"significantly better: {'; '.join(better) or 'none'}.")
    parts.append(f"Significantly worse: {'; '.join(worse) or 'none'}.")
    parts.append(f"Not distinguishable from it with {len(s['seeds'])} seeds: "
                 f"{'; '.join(neither) or 'none'}.")  # fmt: skip
    return " ".join(parts)


def dodge(xs: Sequence[float], spread: float) -> List[float]:
    """x positions with arms that share an x (same GFLOPs) spread ``spread`` apart around it, in
    their order, so that overlapping points and error bars stay visible."""
    groups: Dict[float, List[int]] = {}
    for i, x in enumerate(xs):
        groups.setdefault(round(float(x), 6), []).append(i)
    out = [float(x) for x in xs]
    for members in groups.values():
        for k, i in enumerate(members):
            out[i] += (k - (len(members) - 1) / 2) * spread
    return out


def plot(study: Dict, path: str) -> List[Dict[str, float]]:
    """Box AP (mean ± std over seeds) vs GFLOPs, one point per arm; arms of equal cost are drawn
    side by side (:func:`dodge`) and labelled. Returns what was drawn (arm, x, y) per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {a[0]: a[2] for a in ARMS}
    arms = list(study["arms"])
    gflops = [study["costs"][arm]["gflops"] for arm in arms]
    span = (max(gflops) - min(gflops)) or max(max(gflops), 1.0)
    xs = dodge(gflops, spread=0.012 * span)
    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = []
    for arm, x in zip(arms, xs):
        ap = study["summary"]["arms"][arm]["bbox/AP"]
        std = ap["std"] if ap["std"] == ap["std"] else 0.0
        ax.errorbar(x, ap["mean"], yerr=std, fmt="o", capsize=4, label=labels[arm])
        ax.annotate(arm, (x, ap["mean"]), xytext=(4, 3), textcoords="offset points", fontsize=7)
        drawn.append({"arm": arm, "x": x, "y": ap["mean"]})
    ax.set_xlabel("GFLOPs per image (inference, fvcore; arms of equal cost drawn side by side)")
    ax.set_ylabel("val box AP (mean ± std over seeds)")
    ax.set_title(f"Mini study, {len(study['summary']['seeds'])} seeds: accuracy vs compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def run_study(
    out: str,
    seeds: Sequence[int],
    baseline_iters: int,
    stage1_iters: int,
    stage2_iters: int,
    *,
    jobs: int = 2,
    arms: Optional[Sequence[str]] = None,
    report_dir: Optional[str] = None,
    extra: Optional[List[str]] = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Dict:
    """Run the study's steps (``jobs`` at a time) and write ``mini_study.{md,json,png}`` to
    ``report_dir`` (default ``out``)."""
    from detectron2.data import DatasetCatalog

    import lift_det  # noqa: F401  (registers the mini datasets)

    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    steps = study_steps(out, seeds, baseline_iters, stage1_iters, stage2_iters, arms=arms)
    print(f"[study] {len(steps)} steps, {jobs} at a time: 1 shared baseline, {len(seeds)} seeds")
    results = run_steps(
        steps, out, jobs=jobs, extra=extra, resume=resume, overwrite=overwrite, tag="study"
    )
    arm_names = [a[0] for a in ARMS if arms is None or a[0] in arms]
    per_seed = {
        seed: {name.split("/", 1)[1]: r for name, r in results.items() if
               name.startswith(f"seed{seed}/")}
        for seed in seeds
    }  # fmt: skip
    curve = read_curve(os.path.join(out, "baseline"), baseline_iters)
    val = DatasetCatalog.get("lift_mini_val")
    print("[study] counting parameters and GFLOPs of each arm")
    report_dir = os.path.abspath(report_dir or out)
    os.makedirs(report_dir, exist_ok=True)
    figure = os.path.join(report_dir, "mini_study.png")
    study = {
        "arms": arm_names,
        "setup": {
            "seeds": list(seeds),
            "baseline_iters": baseline_iters,
            "stage1_iters": stage1_iters,
            "stage2_iters": stage2_iters,
            "image_size": 256,
            "val_images": len(val),
            "jobs": jobs,
            "justification": _justification(baseline_iters, stage1_iters, stage2_iters),
        },
        "baseline": {
            "iterations": baseline_iters,
            "eval_period": steps[0].overrides["train.eval_period"],
            "curve": curve,
            "final": {k: results["baseline"][k] for k, _ in METRICS},
            "plateau": plateau(curve),
        },
        "summary": summarize(per_seed, arm_names),
        "costs": arm_costs(arm_names, val[0]["file_name"]),
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "figure": os.path.relpath(
            figure, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        ),
        "step_seconds": {n: r.get("seconds") for n, r in results.items()},
        "wall_time_s": time.time() - t0,
        **provenance(),
    }
    plot(study, figure)
    report = format_report(study)
    with open(os.path.join(report_dir, "mini_study.json"), "w") as f:
        json.dump(study, f, indent=2)
    with open(os.path.join(report_dir, "mini_study.md"), "w") as f:
        f.write(report + "\n")
    print("\n" + report + f"\n\n[study] wrote {report_dir}/mini_study.md, .json and .png")
    return study


def _justification(baseline_iters: int, stage1_iters: int, stage2_iters: int) -> str:
    """Why these budgets, with epochs computed from the configs' batch sizes and the data."""
    from detectron2.config import LazyConfig
    from detectron2.data import DatasetCatalog

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def batch(config):
        path = os.path.join(repo, "configs", "mini", f"{config}.py")
        return LazyConfig.load(path).dataloader.train.total_batch_size

    n_train = len(DatasetCatalog.get("lift_mini_train"))
    n_val = len(DatasetCatalog.get("lift_mini_val"))
    b_det, b_s1 = batch("vitdet_mrcnn"), batch("lift_stage1")

    def ep(iters, b):
        return f"{iters * b / n_train:g} epochs at batch {b}"

    return (
        f"the whole study has to fit in 100 minutes of a 2-core CPU, so it runs on the mini data "
        f"(256 px, {n_train} train / {n_val} val images). The baseline trains {baseline_iters} "
        f"iterations ({ep(baseline_iters, b_det)}) once and is shared by every seed, as the paper "
        f"starts every arm from one model-zoo ViTDet; each seed then trains {stage1_iters} "
        f"stage-one iterations per upsampler ({ep(stage1_iters, b_s1)}) and {stage2_iters} "
        f"stage-two iterations per arm ({ep(stage2_iters, b_det)}). Evaluation uses all {n_val} "
        f"val images; they are the same for every arm, so the paired differences do not include "
        f"their sampling noise, but every AP is an AP on {n_val} images. Steps run two at a time "
        f"with pinned thread counts (1 per step, 2 for the baseline, which runs alone), so a seed "
        f"gives the same numbers however many steps run at once."
    )
