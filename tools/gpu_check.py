#!/usr/bin/env python3
"""
The GPU check: what LiFT costs and whether both stages work on the device users train on. One
run on one CUDA device writes ``<output-dir>/<device-slug>.{json,md}`` (with provenance):

- inference of ViTDet-B Mask R-CNN and ViTDet-B + LiFT-B (random weights, 1024x1024): latency in
  fp32 and AMP, peak memory, at batch 1 and a larger batch, with upstream's attention and SDPA;
- stage one (LiFT-B against the frozen ViT-B, AMP) at the COCO config's batch per GPU: step
  time, images/s, peak memory, and what one COCO epoch and the config's schedule take on one GPU;
- a stage-two training step (AMP) with and without LiFT: time and peak memory;
- correctness: a few stage-one (fp32 and AMP) and stage-two iterations on generated mini COCO data
  (finite, falling losses), AMP and fp32 LiFT files alike, TorchScript export equal to eager;
- ViT-L / ViT-H rows while ``--budget-s`` lasts (what is skipped is recorded, with why).

    tools/gpu_check.py [--output-dir docs/gpu] [--budget-s 420] [--batches 1 4]
    tools/gpu_check.py --toy --output-dir /tmp/check   # the same code paths on a CPU, tiny sizes

Timings are torch.utils.benchmark's ``blocked_autorange`` (CUDA synchronized after each call);
peak memory is ``torch.cuda.max_memory_allocated`` after a reset (on a CPU: the process's peak
resident set so far). ``--toy`` uses the mini configs at 128x128 and bf16 autocast on the CPU.
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import argparse
import contextlib
import itertools
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Tuple
import torch
from omegaconf import OmegaConf
from torch.utils.benchmark import Timer

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import SimpleTrainer
from detectron2.export import TracingAdapter
from detectron2.utils.events import EventStorage
from detectron2.utils.logger import setup_logger

from lift_det.benchmark.costs import detector_config, peak_memory_mib, random_image
from lift_det.checkpoint import atomic_write_text, read_lift_file
from lift_det.config import VIT_SIZES
from lift_det.data import ensure_mini_coco
from lift_det.data.mini import generate_mini_coco
from lift_det.engine.hooks import ExportLiFTFile
from lift_det.engine.train_utils import build_trainer
from lift_det.modeling import ATTN_IMPLS, set_attn_impl
from lift_det.utils.cli import UserError, run_main
from lift_det.utils.provenance import provenance, slug

logger = logging.getLogger("lift_det.gpu_check")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# COCO train2017, all images: what configs/lift_stage1_coco.py counts as one epoch
COCO_TRAIN_IMAGES = 118287


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
        s: {f"ViTDet-{s}": f"configs/vitdet_mrcnn_{k}.py", f"ViTDet-{s} + LiFT-{s}": f"configs/"
            f"vitdet_mrcnn_{k}_lift.py"}
        for s, k in (("L", "l"), ("H", "h"))
    },
)  # fmt: skip
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


class Budget:
    """Seconds left of ``budget_s`` since construction."""

    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()


class _CPUAutocastTrainer(SimpleTrainer):
    """SimpleTrainer's step under CPU bf16 autocast (detectron2's AMPTrainer needs CUDA)."""

    def run_step(self):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            super().run_step()


def make_trainer(model, batch, optim, amp: bool, device):
    """The trainer tools/train_net.py builds (AMPTrainer on CUDA with AMP), on a fixed batch;
    AMP on a CPU: SimpleTrainer under bf16 autocast."""
    data = itertools.repeat(batch)
    if amp and device.type == "cpu":
        return _CPUAutocastTrainer(model, data, optim)
    cfg = OmegaConf.create({"train": {"amp": {"enabled": amp}, "device": str(device)}})
    return build_trainer(cfg, model, optim, data)


def precision_context(device, precision: str, amp_dtype):
    if precision == "amp":
        return torch.autocast(device.type, dtype=amp_dtype)
    return contextlib.nullcontext()


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], Any], device, min_run_time: float) -> Dict[str, Any]:
    """Peak memory of one call (the warmup), then ``blocked_autorange``; OOM is recorded."""

    def call():
        fn()
        sync(device)

    try:
        memory = peak_memory_mib(call, device)  # also the warmup
        timer = Timer("call()", globals={"call": call}, num_threads=torch.get_num_threads())
        m = timer.blocked_autorange(min_run_time=min_run_time)
    except torch.cuda.OutOfMemoryError as e:
        logger.warning(f"out of memory: {str(e).splitlines()[0]}")
        torch.cuda.empty_cache()
        return dict(oom=True)
    return dict(median_s=m.median, iqr_s=m.iqr, runs=len(m.times), peak_memory_MiB=memory)


def loss_summary(losses: List[float]) -> Dict[str, Any]:
    """Finite, and falling: the mean of the last half below the mean of the first half."""
    half = len(losses) // 2
    finite = all(torch.isfinite(torch.tensor(losses)).tolist())
    first, last = sum(losses[:half]) / half, sum(losses[-half:]) / half
    return dict(losses=losses, finite=finite, falling=bool(finite and last < first))


def _path(rel: str) -> str:
    return os.path.join(REPO, rel)


def build_detector(rel: str, setup: Setup, device, train: bool = False):
    """A detector config's model with random weights (LiFT random too) at ``setup.size``."""
    model_cfg = detector_config(_path(rel), setup.size, *setup.heads)
    if "lift" in model_cfg.backbone.net:
        model_cfg.backbone.net.allow_random_lift = True  # costs do not depend on LiFT's weights
    torch.manual_seed(0)
    return instantiate(model_cfg).to(device).train(train)


