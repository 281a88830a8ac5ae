"""Exact resume: a resumed run continues with the data and the random numbers of the run it
continues, so its final weights equal an uninterrupted run's (same seed, same machine)."""

import logging
import numpy as np
import random
import time
from typing import Any, Dict, Optional
import torch

from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.logger import log_every_n_seconds

logger = logging.getLogger(__name__)


def get_rng_state() -> Dict[str, Any]:
    """The process's random state (torch CPU and CUDA, numpy, Python) as tensors and plain
    values, so that a checkpoint holding it still loads with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ExactResume(HookBase):
    """Makes ``--resume`` exact: the checkpoint holds the process's random state (this hook's
    state); on resume, the data loader is replayed for the iterations already trained (batches
    loaded and dropped), then that random state is restored. The checkpointer must come after every
    hook that draws random numbers in ``after_step`` (``EvalHook``)."""

    def __init__(self):
        self._resumed: Optional[Dict[str, Any]] = None

    def state_dict(self) -> Dict[str, Any]:
        return {"rng": get_rng_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._resumed = state.get("rng")  # applied in before_train, after the replay

    def before_train(self):
        start = self.trainer.start_iter
        if start == 0:
            return
        begin = time.perf_counter()
        logger.info(f"Exact resume: replaying the data loader's first {start} batches ...")
        batches = self.trainer._data_loader_iter  # created here as in the first step of a run
        for i in range(start):
            next(batches)
            eta = (time.perf_counter() - begin) / (i + 1) * (start - i - 1)
            message = f"Exact resume: {i + 1}/{start} batches replayed, ETA {eta:.0f} s"
            log_every_n_seconds(logging.INFO, message, n=30, name=__name__)
        if self._resumed is None:
            logger.warning(
                "Exact resume: the checkpoint has no random state (written by an older "
                "lift_det): the data continue exactly, random draws (drop path) do not."
            )
        else:
            if comm.get_world_size() > 1:
                logger.warning(
                    "Exact resume: the data continue exactly on every process; the random state "
                    "only on rank 0 (a checkpoint holds rank 0's): the other ranks draw anew."
                )
            if comm.is_main_process():
                set_rng_state(self._resumed)
        logger.info(
            f"Exact resume: {start} batches replayed in {time.perf_counter() - begin:.1f} s; "
            f"training continues at iteration {start}."
        )
