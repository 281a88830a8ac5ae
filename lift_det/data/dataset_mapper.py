"""A drop-in for detectron2's ``DatasetMapper`` that reads 16-bit images right, names unreadable
files and drops boxes of zero or negative size (with a count)."""

import dis
import functools
import logging
import sys
import types
from typing import Any, Dict
import shapely.geometry  # noqa: F401  (fvcore's polygon crops: imported before workers fork)

import detectron2
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as d2_utils

from .detection_utils import read_image
from .validate import box_problem

logger = logging.getLogger(__name__)


def has_valid_box(annotation: Dict[str, Any]) -> bool:
    """Whether an annotation's box has a finite, positive width and height (rotated: kept)."""
    return not box_problem(annotation)


def _reads_images_as_utils_read_image(function: types.FunctionType) -> bool:
    """Whether every image ``function`` reads is read as ``utils.read_image`` (a module global
    ``utils``, followed by the attribute), and at least one is: what :func:`_with_read_image`
    relies on."""
    ops = list(dis.get_instructions(function))
    uses = [i for i, op in enumerate(ops) if op.argval == "read_image"]
    return bool(uses) and all(
        i > 0
        and ops[i].opname in ("LOAD_ATTR", "LOAD_METHOD")
        and (ops[i - 1].opname, ops[i - 1].argval) == ("LOAD_GLOBAL", "utils")
        for i in uses
    )


def _with_read_image(function: types.FunctionType) -> types.FunctionType:
    """``function`` (of ``detectron2.data.dataset_mapper``) with this package's :func:`read_image`
    as ``utils.read_image``: the same code object, other globals, so the mapper runs upstream's
    ``__call__`` without a copy or a patch; code that reads images another way is refused."""
    module = sys.modules[function.__module__]
    readable = _reads_images_as_utils_read_image(function)
    if getattr(module, "utils", None) is not d2_utils or not readable:
        raise RuntimeError(
            f"{function.__module__}.{function.__qualname__} of this detectron2 "
            f"({detectron2.__version__}) does not read images as utils.read_image "
            f"(detectron2.data.detection_utils), so lift_det's DetectionDatasetMapper cannot give "
            f"it lift_det.data.read_image (16-bit images, named errors). Use a detectron2 whose "
            f"mapper does (0.7.x) or update lift_det/data/dataset_mapper.py."
        )
    utils = types.SimpleNamespace(**{**vars(d2_utils), "read_image": read_image})
    namespace = {**vars(module), "utils": utils}
    return types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__
    )


@functools.lru_cache(maxsize=None)
def _upstream_call() -> types.FunctionType:
    return _with_read_image(DatasetMapper.__call__)


class DetectionDatasetMapper(DatasetMapper):
    """detectron2's :class:`DatasetMapper` that reads images with :func:`lift_det.data.read_image`
    and, in training, drops (and counts) annotations whose box has zero or negative size or is not
    finite, before the transforms could turn a negative-size box into a valid one."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _upstream_call()  # refuses, here, an upstream __call__ it cannot give its reader
        self.num_dropped_boxes = 0
        self._images_with_dropped_boxes = 0

    def _drop_invalid_boxes(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        annotations = dataset_dict.get("annotations")
        if not self.is_train or not annotations:
            return dataset_dict
        valid = [a for a in annotations if has_valid_box(a)]
        dropped = len(annotations) - len(valid)
        if not dropped:
            return dataset_dict
        self.num_dropped_boxes += dropped
        self._images_with_dropped_boxes += 1
        count = self._images_with_dropped_boxes
        if count <= 10 or count % 100 == 0:
            logger.warning(
                f"Dropped {dropped} box(es) of zero or negative size in "
                f"'{dataset_dict.get('file_name')}' ({self.num_dropped_boxes} in {count} images so "
                f"far in this loader process). Fix the annotation file to keep them."
            )
        return {**dataset_dict, "annotations": valid}  # the caller's dict is left as it is

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        return _upstream_call()(self, self._drop_invalid_boxes(dataset_dict))
