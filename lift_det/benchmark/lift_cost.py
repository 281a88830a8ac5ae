"""The cost of LiFT in ViTDet (tools/benchmark.py): parameters and FLOPs (fvcore) of the LiFT
presets, their ViTs, the controls and the detectors; inference and stage-one step times."""

import copy
import functools
import logging
import os
import platform
import time
from typing import Tuple
import torch
from fvcore.nn import FlopCountAnalysis, flop_count_table, parameter_count

from detectron2.config import LazyConfig
from detectron2.modeling import ViT
from detectron2.utils.analysis import FlopCountAnalysis as ModelFlopCountAnalysis

from ..config import vitdet_vit_args
from ..modeling import build_upsampler
from ..utils.tables import md_table
from . import costs

logger = logging.getLogger(__name__)

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


def build_vit(size: str, image_size: int, **blocks) -> ViT:
    """detectron2's ViT of a ViTDet size ("B", "L", "H"; "S" for LiFT-S), random weights;
    ``blocks``: other ``depth`` and ``window_block_indexes``."""
    args = {**vitdet_vit_args(size), **blocks}
    return ViT(img_size=image_size, window_size=14, use_rel_pos=True, **args).eval()


def count_vit(size: str, image_size: int, x: torch.Tensor) -> Tuple[int, float]:
    """Parameters and FLOPs of ``build_vit(size, image_size)`` on ``x``, counted on ViTs of at most
    one block (a ViT-H is never built whole): its windowed blocks all cost the same, and so do its
    global ones."""

    def count(**blocks):
        vit = build_vit(size, image_size, **blocks).to(x.device)
        return parameter_count(vit)[""], costs.count_flops(FlopCountAnalysis(vit, (x,)))

    embed, args = count(depth=0, window_block_indexes=[]), vitdet_vit_args(size)
    windowed, depth = len(args["window_block_indexes"]), args["depth"]
    window_block = count(depth=1, window_block_indexes=[0])
    global_block = count(depth=1, window_block_indexes=[])
    return tuple(
        e + windowed * (w - e) + (depth - windowed) * (g - e)
        for e, w, g in zip(embed, window_block, global_block)
    )


def row(name, params, flops, size, note=""):
    return dict(name=name, params_M=params / 1e6, flops_G=flops / 1e9, image_size=size, note=note)


