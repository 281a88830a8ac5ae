"""A DetectionCheckpointer that writes atomically and refuses weights that do not fit.

Refused on load (unless ``allow_mismatch=True`` or ``path?allow_mismatch=True``): a frozen parameter
the file does not supply (zero relative-position tables absent from an MAE file are fine); a load
where less than ``MIN_FIT`` of the model's parameters got a value AND less than ``MIN_FIT`` of the
file's tensors were used; a resume with any tensor missing or mis-shaped, or from a checkpoint of
another model (its fingerprint). Each load logs one INFO line."""

import errno
import logging
import os
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs, urlencode, urlparse

from detectron2.checkpoint import DetectionCheckpointer

from .file_io import (
    atomic_torch_save,
    atomic_write_text,
    not_a_checkpoint,
    remove_stale_temp_files,
    unreadable_content,
)
from .fingerprint import check_fingerprint, model_fingerprint
from .load_report import collect_parts, describe_keys, group_keys, really_missing, summary_line

logger = logging.getLogger(__name__)
MIN_FIT = 0.5
_SWITCH = "allow_mismatch"


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """A :class:`DetectionCheckpointer` whose ``save`` is atomic (a full disk keeps the last good
    checkpoint) and stores a model fingerprint, and whose ``load`` refuses weights that do not fit
    (see the module docstring)."""

    def __init__(
        self,
        model,
        save_dir: str = "",
        *,
        allow_mismatch: bool = False,
        complete: bool = False,
        **kwargs,
    ):
        """``allow_mismatch``: load whatever fits (also per load: ``path?allow_mismatch=True``);
        ``complete``, for inference: refuse a load that leaves any tensor at its initialization,
        but the parts reported as new (:mod:`.load_report`)."""
        super().__init__(model, save_dir, **kwargs)
        self.allow_mismatch = allow_mismatch
        self.complete = complete
        self._load_args: Dict[str, Any] = {}
        if self.save_to_disk and save_dir and os.path.isdir(save_dir):
            remove_stale_temp_files(save_dir)

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        kwargs["model_fingerprint"] = model_fingerprint(self.model)
        if "://" in self.save_dir:  # remote storage: no rename, plain save
            return super().save(name, **kwargs)
        remove_stale_temp_files(self.save_dir)
        data = {key: obj.state_dict() for key, obj in self.checkpointables.items()}
        data = {"model": self.model.state_dict(), **data, **kwargs}
        path = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.info(f"Saving checkpoint to {path}")
        try:
            atomic_torch_save(data, path)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            last = self.get_checkpoint_file() if self.has_checkpoint() else ""
            raise OSError(
                errno.ENOSPC,
                f"no space left on {self.save_dir}: the last good checkpoint "
                f"{last or '(none written yet)'} is kept; free space and --resume",
            ) from e
        self.tag_last_checkpoint(f"{name}.pth")

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if "://" in self.save_dir:
            return super().tag_last_checkpoint(last_filename_basename)
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        allow = self.allow_mismatch
        if path:
            url = urlparse(path)
            query = parse_qs(url.query)
            allow = allow or query.pop(_SWITCH, ["False"]) == ["True"]
            path = url._replace(query=urlencode(query, doseq=True)).geturl()
        keys = list(self.checkpointables) if checkpointables is None else checkpointables
        self._load_args = {"path": path, "allow": allow, "checkpointables": keys}
        try:
            return super().load(path, checkpointables)
        finally:
            self._load_args = {}
            self._parsed_url_during_load = None  # detectron2 leaves it set after an error

    def _load_file(self, filename: str) -> Dict[str, Any]:
        try:
            return super()._load_file(filename)
        except Exception as e:  # the unpicklers raise anything on random or cut bytes
            refused = "Unsupported global" in str(e)  # a real checkpoint torch refuses: its message
            if refused or not os.path.isfile(filename) or not unreadable_content(filename, e):
                raise
            raise not_a_checkpoint(filename, e) from None

    def _load_model(self, checkpoint: Dict[str, Any]):
        args = self._load_args
        path, allow = args.get("path", "?"), args.get("allow", self.allow_mismatch)
        resume = any(k in checkpoint for k in args.get("checkpointables", []))
        if resume and not allow:
            check_fingerprint(self.model, checkpoint.get("model_fingerprint"), path)
        n_file = len(checkpoint["model"])
        is_lift_file = "lift_det" in checkpoint
        with collect_parts() as parts:  # what the modules' load hooks say they took elsewhere
            incompatible = super()._load_model(checkpoint)

        state = self.model.state_dict()  # its keys: every tensor of the model
        missing = really_missing(self.model, incompatible.missing_keys)
        shapes = {k: (a, b) for k, a, b in incompatible.incorrect_shapes}
        # supplied by a file (LiFT from lift_weights) or left random on purpose: not missing
        elsewhere = [p for p in parts if p.source in ("file", "random")]
        exempt = {k for k in state if any(p.covers(k) for p in elsewhere)}
        missing -= exempt | set(shapes)  # fvcore drops mis-shaped tensors: they show as missing
        # an MAE file has no relative-position tables; zero ones (ViTDet's init) add no bias
        zero_rel_pos = {
            k for k in missing if k.endswith(("rel_pos_h", "rel_pos_w")) and not state[k].any()
        }
        missing -= zero_rel_pos
        not_loaded = missing | exempt | set(shapes)
        loaded = [k for k in state if k not in not_loaded]
        params = dict(self.model.named_parameters())
        numel = sum(p.numel() for p in params.values()) or 1
        fit_model = sum(params[k].numel() for k in loaded if k in params) / numel
        fit_file = min(1.0, len(loaded) / max(1, n_file))
        frozen = {k for k, p in params.items() if not p.requires_grad}
        bad_frozen = sorted(frozen & (missing | set(shapes)))
        report = dict(path=path, allow=allow, n_loaded=len(loaded), n_model=len(state))
        report.update(missing=group_keys(missing, state), shapes=group_keys(shapes, state))
        unused = group_keys(incompatible.unexpected_keys, state)
        self._report = dict(report, unused=unused, zero_rel_pos=len(zero_rel_pos), parts=parts)
        if allow:
            return incompatible
        what = describe_keys(state, missing, shapes)
        fix = f"or append ?{_SWITCH}=True to the path to load only what fits."
        if resume and (missing or shapes):
            raise ValueError(
                f"Cannot resume from '{path}': it does not fit this model ({what}). Resume with "
                f"the config that wrote it, train into a new train.output_dir, {fix}"
            )
        if is_lift_file and fit_file < MIN_FIT:  # before the frozen parts it cannot fill
            raise ValueError(
                f"'{path}' is a LiFT file (stage one's lift_final.pth), not a checkpoint of this "
                f"model: give it as model.backbone.net.lift_weights and the detector's "
                f"checkpoint as train.init_checkpoint / --weights."
            )
        if bad_frozen:
            if any(".lift." in f".{k}" for k in bad_frozen):
                fix = (
                    "give the stage-one LiFT file as model.backbone.net.lift_weights=.../"
                    f"lift_final.pth (LiFT), {fix}"
                )
            bad = describe_keys(params, set(bad_frozen) & missing, shapes, bad_frozen)
            raise ValueError(
                f"'{path}' does not fit the FROZEN parameters of this model (they are never "
                f"trained, so they must come from the checkpoint): {len(bad_frozen)} did not "
                f"fit ({bad}). Use a checkpoint of the same ViT/LiFT size, {fix}"
            )
        if fit_model < MIN_FIT and fit_file < MIN_FIT:
            raise ValueError(
                f"'{path}' does not fit this model: only {fit_model:.0%} of the model's parameters "
                f"and {fit_file:.0%} of the file's {n_file} tensors matched ({what}). Use a "
                f"checkpoint of this model (or a ViTDet/MAE checkpoint of the same ViT size), {fix}"
            )
        new = [p for p in parts if p.source == "new"]  # parts this checkpoint format never has
        random = sorted(k for k in missing | set(shapes) if not any(p.covers(k) for p in new))
        if self.complete and random:
            n_random = sum(params[k].numel() for k in random if k in params)
            which = describe_keys(state, set(random) & missing, shapes, random)
            raise ValueError(
                f"'{path}' leaves {len(random)} of the model's {len(state)} tensors "
                f"({n_random / numel:.0%} of its parameters) at their random initialization "
                f"({which}): predictions would come from a partly random model. Give a checkpoint "
                f"of this model (the OUTPUT_DIR/model_final.pth its training wrote), {fix}"
            )
        return incompatible

    def _log_incompatible_keys(self, incompatible) -> None:
        r = self.__dict__.pop("_report")  # fvcore's load calls it after _load_model above
        line = summary_line(r)
        if r["allow"]:
            line += f" [{_SWITCH}=True: mismatches were not refused]"
        logger.info(line + ".")
        for title, keys in [
            ("missing", incompatible.missing_keys),
            ("unexpected", incompatible.unexpected_keys),
            ("shape mismatch", [f"{k}: {a} vs {b}" for k, a, b in incompatible.incorrect_shapes]),
        ]:
            if keys:
                logger.debug(f"{title} ({len(keys)}):\n  " + "\n  ".join(keys))
