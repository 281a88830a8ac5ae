"""The study's figures: box AP against GFLOPs (the frontier) and against stage-one cosine, one
colour per arm in every figure."""

from typing import Dict, List

from .schedule import ARMS, arm_labels


def arm_colour(arm: str):
    """The arm's colour, the same in every figure (matplotlib's tab20, by its place in ARMS)."""
    import matplotlib

    i = [a.name for a in ARMS].index(arm) % 20  # tab20's dark shades first, then the light
    return matplotlib.colormaps["tab20"](2 * i if i < 10 else 2 * (i - 10) + 1)


def plot_frontier(study: Dict, path: str) -> List[Dict[str, float]]:
    """Box AP against GFLOPs per arm: finetuned (filled, mean ± std over seeds) and zero-shot
    (hollow), joined by a line; one colour per arm (:func:`arm_colour`); the labels are in the
    legend, so none overlap. Returns what was drawn."""
    labels = arm_labels(study)
    fig, ax = _axes((9, 5.5))
    drawn = []
    for arm in study["arms"]:
        x, colour = study["costs"][arm]["gflops"], arm_colour(arm)
        f = study["summary"]["arms"][arm]["bbox/AP"]
        z = study["zero_shot"]["summary"]["arms"][arm]["bbox/AP"]
        ax.plot([x, x], [z["mean"], f["mean"]], color=colour, lw=1, alpha=0.5)
        style = dict(fmt="o", capsize=3, color=colour)
        ax.errorbar(x, f["mean"], yerr=_std(f["std"]), label=labels[arm], **style)
        ax.errorbar(x, z["mean"], yerr=_std(z["std"]), mfc="white", **style)
        drawn.append({"arm": arm, "x": x, "y": f["mean"], "zero_shot": z["mean"]})
    ax.set_xlabel("GFLOPs per image (inference, fvcore)")
    ax.set_ylabel("val box AP (filled: finetuned, hollow: zero-shot; mean ± std over seeds)")
    ax.set_title(f"Mini study, {len(study['summary']['seeds'])} seeds: AP against compute")
    _save(fig, ax, path)
    return drawn


def _std(std: float) -> float:
    return std if std == std else 0.0  # NaN (one seed): no error bar


def _interval(mean: float, d: Dict[str, float]):
    """The error bar of a paired difference's 95% interval; NaN (one seed): none."""
    return [[mean - d["low"]], [d["high"] - mean]] if d["low"] == d["low"] else None


def _axes(figsize):
    """A figure (no pyplot: nothing to show or close) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _save(fig, ax, path: str) -> None:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_cosine_vs_ap(study: Dict, path: str) -> List[Dict[str, float]]:
    """Paired Δ box AP (mean, 95% interval) vs held-out stage-one cosine (mean ± std), one point
    per upsampler, the 2x image at cosine 1 (stage one's target), the control at 0. Returns what
    was drawn (label, x, y) per point."""
    fig, ax = _axes((7, 5))
    drawn = []
    for p in study["cosine_vs_ap"]["points"]:
        d, xerr = p["delta_ap"], _std(p["cosine_std"])
        style = dict(fmt="o", capsize=4, label=p["label"], color=arm_colour(p["arm"]))
        ax.errorbar(p["cosine"], d, yerr=_interval(d, p), xerr=xerr, **style)
        drawn.append({"label": p["label"], "x": p["cosine"], "y": p["delta_ap"]})
    image = study["summary"]["arms"].get("image2x", {}).get("bbox/AP", {}).get("vs_control")
    if image:
        label = "2x image (cosine 1: stage one's target)"
        style = dict(fmt="*", markersize=12, capsize=4, color="black", label=label)
        ax.errorbar(1.0, image["mean"], yerr=_interval(image["mean"], image), **style)
        drawn.append({"label": "2x image", "x": 1.0, "y": image["mean"]})
    ax.axhline(0.0, color="gray", lw=1, ls="--", label="same-budget control")
    ax.set_xlabel("held-out stage-one cosine to the ViT's features of the 2x image")
    ax.set_ylabel("Δ box AP vs the same-budget control (95% interval)")
    ax.set_title(f"Does cosine predict AP? {len(study['summary']['seeds'])} seeds")
    _save(fig, ax, path)
    return drawn
