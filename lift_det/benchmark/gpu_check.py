"""The GPU check's setups and inference measurements (tools/gpu_check.py): ViTDet with and without
LiFT per batch, attention and precision, its backbone alone, the up placement and ViT-L / ViT-H."""

import itertools
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple
import torch

from ..config import VIT_SIZES
from ..modeling import ATTN_IMPLS, set_attn_impl
from ..utils import REPO
from .costs import free, peak_memory_mib, random_detector, random_image, time_interleaved

logger = logging.getLogger(__name__)


@dataclass
class Setup:
    """What one mode measures: configs (relative to the repo), sizes, iterations."""

    size: int
    detectors: Dict[str, str]  # label -> detector config: plain first, then +LiFT
    stage1: str
    heads: Tuple[int, int]  # (proposals, detections) at inference
    iterations: int  # of each correctness run
    min_run_time: float  # of each blocked_autorange
    batches: Tuple[int, ...] = (1, 4)  # of inference: 1 and a larger one
    stage1_batch: int = 0  # 0: the COCO stage-one config's batch per GPU
    stage2_batches: Tuple[int, ...] = ()  # (): 1 (ViTDet's) and the COCO config's per GPU
    # stage two's same-pipeline control (ViT frozen as in +LiFT, bilinear 2x in LiFT's place)
    stage2_control: Dict[str, str] = field(default_factory=dict)
    vit_sizes: Dict[str, Dict[str, str]] = field(default_factory=dict)  # "L" -> detectors
    # measured at twice ``size``: ViTDet on the 2x image and the up placement (ViT at ``size``)
    up: Dict[str, str] = field(default_factory=dict)


GPU = Setup(
    size=1024,
    detectors={  # the same detector size (the down and stride-8 placements)
        "ViTDet-B": "configs/vitdet_mrcnn.py",
        "ViTDet-B + LiFT-B, down": "configs/vitdet_mrcnn_lift_down.py",
        "ViTDet-B + LiFT-B, stride 8": "configs/vitdet_mrcnn_lift_s8.py",
    },
    up={
        "ViTDet-B, 2x image": "configs/vitdet_mrcnn.py",
        "ViTDet-B + LiFT-B, up": "configs/vitdet_mrcnn_lift.py",
    },
    stage1="configs/lift_stage1_coco.py",
    stage2_control={"ViTDet-B + bilinear, down": "configs/vitdet_mrcnn_bilinear.py"},
    heads=(1000, 100),  # ViTDet's test-time proposals and detections
    iterations=10,
    min_run_time=1.0,
    vit_sizes={
        s: {
            f"ViTDet-{s}": f"configs/vitdet_mrcnn_{k}.py",
            f"ViTDet-{s} + LiFT-{s}": f"configs/" f"vitdet_mrcnn_{k}_lift.py",
        }
        for s, k in (("L", "l"), ("H", "h"))
    },
)
TOY = Setup(
    size=128,
    detectors={
        "mini ViTDet": "configs/mini/vitdet_mrcnn.py",
        "mini ViTDet + LiFT-S, down": "configs/mini/vitdet_mrcnn_lift_down.py",
        "mini ViTDet + LiFT-S, stride 8": "configs/mini/vitdet_mrcnn_lift_s8.py",
    },
    up={
        "mini ViTDet, 2x image": "configs/mini/vitdet_mrcnn.py",
        "mini ViTDet + LiFT-S, up": "configs/mini/vitdet_mrcnn_lift.py",
    },
    stage1="configs/mini/lift_stage1.py",
    heads=(20, 5),
    iterations=6,
    min_run_time=0.01,
    batches=(1, 2),
    stage1_batch=2,
    stage2_batches=(2,),
    stage2_control={"mini ViTDet + bilinear, down": "configs/mini/vitdet_mrcnn_bilinear_down.py"},
)


def build_detector(rel: str, setup: Setup, device, **kwargs):
    """:func:`random_detector` of a detector config (relative to the repo) at ``setup.size``."""
    return random_detector(
        os.path.join(REPO, rel), setup.size, *setup.heads, device=device, **kwargs
    )


def inference_rows(
    detectors, setup, device, batches, amp_dtype, precisions=("fp32", "amp"), backbone=("amp",)
):
    """Latency and peak memory of each detector x batch x attention x precision, and of its backbone
    alone (ViT [+ upsampler] + pyramid) at the ``backbone`` precisions. Peak memory is measured
    with one detector on the device at a time; the detectors of one setting are then timed
    together, twice (:func:`time_interleaved`): ``median_s`` is the mean of the two medians,
    ``spread`` their difference over it (a ratio closer to 1 than that is noise)."""
    settings = [("detector", *x) for x in itertools.product(batches, ATTN_IMPLS, precisions)]
    settings += [("backbone", *x) for x in itertools.product(batches, ATTN_IMPLS, backbone)]
    models, memory = {}, {}
    for name, rel in detectors.items():
        model = build_detector(rel, setup, device)
        for setting in settings:
            call = _inference_call(model, setup, device, *setting, amp_dtype)  # 1st call: warmup
            memory[(name, *setting)] = unless_oom(lambda: peak_memory_mib(call, device), device)
        models[name] = model.cpu()
        free(device)
    models = {name: model.to(device) for name, model in models.items()}
    rows = []
    for setting in settings:
        fns = {
            n: _inference_call(models[n], setup, device, *setting, amp_dtype)
            for n in detectors
            if memory[(n, *setting)] is not None
        }
        times = unless_oom(lambda: time_interleaved(fns, 2, setup.min_run_time, device), device, {})
        keys = dict(zip(("part", "batch", "attn_impl", "precision"), setting))
        for name, rel in detectors.items():
            paired = _paired(times.get(name), memory[(name, *setting)])
            rows.append(dict(model=name, config=rel, **keys, **paired))
            logger.info(f"inference: {rows[-1]}")
    del models
    free(device)
    return rows


