#!/usr/bin/env python3
"""
Cost of LiFT in ViTDet on this device, in one run: parameters and FLOPs (fvcore, as upstream's
tools/analyze_model.py) of every LiFT preset next to its ViT, of the controls (bilinear, and the
learned "jbu" and "attention" upsamplers) and of the Mask / Cascade Mask R-CNN detectors with and
without LiFT; inference time with / without LiFT and one stage-one step / one frozen-ViT forward
(torch.utils.benchmark, interleaved); peak memory.

    tools/benchmark.py [--device cpu|cuda] [--image-size 1024] [--detector-size 1024]
        [--time-size 1024] [--repeats 5] [--presets LiFT-B ...] [--vit-2x]
        [--proposals 1000] [--detections 100]
        [--quick] [--json PATH] [--markdown PATH]

FLOPs follow fvcore's convention (one fused multiply-add = one flop). Detectors run with random
weights and score threshold 0, so the mask head always sees --detections boxes (ViTDet's 1000
proposals and 100 detections by default). Small sizes (--detector-size 256 --time-size 256) and
fewer proposals finish in minutes on a CPU.
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import argparse
import copy
import functools
import json
import logging
import os
import platform
import time
import torch
from fvcore.nn import FlopCountAnalysis, flop_count_table, parameter_count
from torch.utils.benchmark import Measurement, Timer

from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import ViT
from detectron2.utils.analysis import FlopCountAnalysis as ModelFlopCountAnalysis
from detectron2.utils.logger import setup_logger

from lift_det.benchmark.costs import count_flops, detector_config, peak_memory_mib, random_image
from lift_det.checkpoint import atomic_write_text
from lift_det.config import VIT_SIZES, vitdet_vit_args
from lift_det.model_zoo import CONFIG_DIR
from lift_det.modeling import LIFT_PRESETS, build_upsampler
from lift_det.utils.cli import UserError, run_main
from lift_det.utils.provenance import provenance

logger = logging.getLogger("lift_det.benchmark")

# at one detector size: ViTDet, + LiFT in the down placement (the ViT at half that size) and in the
# stride-8 one (the up placement is the down one on a 2x image: tools/gpu_check.py times it)
DETECTORS = {
    "mrcnn": ("vitdet_mrcnn.py", "Mask R-CNN, ViTDet-B"),
    "mrcnn_lift": ("vitdet_mrcnn_lift_down.py", "Mask R-CNN, ViTDet-B + LiFT-B, down"),
    "mrcnn_lift_s8": ("vitdet_mrcnn_lift_s8.py", "Mask R-CNN, ViTDet-B + LiFT-B, stride 8"),
    "cascade": ("vitdet_cascade.py", "Cascade Mask R-CNN, ViTDet-B"),
    "cascade_lift": ("vitdet_cascade_lift_down.py", "Cascade Mask R-CNN, ViTDet-B + LiFT-B, down"),
}

# the controls counted beside the presets, at ViT-B's width: name -> (row, note)
CONTROLS = {
    "bilinear": ("bilinear 2x (control)", "stride 16 -> 8, no image"),
    "jbu": ("JBU 2x (control, FeatUp)", "stride 16 -> 8, 5x5 cells, image-guided"),
    "attention": ("attention 2x (control, JAFAR)", "stride 16 -> 8, 3x3 cells, image queries"),
}


def build_vit(size: str, image_size: int) -> ViT:
    """detectron2's ViT of a ViTDet size ("B", "L", "H"; "S" for LiFT-S), random weights."""
    vit = ViT(img_size=image_size, window_size=14, use_rel_pos=True, **vitdet_vit_args(size))
    return vit.eval()


def row(name, params, flops, size, note=""):
    return dict(name=name, params_M=params / 1e6, flops_G=flops / 1e9, image_size=size, note=note)


