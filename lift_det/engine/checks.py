"""Checks a training tool runs before it builds anything: the command line, the config file, the
overrides and the config's values (the run's folder: :mod:`lift_det.engine.run_dir`)."""

import argparse
import difflib
import inspect
import os
import traceback
from typing import Any, Iterator, List, Optional
from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.config import LazyConfig
from detectron2.engine import default_argument_parser as _d2_parser
from detectron2.utils.registry import locate

from ..modeling.attention import keyword_signature
from ..utils.cli import UserError

# switches that may also come after the first key=value (detectron2's parser puts those in opts)
_LATE_FLAGS = {"--resume": "resume", "--eval-only": "eval_only", "--overwrite": "overwrite"}


class UsageError(UserError):
    """A bad command line, config value or output folder."""


def get_parser() -> argparse.ArgumentParser:
    """tools/train_net.py's parser: detectron2's and the three options below."""
    parser = _d2_parser()
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train from scratch into train.output_dir even if it holds a run (its checkpoints "
        "are replaced); without it such a folder is refused unless --resume is given",
    )
    parser.add_argument(
        "--loss-trace",
        type=int,
        default=0,
        metavar="N",
        help="write the exact losses (float.hex) of the first N iterations to "
        "OUTPUT_DIR/loss_trace.json (tools/study_check.py compares them); 0: off",
    )
    parser.add_argument(
        "--stop-at-iter",
        type=int,
        default=0,
        metavar="K",
        help="end the run after K iterations (final checkpoint, evaluation, exports) with the "
        "learning rates of the train.max_iter schedule: exactly the full run's first K; 0: off",
    )
    return parser


def parse_args(argv: Optional[List[str]] = None, parser=None) -> argparse.Namespace:
    """Parse like detectron2 (``opts`` = everything from the first ``key=value`` on), then take
    ``--resume`` / ``--eval-only`` / ``--overwrite`` out of ``opts`` wherever they stand and
    refuse anything else that is not ``key=value``."""
    parser = parser or get_parser()
    args = parser.parse_args(argv)
    opts = []
    for o in args.opts:
        if o in _LATE_FLAGS:
            setattr(args, _LATE_FLAGS[o], True)
        elif o == "--":
            continue
        elif o.startswith("-") or "=" not in o:
            parser.error(
                f"'{o}' is neither key=value nor one of {', '.join(_LATE_FLAGS)}: other switches "
                f"(--config-file, --num-gpus, ...) must come before the first key=value"
            )
        else:
            opts.append(o)
    args.opts = opts
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite contradict each other: give one of them")
    for flag, value in (("--num-gpus", args.num_gpus), ("--num-machines", args.num_machines)):
        if value < 1:
            parser.error(f"{flag} must be an integer >= 1, got {value}")
    if not 0 <= args.machine_rank < args.num_machines:
        parser.error(
            f"--machine-rank must be in [0, --num-machines={args.num_machines}), got "
            f"{args.machine_rank}"
        )
    return args


def load_lazy_config(path: str):
    """``LazyConfig.load`` with one-line errors for a file that does not exist and for a yacs
    (CfgNode) YAML, which this tool does not read."""
    if not os.path.isfile(path):
        raise UsageError(
            f"--config-file '{path}' does not exist (relative paths start at {os.getcwd()}). The "
            f"configs are in the repository's configs/ (e.g. configs/mini/vitdet_mrcnn.py) and in "
            f"lift_det.model_zoo.get_config_file()."
        )
    try:
        cfg = LazyConfig.load(path)
    except SyntaxError as e:  # the config's own Python (detectron2 wraps the compiler's error)
        e = e.__cause__ if isinstance(e.__cause__, SyntaxError) else e
        name = e.filename if e.filename and not e.filename.startswith("<") else path
        raise UsageError(
            f"--config-file '{path}': {e.msg} at line {e.lineno} of {name}: fix the file's Python."
        ) from None
    except Exception as e:  # noqa: B902 (an error the config's code raised when it ran)
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.endswith(".py")]
        ours = [f for f in frames if "site-packages" not in f.filename]
        where = f"{ours[-1].filename}, line {ours[-1].lineno}" if ours else path
        raise UsageError(
            f"--config-file '{path}' failed when it ran: {type(e).__name__}: "
            f"{' '.join(str(e).split())} (at {where}). Fix the config, or what it imports."
        ) from None
    upper = [k for k in cfg if isinstance(k, str) and k.isupper()]
    if upper and not any(k in cfg for k in ("train", "model")):
        raise UsageError(
            f"--config-file '{path}' is a yacs config (top-level keys {', '.join(upper[:4])}): "
            f"this tool reads LazyConfig files (.py, or a config.yaml it wrote). Use a config in "
            f"configs/, or build the +LiFT backbone from yacs with lift_det.config "
            f"(MODEL.BACKBONE.NAME='build_vit_lift_backbone') in detectron2's own tools."
        )
    return cfg


