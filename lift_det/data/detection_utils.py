"""Drop-ins for detectron2's ``read_image`` (16-bit images) and ``get_detection_dataset_dicts``
(errors that name the dataset's files)."""

import contextlib
import json
import numpy as np
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as d2_utils
from detectron2.data.build import get_detection_dataset_dicts as d2_get_detection_dataset_dicts
from detectron2.utils.file_io import PathManager

from .validate import check_dataset_dicts

# what :func:`read_image` (PIL) reads: the file names that image folders are searched for
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

# PIL's convert("RGB" / "L") clips these at 255 (a 16-bit image becomes white)
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def read_image(file_name: str, format: Optional[str] = None) -> np.ndarray:
    """detectron2's :func:`~detectron2.data.detection_utils.read_image`, except that 16- and
    32-bit grayscale images are rescaled to 8 bits (/ 257; "F" min-max) instead of clipped, and an
    unreadable file raises an ``OSError`` naming it."""
    try:
        with PathManager.open(file_name, "rb") as f:
            mode = Image.open(f).mode  # reads the header only
        if format is None or mode not in _HIGH_BIT_MODES:
            return d2_utils.read_image(file_name, format)
        array = d2_utils.read_image(file_name, None).astype(np.float64)  # EXIF applied
    except _READ_ERRORS as e:
        raise OSError(f"Cannot read image '{file_name}': {type(e).__name__}: {e}") from e
    if mode == "F":
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        array = (array - lo) / max(hi - lo, 1e-12) * 255.0
    else:
        array = array / 257.0  # 0-65535 -> 0-255
    gray = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")
    return d2_utils.convert_PIL_to_numpy(gray, format)


def datasets_hint() -> str:
    """Where detectron2 reads datasets (``$DETECTRON2_DATASETS``), and how to change it."""
    root = os.environ.get("DETECTRON2_DATASETS")
    now, shown = (f"now '{root}'", root) if root else ("unset: './datasets'", "datasets")
    return (
        f"Datasets are read under $DETECTRON2_DATASETS ({now}; e.g. {shown}/coco/train2017 and "
        f"{shown}/coco/annotations/instances_train2017.json, the layout of detectron2's "
        f"datasets/README.md). Set DETECTRON2_DATASETS to the folder that holds them before "
        f"starting, or use the built-in mini data (configs/mini/)."
    )


def _where(name: str) -> str:
    meta = MetadataCatalog.get(name)
    paths = [meta.get(key, None) for key in ("json_file", "image_root")]
    return ", ".join(p for p in paths if p) or "no file recorded in its metadata"


def check_dataset_files(name: str) -> None:
    """Raise a clear error if ``name`` is not registered or the files it points to are missing."""
    if name not in DatasetCatalog.list():
        raise KeyError(
            f"Dataset '{name}' is not registered in detectron2's DatasetCatalog. Registered: "
            f"{', '.join(sorted(DatasetCatalog.list()))}."
        )
    meta = MetadataCatalog.get(name)
    for key in ("json_file", "image_root"):
        path = meta.get(key, None)
        if path and "://" not in path and not os.path.exists(path):
            raise FileNotFoundError(
                f"Dataset '{name}': {key} '{path}' does not exist. {datasets_hint()} Note that "
                f"detectron2 reads $DETECTRON2_DATASETS when it is imported."
            )


@contextlib.contextmanager
def load_errors_explained(names: Sequence[str]) -> Iterator[None]:
    """Around the first load of registered datasets: a missing file or name is explained by the
    files the metadata records (checked after a failure only: a dataset may make its files on first
    load, as the built-in mini data does); another OSError becomes a ValueError (bad input)."""
    try:
        yield
    except (KeyError, FileNotFoundError):
        for name in names:
            check_dataset_files(name)
        raise
    except OSError as e:
        raise ValueError(f"Datasets {list(names)}: {e}") from None


def get_detection_dataset_dicts(
    names: Union[str, Sequence[str]],
    *args: Any,
    instance_masks: bool = False,
    mask_format: str = "polygon",
    check: bool = True,
    **kwargs: Any,
) -> List[Dict[str, Any]]:
    """detectron2's :func:`detectron2.data.get_detection_dataset_dicts`, with errors that name the
    dataset, its files and the fix; ``check``: then :func:`~.validate.check_dataset_dicts` with
    ``instance_masks`` and ``mask_format`` (the mapper's ``use_instance_mask`` and
    ``instance_mask_format``)."""
    names = [names] if isinstance(names, str) else list(names)
    try:
        with load_errors_explained(names):
            dicts = d2_get_detection_dataset_dicts(names, *args, **kwargs)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"Datasets {names} ({'; '.join(_where(n) for n in names)}): an annotation file is not "
            f"valid JSON ({e}): truncated by an interrupted download or copy? Copy it again."
        ) from None
    except AssertionError as e:
        if empty := re.search(r"Dataset '(.+)' is empty", str(e)):
            name = empty.group(1)
            raise ValueError(
                f"Dataset '{name}' ({_where(name)}) has no images. Check that the annotation file "
                f"lists images, or register another file."
            ) from e
        if "No valid data found" in str(e):
            raise ValueError(
                f"Datasets {names} ({'; '.join(_where(n) for n in names)}): no image has an "
                f"annotation that is not a crowd region. Pass filter_empty=False to keep images "
                f"without annotations, or fix the annotation files."
            ) from e
        raise
    if check:
        check_dataset_dicts(dicts, names, bool(instance_masks), str(mask_format))
    return dicts
