"""The multi-seed study's step graph (README's `make study`): one converged baseline ViTDet shared
by every seed, then per seed the stage ones of the learned upsamplers (LiFT, resize-conv, JBU, the
attention upsampler; LiFT at half the input size on request) and every stage-two arm from that same
baseline, so that within a seed the arms are paired."""

import os
from typing import Dict, List, NamedTuple, Optional, Sequence

from .pipeline import Step

# Stage ones per seed: (name, config, label, relative s/it for the ETA, iterations as a multiple
# of the study's). The unit is the baseline's s/it with 2 threads; the others run with 1 thread,
# two at a time (measured here). The study's stage one is 25 epochs of the mini data, as the COCO
# recipe (configs/lift_stage1_coco.py) is 25 epochs; "long" is the paper's 100.
STAGE_ONES = [
    ("stage1_lift", "lift_stage1", "LiFT-S", 0.49, 1),
    ("stage1_rc", "lift_stage1_rc", "resize-conv", 0.50, 1),
    ("stage1_jbu", "lift_stage1_jbu", "JBU", 0.50, 1),
    ("stage1_attn", "lift_stage1_attn", "attention upsampler", 0.50, 1),
    ("stage1_half", "lift_stage1_half", "LiFT-S at 128 px", 0.17, 1),
    ("stage1_long", "lift_stage1_long", "LiFT-S, 4x the iterations", 0.49, 4),
]


class Arm(NamedTuple):
    """A stage-two arm: its step name, configs/mini/<config>.py, label, the stage one whose file
    it loads (None: none), relative s/it (the ETA), and its placement's group: "control", "image"
    (ViTDet on another image size), "up", "down" or "stride8" (lift_det.config.lift_backbone)."""

    name: str
    config: str
    label: str
    stage_one: Optional[str]
    cost: float
    group: str


LIFT_CONFIG = "vitdet_mrcnn_lift"  # stage two with LiFT in the up placement, for every recipe
ARMS = [
    Arm("ft", "vitdet_mrcnn_ft", "ViTDet + same extra iterations", None, 1.36, "control"),
    Arm("image2x", "vitdet_mrcnn_2x", "ViTDet on the 2x image", None, 4.63, "image"),
    Arm("image_half", "vitdet_mrcnn_half", "ViTDet on the half image", None, 0.6, "image"),
    Arm("lift", LIFT_CONFIG, "up: + LiFT", "stage1_lift", 2.6, "up"),
    Arm("bilinear", "vitdet_mrcnn_bilinear", "up: + bilinear", None, 2.4, "up"),
    Arm("resize_conv", "vitdet_mrcnn_resize_conv", "up: + resize-conv", "stage1_rc", 2.4, "up"),
    Arm("jbu", "vitdet_mrcnn_jbu", "up: + JBU", "stage1_jbu", 2.4, "up"),
    Arm("attn", "vitdet_mrcnn_attn", "up: + attention upsampler", "stage1_attn", 2.5, "up"),
    Arm("lift_half", LIFT_CONFIG, "up: + LiFT, stage one at 128 px", "stage1_half", 2.6, "up"),
    Arm("lift_long", LIFT_CONFIG, "up: + LiFT, stage one 4x longer", "stage1_long", 2.6, "up"),
    Arm("lift_down", "vitdet_mrcnn_lift_down", "down: + LiFT", "stage1_lift", 0.9, "down"),
    Arm("bilinear_down", "vitdet_mrcnn_bilinear_down", "down: + bilinear", None, 0.8, "down"),
    Arm("lift_s8", "vitdet_mrcnn_lift_s8", "stride 8: + LiFT", "stage1_lift", 1.14, "stride8"),
    Arm("lift_ft", "vitdet_mrcnn_lift_ft", "up: + LiFT, finetuned", "stage1_lift", 2.8, "up"),
    Arm("lift2", "vitdet_mrcnn_lift2", "stride 4: + LiFT twice", "stage1_lift", 1.54, "stride8"),
]
CONTROL = "ft"  # the same-budget baseline every arm is paired with
# `make study`'s arms, sized for hours of 2 CPU cores (LiFT finetuned, LiFT twice, LiFT from
# the stage one at 128 px and from the 4x longer one run on request: --arms)
DEFAULT_ARMS = tuple(
    a.name for a in ARMS if a.name not in ("lift_half", "lift_long", "lift_ft", "lift2")
)
# where a zero-shot evaluation (the baseline's weights, a stage-one file if the arm has one, no
# stage two) writes its metrics, relative to its step's folder
ZERO_SHOT = os.path.join("inference_model_final", "metrics.json")
# `make study`'s iterations per step: the baseline, each stage one, each stage-two arm
STUDY_ITERS = {"baseline": 2400, "stage1": 500, "stage2": 160}
# the baseline's learning rate drops 10x at this fraction of its iterations
BASELINE_DROP = 0.8