def train_batch(rel: str, root: str, batch: int, size: int) -> List[Dict[str, Any]]:
    """One batch of the config's training mapper (its crops at ``size``) over the mini data."""
    cfg = LazyConfig.load(_path(rel))
    loader = cfg.dataloader.train
    loader.dataset.names = ensure_mini_coco("train", root)
    loader.total_batch_size, loader.num_workers = batch, 0
    for aug in loader.mapper.augmentations:  # LSJ: ResizeScale + FixedSizeCrop
        aug.update(
            {k: v for k, v in dict(target_height=size, target_width=size).items() if k in aug}
        )
        if "crop_size" in aug:
            aug.crop_size = (size, size)
    return next(iter(instantiate(loader)))


# -------------------------------------------------------------------------------------------------
# measurements
# -------------------------------------------------------------------------------------------------


def inference_rows(
    detectors, setup, device, batches, amp_dtype, precisions=("fp32", "amp"), backbone=("amp",)
):
    """Latency and peak memory of each detector x batch x attention x precision, and of its backbone
    alone (ViT [+ upsampler] + pyramid) at the ``backbone`` precisions.

    Peak memory is measured with one detector on the device at a time. The detectors' latencies
    of one setting are then timed back to back, twice, in the order A B .. B A (all detectors on
    the device), so that a drift of the GPU's clocks or of the host between settings falls on
    every detector alike; a row's ``median_s`` is the mean of its two medians and ``spread`` their
    difference over that mean: a ratio between detectors closer to 1 than that is noise.
    """
    settings = [("detector", *x) for x in itertools.product(batches, ATTN_IMPLS, precisions)]
    settings += [("backbone", *x) for x in itertools.product(batches, ATTN_IMPLS, backbone)]
    models, memory = {}, {}
    for name, rel in detectors.items():
        model = build_detector(rel, setup, device).eval()
        for setting in settings:
            call = _inference_call(model, setup, device, *setting, amp_dtype)
            memory[(name, *setting)] = _peak_memory(call, device)
        models[name] = model.cpu()
        _free(device)
    models = {name: model.to(device) for name, model in models.items()}
    rows = []
    for setting in settings:
        order = list(detectors) + list(reversed(detectors))
        times = {name: [] for name in detectors}
        for name in order:
            if memory[(name, *setting)] is not None:
                call = _inference_call(models[name], setup, device, *setting, amp_dtype)
                times[name].append(measure(call, device, setup.min_run_time))
        part, batch, impl, precision = setting
        for name, rel in detectors.items():
            row = dict(model=name, config=rel, part=part, batch=batch, attn_impl=impl)
            row["precision"] = precision
            rows.append({**row, **_paired(times[name], memory[(name, *setting)])})
            logger.info(f"inference: {rows[-1]}")
    del models
    _free(device)
    return rows


