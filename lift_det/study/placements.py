"""The study's placement answer (study v3): zero-shot results, the share of a reference gap each
placement's arm recovers, and whether LiFT pays, in generated words."""

import math
from typing import Dict, List, Optional, Sequence

from .schedule import ARMS, CONTROL, arm_labels
from .statistics import COSINES, interval, paired_interval

# the gap each group's arms are measured against: (low end, high end) of box AP
_GAIN_OF_2X = ("ft", "image2x", "the 2x image's gain over the same-budget control")
_HALF_TO_1X = ("image_half", "ft", "the gap between the half image and the 1x image")
REFERENCES = {"up": _GAIN_OF_2X, "stride8": _GAIN_OF_2X, "down": _HALF_TO_1X}
# the LiFT arm of each placement, with its plain upsampling control
PLACEMENT_ARMS = {
    "up": ("lift", "bilinear"),
    "down": ("lift_down", "bilinear_down"),
    "stride8": ("lift_s8", None),
}
# up arms whose LiFT comes from another stage-one recipe, paired with "lift" (the study's recipe)
RECIPE_ARMS = ("lift_half", "lift_long")


def zero_shot_per_seed(results: Dict[str, Dict], seeds: Sequence[int], arms: Sequence[str]):
    """``per_seed[seed][arm]``: each arm's zero-shot metrics (the baseline's for the control;
    ``seed<k>/zs_<arm>`` or ``zeroshot/<arm>``, see ``study_schedule.zero_shot_step``)."""
    out = {}
    for seed in seeds:
        row = out[seed] = {}
        for arm in arms:
            names = ["baseline"] if arm == CONTROL else []
            names += [f"seed{seed}/zs_{arm}", f"zeroshot/{arm}"]
            found = next((name for name in names if name in results), None)
            if found:
                row[arm] = results[found]
    return out


def recovered_shares(per_seed: Dict, arms: Sequence[str], key: str = "bbox/AP") -> Dict:
    """Per arm of a placement group, the share of its reference gap (:data:`REFERENCES`) it
    recovers, ``(arm - low) / (high - low)`` per seed, with its mean and 95% t interval over seeds,
    and the gap's mean. A seed whose gap is not positive has nothing to recover: its share is NaN
    (so is the mean). Arms whose references were not run are left out."""
    groups = {a.name: a.group for a in ARMS}
    out = {}
    for arm in arms:
        ref = REFERENCES.get(groups[arm])
        if ref is None or not all(r in arms for r in ref[:2]):
            continue
        low, high, what = ref
        seeds = sorted(per_seed)
        gaps = [per_seed[s][high][key] - per_seed[s][low][key] for s in seeds]
        shares = [
            (per_seed[s][arm][key] - per_seed[s][low][key]) / g if g > 0 else math.nan
            for s, g in zip(seeds, gaps)
        ]
        out[arm] = {
            **paired_interval(shares),
            "values": shares,
            "of": what,
            "gap": sum(gaps) / len(gaps),
        }
    return out


