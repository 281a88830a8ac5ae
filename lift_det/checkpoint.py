"""Checkpoints: LiFT files with metadata, and a DetectionCheckpointer that writes atomically.

A LiFT file (written by stage one, read by stage two) is a torch file::

    {"model": <LiFT state dict>,
     "lift_det": {"format": 1, "class": "LiFT", "preset": "LiFT-B", "arch": {...},
                  "in_channels": 768, "patch_size": 16,
                  "backbone": {"type": "detectron2.ViT", "embed_dim": 768, "depth": 12, ...},
                  "feature_layer": "last_feat", "iteration": 1234}}

Loading checks the metadata against the module and the backbone it is loaded into and refuses a
file for another width, patch size or backbone with an error that says what differs.
"""

import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

import logging
import os
import tempfile
from typing import Any, Dict, Optional

__all__ = [
    "AtomicDetectionCheckpointer",
    "LIFT_FILE_FORMAT",
    "atomic_torch_save",
    "lift_metadata",
    "load_lift_file",
    "read_lift_file",
    "save_lift_file",
]

logger = logging.getLogger(__name__)
LIFT_FILE_FORMAT = 1
_TMP_PREFIX = ".tmp-"


def _umask_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp makes files 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _atomic_write_text(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, _umask_mode())
    os.replace(tmp, path)


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """
    A :class:`DetectionCheckpointer` whose ``save`` never leaves a partial file: the checkpoint
    is written to a temporary name and renamed, and ``last_checkpoint`` is updated only after
    the rename (both atomically on a local file system). A run killed while saving keeps its
    previous checkpoint and a ``last_checkpoint`` that points to it.
    """

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        if not os.path.isdir(self.save_dir):  # remote storage: no rename, plain save
            return super().save(name, **kwargs)
        tmp_name = f"{_TMP_PREFIX}{name}"
        tmp_path = os.path.join(self.save_dir, f"{tmp_name}.pth")
        try:
            super().save(tmp_name, **kwargs)  # tag_last_checkpoint below ignores the tmp name
            os.replace(tmp_path, os.path.join(self.save_dir, f"{name}.pth"))
        except BaseException:
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
            raise
        self.tag_last_checkpoint(f"{name}.pth")

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if last_filename_basename.startswith(_TMP_PREFIX):
            return
        if not os.path.isdir(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        _atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)


def _module_kind(module: nn.Module) -> str:
    return type(module).__name__


def lift_metadata(
    lift: nn.Module,
    backbone: Optional[Dict[str, Any]] = None,
    feature_layer: str = "last_feat",
    **extra: Any,
) -> Dict[str, Any]:
    """The metadata stored with a LiFT (or control upsampler) state dict."""
    return {
        "format": LIFT_FILE_FORMAT,
        "class": _module_kind(lift),
        "preset": getattr(lift, "preset", "custom"),
        "arch": dict(getattr(lift, "arch", {})),
        "in_channels": int(lift.in_channels),
        "patch_size": int(lift.patch_size),
        "backbone": dict(backbone or {}),
        "feature_layer": feature_layer,
        **extra,
    }


def save_lift_file(path: str, lift: nn.Module, **meta: Any) -> None:
    """Write ``lift``'s weights and metadata (see :func:`lift_metadata`) atomically to ``path``."""
    state = {k: v.detach().cpu() for k, v in lift.state_dict().items()}
    atomic_torch_save({"model": state, "lift_det": lift_metadata(lift, **meta)}, path)


def read_lift_file(path: str) -> Dict[str, Any]:
    """Read a LiFT file; a missing, corrupt or foreign file raises with the reason."""
    local = PathManager.get_local_path(path)
    if not os.path.isfile(local):
        raise FileNotFoundError(
            f"LiFT file '{path}' does not exist. Train one with tools/train_lift.py (it writes "
            f"OUTPUT_DIR/lift_final.pth) or fix the path."
        )
    try:
        data = torch.load(local, map_location="cpu", weights_only=False)
    except Exception as e:
        raise RuntimeError(f"LiFT file '{path}' is corrupt or not a torch file: {e}") from e
    if not isinstance(data, dict) or "lift_det" not in data or "model" not in data:
        raise ValueError(
            f"'{path}' is not a LiFT file written by lift_det (no 'lift_det' metadata). A "
            f"detector checkpoint goes into train.init_checkpoint instead."
        )
    return data


def _check(field: str, expected: Any, found: Any, path: str, hint: str) -> None:
    if expected is not None and found is not None and expected != found:
        raise ValueError(
            f"LiFT file '{path}' does not fit this model: {field} is {found!r} in the file but "
            f"{expected!r} in the model. {hint}"
        )


def load_lift_file(
    lift: nn.Module, path: str, backbone: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """
    Load a LiFT file into ``lift`` after checking its metadata against the module and, if given,
    the backbone description (see :meth:`ViTLiFT.backbone_identity`). Returns the metadata.
    """
    data = read_lift_file(path)
    meta = data["lift_det"]
    hint = (
        "Train a LiFT for this backbone with tools/train_lift.py, or build the model to match "
        "the file."
    )
    _check("module class", _module_kind(lift), meta.get("class"), path, hint)
    _check("in_channels", int(lift.in_channels), meta.get("in_channels"), path, hint)
    _check("patch_size", int(lift.patch_size), meta.get("patch_size"), path, hint)
    arch = getattr(lift, "arch", None)
    if arch and meta.get("arch"):
        for key, value in arch.items():
            if key == "norm":  # BN / SyncBN / FrozenBN share a state dict; GN fails on load
                continue
            _check(f"arch.{key}", value, meta["arch"].get(key), path, hint)
    if backbone and meta.get("backbone"):
        for key, value in backbone.items():
            _check(f"backbone.{key}", value, meta["backbone"].get(key), path, hint)
    lift.load_state_dict(data["model"], strict=True)
    logger.info(
        f"Loaded {meta.get('preset')} weights from {path} (trained on {meta.get('backbone')}, "
        f"feature '{meta.get('feature_layer')}', iteration {meta.get('iteration')})."
    )
    return meta


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to a unique temporary file in the same folder, then rename over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
