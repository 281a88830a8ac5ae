"""
The multi-seed study's step graph (README's `make study`): one converged baseline ViTDet shared by
every seed, then per seed the stage ones of the learned upsamplers (LiFT, resize-conv, JBU, the
attention upsampler; LiFT at half the input size on request) and every stage-two arm from that same
baseline, so that within a seed the arms are paired.
"""

import os
from typing import List, Optional, Sequence

from lift_tools.pipeline import Step

__all__ = [
    "STAGE_ONES",
    "ARMS",
    "DEFAULT_ARMS",
    "STUDY_ITERS",
    "CONTROL",
    "BASELINE_DROP",
    "baseline_step",
    "study_steps",
]

# Stage ones per seed: (name, config, label, relative s/it for the ETA). The unit is the
# baseline's s/it with 2 threads; the others run with 1 thread, two at a time (measured here).
STAGE_ONES = [
    ("stage1_lift", "lift_stage1", "LiFT-S", 0.49),
    ("stage1_rc", "lift_stage1_rc", "resize-conv", 0.50),
    ("stage1_jbu", "lift_stage1_jbu", "JBU", 0.50),
    ("stage1_attn", "lift_stage1_attn", "attention upsampler", 0.50),
    ("stage1_half", "lift_stage1_half", "LiFT-S at 128 px", 0.17),
]
# Stage-two arms: (name, config, label, the stage one whose file it loads, relative s/it)
ARMS = [
    ("ft", "vitdet_mrcnn_ft", "ViTDet + same extra iterations", None, 1.36),
    ("bilinear", "vitdet_mrcnn_bilinear", "+ bilinear 2x", None, 1.15),
    ("resize_conv", "vitdet_mrcnn_resize_conv", "+ resize-conv (stage one)", "stage1_rc", 1.10),
    ("jbu", "vitdet_mrcnn_jbu", "+ JBU (stage one)", "stage1_jbu", 1.15),
    ("lift", "vitdet_mrcnn_lift", "+ LiFT, frozen", "stage1_lift", 1.14),
    ("lift_ft", "vitdet_mrcnn_lift_ft", "+ LiFT, finetuned", "stage1_lift", 1.32),
    ("attn", "vitdet_mrcnn_attn", "+ attention upsampler (stage one)", "stage1_attn", 1.2),
    ("lift2", "vitdet_mrcnn_lift2", "+ LiFT twice (stride 4)", "stage1_lift", 1.54),
    ("lift_half", "vitdet_mrcnn_lift", "+ LiFT, stage one at half size", "stage1_half", 1.14),
    ("image2x", "vitdet_mrcnn_2x", "ViTDet on the 2x image (upper bound)", None, 4.63),
]
CONTROL = "ft"  # the same-budget baseline every arm is paired with
# `make study`'s arms: LiFT twice and LiFT's stage one at half size were answered by an earlier
# study (see the report) and run only on request (--arms), to keep the study within 120 minutes
DEFAULT_ARMS = ("ft", "bilinear", "resize_conv", "jbu", "lift", "lift_ft", "attn", "image2x")
# `make study`'s iterations per step: the baseline, each stage one, each stage-two arm
STUDY_ITERS = {"baseline": 2400, "stage1": 500, "stage2": 160}
# the baseline's learning rate drops 10x at this fraction of its iterations
BASELINE_DROP = 0.8


def baseline_step(iters: int, evals: int = 10) -> Step:
    """
    The shared baseline ViTDet: ``iters`` iterations from scratch, learning rate 10x lower from
    :data:`BASELINE_DROP` of them, evaluated and saved every ``iters // evals`` (its curve and
    the plateau rule), 2 threads.
    """
    period = max(iters // evals, 1)
    overrides = {
        "train.eval_period": str(period),
        "train.checkpointer.period": str(period),
        "lr_multiplier.scheduler.num_updates": str(iters),
        "lr_multiplier.scheduler.milestones": f"[{int(iters * BASELINE_DROP)}]",
        # the config's 50 warmup iterations, whatever max_iter is
        "lr_multiplier.warmup_length": str(min(50 / iters, 0.5)),
    }
    label = "baseline ViTDet (shared by every seed)"
    return Step("baseline", "model_final.pth", "vitdet_mrcnn", iters, overrides, label, threads=2)


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
    ``arms``: a subset of :data:`ARMS` (default: :data:`DEFAULT_ARMS`); the stage ones they
    need come with them.
    """
    names = list(DEFAULT_ARMS if arms is None else arms)
    unknown = set(names) - {a[0] for a in ARMS}
    if unknown:
        raise ValueError(f"unknown arms {sorted(unknown)}; the arms are {[a[0] for a in ARMS]}")
    base = os.path.join(out, "baseline", "model_final.pth")
    steps = [baseline_step(baseline_iters, baseline_evals)]
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