def component_rows(presets, size, device, vit_2x, tables):
    """Every LiFT preset next to its ViT at ``size``, and the controls (:data:`CONTROLS`)."""
    rows, ratios, vits = [], {}, {}
    x = torch.zeros(1, 3, size, size, device=device)
    for preset in presets:
        vit_size = preset.split("-")[-1]
        if vit_size not in vits:
            vits[vit_size] = count_vit(vit_size, size, x)
            rows.append(row(f"ViT-{vit_size}/16", *vits[vit_size], size))
            if vit_2x:
                note = "the stride-8 grid the costly way (stride 16 on a 2x image)"
                big = torch.zeros(1, 3, 2 * size, 2 * size, device=device)
                rows.append(
                    row(f"ViT-{vit_size}/16", *count_vit(vit_size, size, big), 2 * size, note)
                )
        vit_flops, channels = vits[vit_size][1], vitdet_vit_args(vit_size)["embed_dim"]
        lift = build_upsampler(preset, channels).to(device).eval()
        features = torch.zeros(1, channels, size // 16, size // 16, device=device)
        analysis = FlopCountAnalysis(lift, (x, features))
        flops = costs.count_flops(analysis)
        tables[preset] = flop_count_table(analysis, max_depth=2)
        rows.append(row(preset, parameter_count(lift)[""], flops, size, "stride 16 -> 8"))
        ratios[f"{preset}/ViT-{vit_size}"] = flops / vit_flops
    if "B" in vits:  # the controls at ViT-B's width
        features = torch.zeros(1, 768, size // 16, size // 16, device=device)
        for name, (label, note) in CONTROLS.items():
            control = build_upsampler(name, 768).to(device).eval()
            flops = costs.count_flops(FlopCountAnalysis(control, (x, features)))
            rows.append(row(label, parameter_count(control)[""], flops, size, note))
    return rows, ratios


@functools.lru_cache(maxsize=None)  # FLOPs and timings at one size share the models
def load_detector(key: str, size: int, config_dir: str, proposals: int, detections: int):
    """A detector with random weights at ``size``, ``detections`` per image."""
    path = os.path.join(config_dir, DETECTORS[key][0])
    return costs.random_detector(path, size, proposals, detections)


def detector_rows(size, device, config_dir, heads):
    rows, flops = [], {}
    inputs = [{"image": costs.random_image(size, 0, device)}]
    for key, (_, label) in DETECTORS.items():
        start = time.perf_counter()
        model = load_detector(key, size, config_dir, *heads).to(device)
        flops[key] = costs.count_flops(ModelFlopCountAnalysis(model, inputs))
        note = f"random weights, {heads[0]} proposals, {heads[1]} detections"
        rows.append(row(label, parameter_count(model)[""], flops[key], size, note))
        took = time.perf_counter() - start
        logger.info(f"  {label}: {flops[key] / 1e9:.1f} GFLOPs ({took:.0f}s)")
    ratios = {k: flops[f"{k}_lift"] / flops[k] for k in ("mrcnn", "cascade")}
    return rows, ratios


def inference_timings(size, device, repeats, config_dir, heads):
    keys = ("mrcnn", "mrcnn_lift")
    models = {k: load_detector(k, size, config_dir, *heads).to(device) for k in keys}
    inputs = [{"image": costs.random_image(size, 1, device), "height": size, "width": size}]
    amp = torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda")

    def infer(model):
        with torch.no_grad(), amp:
            return model(inputs)

    fns = {k: functools.partial(infer, m) for k, m in models.items()}
    memory = {k: costs.peak_memory_mib(fn, device) for k, fn in fns.items()}  # also the warmup
    measured = costs.time_interleaved(fns, repeats, device=device)
    median = {k: costs.merged_median(ms) for k, ms in measured.items()}
    timings = []
    for k, ms in measured.items():
        row = dict(name=DETECTORS[k][1], image_size=size, median_s=median[k])
        timings.append({**row, "times_s": [m.median for m in ms], "peak_memory_MiB": memory[k]})
    return timings, median["mrcnn_lift"] / median["mrcnn"]


def measure_stage1_ratio(distiller, batch, repeats: int = 5) -> float:
    """One stage-one training step (backward and AdamW step included) over one frozen-ViT forward
    of the same batch, interleaved (AMP on CUDA); LiFT's weights and the model's mode are restored
    after."""
    device = distiller.device
    use_amp = device.type == "cuda"
    saved = copy.deepcopy(distiller.lift.state_dict())
    was_training = distiller.training
    optimizer = torch.optim.AdamW([p for p in distiller.parameters() if p.requires_grad], lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)

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
        fns = {"step": step, "vit": vit_forward}
        measured = costs.time_interleaved(fns, repeats, device=device)
    finally:
        distiller.lift.load_state_dict(saved)
        distiller.train(was_training)
    return costs.merged_median(measured["step"]) / costs.merged_median(measured["vit"])


def stage1_ratio(size, device, repeats, config_dir):
    cfg = LazyConfig.load(os.path.join(config_dir, "lift_stage1_coco.py"))
    distiller = costs.random_distiller(cfg, size, device)
    # two images: LiFT's BatchNorm needs more than one value per channel at x/4
    batch = [{"image": costs.random_image(size, i, device).to(torch.uint8)} for i in (2, 3)]
    return measure_stage1_ratio(distiller, batch, repeats)


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _px(size: int) -> str:
    return f"{size}x{size}"


def format_markdown(result) -> str:
    lines = [f"### Cost of LiFT in ViTDet ({result['device']}; torch {result['torch']})", ""]
    header = ["Component", "Params (M)", "GFLOPs", "Input", "Note"]
    cells = [
        (r["name"], f"{r['params_M']:.2f}", f"{r['flops_G']:.1f}", _px(r["image_size"]), r["note"])
        for r in result["rows"]
    ]
    lines += md_table(header, cells, "lrrrr")
    if result["timings"]:
        header = ["Inference", "Input", "Median (s)", "Peak memory (MiB)"]
        cells = [
            (t["name"], _px(t["image_size"]), f"{t['median_s']:.3f}", f"{t['peak_memory_MiB']:.0f}")
            for t in result["timings"]
        ]
        lines += ["", *md_table(header, cells, "lrrr")]
    sizes = {"flops mrcnn": "detector_size", "flops cascade": "detector_size", "time": "time_size"}
    cells = []
    for k, v in result["ratios"].items():
        size = next((n for p, n in sizes.items() if k.startswith(p)), "image_size")
        cells.append((k, _px(result[size]), f"{v:.3f}"))
    lines += ["", *md_table(["Ratio", "Input", "Value"], cells, "lrr")]
    for preset, table in result["flop_tables"].items():
        lines += ["", f"FLOPs of {preset} by module (fvcore):", "", "```", table, "```"]
    return "\n".join(lines) + "\n"
