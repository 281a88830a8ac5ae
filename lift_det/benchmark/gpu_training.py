"""The GPU check's training measurements and correctness runs (tools/gpu_check.py): a stage-one AMP
step and what an epoch and the COCO schedule take, stage-two steps with and without LiFT, a few
iterations of each stage on mini COCO data (finite, falling losses), and TorchScript export."""

import itertools
import logging
import os
from typing import Any, Dict, List, Tuple
import torch
from omegaconf import OmegaConf

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import SimpleTrainer
from detectron2.export import TracingAdapter
from detectron2.utils.events import EventStorage

from ..checkpoint import read_lift_file
from ..data import ensure_mini_coco
from ..engine.hooks import ExportLiFTFile
from ..engine.train_utils import build_trainer
from ..modeling import ATTN_IMPLS, set_attn_impl
from ..utils import REPO
from .costs import free, peak_memory_mib, random_distiller, random_image, time_interleaved
from .gpu_check import GPU, build_detector, unless_oom

logger = logging.getLogger(__name__)
# COCO train2017, all images: what configs/lift_stage1_coco.py counts as one epoch
COCO_TRAIN_IMAGES = 118287


class _CPUAutocastTrainer(SimpleTrainer):
    """SimpleTrainer's step under CPU bf16 autocast (detectron2's AMPTrainer needs CUDA)."""

    def run_step(self):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            super().run_step()


def make_trainer(cfg, model, batch, amp: bool, device):
    """The trainer tools/train_net.py builds (AMPTrainer on CUDA with AMP) with the config's
    optimizer, on a fixed batch; AMP on a CPU: SimpleTrainer under bf16 autocast."""
    cfg.optimizer.params.model = model
    optim, data = instantiate(cfg.optimizer), itertools.repeat(batch)
    if amp and device.type == "cpu":
        return _CPUAutocastTrainer(model, data, optim)
    train = OmegaConf.create({"train": {"amp": {"enabled": amp}, "device": str(device)}})
    return build_trainer(train, model, optim, data)


def loss_summary(losses: List[float]) -> Dict[str, Any]:
    """Finite, and falling: the mean of the last half below the mean of the first half."""
    half = len(losses) // 2
    finite = all(torch.isfinite(torch.tensor(losses)).tolist())
    first, last = sum(losses[:half]) / half, sum(losses[-half:]) / half
    return dict(losses=losses, finite=finite, falling=bool(finite and last < first))


def _config(rel: str):
    return LazyConfig.load(os.path.join(REPO, rel))


def train_batch(cfg, root: str, batch: int, size: int) -> List[Dict[str, Any]]:
    """One batch of a config's training loader on the mini data (a detector's crops at ``size``)."""
    loader = cfg.dataloader.train
    loader.dataset.names = ensure_mini_coco("train", root)
    loader.total_batch_size, loader.num_workers = batch, 0
    for aug in loader.mapper.get("augmentations", []):  # LSJ: ResizeScale + FixedSizeCrop
        aug.update({k: size for k in ("target_height", "target_width") if k in aug})
        if "crop_size" in aug:
            aug.crop_size = (size, size)
    return next(iter(instantiate(loader)))


def _step_cost(model, cfg, data, device, min_run_time) -> Dict[str, Any]:
    """One AMP training step (the config's optimizer) on a fixed batch: peak memory of one (the
    warmup), then :func:`time_interleaved`; out of memory is recorded."""
    trainer = make_trainer(cfg, model, data, True, device)

    def measure():
        memory = peak_memory_mib(trainer.run_step, device)
        (m,) = time_interleaved({"step": trainer.run_step}, 1, min_run_time, device)["step"]
        return dict(median_s=m.median, iqr_s=m.iqr, runs=len(m.times), peak_memory_MiB=memory)

    with EventStorage(0) as trainer.storage:
        return unless_oom(measure, device, dict(oom=True))


def stage_one_cost(setup, device, recipe_gpus: int) -> Dict[str, Any]:
    """A stage-one AMP step at the COCO config's batch per GPU; an epoch and the schedule."""
    coco = _config(GPU.stage1)
    total = int(coco.dataloader.train.total_batch_size)
    batch = setup.stage1_batch or total // recipe_gpus
    epochs = coco.train.max_iter * total / COCO_TRAIN_IMAGES
    cfg = _config(setup.stage1)
    model = random_distiller(cfg, setup.size, device)
    images = [{"image": random_image(setup.size, i, device).to(torch.uint8)} for i in range(batch)]
    cost = _step_cost(model, cfg, images, device, setup.min_run_time)
    del model
    free(device)
    out = dict(config=setup.stage1, batch_per_gpu=batch, epoch_images=COCO_TRAIN_IMAGES)
    recipe = f"{GPU.stage1}: total_batch_size={total} on {recipe_gpus} GPUs"
    out.update(recipe=recipe, schedule_epochs=epochs, **cost)
    if "oom" not in cost:
        out["images_per_s"] = batch / cost["median_s"]
        out["epoch_s"] = COCO_TRAIN_IMAGES / out["images_per_s"]
        out["schedule_s"] = epochs * out["epoch_s"]
    return out


