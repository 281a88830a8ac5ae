"""Tests of stage one's image-only data (lift_det.data.stage1)."""

import json
import numpy as np
import os
import pytest
import torch
from PIL import Image

from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data.datasets import register_coco_instances

from lift_det.data.stage1 import (
    Stage1DatasetMapper,
    image_folder_dicts,
    read_rgb_image,
    stage1_dataset_dicts,
)


def _gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1)


def _save(path, image: Image.Image, **kwargs) -> str:
    image.save(path, **kwargs)
    return str(path)


@pytest.fixture
def mapper():
    # at x/4, image content must span at least 2x2 patches: a short side of 128 px after resizing
    return Stage1DatasetMapper(is_train=False, image_size=256, patch_size=16)


@pytest.mark.parametrize(
    "mode, ext",
    [("L", "png"), ("LA", "png"), ("RGBA", "png"), ("CMYK", "jpg"), ("P", "png"), ("RGB", "jpg")],
)
def test_modes_convert_to_rgb_uint8(tmp_path, mapper, mode, ext):
    rgb = Image.fromarray(_gradient(96, 128).astype(np.uint8))
    path = _save(tmp_path / f"img.{ext}", rgb.convert(mode))
    out = mapper({"file_name": path, "image_id": 1})
    image = out["image"]
    assert image.dtype == torch.uint8 and image.shape == (3, 192, 256)
    assert (out["height"], out["width"]) == (96, 128)
    assert image.float().std() > 10  # not a blank image


def test_16bit_png_rescaled_not_clipped(tmp_path):
    values = (
        np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.uint16).repeat(64, 0).repeat(64, 1)
    )
    path = _save(tmp_path / "deep.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    image = read_rgb_image(path)
    assert image.dtype == np.uint8 and image.shape == (128, 128, 3)
    assert image[0, 0].tolist() == [0, 0, 0]
    assert image[0, 127].tolist() == [64, 64, 64]
    assert image[127, 0].tolist() == [128, 128, 128]
    assert image[127, 127].tolist() == [255, 255, 255]


def test_resize_longest_side(tmp_path):
    path = _save(tmp_path / "wide.jpg", Image.fromarray(_gradient(150, 300).astype(np.uint8)))
    m = Stage1DatasetMapper(is_train=False, image_size=256, patch_size=16)
    out = m({"file_name": path, "image_id": 0})
    assert out["image"].shape == (3, 128, 256)
    assert (out["height"], out["width"]) == (150, 300)


def test_color_jitter_deterministic_given_seed(tmp_path):
    path = _save(tmp_path / "a.png", Image.fromarray(_gradient(128, 128).astype(np.uint8)))
    m = Stage1DatasetMapper(is_train=True, image_size=128, patch_size=16, color_jitter_strength=0.4)
    plain = Stage1DatasetMapper(is_train=False, image_size=128, patch_size=16)
    np.random.seed(0)
    a = m({"file_name": path})["image"]
    np.random.seed(0)
    b = m({"file_name": path})["image"]
    c = m({"file_name": path})["image"]
    assert torch.equal(a, b)
    assert not torch.equal(b, c)
    assert not torch.equal(a, plain({"file_name": path})["image"])


def test_too_small_images_skipped_or_rejected(tmp_path, mapper):
    # 400x40 -> 256x26: 6 px at x/4, less than 2 patches
    thin = _save(tmp_path / "thin.png", Image.fromarray(_gradient(40, 400).astype(np.uint8)))
    # 20x20: less than 2 patches even at full resolution
    tiny = _save(tmp_path / "tiny.png", Image.fromarray(_gradient(20, 20).astype(np.uint8)))
    ok = _save(tmp_path / "ok.png", Image.fromarray(_gradient(64, 128).astype(np.uint8)))
    assert mapper({"file_name": thin}) is None
    assert mapper({"file_name": tiny}) is None
    assert mapper({"file_name": ok})["image"].shape == (3, 128, 256)
    assert mapper.num_skipped["too_small"] == 2
    strict = Stage1DatasetMapper(
        is_train=False, image_size=256, patch_size=16, skip_bad_images=False
    )
    with pytest.raises(ValueError, match="thin.png.*too small.*x/4"):
        strict({"file_name": thin})


def test_corrupt_image_skipped_or_named(tmp_path, mapper):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    assert mapper({"file_name": str(bad)}) is None
    assert mapper.num_skipped["unreadable"] == 1
    strict = Stage1DatasetMapper(
        is_train=False, image_size=256, patch_size=16, skip_bad_images=False
    )
    with pytest.raises(OSError, match="corrupt.jpg"):
        strict({"file_name": str(bad)})


def test_mapper_rejects_bad_sizes():
    with pytest.raises(ValueError, match="multiple of 4 \\* patch_size"):
        Stage1DatasetMapper(image_size=100, patch_size=16)
    with pytest.raises(ValueError, match="too small"):
        Stage1DatasetMapper(image_size=64, patch_size=16, min_patches=2)


def test_image_folder_missing_and_empty(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere.*DETECTRON2_DATASETS"):
        image_folder_dicts(missing)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(ValueError, match="empty.*no images.*DETECTRON2_DATASETS"):
        stage1_dataset_dicts(image_folders=str(tmp_path / "empty"))


def test_image_folder_recursive_sorted(tmp_path):
    (tmp_path / "sub").mkdir()
    for p in ["b.jpg", "a.png", "sub/c.JPEG", ".hidden.jpg", "x.txt"]:
        (tmp_path / p).write_bytes(b"")
    dicts = image_folder_dicts(str(tmp_path))
    assert [os.path.relpath(d["file_name"], tmp_path) for d in dicts] == [
        "a.png",
        "b.jpg",
        "sub/c.JPEG",
    ]


def test_registered_dataset_missing_files(tmp_path):
    name = "lift_test_missing_coco"
    json_file = str(tmp_path / "annotations" / "instances.json")
    register_coco_instances(name, {}, json_file, str(tmp_path / "images"))
    try:
        with pytest.raises(FileNotFoundError, match="instances.json.*DETECTRON2_DATASETS"):
            stage1_dataset_dicts(names=name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    with pytest.raises(KeyError, match="not registered"):
        stage1_dataset_dicts(names="no_such_dataset")


def test_coco_builtin_missing_names_datasets_env():
    meta = MetadataCatalog.get("coco_2017_train")
    if os.path.exists(meta.json_file):
        pytest.skip("COCO is installed here")
    with pytest.raises(FileNotFoundError, match="coco_2017_train.*DETECTRON2_DATASETS"):
        stage1_dataset_dicts(names="coco_2017_train")


def test_registered_dataset_drops_annotations(tmp_path):
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "height": 64, "width": 64} for i in range(3)]
    for image in images:
        _save(tmp_path / image["file_name"], Image.fromarray(_gradient(64, 64).astype(np.uint8)))
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0}
    coco = {"images": images, "annotations": [ann], "categories": [{"id": 1, "name": "x"}]}
    json_file = tmp_path / "ann.json"
    json_file.write_text(json.dumps(coco))
    name = "lift_test_tiny_coco"
    register_coco_instances(name, {}, str(json_file), str(tmp_path))
    try:
        dicts = stage1_dataset_dicts(names=[name], max_images=2)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert len(dicts) == 2  # images without annotations are kept, then the subset is taken
    assert all(set(d) == {"file_name", "image_id", "height", "width"} for d in dicts)


