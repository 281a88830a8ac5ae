"""Small pieces tools/train_net.py adds to upstream's loop: CPU fallbacks, data errors, NaN stop."""

import logging
import os
from typing import Any, Dict
import torch

from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, TrainerBase

__all__ = ["build_trainer", "ddp_kwargs", "fit_device", "instantiate_data", "train_or_explain"]

logger = logging.getLogger("detectron2")


def fit_device(cfg) -> None:
    """``train.device=cuda`` without CUDA falls back to the CPU with a warning."""
    if not torch.cuda.is_available() and str(cfg.train.device).startswith("cuda"):
        logger.warning("CUDA is not available: running on CPU (train.device=cpu).")
        cfg.train.device = "cpu"


def ddp_kwargs(cfg) -> Dict[str, Any]:
    """``cfg.train.ddp`` for ``create_ddp_model``; on CPU (gloo) DDP takes no device ids."""
    ddp = dict(cfg.train.get("ddp", {}))
    if not str(cfg.train.device).startswith("cuda"):
        ddp["device_ids"] = None
    return ddp


def build_trainer(cfg, model, optim, train_loader) -> TrainerBase:
    """AMPTrainer when ``train.amp.enabled`` and CUDA is used, else SimpleTrainer."""
    use_amp = cfg.train.amp.enabled and str(cfg.train.device).startswith("cuda")
    if cfg.train.amp.enabled and not use_amp:
        logger.warning("train.amp.enabled=True but train.device is not CUDA: training in fp32.")
    return (AMPTrainer if use_amp else SimpleTrainer)(model, train_loader, optim)


def instantiate_data(node, what: str):
    """``instantiate`` a data loader; a missing dataset file gets the dataset root in the error."""
    try:
        return instantiate(node)
    except FileNotFoundError as e:
        root = os.environ.get("DETECTRON2_DATASETS", "datasets")
        raise FileNotFoundError(
            f"{what}: {e}\nDatasets are read under $DETECTRON2_DATASETS (now '{root}', e.g. "
            f"{root}/coco/train2017 and {root}/coco/annotations/instances_train2017.json). Set "
            f"DETECTRON2_DATASETS to the folder that holds them, or use the built-in mini data "
            f"(configs/mini/)."
        ) from e


def train_or_explain(trainer: TrainerBase, checkpointer, start_iter: int, max_iter: int) -> None:
    """``trainer.train``; a NaN/inf loss stops with the iteration and the last checkpoint."""
    try:
        trainer.train(start_iter, max_iter)
    except FloatingPointError as e:
        last = checkpointer.get_checkpoint_file() if checkpointer.has_checkpoint() else None
        raise FloatingPointError(
            f"{e}\nTraining stopped at iteration {trainer.iter}. Last checkpoint: "
            f"{last or 'none written yet'}; lower the learning rate and resume with --resume."
        ) from e
