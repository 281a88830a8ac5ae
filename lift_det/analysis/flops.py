"""Measured cost of LiFT in ViTDet-B: parameters, FLOPs, inference time, stage-one step, memory.

The paper reports LiFT's cost against its backbone (§5, Tables 5-6: +22% FLOPs for DINO ViT-S/16 at
224, 3x fewer FLOPs than the ViT at 2x input for the same stride-8 grid). :func:`run_benchmark`
measures the same quantities for ViTDet-B at 1024x1024 on the current device, in one run:

* parameters and FLOPs (fvcore; one fused multiply-add counts as one flop, fvcore's and the
  detectron2 model zoo's convention) of the ViT, LiFT-B, the bilinear control, the backbone (ViT +
  pyramid) and the whole Mask / Cascade Mask R-CNN, with and without LiFT;
* the ViT at 2048x2048: the costly way to the stride-8 grid LiFT gives at 1024;
* inference time of the whole model with and without LiFT, timed interleaved in the same run;
* the time of one stage-one training step divided by one frozen-ViT forward
  (:func:`lift_det.modeling.distill.measure_stage1_ratio` on the stage-one model of
  ``configs/lift_stage1_coco.py``).

Detector FLOPs depend on the input: the box predictors' score threshold is set to 0 so the mask head
always runs on the full 100 detections per image (a trained model on COCO is close to that; with
random weights and the default 0.05 threshold the mask head would not run at all).
"""

import torch
from torch import nn

import contextlib
import json
import logging
import math
import os
import platform
import statistics
import threading
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = [
    "BENCHMARK_MODES",
    "GOALS",
    "parameter_count",
    "flop_count",
    "flop_count_meta",
    "model_flop_count",
    "PeakMemory",
    "time_interleaved",
    "paired_ratio",
    "default_config_dir",
    "device_name",
    "run_benchmark",
    "format_markdown",
    "write_benchmark",
]

logger = logging.getLogger(__name__)

# What one run measures in each mode. FLOPs of the ViT and LiFT (and so `lift_flops_ratio`) are
# always counted at 1024x1024 with ViT-B and LiFT-B, whatever the mode.
BENCHMARK_MODES: Dict[str, Dict[str, Any]] = {
    # everything at ViTDet's 1024x1024 (6 min on 2 idle CPU cores, 11 on busy ones)
    "full": dict(
        model_flop_size=1024,
        share_heads=False,
        time_size=1024,
        repeats=3,
        stage1_repeats=2,
        time_2x=True,
    ),
    # a few minutes on 2 CPU cores: detector FLOPs at 512 (the +LiFT detectors' heads taken from
    # the plain ones), timings at 384, no 2048 timing
    "quick": dict(
        model_flop_size=512,
        share_heads=True,
        time_size=384,
        repeats=2,
        stage1_repeats=2,
        time_2x=False,
    ),
    # for tests: the table's shape only. Detectors and stage one get a 2-block, 96-channel ViT and
    # 50 proposals; the ViT-B / LiFT-B rows at 1024 and 2048 are still real.
    "tiny": dict(
        model_flop_size=128,
        share_heads=True,
        time_size=128,
        repeats=2,
        stage1_repeats=1,
        time_2x=False,
    ),
}

# Targets the issue sets (reported against, never asserted).
GOALS = {
    "lift_flops_ratio": 0.10,  # LiFT-B FLOPs <= 10% of ViT-B's at 1024
    "inference_time_ratio": 1.10,  # whole model with LiFT <= 1.10x without
    "stage1_step_ratio": 1.5,  # one stage-one step <= 1.5 ViT forwards
}

_DETECTORS = {
    "mrcnn": ("vitdet_mrcnn.py", "Mask R-CNN, ViTDet-B"),
    "mrcnn_lift": ("vitdet_mrcnn_lift.py", "Mask R-CNN, ViTDet-B + LiFT-B"),
    "cascade": ("vitdet_cascade.py", "Cascade Mask R-CNN, ViTDet-B"),
    "cascade_lift": ("vitdet_cascade_lift.py", "Cascade Mask R-CNN, ViTDet-B + LiFT-B"),
}
_STAGE1 = "lift_stage1_coco.py"
_FULL_SIZE = 1024
# the test-only ViT of --tiny
_TINY_VIT = dict(embed_dim=96, depth=2, num_heads=2, window_size=4, window_block_indexes=[0])


