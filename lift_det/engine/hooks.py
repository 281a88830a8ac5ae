"""The stage-one LiFT export hook the training tool adds (``cfg.train.export``)."""

import json
import logging
import os
from typing import Any, Dict, Optional
import torch
from torch.nn.parallel import DistributedDataParallel

from detectron2.engine import HookBase
from detectron2.utils import comm

from ..checkpoint import MAX_ABS_WEIGHT, atomic_write_text, save_lift_file, teacher_fingerprint

logger = logging.getLogger(__name__)


class StopOnDivergence(HookBase):
    """Stops training (``FloatingPointError``) at the first step after which a trained weight is not
    finite or has exploded (``|w| > MAX_ABS_WEIGHT``): stage one's bounded cosine loss stays finite
    while the weights blow up. Register it before the checkpointer: no diverged step is saved."""

    def before_train(self):
        self._params = [p for p in self.trainer.model.parameters() if p.requires_grad]

    def after_step(self):
        if not self._params:
            return
        largest = torch.stack([p.detach().abs().amax() for p in self._params]).amax().item()
        if not largest <= MAX_ABS_WEIGHT:  # also NaN
            raise FloatingPointError(
                f"the trained weights diverged at iteration {self.trainer.iter}: largest |w| = "
                f"{largest:.3g} (limit {MAX_ABS_WEIGHT:.0e})"
            )