def _inference_call(model, setup, device, part, batch, impl, precision, amp_dtype):
    """The whole detector on a batch of images, or its backbone (ViT [+ upsampler] + pyramid) on
    the same images, normalized and padded as the detector does."""
    size = setup.size
    sized = dict(height=size, width=size)
    inputs = [{"image": random_image(size, i, device), **sized} for i in range(batch)]
    if part == "backbone":
        with torch.no_grad():
            tensor = model.preprocess_image(inputs).tensor
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=precision == "amp")
    set_attn_impl(model, impl)  # each detector is one object: its setting holds until changed

    def fn():
        with torch.no_grad(), autocast:
            return model(inputs) if part == "detector" else model.backbone(tensor)

    return fn


def unless_oom(fn, device, oom=None):
    """``fn()``, or ``oom`` when it runs out of CUDA memory: the error logged in one line, the cache
    freed, the measurements go on."""
    try:
        return fn()
    except torch.cuda.OutOfMemoryError as e:
        logger.warning(f"out of memory: {str(e).splitlines()[0]}")
        free(device)
        return oom


def _paired(measured, memory) -> Dict[str, Any]:
    """One row from a detector's two timings of a setting (see inference_rows)."""
    if memory is None or not measured:
        return dict(oom=True)
    medians = [m.median for m in measured]
    mean = sum(medians) / len(medians)
    spread, runs = (max(medians) - min(medians)) / mean, sum(len(m.times) for m in measured)
    return dict(median_s=mean, repeats_s=medians, spread=spread, runs=runs, peak_memory_MiB=memory)


def ratio_rows(rows, keys, over: Dict[str, str], value: str = "median_s"):
    """Ratios of ``value`` between rows that share ``keys``: ``over = {field: denominator}``."""
    (field_, base), out = next(iter(over.items())), []
    bases = {tuple(b[k] for k in keys): b for b in rows if b[field_] == base and "oom" not in b}
    for r in rows:
        match = bases.get(tuple(r[k] for k in keys))
        if r[field_] != base and "oom" not in r and match:
            ratio = r[value] / match[value]
            out.append({**{k: r[k] for k in keys}, field_: r[field_], "ratio": ratio})
    return out


def inference_ratios(rows) -> Dict[str, List[Dict[str, Any]]]:
    plain = {"model": next(iter(rows))["model"]}
    lift = ratio_rows(rows, ("part", "batch", "attn_impl", "precision"), plain)
    sdpa = ratio_rows(rows, ("model", "part", "batch", "precision"), {"attn_impl": "eager"})
    return {"+LiFT / plain time": lift, "sdpa / eager time": sdpa}


def vit_size_rows(setup, device, amp_dtype, budget_s, timer, result):
    """ViT-L / ViT-H rows (AMP, batch 1, both attentions) while ``budget_s`` seconds of ``timer``
    (fvcore's) last, estimated from ViT-B's inference time (``result``'s) by width^2 x depth."""
    rows, ratios = [], {}
    b = VIT_SIZES["B"]
    inference_s, measured = result["sections_s"]["inference"], len(result["inference"]["rows"])
    for size, detectors in setup.vit_sizes.items():
        v = VIT_SIZES[size]
        scale = v["embed_dim"] ** 2 * v["depth"] / (b["embed_dim"] ** 2 * b["depth"])
        estimate = inference_s * scale * 2 * len(ATTN_IMPLS) / max(measured, 1)
        left = budget_s - timer.seconds()
        if estimate > left:
            why = f"estimated {estimate:.0f} s, {max(left, 0):.0f} s of --budget-s left"
            result["skipped"].append(dict(what=f"ViT-{size} rows", why=why))
            continue
        part = inference_rows(detectors, setup, device, [1], amp_dtype, ("amp",), backbone=())
        rows += part
        for k, v in inference_ratios(part).items():
            ratios.setdefault(k, []).extend(v)
    if not setup.vit_sizes:
        why = "--toy: no ViT-L/H configs at toy size"
        result["skipped"].append(dict(what="ViT-L / ViT-H rows", why=why))
    return dict(rows=rows, ratios=ratios)
