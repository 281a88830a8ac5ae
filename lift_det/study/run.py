"""The multi-seed mini study (README's `make study`, ``tools/run_mini.py --seeds N``): runs its
steps (:mod:`.schedule`), then writes its statistics, each arm's costs, its figures and its report
``mini_study.{md,json}`` (:mod:`.statistics`, :mod:`.figures`, :mod:`.report`)."""

import json
import os
import time
from typing import Dict, Optional, Sequence
import torch
from fvcore.nn import parameter_count

from detectron2.config import LazyConfig
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.analysis import FlopCountAnalysis

from ..benchmark.costs import count_flops, cpu_latency_ms, random_detector
from ..checkpoint import atomic_write_text
from ..data import generate_mini_coco, register_mini_coco
from ..model_zoo import get_config, get_config_file
from ..utils import REPO
from ..utils.provenance import provenance
from .figures import plot_cosine_vs_ap, plot_frontier
from .pipeline import run_steps
from .placements import PLACEMENT_ARMS, RECIPE_ARMS, recovered_shares, zero_shot_per_seed
from .probe import PROBE_ITERS, write_trace
from .report import format_report
from .schedule import ARMS, BASELINE_DROP, DEFAULT_ARMS, study_steps
from .statistics import METRICS, cosine_vs_ap, paired_arms, plateau, read_curve, summarize


def run_study(
    out: str,
    seeds: Sequence[int],
    *budgets: int,
    jobs: int = 2,
    arms: Optional[Sequence[str]] = None,
    report_dir: Optional[str] = None,
    val_images: int = 240,
    train_images: int = 160,
    **kwargs,
) -> Dict:
    """Run the study's steps (:func:`study_steps` for ``budgets``; ``jobs`` at a time; ``kwargs``:
    :func:`run_steps`' ``extra``, ``resume``, ``overwrite``) on its own mini data with
    ``train_images`` train and ``val_images`` val images and write ``mini_study.{md,json,png}``,
    ``mini_study_cosine.png`` and the probe's ``mini_study_trace.json`` (:mod:`.probe`) to
    ``report_dir`` (default ``out``)."""
    baseline_iters, stage1_iters, stage2_iters = budgets
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    t0, made = time.time(), provenance()  # the checkout as the run found it, before it writes
    # the steps' data (by default the default 160 train images; the first 40 val images the
    # default val split's), registered here as lift_mini_train / lift_mini_val
    root = os.path.join(out, "data")
    generate_mini_coco(root, num_train=train_images, num_val=val_images)
    register_mini_coco(root)
    env = {"LIFT_DET_MINI_ROOT": root}
    steps = study_steps(out, seeds, *budgets, arms=arms)
    print(f"[study] {len(steps)} steps, {jobs} at a time: 1 shared baseline, {len(seeds)} seeds")
    results = run_steps(steps, out, jobs=jobs, tag="study", env=env, **kwargs)
    report_dir = os.path.abspath(report_dir or out)
    os.makedirs(report_dir, exist_ok=True)
    trace = os.path.join(report_dir, "mini_study_trace.json")
    print(f"[study] the reproducibility probe (make study-check compares with {trace})")
    iters = min(PROBE_ITERS, *budgets)
    write_trace(os.path.join(out, "probe"), trace, *budgets, iters=iters, **kwargs)
    chosen = DEFAULT_ARMS if arms is None else arms
    arm_names = [a[0] for a in ARMS if a[0] in chosen]
    per_seed = {  # seed<k>/<step> of each seed
        seed: {n.split("/", 1)[1]: r for n, r in results.items() if n.startswith(f"seed{seed}/")}
        for seed in seeds
    }
    curve = read_curve(os.path.join(out, "baseline"), baseline_iters)
    val = DatasetCatalog.get("lift_mini_val")
    print("[study] counting parameters and GFLOPs of each arm, timing each on the CPU")
    figure = os.path.join(report_dir, "mini_study.png")
    cosine_figure = os.path.join(report_dir, "mini_study_cosine.png")
    drop = int(baseline_iters * BASELINE_DROP)
    summary = summarize(per_seed, arm_names)
    zero_shot = zero_shot_per_seed(results, seeds, arm_names)
    setup = dict(seeds=list(seeds), baseline_iters=baseline_iters, stage1_iters=stage1_iters)
    setup.update(stage2_iters=stage2_iters, image_size=256, val_images=len(val), jobs=jobs)
    left_out = [a[0] for a in ARMS if a[0] not in arm_names]
    overrides = list(kwargs.get("extra") or [])  # every step's key=value
    setup.update(justification=_justification(overrides, *budgets), arms_left_out=left_out)
    setup["overrides"] = overrides
    baseline = dict(iterations=baseline_iters, eval_period=steps[0].overrides["train.eval_period"])
    final = {k: results["baseline"][k] for k, _ in METRICS}
    baseline.update(curve=curve, final=final, lr_drop=drop)
    baseline["schedule"] = (
        f"The learning rate drops 10x at iteration {drop} ({BASELINE_DROP:.0%} of the iterations)."
    )
    baseline["plateau"] = plateau(curve, drop)
    study = {
        "arms": arm_names,
        "labels": {a.name: a.label for a in ARMS},
        "setup": setup,
        "baseline": baseline,
        "summary": summary,
        "zero_shot": {
            "summary": summarize(zero_shot, arm_names),
            "recovered": recovered_shares(zero_shot, arm_names),
            "per_seed": {str(k): v for k, v in zero_shot.items()},
        },
        "recovered": recovered_shares(per_seed, arm_names),
        "lift_vs_control": {
            g: paired_arms(per_seed, lift, control)
            for g, (lift, control) in PLACEMENT_ARMS.items()
            if lift in arm_names and control in arm_names
        },
        "recipes": {
            a: paired_arms(per_seed, a, "lift")
            for a in RECIPE_ARMS
            if a in arm_names and "lift" in arm_names
        },
        "cosine_vs_ap": cosine_vs_ap(summary),
        "costs": arm_costs(arm_names, val[0]["file_name"], overrides),
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "figure": os.path.relpath(figure, REPO),
        "cosine_figure": os.path.relpath(cosine_figure, REPO),
        "step_seconds": {n: r.get("seconds") for n, r in results.items()},
        "wall_time_s": time.time() - t0,
        # steps that had run before a --resume: their time is not in wall_time_s
        "steps_skipped": sum("seconds" not in r for r in results.values()),
        **made,
    }
    plot_frontier(study, figure)
    plot_cosine_vs_ap(study, cosine_figure)
    report = format_report(study)
    atomic_write_text(os.path.join(report_dir, "mini_study.json"), json.dumps(study, indent=2))
    atomic_write_text(os.path.join(report_dir, "mini_study.md"), report + "\n")
    print(
        "\n" + report + f"\n\n[study] wrote {report_dir}/mini_study.md, .json, .png and "
        f"mini_study_cosine.png"
    )
    return study


