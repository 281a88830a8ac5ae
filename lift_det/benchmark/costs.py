"""
What the cost measurements share: fvcore's FLOP total without its per-op warnings, detector
configs set up for counting (random weights, every detection through the mask head), random input
images, peak memory; and the parameters and GFLOPs of the study's arms.
"""

import os
import resource
import warnings
import torch

from detectron2.config import LazyConfig

__all__ = [
    "count_flops",
    "detector_config",
    "random_image",
    "peak_memory_mib",
    "cpu_latency_ms",
]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def count_flops(analysis) -> float:
    """fvcore's total, without its per-op warnings (detectron2's and fvcore's analyses alike)."""
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(analysis.total())


def detector_config(path: str, size: int, proposals: int, detections: int):
    """The model config of a detector LazyConfig at ``size``, ``detections`` per image."""
    model = LazyConfig.load(path).model
    if "lift" in model.backbone.net:  # a ViTLiFT
        # costs do not depend on LiFT's weights: no checkpoint is loaded, a random LiFT is fine
        model.backbone.net.allow_random_lift = True
    model.backbone.square_pad = size  # the ViT interpolates its position embeddings
    model.proposal_generator.post_nms_topk = (2000, proposals)  # (train, test)
    heads = model.roi_heads
    for predictor in [heads.box_predictor] if "box_predictor" in heads else heads.box_predictors:
        predictor.test_score_thresh = 0.0  # the mask head always runs on all detections
        predictor.test_topk_per_image = detections
    return model


def random_image(size: int, seed: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, size, size), generator=g).float().to(device)


def peak_memory_mib(fn, device) -> float:
    """CUDA: peak allocated by one call; CPU: the process's peak RSS so far (resource)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def cpu_latency_ms(model, inputs, min_run_time: float = 2.0) -> float:
    """Median ms of ``model(inputs)`` at inference on one CPU thread (torch.utils.benchmark)."""
    from torch.utils.benchmark import Timer

    timer = Timer("model(inputs)", globals={"model": model, "inputs": inputs}, num_threads=1)
    with torch.no_grad():
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1000
