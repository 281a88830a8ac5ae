#!/usr/bin/env python3
"""
Train or evaluate any lift_det LazyConfig, a detector or stage one: upstream's
``tools/lazyconfig_train_net.py`` plus checks before anything is built, a locked output folder,
atomic checkpoints, exact resume, one-line errors and the config's ``train.export`` hooks.
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import logging
import os

from detectron2.config import instantiate
from detectron2.engine import default_setup, default_writers, hooks, launch
from detectron2.engine.defaults import create_ddp_model
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from lift_det.checkpoint import AtomicDetectionCheckpointer, atomic_write_bytes
from lift_det.engine import checks, run_dir, train_utils
from lift_det.engine.checks import get_parser
from lift_det.engine.hooks import StopOnDivergence
from lift_det.engine.launch import do_test, evaluate, load_config, use_eval_dir
from lift_det.engine.replay import FixedLengthLRScheduler, LossTrace
from lift_det.engine.resume import ExactResume
from lift_det.utils import UserError, faults_in_one_line, refuse

logger = logging.getLogger("detectron2")


def do_train(args, cfg):
    """Upstream's loop; ``cfg.train.export`` lists extra hooks (e.g. writing lift_final.pth)."""
    # --stop-at-iter: the run ends there (final checkpoint, evaluation, exports) on the schedule
    # of train.max_iter iterations
    stop = args.stop_at_iter or cfg.train.max_iter
    model = train_utils.instantiate_model(cfg.model).to(cfg.train.device)
    logger.info("Model:\n{}".format(model))

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    settings = train_utils.optimizer_settings(optim)  # the config's: read before a resume
    what = "the training data (dataloader.train)"
    train_loader = train_utils.instantiate_data(cfg.dataloader.train, what)
    output_dir = cfg.train.output_dir

    model = create_ddp_model(model, **train_utils.ddp_kwargs(cfg))
    trainer = train_utils.build_trainer(cfg, model, optim, train_loader)
    checkpointer = AtomicDetectionCheckpointer(model, output_dir, trainer=trainer)
    export_hooks = [instantiate(h) for h in cfg.train.get("export", [])]
    for h in export_hooks:
        h.checkpointer = checkpointer
    is_main = comm.is_main_process()
    writers = default_writers(output_dir, stop) if is_main else []
    lr = instantiate(cfg.lr_multiplier)
    if stop == cfg.train.max_iter:
        schedule = hooks.LRScheduler(scheduler=lr)
    else:
        schedule = FixedLengthLRScheduler(scheduler=lr, max_iter=cfg.train.max_iter)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            schedule,
            LossTrace(args.loss_trace, output_dir) if args.loss_trace and is_main else None,
            StopOnDivergence(),  # before the checkpointer: a diverged step is never saved
            ExactResume(),  # its state (the random state) is in every checkpoint
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            # after the evaluation, which draws random numbers: exact resume
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if is_main else None,
            *export_hooks,
            hooks.PeriodicWriter(writers, period=cfg.train.log_period) if is_main else None,
        ]
    )

    try:
        checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    except ValueError as e:  # refused weights (lift_det's checkpointer): one line, exit code 2
        raise checks.UsageError(str(e)) from None
    if args.resume and checkpointer.has_checkpoint():
        # The checkpoint stores the iteration that just finished: start at the next one
        start_iter = trainer.iter + 1
        changed = train_utils.apply_optimizer_settings(optim, settings)
        if changed:
            logger.warning(
                "Optimizer settings changed on resume (the run being resumed -> this config): "
                + ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
                + f"; applied: from iteration {start_iter} the schedule runs on the new values "
                "(the optimizer's state, e.g. momentum, is kept)."
            )
    else:
        start_iter = 0
    if args.overwrite and comm.is_main_process():
        # the new run is known good (built, data found, weights loaded): only now replace the
        # old run's pointer and config
        run_dir.forget_run(output_dir)
        if getattr(args, "new_config", None) is not None:
            atomic_write_bytes(os.path.join(output_dir, "config.yaml"), args.new_config)
    if start_iter >= stop:
        what = "--stop-at-iter" if stop < cfg.train.max_iter else "train.max_iter"
        logger.warning(f"Resumed at iteration {start_iter} >= {what}: nothing to train.")
    train_utils.train_or_explain(trainer, checkpointer, start_iter, stop)
    return trainer


def main(args, cfg=None):
    """``cfg``: the config ``invoke_main`` loaded (a config file runs once per process: one that
    registers a dataset would fail the second time); None: load it (a spawned process)."""
    cfg = load_config(args) if cfg is None else cfg
    train_utils.fit_device(cfg)
    if args.eval_only:
        use_eval_dir(cfg, args)
    # read before default_setup writes this run's config.yaml over the resumed run's
    resumed = args.resume and comm.is_main_process()
    old_max_iter = run_dir.previous_max_iter(cfg.train.output_dir) if resumed else None
    # --overwrite: the old run's config.yaml stays until the new run is known good (do_train)
    config_yaml = os.path.join(cfg.train.output_dir, "config.yaml")
    keep = args.overwrite and comm.is_main_process() and os.path.isfile(config_yaml)
    old_config = open(config_yaml, "rb").read() if keep else None
    default_setup(cfg, args)
    if old_config is not None:
        with open(config_yaml, "rb") as f:
            args.new_config = f.read()
        atomic_write_bytes(config_yaml, old_config)
    # default_setup configures detectron2's loggers; lift_det's (exports, evaluators) too
    setup_logger(cfg.train.output_dir, comm.get_rank(), name="lift_det", abbrev_name="lift_det")
    if old_max_iter not in (None, cfg.train.max_iter):
        logger.warning(
            f"train.max_iter changed on resume: {old_max_iter} (the run being resumed) "
            f"-> {cfg.train.max_iter}; training continues to {cfg.train.max_iter} with "
            f"the new config's learning-rate schedule."
        )

    if args.eval_only:
        logger.info(f"--eval-only: this evaluation's files go to {cfg.train.output_dir}")
        return evaluate(cfg)
    return do_train(args, cfg)


@faults_in_one_line("train_net.py")  # a diverged run, a full disk: one line, the log has more
def invoke_main(argv=None) -> None:
    parser = get_parser()
    args = checks.parse_args(argv, parser)
    for flag, value in (("--loss-trace", args.loss_trace), ("--stop-at-iter", args.stop_at_iter)):
        if value < 0:
            parser.error(f"{flag} must be an integer >= 0 (0: off), got {value}")
    folder, before = "", None
    try:
        cfg = load_config(args)
        folder = cfg.train.output_dir
        before = set(os.listdir(folder)) if os.path.isdir(folder) else None
        run_dir.check_run(cfg, args)
        if args.eval_only and args.machine_rank == 0:
            use_eval_dir(cfg, args)  # claimed once, here: every process writes into it
        # one run at a time per output folder (machine 0's launcher holds the lock)
        locked = not args.eval_only and args.machine_rank == 0
        with run_dir.lock_output_dir(cfg.train.output_dir if locked else ""):
            # one process: the config loaded above (a config file runs once)
            one = args.num_gpus * args.num_machines == 1
            launch(
                main,
                args.num_gpus,
                num_machines=args.num_machines,
                machine_rank=args.machine_rank,
                dist_url=args.dist_url,
                args=(args, cfg if one else None),
            )
    except UserError as e:
        run_dir.remove_new(folder, before)  # a refused run leaves its output folder as it was
        refuse(parser, e)


if __name__ == "__main__":
    invoke_main()  # pragma: no cover