def baseline_step(iters: int, evals: int = 10) -> Step:
    """The shared baseline ViTDet: ``iters`` iterations from scratch, learning rate 10x lower from
    :data:`BASELINE_DROP` of them, evaluated and saved ``evals`` times, 2 threads."""
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


def zero_shot_step(arm: Arm, base: str, out: str, seed: int) -> Optional[Step]:
    """The zero-shot evaluation of ``arm`` (``--eval-only``): the baseline's weights and that seed's
    stage-one file, if any: ``seed<k>/zs_<arm>``; ``zeroshot/<arm>`` (every seed's) for an arm
    without; None for the control, whose zero-shot model is the baseline itself."""
    if arm.name == CONTROL:
        return None
    overrides, needs = _from_stage_one(arm, out, seed, {"train.init_checkpoint": base})
    if arm.stage_one:
        name, label = f"seed{seed}/zs_{arm.name}", f"{arm.label}, zero-shot, seed {seed}"
    else:
        name, label = f"zeroshot/{arm.name}", f"{arm.label}, zero-shot"
    return Step(name, ZERO_SHOT, arm.config, 0, overrides, label, needs, 1, 0.0, ("--eval-only",))


def _from_stage_one(arm: Arm, out: str, seed: int, overrides: Dict[str, str]):
    """``overrides`` with the arm's stage-one file of ``seed`` (if any), and the steps it needs."""
    if not arm.stage_one:
        return overrides, ("baseline",)
    lift_file = os.path.join(out, f"seed{seed}", arm.stage_one, "lift_final.pth")
    overrides["model.backbone.net.lift_weights"] = lift_file
    return overrides, ("baseline", f"seed{seed}/{arm.stage_one}")


def study_steps(
    out: str, seeds: Sequence[int], *budgets: int, arms: Optional[Sequence[str]] = None
) -> List[Step]:
    """The study's steps for its ``budgets`` (iterations of the baseline, each stage one and each
    stage-two arm, as :data:`STUDY_ITERS`): ``baseline`` (:func:`baseline_step`), then per seed
    ``seed<k>/<stage one>``, ``seed<k>/<arm>`` (stage two) and the zero-shot evaluations, 1 thread
    each, ``train.seed=k``. ``arms``: a subset of :data:`ARMS` (default: :data:`DEFAULT_ARMS`),
    with the stage ones needed."""
    baseline_iters, stage1_iters, stage2_iters = budgets
    names = list(DEFAULT_ARMS if arms is None else arms)
    unknown = set(names) - {a.name for a in ARMS}
    if unknown:
        raise ValueError(f"unknown arms {sorted(unknown)}; the arms are {[a.name for a in ARMS]}")
    base = os.path.join(out, "baseline", "model_final.pth")
    steps = [baseline_step(baseline_iters)]
    arms_used = [a for a in ARMS if a.name in names]
    # LiFT's stage one always runs: its evaluation also gives the bilinear and nearest cosines
    needed = {a.stage_one for a in arms_used} | ({"stage1_lift"} if arms_used else set())

    def overrides(seed: int, iters: int) -> Dict[str, str]:
        return {
            "train.seed": str(seed),
            "train.init_checkpoint": base,
            "train.eval_period": str(iters),
        }

    for seed in seeds:
        for name, config, label, cost, factor in STAGE_ONES:
            if name in needed:
                iters = stage1_iters * factor
                label = f"stage one: {label}, seed {seed}"
                args = config, iters, overrides(seed, iters), label, ("baseline",), 1, cost
                steps.append(Step(f"seed{seed}/{name}", "lift_final.pth", *args))
    # the same model for every seed is evaluated once: one step per name
    candidates = (zero_shot_step(arm, base, out, seed) for seed in seeds for arm in arms_used)
    zero_shot = {step.name: step for step in candidates if step is not None}
    for seed in seeds:  # the costliest first: less idle time at the end
        for arm in sorted(arms_used, key=lambda a: -a.cost):
            arm_overrides, needs = _from_stage_one(arm, out, seed, overrides(seed, stage2_iters))
            args = arm.config, stage2_iters, arm_overrides, f"{arm.label}, seed {seed}", needs, 1
            steps.append(Step(f"seed{seed}/{arm.name}", "model_final.pth", *args, arm.cost))
    return steps + list(zero_shot.values())


def arm_labels(study: Dict) -> Dict[str, str]:
    """The arms' labels as the study recorded them (``labels``; older studies: today's)."""
    return study.get("labels") or {a.name: a.label for a in ARMS}
