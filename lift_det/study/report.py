"""The multi-seed study's report: the markdown (``mini_study.md``, also shown in the README)
written from the study's JSON, with its in-words sentences (figures: :mod:`.figures`)."""

from typing import Dict, List

from ..utils.tables import md_block, md_table
from .placements import placement_words
from .schedule import CONTROL, arm_labels
from .statistics import METRICS, interval

CURVE = (("bbox/AP", "box AP"), ("segm/AP", "mask AP"))  # the baseline's curve's rows


def _pm(s: Dict[str, float], digits: int = 2) -> str:
    if s["std"] != s["std"]:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _diff(d: Dict[str, float]) -> str:
    return interval(d) + (" *" if d.get("significant") else "")


def format_report(study: Dict) -> str:
    """The markdown report (docs/mini_study.md) from the study's JSON alone."""
    arms = study["arms"]
    labels = arm_labels(study)
    s, setup, base = study["summary"], study["setup"], study["baseline"]
    timed = all("cpu_ms" in c for c in study["costs"].values())
    cpu = " and CPU latency (one thread, measured in this run)" if timed else ""
    n, control, names = len(s["seeds"]), labels[CONTROL], [name for _, name in METRICS]
    resumed = "."
    if study.get("steps_skipped"):
        resumed = (
            f" (resumed: {study['steps_skipped']} of its {len(study['step_seconds'])} steps "
            f"had run before and are not in that time)."
        )
    blocks = [
        f"Mini study, {n} seeds ({', '.join(map(str, s['seeds']))}): made by `{study['command']}` "
        f"on {study['date']} at commit {study['commit']}, {study['machine']}, torch "
        f"{study['torch']}, in {study['wall_time_s'] / 60:.0f} min{resumed}",
        f"Mean ± std over seeds. Every arm starts from the same baseline mini ViTDet "
        f"({base['iterations']} iterations, box AP {base['final']['bbox/AP']:.2f}, mask AP "
        f"{base['final']['segm/AP']:.2f}) and trains {setup['stage2_iters']} iterations with the "
        f"ViT frozen; GFLOPs (fvcore){cpu} at inference on one image at the arm's input size (px).",
    ]
    rows = []
    for arm in arms:
        c, r = study["costs"][arm], s["arms"][arm]
        ms = f"{c['cpu_ms']:.0f}" if "cpu_ms" in c else "-"
        size, gflops = c.get("image_size", setup["image_size"]), f"{c['gflops']:.2f}"
        metrics = [_pm(r[k]) for k, _ in METRICS]
        rows.append([labels[arm], size, f"{c['params_M']:.2f}", gflops, ms, *metrics])
    blocks += [
        md_block(["model", "px", "params (M)", "GFLOPs", "CPU ms", *names], rows),
        f"Paired difference from *{control}* (same seed, same baseline, same budget): mean and "
        f"95% t interval over the {n} seed pairs; * marks an interval that excludes 0.",
    ]
    rows = [
        [labels[arm], *(_diff(s["arms"][arm][k]["vs_control"]) for k, _ in METRICS)]
        for arm in arms
        if arm != CONTROL
    ]
    blocks += [md_block(["model", *(f"Δ {m}" for m in names)], rows), _in_words(study)]
    if "zero_shot" in study:
        blocks += _zero_shot_section(study)
    left = [labels[a] for a in setup.get("arms_left_out", [])]
    if left:
        blocks.append(
            f'Not run by default (`STUDY_ARGS="--arms ..."` runs them): ' f"{'; '.join(left)}."
        )
    cos, p = s["stage1_cosines"], base["plateau"]
    gain = f"gained {p['gain']:+.2f}, " if p["gain"] is not None else f"not met ({p.get('why')}), "
    verdict = "plateaued." if p["plateaued"] else "**not plateaued** by it."
    curve = base["curve"]
    blocks += [
        f"Stage one ({setup['stage1_iters']} iterations per seed), held-out mean cosine "
        f"similarity to the ViT's features of the 2x image:",
        md_block(list(cos), [[_pm(v, 4) for v in cos.values()]]),
        f"The shared baseline: val box AP every {base['eval_period']} iterations. Convergence "
        f"criterion, fixed before the run: {p['criterion']}: {gain}{verdict} "
        + base.get("schedule", "The learning rate drops 10x at 90%."),
        md_block(
            ["iteration", *(c["iteration"] for c in curve)],
            [[name, *(f"{c[k]:.2f}" for c in curve)] for k, name in CURVE],
        ),
        f"Budget: {setup['justification']}",
        f"Figure: box AP vs GFLOPs, mean ± std over seeds: `{study['figure']}`.",
    ]
    if "cosine_vs_ap" in study:
        blocks += _cosine_section(study)
    return "\n\n".join(blocks)