def stage_two_rows(setup, device, root, recipe_gpus: int) -> Dict[str, List[Dict[str, Any]]]:
    """One AMP training step (the configs' optimizer, a mini COCO batch) with and without LiFT,
    and of the control that freezes the ViT as +LiFT does, at batch 1 (ViTDet's) and the COCO
    config's batch per GPU (``setup.stage2_batches`` if set); each row counts what is trained.
    Returns the rows and +LiFT's (the second detector's) :func:`stage_two_ratios`."""
    total = int(_config(GPU.detectors["ViTDet-B"]).dataloader.train.total_batch_size)
    batches = setup.stage2_batches or sorted({1, total // recipe_gpus})
    rows = []
    for name, rel in {**setup.detectors, **setup.stage2_control}.items():
        for batch in batches:
            model = build_detector(rel, setup, device, train=True)
            data = train_batch(_config(rel), root, batch, setup.size)
            cost = _step_cost(model, _config(rel), data, device, setup.min_run_time)
            trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
            row = dict(model=name, config=rel, batch=batch, precision="amp", trained_params=trained)
            rows.append({**row, **cost})
            logger.info(f"stage two step: {rows[-1]}")
            del model
            free(device)
    return dict(rows=rows, ratios=stage_two_ratios(rows, list(setup.detectors)[1]))


def stage_two_ratios(rows, lift_name: str) -> List[Dict[str, Any]]:
    """+LiFT's step time and peak memory over each other row's of the same batch."""
    return [
        dict(
            batch=r["batch"],
            over=b["model"],
            time=r["median_s"] / b["median_s"],
            memory=r["peak_memory_MiB"] / b["peak_memory_MiB"],
        )
        for r in rows
        if r["model"] == lift_name and "oom" not in r
        for b in rows
        if b["model"] != lift_name and b["batch"] == r["batch"] and "oom" not in b
    ]


def _losses(trainer) -> List[float]:
    return [v for v, _ in trainer.storage.history("total_loss").values()]


def _formats(lift_file) -> Dict[str, Tuple]:
    return {k: (tuple(v.shape), str(v.dtype)) for k, v in lift_file["model"].items()}


def _differing(a: Dict, b: Dict) -> List[str]:
    return [k for k in set(a) | set(b) if a.get(k) != b.get(k)]


def stage_one_runs(setup, device, root, work) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """fp32 and AMP stage one on a fixed mini batch; both write a LiFT file (ExportLiFTFile)."""
    cfg = _config(setup.stage1)
    cfg.model.square_pad = setup.size  # the loader's crops too (the mapper's image_size)
    batch = train_batch(cfg, root, 2, setup.size)
    out, files = {}, {}
    for precision in ("fp32", "amp"):
        model = random_distiller(cfg, setup.size, device)
        trainer = make_trainer(cfg, model, batch, precision == "amp", device)
        hook = ExportLiFTFile(output_dir=os.path.join(work, precision))
        trainer.register_hooks([hook])
        trainer.train(0, setup.iterations)
        out[precision] = dict(iterations=setup.iterations, **loss_summary(_losses(trainer)))
        files[precision] = hook.path
    fp32, amp = (read_lift_file(files[p]) for p in ("fp32", "amp"))
    differences = _differing(_formats(fp32), _formats(amp))
    differences += [f"metadata {k}" for k in _differing(fp32["lift_det"], amp["lift_det"])]
    out["lift_file"] = dict(
        tensors=len(fp32["model"]), same_format=not differences, differences=sorted(differences)
    )
    teacher = {k: v.detach().clone() for k, v in model.backbone.net.state_dict().items()}
    return out, dict(lift_file=files["amp"], teacher=teacher)


def stage_two_run(setup, device, root, stage_one) -> Tuple[Dict[str, Any], torch.nn.Module]:
    """+LiFT stage two, its ViT the stage-one teacher and LiFT the AMP stage-one file (AMP)."""
    rel = list(setup.detectors.values())[1]
    model = build_detector(rel, setup, device, train=True, lift_weights=stage_one["lift_file"])
    # as a ViTDet checkpoint loads: the ViT's keys; LiFT comes from lift_weights (strict: no key
    # is missing or unexpected)
    model.backbone.net.load_state_dict(stage_one["teacher"])
    data = train_batch(_config(rel), root, 2, setup.size)
    trainer = make_trainer(_config(rel), model, data, True, device)
    trainer.train(0, setup.iterations)
    out = dict(config=rel, iterations=setup.iterations, lift_from="AMP stage one's LiFT file")
    return {**out, **loss_summary(_losses(trainer))}, model


def _inference(model, inputs):
    """Raw detections (no rescaling), as detectron2's export tests trace them."""
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


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
        diffs = {k: _max_abs_diff(a, b) for k, (a, b) in fields.items()}
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
