"""Hooks that replay the start of a long run exactly (``tools/train_net.py --stop-at-iter K
--loss-trace N``, used by ``tools/study_check.py``): the learning rates of the full schedule however
early the run stops, and the losses of the first iterations bit for bit."""

import json
import logging
import os
from typing import Dict, List
from fvcore.common.param_scheduler import ParamScheduler

from detectron2.engine import HookBase
from detectron2.engine.hooks import LRScheduler
from detectron2.solver import LRMultiplier

from ..checkpoint import atomic_write_text

logger = logging.getLogger(__name__)


class FixedLengthLRScheduler(LRScheduler):
    """detectron2's ``LRScheduler`` hook over a schedule of ``max_iter`` (``train.max_iter``)
    iterations, however many the trainer runs: a run stopped early (``--stop-at-iter K``) has the
    full run's first K learning rates (the stock hook stretches it over ``trainer.max_iter``)."""

    def __init__(self, optimizer=None, scheduler=None, *, max_iter: int):
        super().__init__(optimizer, scheduler)
        self.max_iter = max_iter

    def before_train(self):
        if isinstance(self._scheduler, ParamScheduler):
            self._optimizer = self._optimizer or self.trainer.optimizer
            self._scheduler = LRMultiplier(
                self._optimizer, self._scheduler, self.max_iter, last_iter=self.trainer.iter - 1
            )
        super().before_train()  # takes the LRMultiplier as it is


class LossTrace(HookBase):
    """Records the losses of the first ``num_iters`` iterations exactly, to compare runs bit for bit
    (``tools/study_check.py``): after each step, ``total_loss`` and every ``loss*`` term of that
    step in the trainer's ``EventStorage``, as ``float.hex``. Written atomically to
    ``<output_dir>/loss_trace.json`` as ``{"first_iter": i, "losses": [{name: hex}, ...]}`` when
    ``num_iters`` iterations are done or the run ends. A resumed run records from the iteration it
    starts at; one that starts past ``num_iters`` writes nothing. Main process only."""

    FILENAME = "loss_trace.json"

    def __init__(self, num_iters: int, output_dir: str):
        self.num_iters = num_iters
        self.path = os.path.join(output_dir, self.FILENAME)
        self._done = True  # nothing to write until before_train (an earlier hook's may fail)

    def before_train(self):
        self._first_iter = self.trainer.start_iter
        self.losses: List[Dict[str, str]] = []
        self._done = self._first_iter >= self.num_iters  # a resumed run past them: nothing to do

    def after_step(self):
        if self._done:
            return
        it = self.trainer.iter
        latest = self.trainer.storage.latest()
        if latest.get("total_loss", (None, None))[1] != it:
            raise RuntimeError(
                f"LossTrace: the trainer put no total_loss in its storage at iteration {it} "
                f"(async_write_metrics or gather_metric_period > 1?): nothing exact to record."
            )
        terms = [k for k in sorted(latest) if k == "total_loss" or k.startswith("loss")]
        self.losses.append({k: float.hex(latest[k][0]) for k in terms if latest[k][1] == it})
        if it + 1 >= self.num_iters:
            self._write()

    def after_train(self):
        if not self._done and self.losses:  # stopped before num_iters
            self._write()

    def _write(self):
        data = {"first_iter": self._first_iter, "losses": self.losses}
        atomic_write_text(self.path, json.dumps(data, indent=1) + "\n")
        self._done = True
        logger.info(f"Wrote the losses of {len(self.losses)} iterations to {self.path}")