# ------------------------------------------------------------------------------------------------
# counting
# ------------------------------------------------------------------------------------------------


def parameter_count(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of a module."""
    return sum(p.numel() for p in module.parameters())


@contextlib.contextmanager
def _quiet():
    """Silence tracer warnings and fvcore's per-op log lines."""
    fv_logger = logging.getLogger("fvcore")
    level = fv_logger.level
    fv_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        fv_logger.setLevel(level)


def _analysis_totals(analysis) -> Tuple[float, Dict[str, float]]:
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with torch.no_grad(), _quiet():
        return float(analysis.total()), {k: float(v) for k, v in analysis.by_module().items()}


def flop_count(module: nn.Module, inputs: Tuple[Any, ...]) -> Tuple[float, Dict[str, float]]:
    """
    FLOPs of ``module(*inputs)`` by :class:`fvcore.nn.FlopCountAnalysis` (runs the module once).

    Returns:
        (total, per-module totals), in FLOPs (fused multiply-adds).
    """
    from fvcore.nn import FlopCountAnalysis

    with _quiet():
        analysis = FlopCountAnalysis(module, inputs)
    return _analysis_totals(analysis)


def model_flop_count(model: nn.Module, image: torch.Tensor) -> Tuple[float, Dict[str, float]]:
    """
    FLOPs of a detectron2 model's inference on one (3, H, W) image, by detectron2's
    :class:`~detectron2.utils.analysis.FlopCountAnalysis` (per-module keys start with "model.").
    """
    from detectron2.utils.analysis import FlopCountAnalysis

    was_training = model.training
    model.eval()
    with _quiet():
        analysis = FlopCountAnalysis(model, [{"image": image}])
    try:
        return _analysis_totals(analysis)
    finally:
        model.train(was_training)


def flop_count_meta(module: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> float:
    """
    FLOPs without running anything: :class:`torch.utils.flop_counter.FlopCounterMode` on a copy
    of the module on the "meta" device (no memory, no compute), halved to fused multiply-adds as
    fvcore counts. Used where an fvcore run would not fit in memory (the ViT at 2048x2048 on a
    small machine). It counts matmuls and convolutions only: on ViT-B at 1024x1024 it gives
    482.8 G where fvcore gives 483.2 G.
    """
    from torch.utils.flop_counter import FlopCounterMode

    import copy

    meta = copy.deepcopy(module).to("meta")
    meta_inputs = tuple(torch.empty(x.shape, dtype=x.dtype, device="meta") for x in inputs)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(*meta_inputs)
    return counter.get_total_flops() / 2.0


# ------------------------------------------------------------------------------------------------
# timing and memory
# ------------------------------------------------------------------------------------------------


def _release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so RSS starts near live data."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """
    Peak memory of the code in a ``with`` block, above what was in use when it started.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only). CPU: the process's resident set
    size, sampled every 5 ms by a thread (Linux ``/proc``), after freed heap pages are returned
    to the OS (glibc); None where neither is available.
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.peak_bytes: Optional[int] = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        _release_free_memory()
        self._start = _rss_bytes()
        if self._start is not None:
            self._peak = self._start
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        elif self._start is not None:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self._peak, _rss_bytes() or 0) - self._start


def time_interleaved(
    fns: Dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    device: Optional[torch.device] = None,
    log: Optional[Callable[[str], None]] = None,
) -> Tuple[Dict[str, List[float]], Dict[str, Optional[int]]]:
    """
    Time several functions in the same run, interleaved: after ``warmup`` calls of each, every
    repeat calls all of them, in reversed order every other repeat (ABBA), so that drift of the
    machine (clock, cache, thermal) falls on all alike.

    Returns:
        ({name: [seconds of each timed call]}, {name: peak memory of its first call, in bytes,
        or None}); see :class:`PeakMemory`.
    """
    device = torch.device(device or "cpu")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    names = list(fns)
    peaks: Dict[str, Optional[int]] = {}
    times: Dict[str, List[float]] = {name: [] for name in names}

    def call(name: str) -> float:
        memory = PeakMemory(device) if name not in peaks else contextlib.nullcontext()
        with memory:
            sync()
            start = time.perf_counter()
            fns[name]()
            sync()
            seconds = time.perf_counter() - start
        if name not in peaks:
            peaks[name] = memory.peak_bytes
        return seconds

    for name in names:
        for i in range(warmup):
            if log:
                log(f"  warmup {name} ({i + 1}/{warmup})")
            call(name)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(call(name))
        if log:
            done = ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names)
            log(f"  repeat {r + 1}/{repeats}: {done}")
    return times, peaks


