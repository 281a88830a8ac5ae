"""What the cost measurements share (tools/benchmark.py, tools/gpu_check.py, the study): fvcore's
FLOP total, models with random weights, random images, the one timing helper (torch.utils.benchmark,
interleaved) and peak memory."""

import resource
import warnings
from typing import Any, Callable, Dict, Optional
import torch

from detectron2.config import LazyConfig, instantiate


def count_flops(analysis) -> float:
    """fvcore's total, without its per-op warnings (detectron2's and fvcore's analyses alike)."""
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(analysis.total())


def detector_config(
    path: str, size=None, proposals=None, detections=None, lift_weights="", overrides=()
):
    """The model config of a detector LazyConfig (with its ``key=value`` ``overrides``) for
    counting: a random LiFT allowed, every detection through the mask head (score threshold 0);
    at ``size`` (``square_pad``), ``proposals`` and ``detections`` per image where given;
    ``lift_weights``: the LiFT file a checkpoint's load reads (none by default)."""
    model = LazyConfig.apply_overrides(LazyConfig.load(path), overrides).model
    if "lift" in model.backbone.net:  # a ViTLiFT: no LiFT file is loaded
        model.backbone.net.allow_random_lift = True
    if lift_weights:
        model.backbone.net.lift_weights = lift_weights
    if size:
        model.backbone.square_pad = size  # the ViT interpolates its position embeddings
    if proposals:
        model.proposal_generator.post_nms_topk = (2000, proposals)  # (train, test)
    heads = model.roi_heads
    for predictor in [heads.box_predictor] if "box_predictor" in heads else heads.box_predictors:
        predictor.test_score_thresh = 0.0
        if detections:
            predictor.test_topk_per_image = detections
    return model


def random_detector(path: str, *args, device="cpu", train: bool = False, **kwargs):
    """:func:`detector_config` (same arguments) instantiated after ``torch.manual_seed(0)``, on
    ``device``, in eval mode unless ``train``."""
    model = detector_config(path, *args, **kwargs)
    torch.manual_seed(0)
    return instantiate(model).to(device).train(train)


def random_distiller(cfg, size: int, device):
    """A stage-one LazyConfig's model at ``size`` after ``torch.manual_seed(0)``, on ``device``."""
    cfg.model.square_pad = size
    torch.manual_seed(0)
    return instantiate(cfg.model).to(device)


def random_image(size: int, seed: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, size, size), generator=g).float().to(device)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def free(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def peak_memory_mib(fn: Callable[[], Any], device) -> float:
    """CUDA: peak allocated by one call; CPU: the process's peak RSS so far (resource)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def time_interleaved(
    fns: Dict[str, Callable[[], Any]],
    rounds: int = 1,
    min_run_time: float = 0.0,
    device="cpu",
    num_threads: Optional[int] = None,
) -> Dict[str, list]:
    """The one timing helper: ``rounds`` measurements of each function (``blocked_autorange``),
    taken A B .. Z, then Z .. B A, ..., so that a drift of the machine falls on every function
    alike; CUDA synchronized after each call; ``num_threads``: torch's (default: now's)."""
    # imported here: torch.utils.benchmark logs a CUDA_HOME warning on import without CUDA
    from torch.utils.benchmark import Timer

    threads = num_threads or torch.get_num_threads()
    timers = {
        k: Timer("fn()", globals={"fn": lambda f=f: (f(), sync(device))}, num_threads=threads)
        for k, f in fns.items()
    }
    out: Dict[str, list] = {k: [] for k in fns}
    for r in range(rounds):
        for k in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            out[k].append(timers[k].blocked_autorange(min_run_time=min_run_time))
    return out


def merged_median(measurements: list) -> float:
    """The median over every block of one function's measurements (seconds)."""
    from torch.utils.benchmark import Measurement

    return Measurement.merge(measurements)[0].median


def cpu_latency_ms(model, inputs, min_run_time: float = 2.0) -> float:
    """Median ms of ``model(inputs)`` at inference on one CPU thread."""
    infer = torch.no_grad()(lambda: model(inputs))  # no_grad as a decorator
    (m,) = time_interleaved({"model": infer}, 1, min_run_time, num_threads=1)["model"]
    return m.median * 1000
