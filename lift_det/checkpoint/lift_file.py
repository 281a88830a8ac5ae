"""LiFT files: the stage-one LiFT with metadata, checked when written and when read.

A LiFT file (written by stage one, read by stage two) is a torch file::

    {"model": <LiFT state dict>,
     "lift_det": {"format": 2, "class": "LiFT", "preset": "LiFT-B", "arch": {...},
                  "in_channels": 768, "patch_size": 16,
                  "backbone": {"type": "detectron2.ViT", "embed_dim": 768, "depth": 12, ...},
                  "feature_layer": "last_feat", "iteration": 1234,
                  "teacher": {"weights": "vitdet_b.pkl", "initialized": True},   # format 2
                  "quality": {"cos_lift": 0.91, "cos_bilinear": 0.88} or None,   # format 2
                  "undertrained": False}}                                         # format 2

Format 1 files still load. Refused when written and read: a non-finite tensor, a weight with
``|w| > MAX_ABS_WEIGHT`` (not BatchNorm statistics), a ``running_var <= 0``, ``iteration <= 0``.
"""

import json
import logging
import os
from typing import Any, Dict, Mapping, Optional
import torch
from torch import nn

from detectron2.utils.file_io import PathManager

from .file_io import atomic_torch_save, torch_load_checked
from .official_lift import is_official_lift_state, official_lift_file

logger = logging.getLogger(__name__)
LIFT_FILE_FORMAT = 2
# A trained LiFT's weights are O(1) (BN-normalized convs); stage one at lr=1e6 gives ~1e6.
MAX_ABS_WEIGHT = 1e4
_FIX = "Retrain stage one with a lower optimizer.lr (tools/train_net.py, configs/lift_stage1*.py)"


def lift_metadata(
    lift: nn.Module,
    backbone: Optional[Dict[str, Any]] = None,
    feature_layer: str = "last_feat",
    **extra: Any,
) -> Dict[str, Any]:
    """The metadata stored with a LiFT (or control upsampler) state dict."""
    return {
        "format": LIFT_FILE_FORMAT,
        "class": type(lift).__name__,
        "preset": getattr(lift, "preset", "custom"),
        "arch": dict(getattr(lift, "arch", {})),
        "in_channels": int(lift.in_channels),
        "patch_size": int(lift.patch_size),
        "backbone": dict(backbone or {}),
        "feature_layer": feature_layer,
        **extra,
    }


def check_lift_state(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any], path: str):
    """Refuse broken weights (see the module docstring) with an error naming ``path``."""
    it = meta.get("iteration")
    if it is not None and int(it) <= 0:
        raise ValueError(
            f"LiFT file '{path}': iteration {it} <= 0, LiFT was never trained. Run stage one with "
            f"train.max_iter > 0."
        )
    for k, v in state.items():
        if not torch.is_tensor(v) or not v.is_floating_point():
            continue
        if not torch.isfinite(v).all():
            raise ValueError(f"LiFT file '{path}': tensor {k} has NaN/inf values. {_FIX}.")
        if k.endswith("running_var") and not (v > 0).all():
            raise ValueError(
                f"LiFT file '{path}': BatchNorm {k} has values <= 0 (min {v.min().item():g}). "
                f"{_FIX}."
            )
        stat = k.endswith(("running_mean", "running_var"))  # activation statistics: unbounded
        if v.numel() and not stat and v.abs().max().item() > MAX_ABS_WEIGHT:
            raise ValueError(
                f"LiFT file '{path}': tensor {k} has exploded (max |w| = "
                f"{v.abs().max().item():.3g} > {MAX_ABS_WEIGHT:.0e}). {_FIX}."
            )


def save_lift_file(path: str, lift: nn.Module, **meta: Any) -> None:
    """Write ``lift``'s weights and metadata (see :func:`lift_metadata`) atomically to ``path``,
    after :func:`check_lift_state` (broken weights are never written)."""
    state = {k: v.detach().cpu() for k, v in lift.state_dict().items()}
    metadata = lift_metadata(lift, **meta)
    check_lift_state(state, metadata, path)
    atomic_torch_save({"model": state, "lift_det": metadata}, path)


def read_lift_file(path: str) -> Dict[str, Any]:
    """Read a LiFT file; a missing, corrupt, broken or foreign file raises with the reason."""
    local = PathManager.get_local_path(path)
    if not os.path.isfile(local):
        raise FileNotFoundError(
            f"LiFT file '{path}' does not exist. Train one with tools/train_net.py and a stage-one "
            f"config (it writes OUTPUT_DIR/lift_final.pth) or fix the path."
        )
    data = torch_load_checked(local, what="LiFT file")
    if is_official_lift_state(data):
        data = official_lift_file(data, path)
        data["lift_det"]["format"] = LIFT_FILE_FORMAT
    if not isinstance(data, dict) or "lift_det" not in data or "model" not in data:
        raise ValueError(
            f"'{path}' is not a LiFT file written by lift_det (no 'lift_det' metadata). A "
            f"detector checkpoint goes into train.init_checkpoint instead."
        )
    meta = data["lift_det"]
    if int(meta.get("format", 1)) > LIFT_FILE_FORMAT:
        raise ValueError(
            f"LiFT file '{path}' has format {meta['format']}, newer than this lift_det reads "
            f"({LIFT_FILE_FORMAT}). Update lift_det."
        )
    check_lift_state(data["model"], meta, path)
    return data