def paired_ratio(numerator: List[float], denominator: List[float]) -> float:
    """The median of the per-repeat ratios of two interleaved timings (see time_interleaved)."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"Need paired timings, got {len(numerator)} and {len(denominator)}.")
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------


def default_config_dir() -> str:
    """The ``configs/`` folder of the lift_det checkout."""
    return os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "configs"))


def device_name(device: torch.device) -> str:
    """A human-readable name of the device (GPU model, or CPU model and threads)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {model}, {torch.get_num_threads()} threads"


def _load_detector_cfg(config_dir: str, key: str, size: int, tiny: bool):
    """A detector config for cost measurement at ``size`` (see the module docstring)."""
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(os.path.join(config_dir, _DETECTORS[key][0]))
    model = cfg.model
    net = model.backbone.net
    if "lift_weights" in net:
        net.lift_weights = ""  # random LiFT: costs do not depend on its weights
    model.backbone.square_pad = size  # the ViT interpolates its position embeddings
    heads = model.roi_heads
    predictors = [heads.box_predictor] if "box_predictor" in heads else heads.box_predictors
    for predictor in predictors:
        predictor.test_score_thresh = 0.0  # the mask head runs on all 100 detections
    if tiny:
        for k, v in _TINY_VIT.items():
            setattr(net, k, v)
        net.img_size = size
        model.proposal_generator.post_nms_topk = (2000, 50)
        for predictor in predictors:
            predictor.test_topk_per_image = 10
    return cfg


def _build(cfg_node, device: torch.device) -> nn.Module:
    from detectron2.config import instantiate

    torch.manual_seed(0)
    return instantiate(cfg_node).to(device).eval()


class _ViTOnly(nn.Module):
    """The plain ViT's last feature, as a tensor (a ViTLiFT without its LiFT)."""

    def __init__(self, vit_lift: nn.Module):
        super().__init__()
        self.vit_lift = vit_lift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit_lift.vit_forward(x)


def _attention_bytes(num_heads: int, tokens: int) -> int:
    """Peak bytes of one global-attention block of detectron2's ViT (fp32, three N x N maps)."""
    return 3 * num_heads * tokens * tokens * 4


def _available_bytes(device: torch.device) -> Optional[int]:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _load_average() -> Optional[float]:
    """The 1-minute load average of the machine (None where unknown)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _random_image(size: int, seed: int, device: torch.device) -> torch.Tensor:
    """A (3, size, size) float 0-255 image, the same in every run."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, size, size), generator=g).float().to(device)


# ------------------------------------------------------------------------------------------------
# the benchmark
# ------------------------------------------------------------------------------------------------


def _row(name, params, flops, size, note="") -> Dict[str, Any]:
    return {
        "name": name,
        "params_M": None if params is None else params / 1e6,
        "flops_G": None if flops is None else flops / 1e9,
        "flops_image_size": size,
        "note": note,
    }


def _timing(name, size, seconds, peak_bytes, note="", times=None) -> Dict[str, Any]:
    return {
        "name": name,
        "image_size": size,
        "median_s": seconds,
        "times_s": times,
        "peak_memory_MiB": None if peak_bytes is None else peak_bytes / 2**20,
        "note": note,
    }


def _join(*notes: Optional[str]) -> str:
    return "; ".join(n for n in notes if n)