def test_detectron2_loaders(tmp_path):
    for i in range(3):
        size = (96 + 16 * i, 128)
        _save(tmp_path / f"{i}.jpg", Image.fromarray(_gradient(*size).astype(np.uint8)))
    dicts = stage1_dataset_dicts(image_folders=str(tmp_path))
    mapper = Stage1DatasetMapper(is_train=True, image_size=256, patch_size=16)
    loader = build_detection_train_loader(
        dataset=dicts, mapper=mapper, total_batch_size=2, aspect_ratio_grouping=False
    )
    batch = next(iter(loader))
    assert len(batch) == 2 and all(b["image"].dtype == torch.uint8 for b in batch)
    test_mapper = Stage1DatasetMapper(is_train=False, image_size=256, patch_size=16)
    test_loader = build_detection_test_loader(dataset=dicts, mapper=test_mapper, batch_size=2)
    seen = [d["file_name"] for b in test_loader for d in b]
    assert sorted(seen) == sorted(d["file_name"] for d in dicts)


def test_all_bad_folder_names_the_folder(tmp_path):
    folder = tmp_path / "all_bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    (folder / "b.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="None of the 2 images of image folder .*all_bad.*a.jpg"):
        stage1_dataset_dicts(image_folders=str(folder))
    # one readable image is enough (the mapper skips and counts the others)
    _save(folder / "c.jpg", Image.fromarray(_gradient(64, 64).astype(np.uint8)))
    assert len(stage1_dataset_dicts(image_folders=str(folder))) == 3
