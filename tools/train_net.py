#!/usr/bin/env python3
"""
Train or evaluate any lift_det LazyConfig: a detector (ViTDet, +LiFT, the controls) or stage one
(a ``LiFTDistiller``; the model decides what a step is). The shape of upstream's
``tools/lazyconfig_train_net.py``, plus: checks before anything is built (overrides, values, the
output folder, which is locked while the run writes to it), atomic checkpoints, AMP only on CUDA,
clear data errors, a NaN stop message, and the config's ``train.export`` hooks.

    .venv/bin/python tools/train_net.py --config-file configs/vitdet_mrcnn_lift.py \\
        [--eval-only] [--resume | --overwrite] [--num-gpus N --num-machines M --machine-rank R \\
        --dist-url U] [key=value ...]
"""

import logging

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_setup, default_writers, hooks, launch
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import lift_det  # noqa: F401  (registers backbones and datasets)
from lift_det.checkpoint import AtomicDetectionCheckpointer
from lift_det.engine import checks
from lift_det.engine.train_utils import (
    build_trainer,
    ddp_kwargs,
    fit_device,
    instantiate_data,
    train_or_explain,
)

logger = logging.getLogger("detectron2")


def do_test(cfg, model):
    if "evaluator" not in cfg.dataloader:
        return {}
    loader = instantiate_data(cfg.dataloader.test, "the test data (dataloader.test)")
    ret = inference_on_dataset(model, loader, instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(ret)
    return ret


def do_train(args, cfg):
    """Upstream's loop; ``cfg.train.export`` lists extra hooks (e.g. writing lift_final.pth)."""
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate_data(cfg.dataloader.train, "the training data (dataloader.train)")

    model = create_ddp_model(model, **ddp_kwargs(cfg))
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

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    if args.resume and checkpointer.has_checkpoint():
        # The checkpoint stores the iteration that just finished: start at the next one
        start_iter = trainer.iter + 1
    else:
        start_iter = 0
    if start_iter >= cfg.train.max_iter:
        logger.warning(f"Resumed at iteration {start_iter} >= train.max_iter: nothing to train.")
    train_or_explain(trainer, checkpointer, start_iter, cfg.train.max_iter)
    return trainer


def load_config(args):
    """The config with the command line's overrides, checked before anything is built."""
    cfg = LazyConfig.load(args.config_file)
    checks.check_overrides(cfg, args.opts)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    if not args.eval_only:
        checks.check_config(cfg, world_size=args.num_gpus * args.num_machines)
    return cfg


def main(args):
    cfg = load_config(args)
    fit_device(cfg)
    # read before default_setup writes this run's config.yaml over the resumed run's
    resumed = args.resume and comm.is_main_process()
    old_max_iter = checks.previous_max_iter(cfg.train.output_dir) if resumed else None
    default_setup(cfg, args)
    # default_setup configures detectron2's loggers; lift_det's (exports, evaluators) too
    setup_logger(cfg.train.output_dir, comm.get_rank(), name="lift_det", abbrev_name="lift_det")
    if old_max_iter not in (None, cfg.train.max_iter):
        logger.warning(
            f"train.max_iter changed on resume: {old_max_iter} (the run being resumed) -> "
            f"{cfg.train.max_iter}; training continues to {cfg.train.max_iter} with the new "
            f"config's learning-rate schedule."
        )

    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = create_ddp_model(model, **ddp_kwargs(cfg))
        AtomicDetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    do_train(args, cfg)


def invoke_main(argv=None) -> None:
    parser = checks.default_argument_parser()
    args = checks.parse_args(argv, parser)
    try:
        cfg = load_config(args)
        checks.check_run(cfg, args)
        # one run at a time per output folder (machine 0's launcher holds the lock)
        locked = not args.eval_only and args.machine_rank == 0
        with checks.lock_output_dir(cfg.train.output_dir if locked else ""):
            if args.overwrite:
                checks.forget_run(cfg.train.output_dir)
            launch(
                main,
                args.num_gpus,
                num_machines=args.num_machines,
                machine_rank=args.machine_rank,
                dist_url=args.dist_url,
                args=(args,),
            )
    except checks.UsageError as e:
        parser.error(str(e))


if __name__ == "__main__":
    invoke_main()  # pragma: no cover