def placement_words(study: Dict) -> List[str]:
    """Per placement, what LiFT buys (finetuned and zero-shot), against what, at what cost;
    the best placement and whether LiFT pays, all generated from the numbers."""
    arms, costs = study["arms"], study["costs"]
    fin, zs = study["summary"]["arms"], study["zero_shot"]["summary"]["arms"]
    shares, zs_shares = study["recovered"], study["zero_shot"]["recovered"]
    lines, verdicts = [], {}
    for group, (lift, _) in PLACEMENT_ARMS.items():
        if lift not in arms:
            continue
        d, dz = fin[lift]["bbox/AP"].get("vs_control"), zs[lift]["bbox/AP"].get("vs_control")
        if d is None:
            continue
        text = (
            f"**{group}**: + LiFT {interval(d)} box AP after finetuning, {interval(dz)} "
            f"zero-shot, against the same-budget control, at {costs[lift]['gflops']:.2f} "
            f"GFLOPs (control {costs[CONTROL]['gflops']:.2f})."
        )
        if lift in shares:
            s, z = shares[lift], zs_shares.get(lift)
            text += (
                f" It recovers {100 * s['mean']:.0f}% [{100 * s['low']:.0f}, "
                f"{100 * s['high']:.0f}] of {s['of']} ({s['gap']:+.2f} box AP) after finetuning"
            )
            if z and z["mean"] == z["mean"]:
                text += f", {100 * z['mean']:.0f}% zero-shot (of {z['gap']:+.2f})"
            elif z:
                text += f"; zero-shot there is no gain to recover ({z['gap']:+.2f})"
            text += "."
        v = study["lift_vs_control"].get(group)
        if v:
            text += f" Against + bilinear in the same placement: {interval(v)} box AP."
        reference = REFERENCES[group][1] if group != "down" else CONTROL
        if reference not in costs:  # no reference to weigh the cost against
            lines.append(text + f" (No verdict: {reference} was not run.)")
            continue
        pays, why = _verdict(group, costs, lift, d, v)
        verdicts[group] = (pays, fin[lift]["bbox/AP"]["mean"])
        lines.append(text + f" LiFT {'pays' if pays else 'does not pay'} here: {why}.")
    if verdicts:
        best = max(verdicts, key=lambda g: verdicts[g][1])
        paying = [g for g, (p, _) in verdicts.items() if p]
        lines.append(
            f"Highest box AP of a LiFT arm after finetuning: the {best} placement "
            f"({verdicts[best][1]:.2f}). LiFT from the study's stage one pays in: "
            f"{', '.join(paying) or 'no placement'}."
        )
    cosines = {step: label for step, key, label in COSINES if key.endswith("cos_lift")}
    stage_ones = {a.name: a.stage_one for a in ARMS}
    cos_of = study["summary"]["stage1_cosines"]
    for arm, d in study.get("recipes", {}).items():
        cos = [cos_of.get(cosines[stage_ones[a]]) for a in (arm, "lift")]
        held = "."
        if all(cos):
            held = f"; held-out stage-one cosine {cos[0]['mean']:.4f} against {cos[1]['mean']:.4f}."
        lines.append(
            f"Stage-one recipe: {arm_labels(study)[arm]} minus up: + LiFT from the study's stage "
            f"one (paired): {interval(d)} box AP after finetuning"
            f"{held}{_recipe_verdict(study, arm)}"
        )
    return lines


def _verdict(group: str, costs: Dict, arm: str, d: Dict, v: Optional[Dict] = None):
    """Whether LiFT ``arm`` of a placement ``group`` pays, and why. ``d``: its paired difference
    from the same-budget control; ``v``: from + bilinear in the placement, where that ran. Down:
    fewer GFLOPs than the control and not significantly below it; up and stride 8: significantly
    above the control at fewer GFLOPs than the 2x image; either: and significantly above ``v``."""
    cheaper = costs[arm]["gflops"] < costs[CONTROL if group == "down" else "image2x"]["gflops"]
    if group == "down":
        pays = cheaper and not (d["significant"] and d["mean"] < 0)
        why = "significantly below the 1x control" if cheaper else "not cheaper"
        if pays:
            why = "not significantly below the 1x control at fewer GFLOPs"
    else:
        pays = d["significant"] and d["mean"] > 0 and cheaper
        why = "significantly above the control at fewer GFLOPs than the 2x image"
        if not pays:
            why = "not significantly above the same-budget control"
    if pays and v is not None and not (v["significant"] and v["mean"] > 0):
        return False, f"{why}, but not significantly above + bilinear there"
    return pays, why


def _recipe_verdict(study: Dict, arm: str) -> str:
    """Whether LiFT from a recipe arm's stage one pays in the up placement (:func:`_verdict`)."""
    costs, d = study["costs"], study["summary"]["arms"][arm]["bbox/AP"]["vs_control"]
    if "image2x" not in costs:
        return ""
    pays = _verdict("up", costs, arm, d)[0]
    return (
        f" Against the same-budget control it gives {interval(d)} box AP at "
        f"{costs[arm]['gflops']:.2f} GFLOPs (the 2x image: {costs['image2x']['gflops']:.2f}): LiFT "
        f"from this stage one {'pays' if pays else 'does not pay'} in the up placement."
    )
