"""Small pieces tools/train_net.py adds to upstream's loop: CPU fallbacks, data errors, NaN stop."""

import itertools
import logging
import os
from typing import Any, Dict, List, Tuple
import torch

from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, TrainerBase

from ..data.detection_utils import datasets_hint
from .checks import UsageError

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
    """``instantiate`` a data loader; what its dataset functions and mappers refuse is bad input
    (:class:`UsageError`) naming the loader, a missing file with where datasets are read."""
    try:
        return instantiate(node)
    except FileNotFoundError as e:
        hint = datasets_hint()  # lift_det's dataset functions give it already
        raise UsageError(f"{what}: {e}" if hint in str(e) else f"{what}: {e} {hint}") from None
    except (ValueError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e  # without the quotes
        raise UsageError(f"{what}: {message}") from None


def instantiate_model(node):
    """``instantiate(cfg.model)``; a value a constructor refuses is bad input (UsageError)."""
    try:
        return instantiate(node)
    except (ValueError, NotImplementedError) as e:
        raise UsageError(f"the model (model): {e}") from None


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


def optimizer_settings(optim) -> List[Dict[str, Any]]:
    """The hyperparameters of each parameter group (lr, weight decay, ...), without the params."""
    return [
        {k: v for k, v in g.items() if k not in ("params", "initial_lr")}
        for g in optim.param_groups
    ]


def apply_optimizer_settings(optim, settings: List[Dict[str, Any]]) -> Dict[str, Tuple[Any, Any]]:
    """After a resume: the config's hyperparameters (``settings``) in place of those the
    checkpoint restored, the optimizer's state kept; returns {name: (old, new)} of what changed."""
    changed: Dict[str, Tuple[Any, Any]] = {}
    for group, new in zip(optim.param_groups, settings):
        for k, v in new.items():
            old = group.get("initial_lr", group[k]) if k == "lr" else group.get(k)
            if old != v and k not in changed:
                changed[k] = (old, v)
            group[k] = v
        group["initial_lr"] = new["lr"]
    return changed


def new_eval_dir(output_dir: str, weights: str) -> str:
    """A new folder ``<output_dir>/inference_<checkpoint name>`` (``_2``, ... if taken), created
    here: an evaluation never writes over a run's or an earlier evaluation's files."""
    stem = os.path.splitext(os.path.basename(weights.split("?")[0].rstrip("/")))[0] or "weights"
    base = os.path.join(output_dir or ".", f"inference_{stem}")
    if "://" in base:
        return base
    for n in itertools.count(1):
        folder = base if n == 1 else f"{base}_{n}"
        try:
            os.makedirs(folder)
            return folder
        except FileExistsError:
            continue
