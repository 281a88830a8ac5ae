"""The run's folder: checked before anything is built (a writable folder; a finished run is
never replaced by accident), locked while a run writes there (one run at a time), forgotten by
``--overwrite`` only once the new run is known good, and read back on ``--resume``."""

import argparse
import contextlib
import logging
import os
import shutil
import tempfile
from typing import Iterator, Optional
from omegaconf import OmegaConf

from detectron2.config import LazyConfig

import portalocker

from ..checkpoint.file_io import atomic_write_bytes
from .checks import UsageError, check_weights

logger = logging.getLogger(__name__)

LOCK_FILE = ".train.lock"


def check_output_dir(output_dir: str, resume: bool, overwrite: bool) -> None:
    """``output_dir`` must be a writable folder (created if needed); one that holds a run
    (``last_checkpoint``) is used only with ``--resume`` or ``--overwrite``."""
    if not output_dir or "://" in output_dir:
        return
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError(
            f"train.output_dir '{output_dir}' is a file, not a folder: set train.output_dir to "
            f"a folder."
        )
    try:
        os.makedirs(output_dir, exist_ok=True)
        tempfile.TemporaryFile(dir=output_dir).close()
    except OSError as e:
        raise UsageError(
            f"train.output_dir '{output_dir}' cannot be written ({e.strerror}): set "
            f"train.output_dir to a folder you can write to."
        ) from e
    if os.path.exists(os.path.join(output_dir, "last_checkpoint")) and not (resume or overwrite):
        raise UsageError(
            f"train.output_dir '{output_dir}' holds a run (last_checkpoint). Give --resume to "
            f"continue it, --overwrite to start afresh and replace its checkpoints, or another "
            f"train.output_dir."
        )


def check_run(cfg, args: argparse.Namespace) -> None:
    """What a run needs before it starts: weights for ``--eval-only``; for training, a usable
    output folder and an existing ``train.init_checkpoint`` (unless resuming a checkpoint)."""
    if not str(OmegaConf.select(cfg, "train.output_dir", default="") or "").strip():
        raise UsageError(
            "train.output_dir is empty: set train.output_dir=<folder> (checkpoints, logs, metrics "
            "and evaluations go there)."
        )
    weights = cfg.train.init_checkpoint
    if args.eval_only:
        if not weights:
            raise UsageError(
                "--eval-only needs weights: set train.init_checkpoint=/path/to/model_final.pth "
                "(a checkpoint of this model, e.g. OUTPUT_DIR/model_final.pth)."
            )
        return check_weights(weights)
    folder = cfg.train.output_dir
    if not (args.resume and os.path.exists(os.path.join(folder, "last_checkpoint"))):
        if args.resume:  # a switch with nothing to act on says so
            logger.warning(f"--resume: no checkpoint in {folder}: training starts at iteration 0.")
        check_weights(weights)
        # read when train.init_checkpoint holds no LiFT (a ViTDet checkpoint): checked before the
        # model and the data are built, and before the output folder is touched
        if lift := OmegaConf.select(cfg, "model.backbone.net.lift_weights", default=""):
            check_weights(str(lift), "model.backbone.net.lift_weights")
    check_output_dir(folder, args.resume, args.overwrite)


@contextlib.contextmanager
def lock_output_dir(output_dir: str) -> Iterator[None]:
    """Holds ``<output_dir>/.train.lock`` (non-blocking) while a run writes there; a second run
    into the same folder fails at once naming the holder's pid."""
    path = os.path.join(output_dir, LOCK_FILE)
    if not output_dir or "://" in path:
        yield
        return
    lock = portalocker.Lock(path, mode="a+", timeout=0, fail_when_locked=True)
    try:
        f = lock.acquire()
    except portalocker.exceptions.AlreadyLocked:
        with open(path) as f:
            holder = f.read().strip() or "unknown"
        raise UsageError(
            f"train.output_dir '{os.path.dirname(path)}' is in use by another run "
            f"(pid {holder}, lock {path}). Wait for it to finish or choose another "
            f"train.output_dir."
        ) from None
    f.truncate(0)
    f.write(str(os.getpid()))
    f.flush()
    try:
        yield
    finally:
        lock.release()


def forget_run(output_dir: str) -> None:
    """For ``--overwrite``: drop ``last_checkpoint`` (a ``--resume`` after a crash must not
    continue the old run) and move the old ``metrics.json`` to ``metrics.previous.json`` (the
    open JSONWriter appends: the runs' iterations would mix)."""
    if not output_dir:
        return
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(output_dir, "last_checkpoint"))
    metrics = os.path.join(output_dir, "metrics.json")
    if os.path.isfile(metrics) and os.path.getsize(metrics):
        with open(metrics, "rb") as f:
            atomic_write_bytes(os.path.join(output_dir, "metrics.previous.json"), f.read())
        os.truncate(metrics, 0)  # the writer's handle (O_APPEND) writes from the new end


def previous_max_iter(output_dir: str) -> Optional[int]:
    """``train.max_iter`` of the run saved in ``output_dir/config.yaml`` (None if unknown)."""
    path = os.path.join(output_dir or "", "config.yaml")
    try:
        return int(LazyConfig.load(path).train.max_iter)
    except Exception:
        return None


def remove_new(folder: str, before: Optional[set]) -> None:
    """After a refused run: remove what it created in ``folder``, given the names it held before
    (``before``; None: the run created ``folder``, which goes whole)."""
    if not folder or "://" in folder or not os.path.isdir(folder):
        return
    if before is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for name in set(os.listdir(folder)) - before:
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
