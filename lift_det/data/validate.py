"""Checks of detection dataset dicts before training: what would crash a loader worker later or
silently change the training signal is named by file, image id and annotation, with the fix."""

import logging
import os
import time
from typing import Any, Callable, Dict, List, Sequence
from PIL import Image

from detectron2.structures import BoxMode

from ..utils.cli import UserError

logger = logging.getLogger(__name__)

_EXIF_ORIENTATION = 0x0112
_ROTATING = (5, 6, 7, 8)  # orientations that swap width and height (detectron2 applies them)
_SHOWN = 3  # examples named per problem


class DatasetError(UserError):
    """A dataset problem that would crash training later or change what it learns."""


def _image_label(d: Dict[str, Any]) -> str:
    return f"'{d.get('file_name')}' (image id {d.get('image_id')})"


def _annotation_label(d: Dict[str, Any], annotation: Dict[str, Any]) -> str:
    if annotation.get("id") is not None:
        return f"annotation id {annotation['id']} of {_image_label(d)}"
    # detectron2's COCO loader drops annotation ids: the box tells which one it is
    bbox = [round(float(v), 2) for v in annotation.get("bbox") or []]
    return f"the annotation with bbox {bbox} of {_image_label(d)}"


def _examples(items: List[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return "; ".join(items[:_SHOWN]) + more


def _image_size(path: str):
    """(width, height) after EXIF orientation as detectron2's reader applies it, and whether the
    EXIF orientation swapped them."""
    with Image.open(path) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        except Exception:  # a broken EXIF block: detectron2's reader ignores it too
            orientation = 1
    if orientation in _ROTATING:
        return (height, width), True
    return (width, height), False


def box_problem(annotation: Dict[str, Any], width: Any = None, height: Any = None) -> str:
    """Why an annotation's box trains nothing (no box, not finite, no area; with the image's
    ``width`` and ``height``: entirely outside it), "" for a usable or a rotated box."""
    bbox = annotation.get("bbox")
    if bbox is None or len(bbox) < 4:
        return "has no box"
    mode = annotation.get("bbox_mode", BoxMode.XYWH_ABS)
    if mode == BoxMode.XYWHA_ABS:
        return ""
    x0, y0, x1, y1 = BoxMode.convert(list(bbox), mode, BoxMode.XYXY_ABS)
    values = [float(v) for v in (x0, y0, x1, y1)]
    if not all(v == v and abs(v) != float("inf") for v in values):
        return f"has a box that is not finite ({list(bbox)})"
    if not (x1 > x0 and y1 > y0):
        return f"has a box of zero or negative size ({list(bbox)})"
    if width and height and (x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height):
        return f"has a box entirely outside the {width}x{height} image ({list(bbox)})"
    return ""


def check_dataset_dicts(
    dicts: Sequence[Dict[str, Any]],
    names: Sequence[str],
    instance_masks: bool = False,
    mask_format: str = "polygon",
) -> None:
    """Check detectron2 dataset dicts. Raises :class:`DatasetError` (the first few offenders named,
    the fix) for image files that are missing or unreadable or of another size than the dicts' (EXIF
    rotation named), and, with ``instance_masks``, non-crowd instances without a segmentation, or
    RLE masks where the mapper reads polygons (``mask_format``). Warns about boxes that are not
    finite, have no area or lie outside the image."""
    start = time.perf_counter()
    where = ", ".join(names)
    missing, unreadable, wrong_size, rotated, no_mask, boxes, rle = [], [], [], [], [], [], []
    polygons = instance_masks and mask_format == "polygon"  # RLE masks cannot be read as polygons
    for d in dicts:
        path = d.get("file_name", "")
        if path and "://" not in path:
            if not os.path.isfile(path):
                missing.append(_image_label(d))
            elif "width" in d or "height" in d:
                try:
                    size, swapped = _image_size(path)
                except Exception as e:
                    unreadable.append(f"{_image_label(d)}: {type(e).__name__}: {e}")
                else:
                    expected = (d.get("width"), d.get("height"))
                    if size != expected:
                        label = f"{_image_label(d)}: annotated {expected[0]}x{expected[1]}"
                        if swapped and size == expected[::-1]:
                            rotated.append(f"{label}, {size[0]}x{size[1]} after EXIF rotation")
                        else:
                            wrong_size.append(f"{label}, the image is {size[0]}x{size[1]}")
        for a in d.get("annotations", ()):
            if problem := box_problem(a, d.get("width"), d.get("height")):
                boxes.append(f"{_annotation_label(d, a)} {problem}")
            if instance_masks and not a.get("iscrowd", 0) and not a.get("segmentation"):
                no_mask.append(_annotation_label(d, a))
            if polygons and isinstance(a.get("segmentation"), dict):
                rle.append(_annotation_label(d, a))
    if boxes:
        logger.warning(
            f"Dataset {where}: {len(boxes)} annotation(s) with a box that trains nothing (dropped "
            f"by the mapper) or lies outside its image: {_examples(boxes)}. Fix the annotation "
            f"file to keep them."
        )
    problems = {  # what the offenders are ({} the examples) and the fix: the offenders
        "image file(s) do not exist: {}. Fix the image root the dataset was registered "
        "with, or remove those images from the json": missing,
        "image(s) cannot be read: {}": unreadable,
        "image(s) carry an EXIF orientation that rotates them (detectron2's reader "
        "applies it) while the json's width/height and boxes are of the stored, unrotated "
        "image: {}. Save the images without the EXIF orientation tag (e.g. `exiftool "
        "-Orientation= -n`), or annotate the rotated images": rotated,
        "image(s) have another size than the json's width/height: {}. Fix "
        "width/height (and the boxes) in the annotation file": wrong_size,
        "instance(s) have no segmentation (none, or an empty list), but the model "
        "trains masks: {}. Add their masks, mark them iscrowd=1, or train a box-only model "
        "(dataloader.train.mapper.use_instance_mask=False, model.roi_heads.mask_on=False)": no_mask,
        "instance(s) have RLE masks (segmentation {{counts, size}}), which the mapper cannot read "
        "as polygons: {}. Set dataloader.train.mapper.instance_mask_format=bitmask": rle,
    }
    errors = [f"{len(v)} " + text.format(_examples(v)) for text, v in problems.items() if v]
    if errors:
        raise DatasetError(f"Dataset {where}: " + ". ".join(errors) + ".")
    logger.info(
        f"Dataset {where}: {len(dicts)} images checked (files, sizes, EXIF, boxes"
        f"{', masks' if instance_masks else ''}) in {time.perf_counter() - start:.1f} s."
    )


def check_some_image_reads(dicts: List[Dict[str, Any]], where: str, read: Callable) -> None:
    """Raise if no image of ``dicts`` can be read (tried in order until one reads), instead of
    detectron2's loader failing later once every image was skipped."""
    errors = []
    for d in dicts:
        try:
            read(d["file_name"])
            return
        except OSError as e:
            errors.append(str(e))
    raise ValueError(
        f"None of the {len(dicts)} images of {where} can be read; the first error: {errors[0]} "
        f"Fix or remove the files, or point to another folder."
    )