def _components(config_dir: str, device: torch.device, result, rows, log) -> Dict[str, Any]:
    """Rows of ViT-B, LiFT-B and bilinear at 1024, and of ViT-B at 2048."""
    from detectron2.config import LazyConfig

    from ..modeling import BilinearUpsampler

    log(f"[1/5] FLOPs of ViT-B and LiFT-B at {_FULL_SIZE}x{_FULL_SIZE} (fvcore)...")
    cfg = LazyConfig.load(os.path.join(config_dir, _DETECTORS["mrcnn_lift"][0]))
    cfg.model.backbone.net.lift_weights = ""
    vit_lift = _build(cfg.model.backbone.net, device)
    vit, lift = _ViTOnly(vit_lift).eval(), vit_lift.lift
    p = lift.patch_size
    x = torch.zeros(1, 3, _FULL_SIZE, _FULL_SIZE, device=device)
    features = torch.zeros(1, lift.in_channels, _FULL_SIZE // p, _FULL_SIZE // p, device=device)
    vit_params = parameter_count(vit_lift) - parameter_count(lift)
    vit_flops = flop_count(vit, (x,))[0]
    lift_flops = flop_count(lift, (x, features))[0]
    bilinear_flops = flop_count(BilinearUpsampler(lift.in_channels, p), (x, features))[0]
    lift_name = getattr(lift, "preset", "LiFT")
    rows.append(_row("ViT-B/16 (ViTDet)", vit_params, vit_flops, _FULL_SIZE, "stride 16"))
    rows.append(_row(lift_name, parameter_count(lift), lift_flops, _FULL_SIZE, "stride 16 -> 8"))
    rows.append(
        _row("bilinear 2x (control)", 0, bilinear_flops, _FULL_SIZE, "stride 16 -> 8, no image")
    )
    result["lift_flops_ratio"] = lift_flops / vit_flops
    result["lift_flops_ratio_image_size"] = [_FULL_SIZE, _FULL_SIZE]

    # stage one by FLOPs (device-independent): F at x, x/2, x/4 + LiFT at x/2, x/4 with its
    # backward counted as twice its forward, over one F(x)
    step_flops = vit_flops
    for size in (_FULL_SIZE // 2, _FULL_SIZE // 4):
        x_s = torch.zeros(1, 3, size, size, device=device)
        f_s = torch.zeros(1, lift.in_channels, size // p, size // p, device=device)
        step_flops += flop_count(vit, (x_s,))[0] + 3 * flop_count(lift, (x_s, f_s))[0]
    result["stage1_flops_ratio"] = step_flops / vit_flops

    big = 2 * _FULL_SIZE
    log(f"[2/5] FLOPs of ViT-B at {big}x{big}...")
    need = _attention_bytes(vit_lift.blocks[0].attn.num_heads, (big // p) ** 2)
    available = _available_bytes(device)
    fits = available is not None and need < 0.8 * available
    x_big = torch.zeros(1, 3, big, big, device=device)
    if fits:
        big_flops = flop_count(vit, (x_big,))[0]
        note = "the stride-8 grid the costly way (stride 16 on a 2x image)"
    else:
        big_flops = flop_count_meta(vit, (x_big,))
        note = (
            f"the stride-8 grid the costly way; counted on the meta device (torch "
            f"FlopCounterMode, multiply-adds): an fvcore run needs ~{need / 2**30:.0f} GiB for "
            f"global attention, {(available or 0) / 2**30:.0f} GiB available"
        )
    rows.append(_row(f"ViT-B/16 at {big}x{big}", vit_params, big_flops, big, note))
    result["vit_2x_flops_ratio"] = big_flops / vit_flops
    result["vit_2x_vs_vit_lift_flops_ratio"] = big_flops / (vit_flops + lift_flops)
    return dict(vit=vit, vit_lift=vit_lift, fits=fits, need=need, available=available)


def _detectors(config_dir, device, opts, tiny, mode, result, rows, log) -> None:
    """Rows of the backbones and whole detectors, with and without LiFT."""
    from ..modeling import BilinearUpsampler

    size = opts["model_flop_size"]
    result["model_flop_image_size"] = [size, size]
    size_note = "" if size == _FULL_SIZE else f"counted at {size}x{size} ({mode} mode)"
    if tiny:
        size_note = f"tiny test ViT (2 blocks, 96 ch), 50 proposals, {size}x{size}"
    log(f"[3/5] FLOPs of the backbones and whole detectors at {size}x{size} (detectron2)...")
    image = _random_image(size, 0, device)
    models, counts, notes = {}, {}, {}
    for key in _DETECTORS:
        start = time.perf_counter()
        models[key] = _build(_load_detector_cfg(config_dir, key, size, tiny).model, device)
        plain = key.replace("_lift", "")
        if opts["share_heads"] and key != plain:
            # the heads see the same p2-p6 levels, 1000 proposals and 100 detections with or
            # without LiFT: count the backbone, take the heads from the plain model
            padded = models[key].preprocess_image([{"image": image}]).tensor
            backbone, by_module = flop_count(models[key].backbone, (padded,))
            heads = counts[plain][0] - counts[plain][1]["model.backbone"]
            by_module = {("model.backbone." + k).rstrip("."): v for k, v in by_module.items()}
            counts[key] = (backbone + heads, by_module)
            notes[key] = "backbone counted, heads as without LiFT"
        else:
            counts[key] = model_flop_count(models[key], image)
        log(f"  {key}: {counts[key][0] / 1e9:.1f} G ({time.perf_counter() - start:.0f}s)")

    for key, label in (
        ("mrcnn", "ViT + pyramid (ViTDet)"),
        ("mrcnn_lift", "ViT + LiFT-B + pyramid"),
    ):
        backbone = models[key].backbone
        flops = counts[key][1]["model.backbone"]
        rows.append(_row(f"Backbone: {label}", parameter_count(backbone), flops, size, size_note))
    # the control: the LiFT backbone with bilinear upsampling in LiFT's place (same pyramid)
    net = models["mrcnn_lift"].backbone.net
    grid = size // net.lift.patch_size
    features = torch.zeros(1, net.lift.in_channels, grid, grid, device=device)
    bilinear = BilinearUpsampler(net.lift.in_channels, net.lift.patch_size)
    bilinear_flops = flop_count(bilinear, (image[None], features))[0]
    lift_flops = counts["mrcnn_lift"][1].get("model.backbone.net.lift", 0.0)
    rows.append(
        _row(
            "Backbone: ViT + bilinear + pyramid (control)",
            parameter_count(models["mrcnn_lift"].backbone) - parameter_count(net.lift),
            counts["mrcnn_lift"][1]["model.backbone"] - lift_flops + bilinear_flops,
            size,
            _join("= LiFT backbone - LiFT + bilinear", size_note),
        )
    )
    for key, (_, label) in _DETECTORS.items():
        note = _join("100 detections (score threshold 0)", notes.get(key), size_note)
        rows.append(_row(label, parameter_count(models[key]), counts[key][0], size, note))
    result["model_flops_ratio"] = {
        "mrcnn": counts["mrcnn_lift"][0] / counts["mrcnn"][0],
        "cascade": counts["cascade_lift"][0] / counts["cascade"][0],
    }


def _inference_time(config_dir, device, opts, tiny, result, timings, log) -> None:
    """Mask R-CNN inference with and without LiFT, interleaved."""
    size, repeats = opts["time_size"], opts["repeats"]
    result["timing_image_size"] = [size, size]
    log(f"[4/5] Mask R-CNN inference at {size}x{size}, {repeats} interleaved repeats...")
    models = {
        key: _build(_load_detector_cfg(config_dir, key, size, tiny).model, device)
        for key in ("mrcnn", "mrcnn_lift")
    }
    image = _random_image(size, 1, device)
    inputs = [{"image": image, "height": size, "width": size}]

    def infer(model):
        def run():
            with torch.no_grad(), _autocast(device):
                return model(inputs)

        return run

    fns = {key: infer(model) for key, model in models.items()}
    times, peaks = time_interleaved(fns, repeats, warmup=1, device=device, log=log)
    note = _join("100 detections (score threshold 0)", "tiny test ViT" if tiny else "")
    for key, name in (("mrcnn", "Mask R-CNN inference"), ("mrcnn_lift", "Mask R-CNN + LiFT-B")):
        seconds = statistics.median(times[key])
        timings.append(_timing(name, size, seconds, peaks[key], note, times[key]))
    # the two calls of one repeat run back to back: the median of the per-repeat ratios cancels
    # slow drift of a shared machine better than the ratio of the medians (also recorded)
    result["inference_time_ratio"] = paired_ratio(times["mrcnn_lift"], times["mrcnn"])
    result["inference_time_ratio_of_medians"] = statistics.median(
        times["mrcnn_lift"]
    ) / statistics.median(times["mrcnn"])


def _stage1(config_dir, device, opts, tiny, result, timings, log) -> None:
    """The stage-one step / frozen-ViT forward ratio, by the stage-one code."""
    from detectron2.config import LazyConfig

    from ..modeling.distill import measure_stage1_ratio

    size = opts["time_size"]
    log(f"[5/5] Stage-one step / one frozen-ViT forward at {size}x{size}...")
    cfg = LazyConfig.load(os.path.join(config_dir, _STAGE1))
    cfg.model.square_pad = size
    if tiny:
        for k, v in _TINY_VIT.items():
            setattr(cfg.model.source.net, k, v)
        cfg.model.source.net.img_size = size
    distiller = _build(cfg.model, device)
    batch = [{"image": _random_image(size, 2, device).to(torch.uint8)}]
    ratio = measure_stage1_ratio(distiller, batch, repeats=opts["stage1_repeats"], warmup=1)
    result["stage1_step_ratio"] = ratio
    result["stage1_image_size"] = [size, size]
    timings.append(
        _timing(
            "Stage-one step / frozen-ViT forward",
            size,
            None,
            None,
            f"{ratio:.2f} ViT forwards per step (measure_stage1_ratio, batch 1, median of "
            f"{opts['stage1_repeats']})",
        )
    )


def _vit_2x_time(device, opts, mode, parts, result, timings, log) -> None:
    """ViT-B at 2048 vs ViT-B + LiFT-B at 1024: two ways to the same stride-8 grid."""
    big = 2 * _FULL_SIZE
    if not opts["time_2x"] or not parts["fits"]:
        reason = f"skipped in {mode} mode"
        if opts["time_2x"]:
            reason = (
                f"skipped: needs ~{parts['need'] / 2**30:.0f} GiB for global attention, "
                f"{(parts['available'] or 0) / 2**30:.0f} GiB available"
            )
        timings.append(_timing(f"ViT-B at {big}x{big} (stride-8 grid)", big, None, None, reason))
        result["vit_2x_time_ratio"] = None
        return
    log(f"  ViT-B at {big}x{big} vs ViT-B + LiFT-B at {_FULL_SIZE}x{_FULL_SIZE}...")
    vit, vit_lift = parts["vit"], parts["vit_lift"].eval()
    x = torch.zeros(1, 3, _FULL_SIZE, _FULL_SIZE, device=device)
    x_big = torch.zeros(1, 3, big, big, device=device)

    def run(module, inputs):
        def fn():
            with torch.no_grad(), _autocast(device):
                return module(inputs)

        return fn

    fns = {"lift": run(vit_lift, x), "big": run(vit, x_big)}
    times, peaks = time_interleaved(fns, opts["repeats"], 1, device, log)
    for key, name, size in (
        ("lift", f"ViT-B + LiFT-B at {_FULL_SIZE}x{_FULL_SIZE} (stride-8 grid)", _FULL_SIZE),
        ("big", f"ViT-B at {big}x{big} (stride-8 grid)", big),
    ):
        seconds = statistics.median(times[key])
        timings.append(_timing(name, size, seconds, peaks[key], times=times[key]))
    result["vit_2x_time_ratio"] = paired_ratio(times["big"], times["lift"])


def run_benchmark(
    mode: str = "full",
    device: str = "cpu",
    config_dir: Optional[str] = None,
    log: Callable[[str], None] = logger.info,
) -> Dict[str, Any]:
    """
    Measure ViTDet-B with and without LiFT-B on ``device`` (see the module docstring).

    Args:
        mode: one of :data:`BENCHMARK_MODES` ("full", "quick", "tiny").
        device: "cpu" or "cuda"; on CUDA, timings run under fp16 autocast.
        config_dir: where ``vitdet_mrcnn.py`` and friends are (default: the checkout's configs/).
        log: progress messages.

    Returns:
        a JSON-serializable dict: ``rows`` (parameters / FLOPs), ``timings``, the three ratios
        (``lift_flops_ratio``, ``inference_time_ratio``, ``stage1_step_ratio``), ``goals``, and
        the device, versions and image sizes.
    """
    if mode not in BENCHMARK_MODES:
        raise ValueError(f"Unknown benchmark mode {mode!r}; use one of {sorted(BENCHMARK_MODES)}.")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but CUDA is not available.")
    opts, tiny = BENCHMARK_MODES[mode], mode == "tiny"
    config_dir = config_dir or default_config_dir()
    start = time.perf_counter()
    result: Dict[str, Any] = {
        "mode": mode,
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "amp": device.type == "cuda",
        "flop_convention": "fvcore: one fused multiply-add = 1 flop",
        # other jobs on the machine skew timings (interleaving only cancels slow drift)
        "load_average_start": _load_average(),
    }
    rows: List[Dict[str, Any]] = []
    timings: List[Dict[str, Any]] = []
    parts = _components(config_dir, device, result, rows, log)
    _detectors(config_dir, device, opts, tiny, mode, result, rows, log)
    _inference_time(config_dir, device, opts, tiny, result, timings, log)
    _stage1(config_dir, device, opts, tiny, result, timings, log)
    _vit_2x_time(device, opts, mode, parts, result, timings, log)
    result["rows"] = rows
    result["timings"] = timings
    result["goals"] = {
        k: {"goal": v, "value": result[k], "met": bool(result[k] <= v)} for k, v in GOALS.items()
    }
    result["load_average_end"] = _load_average()
    result["wall_time_s"] = time.perf_counter() - start
    log(f"Done in {result['wall_time_s']:.0f}s.")
    return result


def _fmt(value, spec: str, missing: str = "n/a") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def format_markdown(result: Dict[str, Any]) -> str:
    """The benchmark as markdown: parameters/FLOPs, timings, and the ratios against the goals."""
    amp = ", fp16 autocast" if result.get("amp") else ""
    load = ""
    if result.get("load_average_start") is not None:
        load = (
            f"; load average {result['load_average_start']:.1f} at the start, "
            f"{_fmt(result.get('load_average_end'), '.1f')} at the end"
        )
    lines = [
        f"### Cost of LiFT in ViTDet-B ({result['mode']} run; {result['device']}; "
        f"torch {result['torch']}{amp}{load})",
        "",
        "| Component | Params (M) | FLOPs (G) | Input | Note |",
        "|---|---:|---:|---|---|",
    ]
    for r in result["rows"]:
        s = r["flops_image_size"]
        lines.append(
            f"| {r['name']} | {_fmt(r['params_M'], '.2f')} | {_fmt(r['flops_G'], '.1f')} | "
            f"{s}x{s} | {r['note']} |"
        )
    lines += [
        "",
        "| Timing | Input | Median (s) | Peak memory (MiB) | Note |",
        "|---|---|---:|---:|---|",
    ]
    for t in result["timings"]:
        s = t["image_size"]
        lines.append(
            f"| {t['name']} | {s}x{s} | {_fmt(t['median_s'], '.3f')} | "
            f"{_fmt(t['peak_memory_MiB'], '.0f')} | {t['note']} |"
        )
    fs, ts = result["lift_flops_ratio_image_size"][0], result["timing_image_size"][0]
    ms = result["model_flop_image_size"][0]
    lines += [
        "",
        "| Ratio | Value | Goal | Met |",
        "|---|---:|---:|---|",
        f"| LiFT-B / ViT-B FLOPs ({fs}x{fs}) | {result['lift_flops_ratio']:.3f} | <= "
        f"{GOALS['lift_flops_ratio']:.2f} | {_met(result, 'lift_flops_ratio')} |",
        f"| Mask R-CNN inference time, with / without LiFT ({ts}x{ts}; median of per-repeat "
        f"ratios) | "
        f"{result['inference_time_ratio']:.3f} | <= {GOALS['inference_time_ratio']:.2f} | "
        f"{_met(result, 'inference_time_ratio')} |",
        f"| Stage-one step / one frozen-ViT forward ({ts}x{ts}) | "
        f"{result['stage1_step_ratio']:.3f} | <= {GOALS['stage1_step_ratio']:.2f} | "
        f"{_met(result, 'stage1_step_ratio')} |",
        f"| Stage-one step / one frozen-ViT forward, by FLOPs ({fs}x{fs}; backward = 2x "
        f"forward) | {result['stage1_flops_ratio']:.3f} | | |",
        f"| Mask R-CNN FLOPs, with / without LiFT ({ms}x{ms}) | "
        f"{result['model_flops_ratio']['mrcnn']:.3f} | | |",
        f"| ViT-B FLOPs at 2x input / ViT-B + LiFT-B | "
        f"{result['vit_2x_vs_vit_lift_flops_ratio']:.2f} | | |",
    ]
    if result.get("vit_2x_time_ratio") is not None:
        lines.append(
            f"| ViT-B time at 2x input / ViT-B + LiFT-B | {result['vit_2x_time_ratio']:.2f} | | |"
        )
    return "\n".join(lines) + "\n"


def _met(result: Dict[str, Any], key: str) -> str:
    return "yes" if result["goals"][key]["met"] else "no"


def write_benchmark(
    result: Dict[str, Any], json_path: Optional[str] = None, markdown_path: Optional[str] = None
) -> str:
    """Write the result as JSON and/or markdown; returns the markdown."""
    text = format_markdown(result)
    for path, content in ((json_path, json.dumps(result, indent=2)), (markdown_path, text)):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.write(content + ("" if content.endswith("\n") else "\n"))
    return text
