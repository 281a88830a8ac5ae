"""A built-in, deterministic, procedurally generated "mini COCO" detection dataset (COCO instances
JSON with polygon masks), registered as ``lift_mini_train`` / ``lift_mini_val`` when
:mod:`lift_det.data` is imported; its files are generated on first load under
:func:`default_mini_root` (:mod:`.mini_files`)."""

import functools
import os
from typing import Any, Dict, List, Optional, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .mini_files import _SPLITS, _generate_if_needed, _split_paths, generate_mini_coco  # noqa: F401
from .mini_render import MINI_CLASSES

MINI_DATASETS: Tuple[str, ...] = ("lift_mini_train", "lift_mini_val")


def default_mini_root() -> str:
    """Where the mini COCO dataset lives by default: ``$LIFT_DET_MINI_ROOT`` if set, else
    ``$DETECTRON2_DATASETS/lift_mini_coco`` (``datasets/lift_mini_coco`` when unset)."""
    default = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "lift_mini_coco")
    return os.environ.get("LIFT_DET_MINI_ROOT") or default


def _load_mini_split(root: str, split: str, dataset_name: str) -> List[Dict[str, Any]]:
    _generate_if_needed(root)
    return load_coco_json(*_split_paths(root, split), dataset_name)


def _is_registered_at(name: str, split: str, root: str) -> bool:
    """Whether ``name`` is registered in both catalogs, pointing into ``root``."""
    if name not in DatasetCatalog.list() or name not in MetadataCatalog.list():
        return False
    meta = MetadataCatalog.get(name)
    return all(
        meta.get(key) is not None and os.path.abspath(meta.get(key)) == os.path.abspath(path)
        for key, path in zip(("json_file", "image_root"), _split_paths(root, split))
    )


def register_mini_coco(root: Optional[str] = None) -> None:
    """Register ``lift_mini_train`` and ``lift_mini_val`` at ``root`` (default:
    :func:`default_mini_root`) in detectron2's catalogs, generating no files; a name registered
    with another root is re-registered."""
    root = default_mini_root() if root is None else root
    for split, name in zip(_SPLITS, MINI_DATASETS):
        if _is_registered_at(name, split, root):
            continue
        for catalog in (DatasetCatalog, MetadataCatalog):
            if name in catalog.list():
                catalog.remove(name)
        json_file, image_root = _split_paths(root, split)
        DatasetCatalog.register(name, functools.partial(_load_mini_split, root, split, name))
        # the same values that load_coco_json sets when it loads the data
        MetadataCatalog.get(name).set(
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
            thing_classes=list(MINI_CLASSES),
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(MINI_CLASSES))},
        )


def ensure_mini_coco(split: str = "train", root: Optional[str] = None) -> str:
    """:func:`register_mini_coco` at ``root`` (default: :func:`default_mini_root`, read now), then
    the name of ``split`` ("train" or "val"), e.g. ``names=L(ensure_mini_coco)(split="val")``."""
    if split not in _SPLITS:
        raise ValueError(f"Unknown mini COCO split {split!r}; valid splits are {list(_SPLITS)}.")
    register_mini_coco(default_mini_root() if root is None else root)
    return MINI_DATASETS[_SPLITS.index(split)]
