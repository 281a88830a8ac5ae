"""Tests of the detector's data pieces: read_image, DetectionDatasetMapper, dataset errors."""

import dis
import json
import numpy as np
import pickle
from functools import lru_cache
from typing import Iterator
import pytest
import torch
from PIL import Image

import detectron2.data.transforms as T
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import detection_utils as d2_utils
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import BoxMode

from lift_det.data import DetectionDatasetMapper, get_detection_dataset_dicts, read_image


def _gray8(h: int = 24, w: int = 32) -> np.ndarray:
    """Every 8-bit value, in a fixed order."""
    return (np.arange(h * w) * 7 % 256).astype(np.uint8).reshape(h, w)


def _save_16bit(path, gray8: np.ndarray) -> str:
    # v * 257 maps 0..255 onto 0..65535 exactly: the 8-bit image is v
    Image.fromarray(gray8.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode.startswith("I")
    return str(path)


def _mapper(cls, is_train: bool = True, augmentations=()):
    return cls(
        is_train=is_train,
        augmentations=list(augmentations),
        image_format="RGB",
        use_instance_mask=False,
    )


@pytest.fixture
def registered(tmp_path) -> Iterator:
    """Registers a COCO json written by the test; removed afterwards."""
    names = []

    def register(coco: dict, name: str = "lift_test_coco") -> str:
        json_file = tmp_path / f"{name}.json"
        json_file.write_text(json.dumps(coco))
        register_coco_instances(name, {}, str(json_file), str(tmp_path))
        names.append(name)
        return str(json_file)

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.mark.parametrize("fmt, channels", [("RGB", 3), ("BGR", 3), ("L", 1)])
def test_16bit_png_reads_as_the_8bit_image(tmp_path, fmt, channels):
    gray = _gray8()
    path = _save_16bit(tmp_path / "deep.png", gray)
    image = read_image(path, fmt)
    assert image.dtype == np.uint8 and image.shape == (24, 32, channels)
    np.testing.assert_array_equal(image, np.repeat(gray[:, :, None], channels, axis=2))
    # detectron2's own reader clips at 255: all but the zeros become white
    assert (d2_utils.read_image(path, fmt)[gray > 0] == 255).all()


def test_8bit_images_read_as_detectron2_does(tmp_path):
    rgb = np.stack([_gray8(), _gray8()[::-1], _gray8()[:, ::-1]], axis=-1)
    for name, image in [("a.png", Image.fromarray(rgb)), ("b.png", Image.fromarray(rgb, "RGB"))]:
        image.convert("P" if name == "b.png" else "RGB").save(tmp_path / name)
        for fmt in ("RGB", "BGR", "L", None):
            expected = d2_utils.read_image(str(tmp_path / name), fmt)
            np.testing.assert_array_equal(read_image(str(tmp_path / name), fmt), expected)


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0 not a jpeg", "truncated"])
def test_unreadable_image_is_named(tmp_path, content):
    path = tmp_path / "broken.jpg"
    if content == "truncated":
        Image.fromarray(np.stack([_gray8()] * 3, -1)).save(path, quality=95)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(OSError, match="broken.jpg"):
        read_image(str(path), "RGB")
    mapper = _mapper(DetectionDatasetMapper)
    with pytest.raises(OSError, match="broken.jpg"):
        mapper({"file_name": str(path), "annotations": []})


def test_mapper_reads_16bit(tmp_path):
    gray = _gray8()
    path = _save_16bit(tmp_path / "deep.png", gray)
    d = {"file_name": path, "height": 24, "width": 32, "annotations": []}
    out = _mapper(DetectionDatasetMapper)(d)
    expected = torch.from_numpy(np.repeat(gray[None], 3, axis=0))
    assert torch.equal(out["image"], expected)
    assert not torch.equal(_mapper(DatasetMapper)(d)["image"], expected)  # the bug it fixes


def _ann(bbox, mode=BoxMode.XYWH_ABS):
    return {"bbox": bbox, "bbox_mode": mode, "category_id": 0, "iscrowd": 0}


def test_mapper_drops_exactly_the_bad_boxes(tmp_path, caplog):
    path = tmp_path / "img.png"
    Image.fromarray(np.stack([_gray8(48, 64)] * 3, -1)).save(path)
    good = [[2, 3, 10, 5], [20, 20, 4, 8]]
    bad = [[30, 30, -6, 4], [5, 5, 7, 0], [1, 1, float("nan"), 3]]
    anns = [_ann(good[0]), _ann(bad[0]), _ann(bad[1]), _ann(good[1]), _ann(bad[2])]
    anns.append(_ann([40, 10, 34, 12], BoxMode.XYXY_ABS))  # x1 < x0: bad
    d = {"file_name": str(path), "height": 48, "width": 64, "annotations": anns}
    same_size = [T.Resize((48, 64))]  # a real transform, which sorts box corners
    mapper = _mapper(DetectionDatasetMapper, augmentations=same_size)
    out = mapper(d)
    expected = [[x, y, x + w, y + h] for x, y, w, h in good]
    assert out["instances"].gt_boxes.tensor.tolist() == expected
    assert mapper.num_dropped_boxes == 4
    assert (
        "Dropped 4 box(es) of zero or negative size in" in caplog.text and "img.png" in caplog.text
    )
    assert len(d["annotations"]) == 6  # the caller's dict is not modified
    # detectron2's mapper turns the negative-size box into a valid one (its corners are sorted)
    stock = _mapper(DatasetMapper, augmentations=same_size)(d)["instances"]
    assert stock.gt_boxes.tensor.tolist()[1] == [24.0, 30.0, 30.0, 34.0]
    # test mode keeps no annotations: nothing to drop, nothing counted
    assert "instances" not in _mapper(DetectionDatasetMapper, is_train=False)(d)


def test_mapper_is_detectron2s_on_good_data(tmp_path):
    path = tmp_path / "img.jpg"
    gray = _gray8(48, 64)
    Image.fromarray(np.stack([gray, gray[::-1], gray[:, ::-1]], -1)).save(path)
    d = {"file_name": str(path), "height": 48, "width": 64, "annotations": [_ann([2, 3, 10, 5])]}
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.RANDOM_FLIP = (96,), 200, "none"
    ours, theirs = DetectionDatasetMapper(cfg, is_train=True), DatasetMapper(cfg, is_train=True)
    a, b = ours(d), theirs(d)
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (3, 96, 128)
    assert torch.equal(a["instances"].gt_boxes.tensor, b["instances"].gt_boxes.tensor)
    assert a["instances"].gt_boxes.tensor.tolist() == [[4.0, 6.0, 24.0, 16.0]]  # 48 -> 96: x2


def test_mapper_size_mismatch_names_the_file(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(_gray8()).save(path)
    with pytest.raises(Exception, match="img.png"):
        _mapper(DetectionDatasetMapper)({"file_name": str(path), "height": 10, "width": 10})


def test_empty_coco_json_names_the_file(registered):
    json_file = registered(
        {"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    )
    with pytest.raises(ValueError, match=f"lift_test_coco.*{json_file}.*no images"):
        get_detection_dataset_dicts("lift_test_coco")


def test_missing_files_and_unknown_names(tmp_path):
    name = "lift_test_missing"
    register_coco_instances(name, {}, str(tmp_path / "nowhere.json"), str(tmp_path))
    try:
        with pytest.raises(FileNotFoundError, match="nowhere.json.*DETECTRON2_DATASETS"):
            get_detection_dataset_dicts([name])
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    with pytest.raises(KeyError, match="not registered"):
        get_detection_dataset_dicts("no_such_dataset")


def test_coco_json_with_bad_boxes_through_the_loader(tmp_path, registered):
    Image.fromarray(np.stack([_gray8(48, 64)] * 3, -1)).save(tmp_path / "0.png")
    boxes = [[2, 3, 10, 5], [30, 30, -6, 4], [5, 5, 7, 0]]
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 1.0, "iscrowd": 0}
        for i, b in enumerate(boxes)
    ]
    images = [{"id": 1, "file_name": "0.png", "height": 48, "width": 64}]
    registered({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]})
    dicts = get_detection_dataset_dicts("lift_test_coco")
    assert len(dicts) == 1 and len(dicts[0]["annotations"]) == 3
    mapper = _mapper(DetectionDatasetMapper)
    assert mapper(dicts[0])["instances"].gt_boxes.tensor.tolist() == [[2.0, 3.0, 12.0, 8.0]]
    assert mapper.num_dropped_boxes == 2


def test_mapper_pickles_for_loader_workers(tmp_path):
    path = _save_16bit(tmp_path / "deep.png", _gray8())
    mapper = pickle.loads(pickle.dumps(_mapper(DetectionDatasetMapper)))
    out = mapper({"file_name": path, "annotations": []})
    assert torch.equal(out["image"][0], torch.from_numpy(_gray8()))


def test_upstream_mapper_still_reads_images_as_utils_read_image():
    """DetectionDatasetMapper runs upstream's DatasetMapper.__call__ with lift_det's reader bound to
    ``utils.read_image``; this fails when a detectron2 release reads images another way."""
    from detectron2.data import dataset_mapper as d2_dataset_mapper

    from lift_det.data.dataset_mapper import _reads_images_as_utils_read_image, _with_read_image

    assert d2_dataset_mapper.utils is d2_utils
    loads = [(op.opname, op.argval) for op in dis.get_instructions(DatasetMapper.__call__)]
    assert loads.count(("LOAD_GLOBAL", "utils")) >= 2  # the image and the sem-seg file
    assert _reads_images_as_utils_read_image(DatasetMapper.__call__)
    call = _with_read_image(DatasetMapper.__call__)
    assert call.__code__ is DatasetMapper.__call__.__code__
    assert call.__globals__["utils"].read_image is read_image
    assert call.__globals__["utils"].check_image_size is d2_utils.check_image_size


@pytest.mark.parametrize(
    "body, ok",
    [
        ("image = utils.read_image(d['file_name'], format=self.image_format)", True),
        ("image = utils.read_image(d['file_name']); sem = utils.read_image(d['s'], 'L')", True),
        ("image = read_image(d['file_name'])", False),  # an imported name: not rebound
        ("image = self.read(d['file_name'])", False),  # a helper: its own globals
        ("image = utils.read_image(d['file_name']); sem = read_image(d['s'], 'L')", False),
        ("image = detection_utils.read_image(d['file_name'])", False),
    ],
)
def test_reader_swap_needs_every_read_as_utils_read_image(body, ok):
    from lift_det.data.dataset_mapper import _reads_images_as_utils_read_image

    namespace = {}
    exec(f"def call(self, d):\n    {body}\n    return image", namespace)
    assert _reads_images_as_utils_read_image(namespace["call"]) is ok


def test_mapper_refuses_an_upstream_call_it_cannot_give_its_reader(monkeypatch):
    """Refused when built (not silently read with detectron2's reader)."""
    from lift_det.data import dataset_mapper

    namespace = {"__name__": "detectron2.data.dataset_mapper"}
    exec("def __call__(self, d):\n    return self.read_image(d['file_name'])", namespace)
    monkeypatch.setattr(DatasetMapper, "__call__", namespace["__call__"])
    monkeypatch.setattr(
        dataset_mapper, "_upstream_call", lru_cache()(dataset_mapper._upstream_call.__wrapped__)
    )
    with pytest.raises(RuntimeError, match="does not read images as utils.read_image"):
        _mapper(DetectionDatasetMapper)
