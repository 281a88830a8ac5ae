"""What tools/train_net.py does around upstream's loop: the config with the command line's
overrides checked before anything is built, and ``--eval-only`` (its own folder, checked
weights, detectron2's ``metrics.json``)."""

import os

from detectron2.config import LazyConfig, instantiate
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils import comm
from detectron2.utils.events import EventStorage, JSONWriter

from ..checkpoint import AtomicDetectionCheckpointer
from . import checks
from .train_utils import ddp_kwargs, instantiate_data, instantiate_model, new_eval_dir


def load_config(args):
    """The config with the command line's overrides, checked before anything is built."""
    cfg = checks.load_lazy_config(args.config_file)
    checks.check_overrides(cfg, args.opts)
    for override in args.opts:  # in order, as detectron2 applies them, to name the one that fails
        try:
            cfg = LazyConfig.apply_overrides(cfg, [override])
        except Exception as e:  # a value of the wrong kind for its key (a list for a node, ...)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise checks.UsageError(
                f"the override {override} cannot be applied to {args.config_file}: {reason}. "
                f"Give a value of the kind the config has there (e.g. not a list for a LazyCall)."
            ) from None
    if not args.eval_only:
        checks.check_config(cfg, world_size=args.num_gpus * args.num_machines)
        stop = args.stop_at_iter
        if stop > cfg.train.max_iter:
            raise checks.UsageError(
                f"--stop-at-iter {stop} is past the end of the schedule (train.max_iter="
                f"{cfg.train.max_iter}): give a K <= train.max_iter, or 0 to train to the end."
            )
    return cfg


def use_eval_dir(cfg, args) -> None:
    """--eval-only writes its config.yaml, log and the evaluator's files into a new folder
    ``<train.output_dir>/inference_<checkpoint name>`` (see ``new_eval_dir``), never over a
    training run's files."""
    if not getattr(args, "eval_dir", ""):
        try:
            args.eval_dir = new_eval_dir(cfg.train.output_dir, cfg.train.init_checkpoint)
        except OSError as e:
            raise checks.UsageError(
                f"train.output_dir '{cfg.train.output_dir}' cannot be written ({e.strerror}): set "
                f"train.output_dir to a folder you can write to."
            ) from None
    evaluator = cfg.dataloader.get("evaluator")
    if hasattr(evaluator, "get") and evaluator.get("output_dir") == cfg.train.output_dir:
        evaluator.output_dir = args.eval_dir
    cfg.train.output_dir = args.eval_dir


def do_test(cfg, model):
    """The config's evaluator on ``dataloader.test`` (as upstream's lazyconfig_train_net)."""
    if "evaluator" not in cfg.dataloader:
        return {}
    loader = instantiate_data(cfg.dataloader.test, "the test data (dataloader.test)")
    ret = inference_on_dataset(model, loader, instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(ret)
    return ret


def evaluate(cfg):
    """--eval-only: the model with ``train.init_checkpoint`` (nothing may stay random but the
    documented new parts), evaluated; the results also go to detectron2's ``metrics.json``."""
    model = create_ddp_model(instantiate_model(cfg.model).to(cfg.train.device), **ddp_kwargs(cfg))
    try:
        AtomicDetectionCheckpointer(model, complete=True).load(cfg.train.init_checkpoint)
    except ValueError as e:
        raise checks.UsageError(str(e)) from None
    results = do_test(cfg, model)
    if comm.is_main_process() and results:  # detectron2's metrics.json, as training writes
        with EventStorage(0) as storage:
            storage.put_scalars(**flatten_results_dict(results), smoothing_hint=False)
            JSONWriter(os.path.join(cfg.train.output_dir, "metrics.json")).write()
    return results
