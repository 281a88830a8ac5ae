"""The GPU check's report (tools/gpu_check.py): ``<device>.json`` and ``<device>.md``, the
markdown written from the JSON alone."""

import json
from typing import List

from ..checkpoint import atomic_write_text
from ..utils.tables import md_table

SETTING = ("model", "part", "batch", "attn_impl", "precision")  # what an inference row measures


def _v(row, key: str, spec: str, scale: float = 1.0) -> str:
    return "OOM" if "oom" in row else format(row[key] * scale, spec)


def _ms(row) -> str:
    return _v(row, "median_s", ".1f", 1e3)


def _mib(row) -> str:
    return _v(row, "peak_memory_MiB", ".0f")


def _yes(flag: bool) -> str:
    return "yes" if flag else "**NO**"


def _table(header, cells) -> List[str]:
    """A table between blank lines, its numbers (every column but the first) right-aligned."""
    return ["", *md_table(header, cells, "l" + "r" * (len(header) - 1)), ""]


def _losses(run) -> str:
    return (
        f"{run['iterations']} iterations, total loss {run['losses'][0]:.4f} -> "
        f"{run['losses'][-1]:.4f}: finite {_yes(run['finite'])}, falling {_yes(run['falling'])}"
    )


def inference_tables(title: str, section) -> List[str]:
    """A section's heading, its inference rows and their ratios."""
    rows, ratios = section["rows"], section["ratios"]
    header = ["Model", "Part", "Batch", "Attention", "Precision", "Median (ms)"]
    header += ["A/B spread (%)", "Peak memory (MiB)"]
    cells = [[r[k] for k in SETTING] + [_ms(r), _v(r, "spread", ".1f", 100), _mib(r)] for r in rows]
    header2 = ["Ratio", "Model / part / batch / attention / precision", "Value"]
    cells2 = [
        (name, " / ".join(str(r[k]) for k in SETTING if k in r), f"{r['ratio']:.3f}")
        for name, group in ratios.items()
        for r in group
    ]
    return [f"#### {title}", *_table(header, cells), *_table(header2, cells2)]


def format_markdown(result) -> str:
    toy = " (--toy: tiny sizes, not a measurement of the real models)" if result["toy"] else ""
    lines = [
        f"### GPU check: {result['device']}{toy}",
        "",
        f"torch {result['torch']}, CUDA {result['cuda']}, {result['amp_dtype']} AMP, "
        f"{result['image_size']}x{result['image_size']} images, random weights. "
        f"{result['wall_s']:.0f} s of a {result['budget_s']:.0f} s budget.",
        "",
        f"*Made {result['date']} at commit `{result['commit']}` on {result['machine']}: "
        f"`{result['command']}`.*",
        "",
    ]
    failed = [f"- {f['section']}: `{f['error']}`" for f in result.get("failed", [])]
    lines += ["#### Failed", "", *failed, ""] if failed else []
    if "inference" in result:
        title = "Inference: Mask R-CNN with and without LiFT (down and stride-8 placements, same "
        lines += inference_tables(title + "detector size)", result["inference"])
    if result.get("up", {}).get("rows"):
        size = result["up"]["image_size"]
        title = f"The up placement: ViTDet on the {size} px image and + LiFT with its ViT at "
        lines += inference_tables(title + f"{size // 2} px, batch 1, AMP", result["up"])
    if "stage_one" in result:
        lines += _stage_one_lines(result["stage_one"])
    if "stage_two" in result:
        lines += _stage_two_lines(result["stage_two"])
    if "correctness" in result:
        lines += _correctness_lines(result["correctness"])
    if result.get("vit_sizes", {}).get("rows"):
        lines += inference_tables("ViT-L / ViT-H: inference, batch 1", result["vit_sizes"])
    skipped = [f"- {s['what']}: {s['why']}" for s in result["skipped"]]
    lines += ["#### Skipped", "", *skipped, ""] if skipped else []
    return "\n".join(lines).rstrip() + "\n"


def _stage_one_lines(s1) -> List[str]:
    lines = [f"#### Stage one: `{s1['config']}`, AMP step (LiFT trained, ViT frozen)"]
    header = ["Batch per GPU", "Step (ms)", "Images/s", "Peak memory (MiB)"]
    row = (s1["batch_per_gpu"], _ms(s1), _v(s1, "images_per_s", ".2f"), _mib(s1))
    lines += _table(header, [row])
    if "oom" not in s1:
        lines += [
            f"Batch per GPU from {s1['recipe']}. One COCO epoch on one such GPU: "
            f"{s1['epoch_images']} images / {s1['images_per_s']:.2f} images/s = "
            f"{s1['epoch_s']:.0f} s = {s1['epoch_s'] / 3600:.2f} h; the config's "
            f"{s1['schedule_epochs']:.1f} epochs: {s1['schedule_epochs']:.1f} x "
            f"{s1['epoch_s']:.0f} s = {s1['schedule_s']:.0f} s = {s1['schedule_s'] / 3600:.1f} h "
            f"({s1['schedule_s'] / 86400:.2f} days); on N GPUs about 1/N of it.",
            "",
        ]
    return lines


def _stage_two_lines(s2) -> List[str]:
    header = ["Model", "Config", "Trained parameters", "Batch per GPU", "Step (ms)"]
    cells = [
        (r["model"], f"`{r['config']}`", f"{r['trained_params']:,}", r["batch"], _ms(r), _mib(r))
        for r in s2["rows"]
    ]
    ratios = [
        (r["batch"], r["over"], f"{r['time']:.3f}", f"{r['memory']:.3f}") for r in s2["ratios"]
    ]
    return [
        "#### Stage two: one AMP training step, each config as it trains",
        *_table(header + ["Peak memory (MiB)"], cells),
        *_table(["Batch per GPU", "+LiFT over", "step time", "peak memory"], ratios),
        "The +LiFT config (ViT and LiFT frozen) and its control (ViT frozen, bilinear) train "
        "the same pyramid and heads; the plain config trains the whole ViTDet. Their ratio to "
        "plain is mostly that choice; LiFT's own training cost is its ratio to the control.",
        "",
    ]


def _correctness_lines(c) -> List[str]:
    lines = ["#### Correctness (generated mini COCO data)", ""]
    lines += [f"- stage one, {p}: {_losses(c['stage_one'][p])}" for p in ("fp32", "amp")]
    lf = c["stage_one"]["lift_file"]
    differ = f" (differ: {', '.join(lf['differences'])})" if lf["differences"] else ""
    lines += [
        f"- LiFT files of fp32 and AMP stage one: same tensors ({lf['tensors']}), shapes, "
        f"dtypes and metadata: {_yes(lf['same_format'])}{differ}",
        f"- stage two, `{c['stage_two']['config']}` with the {c['stage_two']['lift_from']}: "
        f"{_losses(c['stage_two'])}",
    ]
    for e in c["export"]:
        diff = ", ".join(f"{k} {v:.2g}" for k, v in e["max_abs_diff"].items())
        lines.append(
            f"- TorchScript export ({e['attn_impl']} attention, {e['detections']} detections) "
            f"equals eager: {_yes(e['equal'])} (max abs difference: {diff})"
        )
    return lines + [""]


def write_report(result, base: str) -> str:
    """``<base>.json`` and ``<base>.md``, each written atomically; returns the markdown."""
    atomic_write_text(base + ".json", json.dumps(result, indent=2) + "\n")
    text = format_markdown(result)
    atomic_write_text(base + ".md", text)
    return text