def _paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a config (lists by index)."""
    items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else enumerate(node)
    for k, v in items:
        path = f"{prefix}{k}"
        yield path
        if isinstance(v, (DictConfig, ListConfig)):
            yield from _paths(v, path + ".")


def _takes_argument(node: Any, name: str) -> bool:
    """Whether a LazyCall node's target accepts ``name`` (a default it does not spell out)."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return False
    target = node._target_
    try:
        target = locate(target) if isinstance(target, str) else target
        # a class whose __init__ passes **kwargs on (AttnViT(ViT)): its bases' arguments too
        sig = keyword_signature(target) if inspect.isclass(target) else inspect.signature(target)
    except (ValueError, TypeError, ImportError):
        return True  # cannot tell: let the target judge
    return name in sig.parameters or any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def check_overrides(cfg, opts: List[str]) -> None:
    """Refuse ``key=value`` overrides whose key is not in the config (nor an argument of the
    LazyCall it would go to), naming the closest valid key."""
    for o in opts:
        key = o.split("=", 1)[0]
        if key.startswith("+"):  # hydra's syntax to add a key on purpose
            continue
        parent, _, name = key.rpartition(".")
        missing = object()
        found = OmegaConf.select(
            cfg, key, default=missing, throw_on_missing=False, throw_on_resolution_failure=False
        )
        if found is not missing:
            _check_type(key, found, o)
            continue
        node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
        if _takes_argument(node, name):
            continue
        close = difflib.get_close_matches(key, list(_paths(cfg)), n=1, cutoff=0.6)
        keys = f"the config's top-level keys are {', '.join(sorted(cfg.keys()))}"
        hint = f"did you mean '{close[0]}'?" if close else keys
        raise UsageError(f"unknown config key '{key}' in override '{o}': {hint}")


def _check_type(key: str, old: Any, override: str) -> None:
    """A number or a bool in the config must stay one (``model.roi_heads.num_classes=abc`` would
    fail only when the model is built)."""
    if old is None or not isinstance(old, (bool, int, float)):
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        new = OverridesParser.create().parse_overrides([override])[0].value()
    except Exception:
        return  # detectron2's apply_overrides reports a syntax error itself
    if isinstance(old, bool):
        ok, kind = new in (True, False, 0, 1), "true or false"
    else:
        ok, kind = isinstance(new, (int, float)) and not isinstance(new, bool), "a number"
    if new is None or ok:
        return
    raise UsageError(
        f"override '{override}': {key} must be {kind} (the config has {old!r}), got {new!r}; "
        f"e.g. {key}={old}"
    )


def _int_at_least(cfg, key: str, low: int) -> int:
    value = OmegaConf.select(cfg, key, default=None)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(
            f"{key} must be an integer >= {low}, got {value!r}; e.g. {key}={max(low, 1) * 100}"
        )
    return value


def check_config(cfg, world_size: int = 1) -> None:
    """Types and ranges of the training fields, before anything is built."""
    for key, low in (("train.max_iter", 1), ("train.log_period", 1), ("train.eval_period", 0)):
        _int_at_least(cfg, key, low)  # train.eval_period=0: no periodic evaluation
    if OmegaConf.select(cfg, "train.checkpointer") is not None:
        _int_at_least(cfg, "train.checkpointer.period", 1)
        if OmegaConf.select(cfg, "train.checkpointer.max_to_keep") is not None:
            _int_at_least(cfg, "train.checkpointer.max_to_keep", 1)  # None: keep every one

    batch = _int_at_least(cfg, "dataloader.train.total_batch_size", 1)
    if batch % world_size:
        raise UsageError(
            f"dataloader.train.total_batch_size={batch} is not divisible by the number of "
            f"processes ({world_size}): each process takes an equal share. Use a multiple of "
            f"{world_size} or another --num-gpus."
        )


def check_weights(path: str, what: str = "train.init_checkpoint") -> None:
    """A local checkpoint path that does not exist or is empty gets a clear error before loading
    (URLs such as detectron2:// are left to detectron2's PathManager)."""
    if not path or "://" in path:
        return
    local = path.split("?")[0]
    if not os.path.isfile(local):
        kind = (
            "a stage-one LiFT file (<stage-one OUTPUT_DIR>/lift_final.pth), or '' when "
            "train.init_checkpoint holds LiFT"
            if what.endswith("lift_weights")
            else "a checkpoint (a ViTDet .pkl/.pth, an MAE .pth with ?matching_heuristics=True, "
            "or OUTPUT_DIR/model_final.pth)"
        )
        raise UsageError(f"{what} '{path}' does not exist. Give the path of {kind}.")
    if os.path.getsize(local) == 0:
        raise UsageError(f"{what} '{path}' is empty (an interrupted download or copy?).")