def _inference_call(model, setup, device, part, batch, impl, precision, amp_dtype):
    """The whole detector on a batch of images, or its backbone (ViT [+ upsampler] + pyramid) on
    the same images, normalized and padded as the detector does."""
    size = setup.size
    inputs = [
        {"image": random_image(size, i, device), "height": size, "width": size}
        for i in range(batch)
    ]
    if part == "backbone":
        with torch.no_grad():
            tensor = model.preprocess_image(inputs).tensor

    set_attn_impl(model, impl)  # each detector is one object: its setting holds until changed

    def fn():
        with torch.no_grad(), precision_context(device, precision, amp_dtype):
            return model(inputs) if part == "detector" else model.backbone(tensor)

    return fn


def _peak_memory(fn, device):
    """Peak memory (MiB) of one call (also the warmup), or None when it runs out of memory."""
    try:
        return peak_memory_mib(lambda: (fn(), sync(device)), device)
    except torch.cuda.OutOfMemoryError as e:
        logger.warning(f"out of memory: {str(e).splitlines()[0]}")
        _free(device)
        return None


def _paired(measured: List[Dict[str, Any]], memory) -> Dict[str, Any]:
    """One row from a detector's two timings of a setting (see inference_rows)."""
    if memory is None or any("oom" in m for m in measured):
        return dict(oom=True)
    medians = [m["median_s"] for m in measured]
    mean = sum(medians) / len(medians)
    return dict(
        median_s=mean,
        repeats_s=medians,
        spread=(max(medians) - min(medians)) / mean,
        runs=sum(m["runs"] for m in measured),
        peak_memory_MiB=memory,
    )


