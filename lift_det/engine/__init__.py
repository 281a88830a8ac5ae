"""Small pieces the training tool (tools/train_net.py) uses: checks of its input, its run folder,
training helpers, the stage-one export hook and the predictor."""

from .checks import (
    UsageError,
    check_config,
    check_overrides,
    check_weights,
    default_argument_parser,
    load_lazy_config,
    parse_args,
)
from .run_dir import check_output_dir, check_run, forget_run, lock_output_dir
from .train_utils import build_trainer, ddp_kwargs, fit_device, instantiate_data, train_or_explain

__all__ = [
    "UsageError",
    "build_trainer",
    "check_config",
    "check_output_dir",
    "check_overrides",
    "check_run",
    "check_weights",
    "ddp_kwargs",
    "default_argument_parser",
    "fit_device",
    "forget_run",
    "instantiate_data",
    "load_lazy_config",
    "lock_output_dir",
    "parse_args",
    "train_or_explain",
]
