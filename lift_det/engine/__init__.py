"""Small pieces the training tool (tools/train_net.py) uses: checks of its input, its run folder,
training helpers, the stage-one export hook and the predictor."""

from inspect import ismodule as _ismodule

from .checks import (
    UsageError,
    check_config,
    check_overrides,
    check_weights,
    get_parser,
    load_lazy_config,
    parse_args,
)
from .run_dir import check_output_dir, check_run, forget_run, lock_output_dir
from .train_utils import build_trainer, ddp_kwargs, fit_device, instantiate_data, train_or_explain

__all__ = [k for k, v in globals().items() if not k.startswith("_") and not _ismodule(v)]