def _free(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()


def ratio_rows(rows, keys, over: Dict[str, str], value: str = "median_s"):
    """Ratios of ``value`` between rows that share ``keys``: ``over = {field: denominator}``."""
    (field_, base), out = next(iter(over.items())), []
    for r in rows:
        if r[field_] == base or "oom" in r:
            continue
        match = [
            b
            for b in rows
            if b[field_] == base and all(b[k] == r[k] for k in keys) and "oom" not in b
        ]
        if match:
            out.append(
                {**{k: r[k] for k in keys}, field_: r[field_], "ratio": r[value] / match[0][value]}
            )
    return out


def stage_one_cost(setup, device, recipe_gpus: int) -> Dict[str, Any]:
    """A stage-one AMP step at the COCO config's batch per GPU; an epoch and the schedule."""
    coco = LazyConfig.load(_path(GPU.stage1))
    total = int(coco.dataloader.train.total_batch_size)
    batch = setup.stage1_batch or total // recipe_gpus
    epochs = coco.train.max_iter * total / COCO_TRAIN_IMAGES
    cfg = LazyConfig.load(_path(setup.stage1))
    cfg.model.square_pad = setup.size
    torch.manual_seed(0)
    model = instantiate(cfg.model).to(device)
    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    images = [{"image": random_image(setup.size, i, device).to(torch.uint8)} for i in range(batch)]
    trainer = make_trainer(model, images, optim, True, device)
    with EventStorage(0) as trainer.storage:
        cost = measure(trainer.run_step, device, setup.min_run_time)
    del trainer, model, optim
    _free(device)
    out = dict(
        config=setup.stage1,
        batch_per_gpu=batch,
        recipe=f"{GPU.stage1}: total_batch_size={total} on {recipe_gpus} GPUs",
        epoch_images=COCO_TRAIN_IMAGES,
        schedule_epochs=epochs,
        **cost,
    )
    if "oom" not in cost:
        out["images_per_s"] = batch / cost["median_s"]
        out["epoch_s"] = COCO_TRAIN_IMAGES / out["images_per_s"]
        out["schedule_s"] = epochs * out["epoch_s"]
    return out


def stage_two_rows(setup, device, root, batches) -> List[Dict[str, Any]]:
    """One AMP training step (the configs' optimizer, a mini COCO batch) with and without LiFT,
    and of the control that freezes the ViT as +LiFT does; each row counts what is trained."""
    rows = []
    for name, rel in {**setup.detectors, **setup.stage2_control}.items():
        for batch in batches:
            model = build_detector(rel, setup, device, train=True)
            cfg = LazyConfig.load(_path(rel))
            cfg.optimizer.params.model = model
            optim = instantiate(cfg.optimizer)
            data = train_batch(rel, root, batch, setup.size)
            trainer = make_trainer(model, data, optim, True, device)
            with EventStorage(0) as trainer.storage:
                cost = measure(trainer.run_step, device, setup.min_run_time)
            trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
            row = dict(model=name, config=rel, batch=batch, precision="amp", trained_params=trained)
            rows.append({**row, **cost})
            logger.info(f"stage two step: {rows[-1]}")
            del trainer, model, optim
            _free(device)
    return rows


# -------------------------------------------------------------------------------------------------
# correctness
# -------------------------------------------------------------------------------------------------


def stage_one_runs(setup, device, root, work) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """fp32 and AMP stage one on a fixed mini batch; both write a LiFT file (ExportLiFTFile)."""
    cfg = LazyConfig.load(_path(setup.stage1))
    cfg.model.square_pad = setup.size
    cfg.dataloader.train.dataset.names = ensure_mini_coco("train", root)
    cfg.dataloader.train.total_batch_size, cfg.dataloader.train.num_workers = 2, 0
    batch = next(iter(instantiate(cfg.dataloader.train)))
    out, files = {}, {}
    for precision in ("fp32", "amp"):
        torch.manual_seed(0)
        model = instantiate(cfg.model).to(device)
        cfg.optimizer.params.model = model
        trainer = make_trainer(model, batch, instantiate(cfg.optimizer), precision == "amp", device)
        hook = ExportLiFTFile(output_dir=os.path.join(work, precision))
        trainer.register_hooks([hook])
        trainer.train(0, setup.iterations)
        losses = [v for v, _ in trainer.storage.history("total_loss").values()]
        out[precision] = dict(iterations=setup.iterations, **loss_summary(losses))
        files[precision] = hook.path
    fp32, amp = (read_lift_file(files[p]) for p in ("fp32", "amp"))
    shapes = [
        {k: (tuple(v.shape), str(v.dtype)) for k, v in f["model"].items()} for f in (fp32, amp)
    ]
    differences = [
        k for k in set(shapes[0]) | set(shapes[1]) if shapes[0].get(k) != shapes[1].get(k)
    ]
    meta = [f["lift_det"] for f in (fp32, amp)]
    differences += [
        f"metadata {k}" for k in set(meta[0]) | set(meta[1]) if meta[0].get(k) != meta[1].get(k)
    ]
    out["lift_file"] = dict(
        tensors=len(shapes[0]), same_format=not differences, differences=sorted(differences)
    )
    teacher = {k: v.detach().clone() for k, v in model.backbone.net.state_dict().items()}
    return out, dict(lift_file=files["amp"], teacher=teacher)


def stage_two_run(setup, device, root, stage_one) -> Tuple[Dict[str, Any], torch.nn.Module]:
    """+LiFT stage two, its ViT the stage-one teacher and LiFT the AMP stage-one file (AMP)."""
    rel = list(setup.detectors.values())[1]
    model_cfg = detector_config(_path(rel), setup.size, *setup.heads)
    model_cfg.backbone.net.lift_weights = stage_one["lift_file"]
    torch.manual_seed(0)
    model = instantiate(model_cfg).to(device)
    # as a ViTDet checkpoint loads: the ViT's keys; LiFT comes from lift_weights (strict: no key
    # is missing or unexpected)
    model.backbone.net.load_state_dict(stage_one["teacher"])
    cfg = LazyConfig.load(_path(rel))
    cfg.optimizer.params.model = model
    trainer = make_trainer(
        model, train_batch(rel, root, 2, setup.size), instantiate(cfg.optimizer), True, device
    )
    trainer.train(0, setup.iterations)
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    out = dict(config=rel, iterations=setup.iterations, lift_from="AMP stage one's LiFT file")
    return {**out, **loss_summary(losses)}, model


def _inference(model, inputs):
    """Raw detections (no rescaling), as detectron2's export tests trace them."""
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def export_rows(model, setup, device) -> List[Dict[str, Any]]:
    """TorchScript (detectron2's TracingAdapter) against eager on an image the trace never saw."""
    model = model.eval()
    rows = []
    for impl in ATTN_IMPLS:
        set_attn_impl(model, impl)
        traced_on = [{"image": random_image(setup.size, 20, device)}]
        other = random_image(setup.size, 21, device)
        adapter = TracingAdapter(model, traced_on, _inference)
        with torch.no_grad():
            traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
            got = adapter.outputs_schema(traced(other))[0]["instances"]
            expected = _inference(model, [{"image": other}])[0]["instances"]
        fields = {
            "boxes": (got.pred_boxes.tensor, expected.pred_boxes.tensor),
            "scores": (got.scores, expected.scores),
            "classes": (got.pred_classes, expected.pred_classes),
            "masks": (got.pred_masks, expected.pred_masks),
        }
        diffs = {}
        for k, (a, b) in fields.items():
            same_shape = a.shape == b.shape
            diffs[k] = (
                float((a.float() - b.float()).abs().max()) if same_shape and a.numel() else 0.0
            )
            if not same_shape:
                diffs[k] = float("inf")
        try:
            for a, b in fields.values():
                torch.testing.assert_close(a, b)
            equal = True
        except AssertionError:
            equal = False
        rows.append(dict(attn_impl=impl, detections=len(expected), equal=equal, max_abs_diff=diffs))
        logger.info(f"export: {rows[-1]}")
    set_attn_impl(model, "eager")
    return rows


# -------------------------------------------------------------------------------------------------
# the report
# -------------------------------------------------------------------------------------------------


def _ms(row) -> str:
    return "OOM" if "oom" in row else f"{row['median_s'] * 1e3:.1f}"


def _spread(row) -> str:
    return "OOM" if "oom" in row else f"{row['spread'] * 100:.1f}"


def _mib(row) -> str:
    return "OOM" if "oom" in row else f"{row['peak_memory_MiB']:.0f}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "**NO**"


def _losses(run) -> str:
    return (
        f"{run['iterations']} iterations, total loss {run['losses'][0]:.4f} -> "
        f"{run['losses'][-1]:.4f}: finite {_yes(run['finite'])}, falling {_yes(run['falling'])}"
    )


def md_table(header, cells) -> List[str]:
    lines = ["", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in cells] + [""]


def inference_tables(rows, ratios) -> List[str]:
    header = ["Model", "Part", "Batch", "Attention", "Precision", "Median (ms)"]
    header += ["A/B spread (%)", "Peak memory (MiB)"]
    cells = [
        (r["model"], r["part"], r["batch"], r["attn_impl"], r["precision"], _ms(r), _spread(r))
        + (_mib(r),)
        for r in rows
    ]
    lines = md_table(header, cells)
    header = ["Ratio", "Model / part / batch / attention / precision", "Value"]
    cells = [
        (
            name,
            " / ".join(
                str(r[k]) for k in ("model", "part", "batch", "attn_impl", "precision") if k in r
            ),
            f"{r['ratio']:.3f}",
        )
        for name, group in ratios.items()
        for r in group
    ]
    return lines + md_table(header, cells)


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
    if result.get("failed"):
        lines += ["#### Failed", ""] + [
            f"- {f['section']}: `{f['error']}`" for f in result["failed"]
        ]
        lines += [""]
    if "inference" in result:
        inf = result["inference"]
        lines += ["#### Inference: Mask R-CNN with and without LiFT (down and stride-8 "
                  "placements, same detector size)"]  # fmt: skip
        lines += inference_tables(inf["rows"], inf["ratios"])
    if result.get("up", {}).get("rows"):
        size = result["up"]["image_size"]
        lines += [f"#### The up placement: ViTDet on the {size} px image and + LiFT with its ViT "
                  f"at {size // 2} px, batch 1, AMP"]  # fmt: skip
        lines += inference_tables(result["up"]["rows"], result["up"]["ratios"])
    if "stage_one" in result:
        lines += _stage_one_lines(result["stage_one"])
    if "stage_two" in result:
        lines += _stage_two_lines(result["stage_two"])
    if "correctness" in result:
        lines += _correctness_lines(result["correctness"])
    if result.get("vit_sizes", {}).get("rows"):
        lines += ["#### ViT-L / ViT-H: inference, batch 1"]
        lines += inference_tables(result["vit_sizes"]["rows"], result["vit_sizes"]["ratios"])
    if result["skipped"]:
        lines += ["#### Skipped", ""] + [f"- {s['what']}: {s['why']}" for s in result["skipped"]]
        lines += [""]
    return "\n".join(lines).rstrip() + "\n"


def _stage_one_lines(s1) -> List[str]:
    lines = [f"#### Stage one: `{s1['config']}`, AMP step (LiFT trained, ViT frozen)"]
    header = ["Batch per GPU", "Step (ms)", "Images/s", "Peak memory (MiB)"]
    ips = "OOM" if "oom" in s1 else f"{s1['images_per_s']:.2f}"
    lines += md_table(header, [(s1["batch_per_gpu"], _ms(s1), ips, _mib(s1))])
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
    lines = ["#### Stage two: one AMP training step, each config as it trains"]
    header = ["Model", "Config", "Trained parameters", "Batch per GPU", "Step (ms)"]
    header += ["Peak memory (MiB)"]
    cells = [
        (r["model"], f"`{r['config']}`", f"{r['trained_params']:,}", r["batch"], _ms(r), _mib(r))
        for r in s2["rows"]
    ]
    lines += md_table(header, cells)
    header = ["Batch per GPU", "+LiFT over", "step time", "peak memory"]
    cells = [
        (r["batch"], r["over"], f"{r['time']:.3f}", f"{r['memory']:.3f}") for r in s2["ratios"]
    ]
    lines += md_table(header, cells)
    return lines + [
        "The +LiFT config (ViT and LiFT frozen) and its control (ViT frozen, bilinear) train the "
        "same pyramid and heads; "
        "the plain config trains the whole ViTDet. Their ratio to plain is mostly that choice; "
        "LiFT's own training cost is its ratio to the control.",
        "",
    ]


def _correctness_lines(c) -> List[str]:
    lines = ["#### Correctness (generated mini COCO data)", ""]
    lines += [f"- stage one, {p}: {_losses(c['stage_one'][p])}" for p in ("fp32", "amp")]
    lf = c["stage_one"]["lift_file"]
    lines += [
        f"- LiFT files of fp32 and AMP stage one: same tensors ({lf['tensors']}), shapes, dtypes "
        f"and metadata: {_yes(lf['same_format'])}"
        + (f" (differ: {', '.join(lf['differences'])})" if lf["differences"] else ""),
        f"- stage two, `{c['stage_two']['config']}` with the {c['stage_two']['lift_from']}: "
        f"{_losses(c['stage_two'])}",
    ]
    for e in c["export"]:
        diff = ", ".join(f"{k} {v:.2g}" for k, v in e["max_abs_diff"].items())
        lines += [
            f"- TorchScript export ({e['attn_impl']} attention, {e['detections']} detections) "
            f"equals eager: {_yes(e['equal'])} (max abs difference: {diff})"
        ]
    return lines + [""]


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--output-dir", default="", help="default: docs/gpu (--toy: output/gpu)")
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="seconds for all; ViT-L/H rows only if left"
    )
    parser.add_argument(
        "--batches", type=int, nargs="+", help="inference batch sizes (default: 1 4; --toy: 1 2)"
    )
    parser.add_argument(
        "--recipe-gpus",
        type=int,
        default=8,
        help="GPUs of the COCO commands: batch per GPU = the configs' total_batch_size / this",
    )
    parser.add_argument("--toy", action="store_true", help="tiny sizes, CPU-friendly")
    return parser


