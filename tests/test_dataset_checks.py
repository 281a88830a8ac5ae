"""Datasets are checked when they are loaded, before training: each annotation problem that would
crash a loader worker later or change what the model learns is named (file, image id, annotation
id) with the fix. Every case starts from a valid COCO json that loads cleanly."""

import copy
import json
import logging
import numpy as np
import uuid
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from lift_det.data import get_detection_dataset_dicts
from lift_det.data.validate import DatasetError

SQUARE = [[10, 10, 30, 10, 30, 30, 10, 30]]


def write_images(root, sizes, exif_orientation=None):
    root.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        image = Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8))
        exif = Image.Exif()
        if exif_orientation and i == 0:
            exif[0x0112] = exif_orientation
        image.save(root / f"{i}.jpg", exif=exif)


def coco(sizes=((64, 48), (40, 40))):
    return {
        "images": [
            {"id": i + 1, "file_name": f"{i}.jpg", "width": w, "height": h}
            for i, (w, h) in enumerate(sizes)
        ],
        "annotations": [
            {
                "id": 100 + i,
                "image_id": i + 1,
                "category_id": 1,
                "bbox": [10, 10, 20, 20],
                "area": 400,
                "iscrowd": 0,
                "segmentation": copy.deepcopy(SQUARE),
            }
            for i in range(len(sizes))
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }


def load(tmp_path, data, instance_masks=True, raw=None):
    name = f"checks_{uuid.uuid4().hex[:8]}"
    json_file = tmp_path / "instances.json"
    json_file.write_text(raw if raw is not None else json.dumps(data))
    register_coco_instances(name, {}, str(json_file), str(tmp_path / "images"))
    try:
        return get_detection_dataset_dicts(name, instance_masks=instance_masks)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_a_valid_dataset_loads(tmp_path):
    write_images(tmp_path / "images", [(64, 48), (40, 40)])
    dicts = load(tmp_path, coco())
    assert [d["image_id"] for d in dicts] == [1, 2]


def test_missing_image_is_named(tmp_path):
    write_images(tmp_path / "images", [(64, 48), (40, 40)])
    (tmp_path / "images" / "1.jpg").unlink()
    with pytest.raises(
        DatasetError, match=r"1 image file\(s\) do not exist: '.*1\.jpg' \(image id 2\)"
    ):
        load(tmp_path, coco())


def test_wrong_width_height_is_named(tmp_path):
    write_images(tmp_path / "images", [(64, 48), (40, 40)])
    data = coco()
    data["images"][1]["width"] = 41
    with pytest.raises(
        DatasetError, match=r"1\.jpg' \(image id 2\): annotated 41x40, the image is 40x40"
    ):
        load(tmp_path, data)


def test_exif_rotation_is_named(tmp_path):
    """A stored 64x48 image with EXIF orientation 6 is 48x64 once detectron2 reads it."""
    write_images(tmp_path / "images", [(64, 48), (40, 40)], exif_orientation=6)
    with pytest.raises(
        DatasetError, match=r"EXIF orientation.*0\.jpg' \(image id 1\): annotated 64x48, 48x64"
    ):
        load(tmp_path, coco())
    # orientation 1 (upright) is fine
    write_images(tmp_path / "images", [(64, 48), (40, 40)], exif_orientation=1)
    load(tmp_path, coco())


def test_instance_without_mask_refused_for_a_mask_model_only(tmp_path):
    write_images(tmp_path / "images", [(64, 48), (40, 40)])
    data = coco()
    data["annotations"][1]["segmentation"] = []
    with pytest.raises(
        DatasetError,
        match=r"1 instance\(s\) have no segmentation.*annotation with bbox "
        r"\[10\.0, 10\.0, 20\.0, 20\.0\] of .*1\.jpg' \(image id 2\)",
    ):
        load(tmp_path, data)
    assert len(load(tmp_path, data, instance_masks=False)) == 2  # a box-only model trains on it
    data["annotations"][1]["iscrowd"] = 1  # a crowd region needs no mask
    data["annotations"][1]["segmentation"] = {"size": [40, 40], "counts": [0, 1600]}
    load(tmp_path, data)


def test_truncated_json_names_the_file(tmp_path):
    write_images(tmp_path / "images", [(64, 48), (40, 40)])
    raw = json.dumps(coco())
    with pytest.raises(ValueError, match=r"instances\.json.*not valid JSON.*Copy it again"):
        load(tmp_path, None, raw=raw[: len(raw) // 2])


def test_boxes_that_train_nothing_are_warned_about_by_name(tmp_path, caplog):
    write_images(tmp_path / "images", [(64, 48), (40, 40)])
    data = coco()
    data["annotations"][0]["bbox"] = [70, 10, 5, 5]  # right of the 64-wide image
    data["annotations"][1]["bbox"] = [10, 10, 0, 5]  # no width
    with caplog.at_level(logging.WARNING, logger="lift_det.data.validate"):
        load(tmp_path, data)
    assert "2 annotation(s)" in caplog.text
    assert (
        "bbox [70.0, 10.0, 5.0, 5.0] of '" in caplog.text and "0.jpg' (image id 1)" in caplog.text
    )
    assert "entirely outside the 64x48 image" in caplog.text
    assert (
        "bbox [10.0, 10.0, 0.0, 5.0] of '" in caplog.text and "zero or negative size" in caplog.text
    )


def test_the_configs_check_masks_when_the_mapper_uses_them(tmp_path, monkeypatch):
    """The ViTDet configs pass mapper.use_instance_mask to the dataset function."""
    from detectron2.config import LazyConfig

    from conftest import REPO

    cfg = LazyConfig.load(f"{REPO}/configs/vitdet_mrcnn.py")
    from omegaconf import OmegaConf

    assert OmegaConf.select(cfg, "dataloader.train.dataset.instance_masks") is True
    cfg.dataloader.train.mapper.use_instance_mask = False
    assert OmegaConf.select(cfg, "dataloader.train.dataset.instance_masks") is False