def _justification(overrides, baseline_iters: int, stage1_iters: int, stage2_iters: int) -> str:
    """Why these budgets, with epochs computed from the batch sizes the steps ran with (the
    configs' with ``overrides``) and the data."""
    configs = [get_config(f"mini/{c}.py") for c in ("vitdet_mrcnn", "lift_stage1")]
    b_det, b_s1 = (
        LazyConfig.apply_overrides(c, overrides).dataloader.train.total_batch_size for c in configs
    )
    n_train = len(DatasetCatalog.get("lift_mini_train"))
    n_val = len(DatasetCatalog.get("lift_mini_val"))

    def ep(iters, b):
        return f"{iters * b / n_train:g} epochs at batch {b}"

    return (
        f"the whole study has to run in hours on a 2-core CPU, so it runs on the mini data "
        f"(256 px, {n_train} train / {n_val} val images). The baseline trains {baseline_iters} "
        f"iterations ({ep(baseline_iters, b_det)}) once and is shared by every seed, as the paper "
        f"starts every arm from one model-zoo ViTDet; each seed then trains {stage1_iters} "
        f"stage-one iterations per upsampler ({ep(stage1_iters, b_s1)}) and {stage2_iters} "
        f"stage-two iterations per arm ({ep(stage2_iters, b_det)}), and every arm is also "
        f"evaluated zero-shot (no stage two). Evaluation uses all {n_val} "
        f"val images; they are the same for every arm, so the paired differences do not include "
        f"their sampling noise, but every AP is an AP on {n_val} images. Steps run two at a time "
        f"with pinned thread counts (1 per step, 2 for the baseline, which runs alone), so a seed "
        f"gives the same numbers however many steps run at once."
    )


def arm_costs(arms: Sequence[str], image: str, overrides=()) -> Dict[str, Dict[str, float]]:
    """Parameters, GFLOPs (fvcore: one multiply-add = one flop) and CPU latency (one thread,
    :func:`cpu_latency_ms`, all arms in this one run) of each arm's detector at its input size
    (``square_pad``: 512 px for the 2x image and the up placement), at inference on one val
    image of the mini data, with random weights and the mask head on all 50 detections; the
    configs with the steps' ``overrides``."""
    configs = {a.name: a.config for a in ARMS}
    costs = {}
    for arm in arms:
        model = random_detector(get_config_file(f"mini/{configs[arm]}.py"), overrides=overrides)
        size = model.backbone.padding_constraints["square_size"]
        img = torch.as_tensor(read_image(image, format="BGR").copy()).permute(2, 0, 1)
        img = torch.nn.functional.interpolate(img[None].float(), size=(size, size))[0]
        inputs = [{"image": img, "height": 256, "width": 256}]
        flops = count_flops(FlopCountAnalysis(model, inputs))
        costs[arm] = dict(params_M=parameter_count(model)[""] / 1e6, gflops=flops / 1e9)
        costs[arm].update(image_size=int(size), cpu_ms=cpu_latency_ms(model, inputs))
    return costs