def inference_ratios(rows) -> Dict[str, List[Dict[str, Any]]]:
    return {
        "+LiFT / plain time": ratio_rows(
            rows, ("part", "batch", "attn_impl", "precision"), {"model": next(iter(rows))["model"]}
        ),
        "sdpa / eager time": ratio_rows(
            rows, ("model", "part", "batch", "precision"), {"attn_impl": "eager"}
        ),
    }


def main(args) -> int:
    setup_logger(name="lift_det", abbrev_name="lift_det")
    budget = Budget(args.budget_s)
    has_cuda = torch.cuda.is_available()
    if not args.toy and not has_cuda:
        raise UserError("No CUDA device: the GPU check needs one (--toy runs it on a CPU).")
    device = torch.device("cuda" if has_cuda else "cpu")
    setup = TOY if args.toy else GPU
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    name = torch.cuda.get_device_name(device) if has_cuda else f"CPU ({os.cpu_count()} cores)"
    output_dir = args.output_dir or os.path.join(REPO, "output/gpu" if args.toy else "docs/gpu")
    batches = args.batches or list(setup.batches)
    result: Dict[str, Any] = dict(
        toy=args.toy,
        device=name,
        device_slug=slug(name),
        cuda=torch.version.cuda if has_cuda else "none",
        gpu_memory_GiB=(
            (torch.cuda.get_device_properties(device).total_memory / 2**30) if has_cuda else None
        ),
        amp_dtype=str(amp_dtype).replace("torch.", ""),
        image_size=setup.size,
        proposals=setup.heads[0],
        detections=setup.heads[1],
        budget_s=args.budget_s,
        skipped=[],
        failed=[],
        **provenance(),
    )
    sections = result["sections_s"] = {}

    base = os.path.join(output_dir, result["device_slug"])

    @contextlib.contextmanager
    def section(name):
        """A section that fails is recorded (with its error) and the next one runs; the report is
        rewritten after each, so a run cut short keeps what it measured."""
        logger.info(f"{name}...")
        start = time.perf_counter()
        try:
            yield
        except Exception as e:  # noqa: B902 (recorded in the report; exit status 1)
            logger.exception(f"{name} failed")
            result["failed"].append(dict(section=name, error=f"{type(e).__name__}: {e}"))
            _free(device)
        sections[name] = time.perf_counter() - start
        result["wall_s"] = budget.elapsed()
        write_report(result, base)

    with tempfile.TemporaryDirectory(prefix="lift_gpu_check_") as work:
        root = os.path.join(work, "mini")
        generate_mini_coco(root, num_train=max(8, *batches), num_val=2)
        with section("correctness"):
            s1, stage_one = stage_one_runs(setup, device, root, work)
            s2, model = stage_two_run(setup, device, root, stage_one)
            export = export_rows(model, setup, device)
            result["correctness"] = dict(stage_one=s1, stage_two=s2, export=export)
            del model, stage_one
            _free(device)
        with section("inference"):
            rows = inference_rows(setup.detectors, setup, device, batches, amp_dtype)
            result["inference"] = dict(rows=rows, ratios=inference_ratios(rows))
        with section("up placement"):
            up = replace(setup, size=2 * setup.size)  # the ViT of the up placement: setup.size
            rows = inference_rows(setup.up, up, device, [1], amp_dtype, ("amp",), backbone=())
            result["up"] = dict(rows=rows, ratios=inference_ratios(rows), image_size=up.size)
        with section("stage one"):
            result["stage_one"] = stage_one_cost(setup, device, args.recipe_gpus)
        with section("stage two"):
            coco = LazyConfig.load(_path(GPU.detectors["ViTDet-B"]))
            recipe_batch = int(coco.dataloader.train.total_batch_size) // args.recipe_gpus
            s2_batches = setup.stage2_batches or sorted({1, recipe_batch})
            rows = stage_two_rows(setup, device, root, s2_batches)
            lift_name = list(setup.detectors)[1]
            result["stage_two"] = dict(rows=rows, ratios=stage_two_ratios(rows, lift_name))
        with section("ViT-L/H"):
            result["vit_sizes"] = vit_size_rows(
                setup, device, amp_dtype, budget, sections["inference"], result
            )
    result["wall_s"] = budget.elapsed()
    print(write_report(result, base))
    logger.info(f"Wrote {base}.json and {base}.md.")
    if result["failed"]:
        logger.error(
            f"Failed: {', '.join(f['section'] for f in result['failed'])} (see the report)."
        )
    return 1 if result["failed"] else 0