def _zero_shot_section(study: Dict) -> List[str]:
    """Zero-shot (the baseline's weights with the stage-one file, no stage two) against the
    baseline; the share of each placement's reference gap recovered; the placement words."""
    labels = arm_labels(study)
    zs, metrics = study["zero_shot"]["summary"]["arms"], METRICS[:1] + METRICS[3:]
    rows = []
    for arm in study["arms"]:
        d = zs[arm]["bbox/AP"].get("vs_control")
        rows.append([labels[arm], *(_pm(zs[arm][k]) for k, _ in metrics), _diff(d) if d else "-"])
    blocks = [
        "Zero-shot: the same detectors with no stage two (the baseline's weights, the stage-one "
        "file), mean ± std over seeds, and the paired difference from the baseline itself:",
        md_block(["model", *(name for _, name in metrics), "Δ box AP"], rows),
        "Share of the reference gap recovered (box AP, per seed, then mean and 95% t "
        "interval): up and stride-8 arms of the 2x image's gain over the control, down arms "
        "of the gap between the half and the 1x image:",
    ]

    def pct(r):
        if not r["mean"] == r["mean"]:  # NaN: the reference gained nothing in some seed
            return "- (no gain to recover)"
        return f"{100 * r['mean']:.0f}% [{100 * r['low']:.0f}, {100 * r['high']:.0f}]"

    rec_zs, rows = study["zero_shot"]["recovered"], []
    for arm, r in study["recovered"].items():
        z = rec_zs.get(arm)
        rows.append(
            [labels[arm], f"{r['of']} ({r['gap']:+.2f}; zero-shot {z['gap']:+.2f})", pct(r), pct(z)]
        )
    blocks.append(md_block(["model", "of", "finetuned", "zero-shot"], rows))
    words = "\n".join(f"- {w}" for w in placement_words(study))
    return blocks + (["In words, per placement:", words] if words else [])


def _cosine_section(study: Dict) -> List[str]:
    """Does stage one's cosine predict box AP? The table, the words and the figure's path."""
    c = study["cosine_vs_ap"]
    pts = sorted(c["points"], key=lambda p: p["cosine"])
    rows = []
    for p in pts:
        cosine = f"{p['cosine']:.4f} ± {p['cosine_std']:.4f}"
        rows.append([p["label"], cosine, _diff({**p, "mean": p["delta_ap"]})])
    return [
        "Does stage one's cosine predict box AP? Each upsampler's held-out stage-one cosine "
        "(mean ± std over seeds) and its paired Δ box AP from the control (95% interval):",
        md_block(["upsampler", "stage-one cosine", "Δ box AP"], rows),
        _cosine_words(pts, c, study),
        f"Figure: Δ box AP vs stage-one cosine: `{study['cosine_figure']}`.",
    ]


def _cosine_words(pts: List[Dict], c: Dict, study: Dict) -> str:
    if c["spearman"] is None:
        return f"With {len(pts)} upsampler(s) (fewer than 3), no correlation is computed."
    rho = c["spearman"]
    verdict = "ranks them only roughly" if rho >= 0.5 else "does not rank them"
    verdict = f"{'ranks the upsamplers' if rho >= 0.9 else verdict} as box AP does"
    top, bottom = pts[-1], pts[0]
    text = (
        f"In words: over the {len(pts)} upsamplers, stage-one cosine {verdict} (Spearman ρ = "
        f"{rho:+.2f}, p = {c['spearman_p']:.2f}; Pearson r = {c['pearson']:+.2f}; least squares: "
        f"{c['ap_per_0.01_cosine']:+.2f} box AP per 0.01 of cosine). From {bottom['label']} "
        f"(cosine {bottom['cosine']:.4f}, Δ box AP {bottom['delta_ap']:+.2f}) to {top['label']} "
        f"(cosine {top['cosine']:.4f}, Δ box AP {top['delta_ap']:+.2f}). "
    )
    above = [p["label"] for p in pts if p["significant"] and p["delta_ap"] > 0]
    none = "None of them is significantly above the same-budget control."
    text += f"Significantly above the same-budget control: {', '.join(above)}." if above else none
    image = study["summary"]["arms"].get("image2x", {}).get("bbox/AP", {}).get("vs_control")
    if image:
        text += (
            f" The 2x image, whose ViT features are stage one's target (cosine 1 by "
            f"construction), gives {image['mean']:+.2f} box AP."
        )
    return text


def _in_words(study: Dict) -> str:
    labels = arm_labels(study)
    s = study["summary"]
    better, worse, neither = [], [], []
    for arm in (a for a in study["arms"] if a != CONTROL):
        d = s["arms"][arm]["bbox/AP"]["vs_control"]
        text = f"{labels[arm]} ({d['mean']:+.2f} box AP)"
        (
            better if d["significant"] and d["mean"] > 0 else worse if d["significant"] else neither
        ).append(text)
    return (
        f"In words, box AP against *{labels[CONTROL]}* at 95%: significantly better: "
        f"{'; '.join(better) or 'none'}. Significantly worse: {'; '.join(worse) or 'none'}. Not "
        f"distinguishable from it with {len(s['seeds'])} seeds: {'; '.join(neither) or 'none'}."
    )


def format_headline(study: Dict) -> str:
    """The README's result, from the study's JSON: each arm's box AP after the study's finetuning
    and zero-shot, its paired difference from the control and its GFLOPs; then the generated
    words per placement."""
    labels, setup = arm_labels(study), study["setup"]
    fin = study["summary"]["arms"]
    zs = study.get("zero_shot", {}).get("summary", {}).get("arms", {})
    rows = []
    for arm in study["arms"]:
        c, r = study["costs"][arm], fin[arm]["bbox/AP"]
        d = "-" if arm == CONTROL else _diff(r["vs_control"])
        z = _pm(zs[arm]["bbox/AP"]) if arm in zs else "-"
        size = c.get("image_size", setup["image_size"])
        rows.append([labels[arm], size, f"{c['gflops']:.2f}", _pm(r), d, z])
    head = ["model", "px", "GFLOPs", "box AP", "Δ box AP", "zero-shot box AP"]
    lines = [
        f"Box AP on the mini data's val images, mean ± std over {len(study['summary']['seeds'])} "
        f"seeds; Δ: paired difference from *{labels[CONTROL]}*, 95% interval (* excludes 0).",
        "",
        *md_table(head, rows),
    ]
    if "zero_shot" in study:
        lines += ["", *[f"- {w}" for w in placement_words(study)]]
    return "\n".join(lines)
