"""Image-only data for LiFT's stage one (paper §3.4: color jitter is the only augmentation):
:func:`stage1_dataset_dicts` (registered datasets and/or image folders, without annotations) and
:class:`Stage1DatasetMapper`, for detectron2's ``build_detection_train_loader`` / ``_test_loader``.
"""

import copy
import logging
import numpy as np
import os
from typing import Any, Dict, List, Optional, Sequence, Union
import torch

import detectron2.data.transforms as T
from detectron2.data import DatasetCatalog, MetadataCatalog

from .detection_utils import IMAGE_EXTENSIONS, datasets_hint, load_errors_explained, read_image
from .validate import check_some_image_reads

logger = logging.getLogger(__name__)


def image_folder_dicts(root: str) -> List[Dict[str, Any]]:
    """All images under ``root`` (recursively, sorted; :data:`IMAGE_EXTENSIONS`) as dataset dicts
    ``{"file_name", "image_id"}``; a missing or empty folder raises naming it."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder '{root}' does not exist. {datasets_hint()}")
    files = sorted(
        os.path.join(d, f)
        for d, _, names in os.walk(root, followlinks=True)
        for f in names
        if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
    )
    if not files:
        raise ValueError(
            f"Image folder '{root}' contains no images (extensions {', '.join(IMAGE_EXTENSIONS)}). "
            f"{datasets_hint()}"
        )
    return [{"file_name": f, "image_id": os.path.relpath(f, root)} for f in files]


def stage1_dataset_dicts(
    names: Union[str, Sequence[str]] = (),
    image_folders: Union[str, Sequence[str]] = (),
    max_images: int = 0,
) -> List[Dict[str, Any]]:
    """The images of registered datasets (``names``) and/or ``image_folders``, as dataset dicts with
    only ``file_name``, ``image_id`` and (when known) ``height`` / ``width``; if ``max_images`` > 0,
    only the first ``max_images``. A missing or empty dataset raises naming it."""
    names = [names] if isinstance(names, str) else list(names)
    image_folders = [image_folders] if isinstance(image_folders, str) else list(image_folders)
    if not names and not image_folders:
        raise ValueError("stage1_dataset_dicts: give dataset names and/or image folders.")
    dicts: List[Dict[str, Any]] = []
    for name in names:
        with load_errors_explained([name]):
            loaded = DatasetCatalog.get(name)
        if not loaded:
            meta = MetadataCatalog.get(name)
            where = meta.get("image_root", None) or meta.get("json_file", None) or name
            raise ValueError(f"Dataset '{name}' ({where}) is empty. {datasets_hint()}")
        keep = ("file_name", "image_id", "height", "width")
        dicts += [{k: d[k] for k in keep if k in d} for d in loaded]
        check_some_image_reads(dicts[-len(loaded) :], f"dataset '{name}'", read_rgb_image)
    for folder in image_folders:
        folder_dicts = image_folder_dicts(folder)
        check_some_image_reads(folder_dicts, f"image folder '{folder}'", read_rgb_image)
        dicts += folder_dicts
    if max_images > 0:
        dicts = dicts[:max_images]
    logger.info(f"Stage-one images: {len(dicts)} from {names + image_folders}.")
    return dicts


def read_rgb_image(file_name: str) -> np.ndarray:
    """:func:`lift_det.data.read_image` as (H, W, 3) uint8 RGB (16-bit images rescaled)."""
    return read_image(file_name, format="RGB")


def color_jitter(strength: float = 0.4) -> List[T.Augmentation]:
    """Random brightness, contrast and saturation, each by a factor in [1 - strength, 1 +
    strength] (detectron2 augmentations)."""
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"color jitter strength must be in [0, 1), got {strength}.")
    if strength == 0:
        return []
    lo, hi = 1.0 - strength, 1.0 + strength
    return [T.RandomBrightness(lo, hi), T.RandomContrast(lo, hi), T.RandomSaturation(lo, hi)]


class Stage1DatasetMapper:
    """Map a dataset dict to the input of :class:`lift_det.modeling.LiFTDistiller`: ``"image"``, a
    (3, h, w) uint8 RGB tensor whose longest side is ``image_size`` (ViTDet's test-time view).

    Images too small for stage one (fewer than ``min_patches`` patches per side at their own
    resolution, or at x/4 after resizing) and unreadable ones are skipped (``None``: detectron2's
    loaders draw another) and counted, or with ``skip_bad_images=False`` raise."""

    def __init__(
        self,
        is_train: bool = True,
        *,
        image_size: int = 1024,
        patch_size: int = 16,
        color_jitter_strength: float = 0.4,
        min_patches: int = 2,
        skip_bad_images: bool = True,
    ):
        """``is_train``: apply color jitter (:func:`color_jitter` of ``color_jitter_strength``);
        ``image_size``: a multiple of 4 * ``patch_size``, the ViT's."""
        if image_size % (4 * patch_size):
            raise ValueError(
                f"image_size={image_size} must be a multiple of 4 * patch_size = {4 * patch_size} "
                f"(x/4 must be a whole number of patches)."
            )
        if image_size // 4 < min_patches * patch_size:
            raise ValueError(
                f"image_size={image_size} is too small: x/4 ({image_size // 4} px) must span at "
                f"least min_patches={min_patches} patches of {patch_size} px."
            )
        self.is_train = is_train
        self.image_size = image_size
        self.patch_size = patch_size
        self.min_patches = min_patches
        self.skip_bad_images = skip_bad_images
        self.resize = T.ResizeShortestEdge(short_edge_length=image_size, max_size=image_size)
        jitter = color_jitter(color_jitter_strength) if is_train else []
        self.augmentations = T.AugmentationList(jitter)
        self.num_skipped = {"too_small": 0, "unreadable": 0}

    def _skip(self, reason: str, message: str) -> None:
        if not self.skip_bad_images:
            raise ValueError(message) if reason == "too_small" else OSError(message)
        self.num_skipped[reason] += 1
        total = sum(self.num_skipped.values())
        if total > 10 and total % 100:
            return  # the first 10, then every 100th
        logger.warning(
            f"{message} Skipped ({self.num_skipped['too_small']} too small, "
            f"{self.num_skipped['unreadable']} unreadable so far in this loader process)."
        )

    def _too_small(self, h: int, w: int, new_h: int, new_w: int) -> Optional[str]:
        need = self.min_patches * self.patch_size
        if min(h, w) < need:
            return f"{w}x{h} px is smaller than {self.min_patches} patches ({need} px) per side"
        if min(new_h, new_w) // 4 < need:
            return (
                f"{w}x{h} px resized to {new_w}x{new_h} spans fewer than {self.min_patches} "
                f"patches per side at x/4"
            )
        return None

    def __call__(self, dataset_dict: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        dataset_dict = copy.deepcopy(dataset_dict)
        file_name = dataset_dict["file_name"]
        try:
            image = read_rgb_image(file_name)
        except OSError as e:
            self._skip("unreadable", str(e))
            return None
        h, w = image.shape[:2]
        transform = self.resize.get_transform(image)
        new_h, new_w = transform.new_h, transform.new_w
        if reason := self._too_small(h, w, new_h, new_w):
            self._skip("too_small", f"Image '{file_name}' is too small for stage one: {reason}.")
            return None
        aug_input = T.AugInput(transform.apply_image(image))
        self.augmentations(aug_input)
        dataset_dict["height"], dataset_dict["width"] = h, w
        image = np.ascontiguousarray(aug_input.image.transpose(2, 0, 1))
        dataset_dict["image"] = torch.as_tensor(image)
        return dataset_dict
