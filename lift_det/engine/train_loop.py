"""
The loop of upstream's ``tools/lazyconfig_train_net.py``, shared by our two tools, with:

* checkpoints written atomically (:class:`AtomicDetectionCheckpointer`);
* AMP only where CUDA is (AMPTrainer needs it); CPU runs fall back to SimpleTrainer with a warning;
* a NaN/inf loss stops training with the iteration and the last checkpoint named;
* ``--eval-only`` without weights refused with a clear error;
* optional ``train.export`` hooks (``after_train`` callables, e.g. writing ``lift_final.pth``).
"""

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    create_ddp_model,
)
from detectron2.engine import default_argument_parser as _d2_parser
from detectron2.engine import default_setup, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import logging
import os
from typing import Any, Dict, Optional

from ..checkpoint import AtomicDetectionCheckpointer

__all__ = ["build_trainer", "default_argument_parser", "do_test", "do_train", "main"]

logger = logging.getLogger("detectron2")


def default_argument_parser(epilog: Optional[str] = None):
    """detectron2's parser (--config-file, --resume, --eval-only, --num-gpus, ... key=value)."""
    return _d2_parser(epilog)


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


def do_test(cfg, model) -> Dict[str, Any]:
    """Evaluate ``model`` on ``cfg.dataloader.test`` with ``cfg.dataloader.evaluator``."""
    if "evaluator" not in cfg.dataloader:
        return {}
    loader = instantiate_data(cfg.dataloader.test, "the test data (dataloader.test)")
    ret = inference_on_dataset(model, loader, instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(ret)
    return ret


def build_trainer(cfg, model, optim, train_loader):
    """AMPTrainer when ``train.amp.enabled`` and CUDA is used, else SimpleTrainer."""
    use_amp = cfg.train.amp.enabled and str(cfg.train.device).startswith("cuda")
    if cfg.train.amp.enabled and not use_amp:
        logger.warning("train.amp.enabled=True but train.device is not CUDA: training in fp32.")
    return (AMPTrainer if use_amp else SimpleTrainer)(model, train_loader, optim)


def do_train(args, cfg):
    """
    Train ``cfg.model`` as upstream's lazyconfig_train_net does: hooks for timing, lr schedule,
    periodic (atomic) checkpoints, evaluation every ``train.eval_period``, metric writers
    (console with ETA, metrics.json, tensorboard) every ``train.log_period``.
    """
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate_data(cfg.dataloader.train, "the training data (dataloader.train)")

    ddp = dict(cfg.train.ddp)
    if not str(cfg.train.device).startswith("cuda"):
        ddp["device_ids"] = None  # DDP on CPU (gloo) takes no device ids
    model = create_ddp_model(model, **ddp)
    trainer = build_trainer(cfg, model, optim, train_loader)
    checkpointer = AtomicDetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    export_hooks = [instantiate(h) for h in cfg.train.get("export", [])]
    for h in export_hooks:
        h.checkpointer = checkpointer
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            (
                hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
                if comm.is_main_process()
                else None
            ),
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            *export_hooks,
            (
                hooks.PeriodicWriter(
                    default_writers(cfg.train.output_dir, cfg.train.max_iter),
                    period=cfg.train.log_period,
                )
                if comm.is_main_process()
                else None
            ),
        ]
    )

    if not (args.resume and checkpointer.has_checkpoint()):
        check_weights(cfg.train.init_checkpoint)
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    if args.resume and checkpointer.has_checkpoint():
        # The checkpoint stores the iteration as 1 less than the next iteration to run
        start_iter = trainer.iter + 1
    else:
        start_iter = 0
    try:
        trainer.train(start_iter, cfg.train.max_iter)
    except FloatingPointError as e:
        last = checkpointer.get_checkpoint_file() if checkpointer.has_checkpoint() else None
        raise FloatingPointError(
            f"{e}\nTraining stopped at iteration {trainer.iter}. Last checkpoint: "
            f"{last or 'none written yet'}; lower the learning rate and resume with --resume."
        ) from e
    return trainer


def check_weights(path: str, what: str = "train.init_checkpoint") -> None:
    """A local checkpoint path that does not exist or is empty gets a clear error before loading
    (URLs such as detectron2:// are left to detectron2's PathManager)."""
    if not path or "://" in path:
        return
    local = path.split("?")[0]
    if not os.path.isfile(local):
        raise FileNotFoundError(
            f"{what} '{path}' does not exist. Give the path of a checkpoint (a ViTDet .pkl/.pth, "
            f"an MAE .pth with ?matching_heuristics=True, or OUTPUT_DIR/model_final.pth)."
        )
    if os.path.getsize(local) == 0:
        raise RuntimeError(f"{what} '{path}' is empty (an interrupted download or copy?).")


def main(args):
    """Load the LazyConfig, apply ``key=value`` overrides, then train or ``--eval-only``."""
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    if not torch.cuda.is_available() and str(cfg.train.device).startswith("cuda"):
        logger.warning("CUDA is not available: running on CPU (train.device=cpu).")
        cfg.train.device = "cpu"
    default_setup(cfg, args)
    # default_setup configures detectron2's loggers; lift_det's (exports, evaluators) too
    setup_logger(cfg.train.output_dir, comm.get_rank(), name="lift_det", abbrev_name="lift_det")

    if args.eval_only:
        weights = cfg.train.init_checkpoint
        if not weights:
            raise ValueError(
                "--eval-only needs weights: set train.init_checkpoint=/path/to/model_final.pth "
                "(a checkpoint of this model, e.g. OUTPUT_DIR/model_final.pth)."
            )
        check_weights(weights)
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = create_ddp_model(model)
        AtomicDetectionCheckpointer(model).load(weights)
        return do_test(cfg, model)
    do_train(args, cfg)
    return None