def _check_fit(own: Mapping[str, Any], state: Mapping[str, Any], path: str, hint: str) -> None:
    """Every tensor of the module, no more, each of its shape (as ``load_state_dict(strict=True)``
    requires), checked without loading anything."""
    wrong = {
        "Missing key(s) in state_dict": [k for k in own if k not in state],
        "Unexpected key(s) in state_dict": [k for k in state if k not in own],
        "another shape": [k for k in own if k in state and state[k].shape != own[k].shape],
    }
    found = [f"{t}: {', '.join(json.dumps(k) for k in keys)}" for t, keys in wrong.items() if keys]
    if found:
        raise ValueError(f"LiFT file '{path}' does not fit this model: {'; '.join(found)}. {hint}")


def _check(field: str, expected: Any, found: Any, path: str, hint: str) -> None:
    if expected is not None and found is not None and expected != found:
        raise ValueError(
            f"LiFT file '{path}' does not fit this model: {field} is {found!r} in the file but "
            f"{expected!r} in the model. {hint}"
        )


def _warn_about_training(meta: Mapping[str, Any], path: str) -> None:
    teacher = meta.get("teacher") or {"initialized": meta.get("teacher_weights", "-") != ""}
    if not teacher.get("initialized", True):  # format 1 files: teacher_weights == ""
        logger.warning(
            f"LiFT file '{path}' was trained against an UNINITIALIZED (random) ViT teacher "
            f"(stage one had an empty train.init_checkpoint): it upsamples a random network's "
            f"features. Retrain stage one from a trained ViTDet checkpoint."
        )
    if meta.get("undertrained"):
        q = meta.get("quality") or {}
        logger.warning(
            f"LiFT file '{path}' is UNDERTRAINED: its held-out cosine "
            f"({q.get('cos_lift', float('nan')):.4f}) is below bilinear upsampling's "
            f"({q.get('cos_bilinear', float('nan')):.4f}). Train stage one longer."
        )


def _check_teacher(meta: Mapping[str, Any], vit: Optional[str], path: str) -> None:
    """Refuse a LiFT file trained against another ViT than ``vit`` (its fingerprint)."""
    teacher = meta.get("teacher") or {}
    recorded = teacher.get("fingerprint")
    if vit is None or recorded is None or not teacher.get("initialized", True):
        return  # nothing to compare (older files, official files, a random teacher: warned)
    if recorded != vit:
        raise ValueError(
            f"LiFT file '{path}' was trained against another ViT: its teacher "
            f"({teacher.get('weights') or 'unrecorded'}, fingerprint {recorded}) is not the ViT it "
            f"is loaded into (fingerprint {vit}). LiFT learns one ViT's features: load the "
            f"checkpoint its teacher came from (train.init_checkpoint), or train stage one "
            f"against this ViT."
        )


def load_lift_file(
    lift: nn.Module,
    path: str,
    backbone: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Load a LiFT file into ``lift`` after :func:`check_lift_file`. Returns the metadata."""
    data = check_lift_file(lift, path, backbone)
    lift.load_state_dict(data["model"], strict=True)  # every tensor, no more, no fewer
    return data["lift_det"]


def check_lift_file(
    lift: nn.Module,
    path: str,
    backbone: Optional[Dict[str, Any]] = None,
    teacher: Optional[str] = None,
) -> Dict[str, Any]:
    """Read a LiFT file and check it against ``lift`` (class, widths, every tensor and shape)
    and, if given, the ViT's ``vit_identity`` and :func:`teacher_fingerprint`; warn about an
    undertrained LiFT or a random teacher. Loads nothing; returns the file's dict."""
    data = read_lift_file(path)
    meta = data["lift_det"]
    hint = (
        "Train a LiFT for this backbone with stage one (tools/train_net.py), or build the model "
        "to match the file."
    )
    _check("module class", type(lift).__name__, meta.get("class"), path, hint)
    _check("in_channels", int(lift.in_channels), meta.get("in_channels"), path, hint)
    _check("patch_size", int(lift.patch_size), meta.get("patch_size"), path, hint)
    for group, ours in (("arch", getattr(lift, "arch", None)), ("backbone", backbone)):
        for key, value in (ours or {}).items():
            if key != "norm":  # BN / SyncBN / FrozenBN share a state dict; GN fails on load
                _check(f"{group}.{key}", value, (meta.get(group) or {}).get(key), path, hint)
    _check_teacher(meta, teacher, path)
    _check_fit(lift.state_dict(), data["model"], path, hint)  # before anything is loaded
    logger.debug(  # the checkpointer's one summary line says where LiFT came from
        f"Checked {meta.get('preset')} weights in {path} (trained on {meta.get('backbone')}, "
        f"feature '{meta.get('feature_layer')}', iteration {meta.get('iteration')})."
    )
    _warn_about_training(meta, path)
    return data