def component_rows(presets, size, device, vit_2x, tables):
    """Every LiFT preset next to its ViT at ``size``, and the controls (:data:`CONTROLS`)."""
    rows, ratios = [], {}
    vits = {}
    for preset in presets:
        vit_size = preset.split("-")[-1]
        if vit_size not in VIT_SIZES:
            logger.warning(f"{preset}: no ViT size {vit_size!r} in VIT_SIZES, skipped.")
            continue
        if vit_size not in vits:
            vit = build_vit(vit_size, size).to(device)
            x = torch.zeros(1, 3, size, size, device=device)
            flops = count_flops(FlopCountAnalysis(vit, (x,)))
            vits[vit_size] = (vit, flops)
            rows.append(row(f"ViT-{vit_size}/16", parameter_count(vit)[""], flops, size))
            if vit_2x:
                big = torch.zeros(1, 3, 2 * size, 2 * size, device=device)
                note = "the stride-8 grid the costly way (stride 16 on a 2x image)"
                big_flops = count_flops(FlopCountAnalysis(vit, (big,)))
                rows.append(
                    row(f"ViT-{vit_size}/16", parameter_count(vit)[""], big_flops, 2 * size, note)
                )
        vit, vit_flops = vits[vit_size]
        channels = vit.patch_embed.proj.out_channels
        lift = build_upsampler(preset, channels).to(device).eval()
        x = torch.zeros(1, 3, size, size, device=device)
        features = torch.zeros(1, channels, size // 16, size // 16, device=device)
        analysis = FlopCountAnalysis(lift, (x, features))
        flops = count_flops(analysis)
        tables[preset] = flop_count_table(analysis, max_depth=2)
        rows.append(row(preset, parameter_count(lift)[""], flops, size, "stride 16 -> 8"))
        ratios[f"{preset}/ViT-{vit_size}"] = flops / vit_flops
    if "B" in vits:  # the controls at ViT-B's width
        x = torch.zeros(1, 3, size, size, device=device)
        features = torch.zeros(1, 768, size // 16, size // 16, device=device)
        for name, (label, note) in CONTROLS.items():
            control = build_upsampler(name, 768).to(device).eval()
            flops = count_flops(FlopCountAnalysis(control, (x, features)))
            rows.append(row(label, parameter_count(control)[""], flops, size, note))
    return rows, ratios


@functools.lru_cache(maxsize=None)  # FLOPs and timings at one size share the models
def load_detector(key: str, size: int, config_dir: str, proposals: int, detections: int):
    """A detector with random weights at ``size``, ``detections`` per image."""
    model = detector_config(
        os.path.join(config_dir, DETECTORS[key][0]), size, proposals, detections
    )
    torch.manual_seed(0)
    return instantiate(model).eval()


def detector_rows(size, device, config_dir, heads):
    rows, flops = [], {}
    inputs = [{"image": random_image(size, 0, device)}]
    for key, (_, label) in DETECTORS.items():
        start = time.perf_counter()
        model = load_detector(key, size, config_dir, *heads).to(device)
        flops[key] = count_flops(ModelFlopCountAnalysis(model, inputs))
        note = f"random weights, {heads[0]} proposals, {heads[1]} detections"
        rows.append(row(label, parameter_count(model)[""], flops[key], size, note))
        logger.info(
            f"  {label}: {flops[key] / 1e9:.1f} GFLOPs ({time.perf_counter() - start:.0f}s)"
        )
    ratios = {k: flops[f"{k}_lift"] / flops[k] for k in ("mrcnn", "cascade")}
    return rows, ratios


def time_interleaved(fns, repeats: int):
    """
    One torch.utils.benchmark Timer per function; blocks of one call each, interleaved (ABBA)
    so that drift of the machine falls on all alike; merged into one Measurement each.
    """
    timers = {
        k: Timer("fn()", globals={"fn": fn}, label="lift_det", sub_label=k) for k, fn in fns.items()
    }
    blocks = {k: [] for k in fns}
    for r in range(repeats):
        for k in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            blocks[k].append(timers[k].timeit(1))
    return {k: Measurement.merge(v)[0] for k, v in blocks.items()}


def inference_timings(size, device, repeats, config_dir, heads):
    keys = ("mrcnn", "mrcnn_lift")
    models = {k: load_detector(k, size, config_dir, *heads).to(device) for k in keys}
    inputs = [{"image": random_image(size, 1, device), "height": size, "width": size}]
    amp = torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda")

    def infer(model):
        def fn():
            with torch.no_grad(), amp:
                return model(inputs)

        return fn

    fns = {k: infer(m) for k, m in models.items()}
    memory = {k: peak_memory_mib(fn, device) for k, fn in fns.items()}  # also the warmup
    measured = time_interleaved(fns, repeats)
    timings = [
        dict(
            name=DETECTORS[k][1],
            image_size=size,
            median_s=m.median,
            times_s=m.times,
            peak_memory_MiB=memory[k],
        )
        for k, m in measured.items()
    ]
    return timings, measured["mrcnn_lift"].median / measured["mrcnn"].median


def measure_stage1_ratio(distiller, batch, repeats: int = 5, use_amp=None) -> float:
    """
    One stage-one training step (F at x, x/2, x/4, LiFT at two scales, backward, AdamW step)
    over one frozen-ViT forward of the same batch, interleaved; LiFT's weights and the model's
    mode are restored afterwards.
    """
    device = distiller.device
    use_amp = device.type == "cuda" if use_amp is None else use_amp
    saved = copy.deepcopy(distiller.lift.state_dict())
    was_training = distiller.training
    optimizer = torch.optim.AdamW([p for p in distiller.parameters() if p.requires_grad], lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and device.type == "cuda")

    def step():
        distiller.train()
        with torch.autocast(device.type, enabled=use_amp):
            loss = sum(distiller(batch).values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def vit_forward():
        distiller.eval()
        distiller.backbone(distiller.preprocess_image(batch).tensor)

    try:
        step(), vit_forward()  # warmup
        measured = time_interleaved({"step": step, "vit": vit_forward}, repeats)
    finally:
        distiller.lift.load_state_dict(saved)
        distiller.train(was_training)
    return measured["step"].median / measured["vit"].median


def stage1_ratio(size, device, repeats, config_dir):
    cfg = LazyConfig.load(os.path.join(config_dir, "lift_stage1_coco.py"))
    cfg.model.square_pad = size
    torch.manual_seed(0)
    distiller = instantiate(cfg.model).to(device)
    # two images: LiFT's BatchNorm needs more than one value per channel at x/4
    batch = [{"image": random_image(size, i, device).to(torch.uint8)} for i in (2, 3)]
    return measure_stage1_ratio(distiller, batch, repeats)


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _px(size: int) -> str:
    return f"{size}x{size}"


def md_table(header, cells):
    """Markdown table lines: a header row (numbers right-aligned after the first column)."""
    lines = ["", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in cells]


def format_markdown(result) -> str:
    lines = [f"### Cost of LiFT in ViTDet ({result['device']}; torch {result['torch']})"]
    header = ["Component", "Params (M)", "GFLOPs", "Input", "Note"]
    cells = [
        (r["name"], f"{r['params_M']:.2f}", f"{r['flops_G']:.1f}", _px(r["image_size"]), r["note"])
        for r in result["rows"]
    ]
    lines += md_table(header, cells)
    if result["timings"]:
        header = ["Inference", "Input", "Median (s)", "Peak memory (MiB)"]
        cells = [
            (t["name"], _px(t["image_size"]), f"{t['median_s']:.3f}", f"{t['peak_memory_MiB']:.0f}")
            for t in result["timings"]
        ]
        lines += md_table(header, cells)
    sizes = {"flops mrcnn": "detector_size", "flops cascade": "detector_size", "time": "time_size"}
    cells = [
        (
            k,
            _px(result[next((n for p, n in sizes.items() if k.startswith(p)), "image_size")]),
            f"{v:.3f}",
        )
        for k, v in result["ratios"].items()
    ]
    lines += md_table(["Ratio", "Input", "Value"], cells)
    for preset, table in result["flop_tables"].items():
        lines += ["", f"FLOPs of {preset} by module (fvcore):", "", "```", table, "```"]
    return "\n".join(lines) + "\n"


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-size", type=int, default=1024, help="FLOPs of ViTs and LiFTs")
    parser.add_argument("--detector-size", type=int, default=1024, help="detector FLOPs; 0: skip")
    parser.add_argument("--time-size", type=int, default=1024, help="timings; 0: skip")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each")
    parser.add_argument(
        "--presets", nargs="+", default=list(LIFT_PRESETS), help="LiFT presets (default: all)"
    )
    parser.add_argument("--proposals", type=int, default=1000, help="RPN proposals (test)")
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--vit-2x", action="store_true", help="also count each ViT at 2x input")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few minutes on a CPU: --detector-size 512 --time-size 384 --repeats 2",
    )
    parser.add_argument("--config-dir", default=CONFIG_DIR, help="where vitdet_mrcnn*.py live")
    parser.add_argument("--json", default="output/benchmark/benchmark.json")
    parser.add_argument("--markdown", default="output/benchmark/benchmark.md")
    return parser


def main(args):
    setup_logger(name="lift_det", abbrev_name="lift_det")
    if args.quick:
        args.detector_size, args.time_size, args.repeats = 512, 384, 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but CUDA is not available: use --device cpu.")
    unknown = sorted(set(args.presets) - set(LIFT_PRESETS))
    if unknown:
        raise UserError(f"Unknown LiFT presets {unknown}; use some of {sorted(LIFT_PRESETS)}.")
    heads = (args.proposals, args.detections)
    result = dict(device=device_name(device), timings=[], flop_tables={}, **provenance())
    for k in ("image_size", "detector_size", "time_size", "repeats", "proposals", "detections"):
        result[k] = getattr(args, k)
    logger.info(f"FLOPs of {', '.join(args.presets)} and their ViTs at {args.image_size}...")
    rows, ratios = component_rows(
        args.presets, args.image_size, device, args.vit_2x, result["flop_tables"]
    )
    result["ratios"] = {f"flops {k}": v for k, v in ratios.items()}
    if args.detector_size:
        s = args.detector_size
        logger.info(f"FLOPs of the detectors at {s}x{s}...")
        more, ratios = detector_rows(s, device, args.config_dir, heads)
        rows += more
        for k, v in ratios.items():
            result["ratios"][f"flops {k}_lift/{k}"] = v
    if args.time_size:
        s = args.time_size
        logger.info(f"Timing inference and a stage-one step at {s}x{s}...")
        timings = inference_timings(s, device, args.repeats, args.config_dir, heads)
        result["timings"], ratio = timings
        result["ratios"]["time mrcnn_lift/mrcnn"] = ratio
        ratio = stage1_ratio(s, device, args.repeats, args.config_dir)
        result["ratios"]["time stage-one step/frozen ViT-B forward"] = ratio
    result["rows"] = rows
    text = format_markdown(result)
    for path, content in ((args.json, json.dumps(result, indent=2) + "\n"), (args.markdown, text)):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write_text(path, content)
    print(text)
    logger.info(f"Wrote {args.json} and {args.markdown}.")
    return result


if __name__ == "__main__":
    run_main(main, get_parser())