def write_report(result, base: str) -> str:
    """``<base>.json`` and ``<base>.md``, each written atomically; returns the markdown."""
    os.makedirs(os.path.dirname(base), exist_ok=True)
    atomic_write_text(base + ".json", json.dumps(result, indent=2) + "\n")
    text = format_markdown(result)
    atomic_write_text(base + ".md", text)
    return text


def stage_two_ratios(rows, lift_name: str) -> List[Dict[str, Any]]:
    """+LiFT's step time and peak memory over each other row's of the same batch."""
    out = []
    for r in rows:
        if r["model"] != lift_name or "oom" in r:
            continue
        for base in rows:
            if base["model"] == lift_name or base["batch"] != r["batch"] or "oom" in base:
                continue
            out.append(
                dict(
                    batch=r["batch"],
                    over=base["model"],
                    time=r["median_s"] / base["median_s"],
                    memory=r["peak_memory_MiB"] / base["peak_memory_MiB"],
                )
            )
    return out


def vit_size_rows(setup, device, amp_dtype, budget, inference_s, result) -> Dict[str, Any]:
    """ViT-L / ViT-H rows (AMP, batch 1, both attentions) while the budget lasts. A size's
    estimate is ViT-B's inference time scaled by the ViT's width^2 x depth, for its share of rows.
    """
    rows = []
    b = VIT_SIZES["B"]
    measured = len(result["inference"]["rows"])
    for size, detectors in setup.vit_sizes.items():
        v = VIT_SIZES[size]
        scale = v["embed_dim"] ** 2 * v["depth"] / (b["embed_dim"] ** 2 * b["depth"])
        estimate = inference_s * scale * 2 * len(ATTN_IMPLS) / max(measured, 1)
        if estimate > budget.left():
            why = f"estimated {estimate:.0f} s, {max(budget.left(), 0):.0f} s of --budget-s left"
            result["skipped"].append(dict(what=f"ViT-{size} rows", why=why))
            continue
        rows += inference_rows(
            detectors, setup, device, [1], amp_dtype, precisions=("amp",), backbone=()
        )
    if not setup.vit_sizes:
        result["skipped"].append(
            dict(what="ViT-L / ViT-H rows", why="--toy: no ViT-L/H configs at toy size")
        )
    ratios = {}
    for size, detectors in setup.vit_sizes.items():
        part = [r for r in rows if r["config"] in detectors.values()]
        if part:
            for k, v in inference_ratios(part).items():
                ratios.setdefault(k, []).extend(v)
    return dict(rows=rows, ratios=ratios)


if __name__ == "__main__":
    raise SystemExit(run_main(main, get_parser()))