class ExportLiFTFile(HookBase):
    """``after_train`` hook (for ``cfg.train.export``): writes the trained LiFT of a
    :class:`LiFTDistiller` with its metadata (:mod:`lift_det.checkpoint.lift_file`) to
    ``<output_dir>/<filename>``, the file stage two loads; nothing if training stopped before
    ``max_iter``. Register it after ``EvalHook``: a last held-out cosine below bilinear's is
    recorded as ``undertrained``. The teacher recorded is the ViT trained against (its
    :func:`teacher_fingerprint`), kept in ``teacher.json`` by a first run for its resumes."""

    def __init__(
        self,
        filename: str = "lift_final.pth",
        teacher_weights: str = "",
        feature_layer: str = "last_feat",
        output_dir: str = "",
    ):
        """``teacher_weights``: where the ViT's weights came from (empty: a random teacher);
        ``feature_layer``: the ViT feature LiFT was trained on; ``output_dir``: default, the
        checkpointer's ``save_dir`` (the tool sets ``.checkpointer`` on export hooks)."""
        self.filename = filename
        self.teacher_weights = teacher_weights
        self.feature_layer = feature_layer
        self.output_dir = output_dir
        self.checkpointer = None
        self.path: Optional[str] = None
        self._started = False  # before_train ran (an earlier hook's may fail)

    def _folder(self) -> str:
        folder = self.output_dir or getattr(self.checkpointer, "save_dir", "")
        if not folder:
            raise ValueError("ExportLiFTFile needs output_dir or a checkpointer with a save_dir.")
        return folder

    def _teacher(self) -> Dict[str, Any]:
        """The ViT trained against now: fingerprint and source; recorded by a first run in
        teacher.json, taken from there by a resumed one."""
        fingerprint = teacher_fingerprint(self._model().backbone.net.state_dict())
        path = os.path.join(self._folder(), "teacher.json")
        configured = {"weights": self.teacher_weights, "initialized": bool(self.teacher_weights)}
        if self.trainer.start_iter <= 0 or not os.path.isfile(path):
            teacher = {**configured, "fingerprint": fingerprint}
            if self.trainer.start_iter > 0:  # resumed a run that predates teacher.json
                teacher["weights"] = "resumed run (its train.init_checkpoint is not recorded)"
            if comm.is_main_process():
                atomic_write_text(path, json.dumps(teacher, indent=2) + "\n")
            return teacher
        with open(path) as f:
            recorded = json.load(f)
        if recorded.get("fingerprint") != fingerprint:
            raise ValueError(
                f"The frozen ViT of this resumed run (fingerprint {fingerprint}) is not the "
                f"teacher its first run recorded in {path} ({recorded.get('fingerprint')}): the "
                f"resumed checkpoint was changed. Start a new run (--overwrite or another output "
                f"dir)."
            )
        if recorded.get("weights") != self.teacher_weights:
            logger.warning(
                f"train.init_checkpoint={self.teacher_weights!r} is not used on --resume: the "
                f"frozen ViT comes from the resumed checkpoint, i.e. from "
                f"{recorded.get('weights')!r} (the first run's), which the LiFT file records."
            )
        return recorded

    def _model(self):
        model = self.trainer.model
        return model.module if isinstance(model, DistributedDataParallel) else model

    def _stat(self):
        try:
            st = os.stat(os.path.join(self._folder(), self.filename))
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def before_train(self):
        self.teacher = self._teacher()
        self._target_at_start = self._stat()
        self._started = True
        if not self.teacher["initialized"]:
            logger.warning(
                "The frozen ViT is RANDOMLY INITIALIZED (no teacher weights were given when this "
                "run started), so LiFT learns to upsample the features of a random network. Set "
                "train.init_checkpoint to a trained ViTDet checkpoint (a timm source: "
                "model.source.weights) for a useful LiFT."
            )

    def after_train(self):
        trainer = self.trainer
        if trainer.iter < trainer.max_iter:
            logger.warning(
                f"Training stopped at iteration {trainer.iter} < max_iter={trainer.max_iter}: "
                f"{self.filename} not written."
            )
            return
        if not comm.is_main_process():
            return
        folder, model = self._folder(), self._model()
        self.path = os.path.join(folder, self.filename)
        if self._started and self._stat() != self._target_at_start:  # another run wrote it
            stem, ext = os.path.splitext(self.filename)
            other = self.path
            self.path = os.path.join(folder, f"{stem}.iter{trainer.iter}.pid{os.getpid()}{ext}")
            logger.warning(
                f"{other} was written by another run while this one trained: it is left as it is "
                f"and this run's LiFT goes to {self.path}. Give each run its own train.output_dir."
            )
        # iterations done: max_iter, or where a resumed run started if max_iter was lowered
        reached = max(trainer.start_iter, min(trainer.iter, trainer.max_iter))
        if reached > max(trainer.max_iter, 0):
            logger.warning(
                f"max_iter={trainer.max_iter} is below the {reached} iterations this LiFT was "
                f"trained (a resumed run): {self.filename} records iteration {reached}."
            )
        self.teacher = self.teacher if self._started else self._teacher()
        # the latest held-out cosines of FeatureQualityEvaluator (via EvalHook); None: never run
        latest = trainer.storage.latest()
        q = {k: latest.get(f"lift_quality/{k}") for k in ("cos_lift", "cos_bilinear")}
        q = None if None in q.values() else {k: float(v[0]) for k, v in q.items()}
        undertrained = q is not None and q["cos_lift"] < q["cos_bilinear"]
        if undertrained:
            logger.warning(
                f"UNDERTRAINED LiFT: held-out cosine {q['cos_lift']:.4f} is below bilinear "
                f"upsampling's {q['cos_bilinear']:.4f} after {reached} iterations; {self.path} "
                f"is written with undertrained=True. Train stage one longer (train.max_iter)."
            )
        save_lift_file(
            self.path,
            model.lift,
            backbone=model.backbone.identity(),
            feature_layer=self.feature_layer,
            iteration=int(reached),
            distance=getattr(model, "distance", "cosine"),
            teacher_weights=self.teacher["weights"],  # format 1's field, kept for readers
            teacher=dict(self.teacher),
            quality=q,
            undertrained=undertrained,
        )
        logger.info(f"Wrote the stage-one LiFT to {self.path} (load it with lift_weights=...).")
