"""Tests of the built-in mini COCO dataset (lift_det.data.mini, .mini_files, .mini_render)."""

import contextlib
import errno
import hashlib
import io
import json
import multiprocessing
import numpy as np
import os
from typing import Dict, Iterator, List
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

from lift_det.data import (
    ensure_mini_coco,
    generate_mini_coco,
    get_detection_dataset_dicts,
    register_mini_coco,
)
from lift_det.data.mini import MINI_CLASSES, MINI_DATASETS, default_mini_root

SPLITS = ("train", "val")
TINY = {"num_train": 6, "num_val": 4}
# sha256 of the default generation (160 train + 40 val images at 256x256, seed 0), see _content_hash
MINI_SHA256 = "84dc3af5cdc1de957581c346564d901a4c79172d20b69f656d33b79d26706fea"
# the same for the study's generation (160 train + 240 val images, lift_det/study/run.py)
STUDY_SHA256 = "ffdc8bc66b742a3c2f4b32b708634e6ca366c4322cd030dced4ccca3620e941f"


def _coco(root: str, split: str) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(os.path.join(root, "annotations", f"instances_{split}.json"))


def _files(root: str) -> List[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def _content_hash(root: str) -> str:
    """sha256 over the sorted names and bytes of the images and annotation files."""
    h = hashlib.sha256()
    for folder in ("annotations", "train", "val"):
        for name in sorted(os.listdir(os.path.join(root, folder))):
            h.update(f"{folder}/{name}".encode())
            with open(os.path.join(root, folder, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _mtimes(root: str) -> Dict[str, int]:
    return {f: os.stat(os.path.join(root, f)).st_mtime_ns for f in _files(root)}


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The dataset generated once with the default parameters."""
    root = str(tmp_path_factory.mktemp("mini") / "lift_mini_coco")
    generate_mini_coco(root)
    return root


@pytest.fixture
def restore_registration() -> Iterator[None]:
    """Restores the import-time registration (default root; generates nothing) after a test."""
    root = default_mini_root()
    yield
    for name in MINI_DATASETS:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
    register_mini_coco(root)


def test_files_written(mini_root: str) -> None:
    for split, num in [("train", 160), ("val", 40)]:
        images = sorted(os.listdir(os.path.join(mini_root, split)))
        assert images == [f"{i:06d}.jpg" for i in range(num)]
        assert os.path.isfile(os.path.join(mini_root, "annotations", f"instances_{split}.json"))
    with open(os.path.join(mini_root, ".complete")) as f:
        stamp = json.load(f)
    assert stamp["num_train"] == 160 and stamp["num_val"] == 40
    assert stamp["image_size"] == 256 and stamp["seed"] == 0
    assert not [f for f in _files(mini_root) if ".tmp" in f]


@pytest.mark.parametrize("split", SPLITS)
def test_annotations_match_masks(mini_root: str, split: str) -> None:
    coco = _coco(mini_root, split)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(MINI_CLASSES)
    assert coco.getCatIds() == [1, 2, 3]
    for img in coco.dataset["images"]:
        with Image.open(os.path.join(mini_root, split, img["file_name"])) as im:
            assert im.mode == "RGB" and im.size == (img["width"], img["height"]) == (256, 256)
        assert 1 <= len(coco.getAnnIds(imgIds=img["id"])) <= 6
    ids = [a["id"] for a in coco.dataset["annotations"]]
    assert len(set(ids)) == len(ids) and min(ids) >= 1
    for ann in coco.dataset["annotations"]:
        assert ann["iscrowd"] == 0
        assert len(ann["segmentation"]) == 1
        poly = ann["segmentation"][0]
        assert len(poly) >= 6 and len(poly) % 2 == 0
        assert all(isinstance(v, float) for v in ann["bbox"])
        mask = coco.annToMask(ann)
        area = int(mask.sum())
        assert area > 0
        assert abs(area - ann["area"]) <= 0.03 * ann["area"]
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        mask_box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        np.testing.assert_allclose([x, y, x + w, y + h], mask_box, atol=1.0)
        # polygons lie inside the image
        assert 0 <= min(poly) and max(poly[0::2]) <= 256 and max(poly[1::2]) <= 256


@pytest.mark.parametrize("split", SPLITS)
def test_size_and_class_coverage(mini_root: str, split: str) -> None:
    anns = _coco(mini_root, split).dataset["annotations"]
    areas = np.array([a["area"] for a in anns])
    assert (areas < 32**2).sum() >= 5
    assert ((areas >= 32**2) & (areas <= 96**2)).sum() >= 5
    assert (areas > 96**2).sum() >= 5
    assert {a["category_id"] for a in anns} == {1, 2, 3}


def test_objects_are_visible_where_the_masks_are(mini_root: str) -> None:
    """The drawn shapes coincide with the annotated masks: inside and around them differ."""
    coco = _coco(mini_root, "val")
    for img in coco.dataset["images"]:
        pixels = np.asarray(Image.open(os.path.join(mini_root, "val", img["file_name"])))
        pixels = pixels.astype(np.float32)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            mask = coco.annToMask(ann).astype(bool)
            inner = mask & ~_grow(~mask, 1)  # 1 px away from the edge (JPEG ringing)
            ring = _grow(mask, 3) & ~_grow(mask, 1)
            if inner.sum() < 10:
                continue
            contrast = np.linalg.norm(pixels[inner].mean(axis=0) - pixels[ring].mean(axis=0))
            assert contrast > 40.0, (img["file_name"], ann["id"], contrast)


def _grow(mask: np.ndarray, r: int) -> np.ndarray:
    padded = np.pad(mask, r)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def test_content_hash_is_pinned(mini_root: str) -> None:
    """The default mini dataset is byte-identical everywhere."""
    assert _content_hash(mini_root) == MINI_SHA256, (
        "The generated mini COCO dataset changed (drawing code, defaults, JSON layout, or a new "
        "numpy / Pillow / OpenCV / pycocotools version that draws or encodes JPEG differently). "
        "If the change is intended: bump _FORMAT_VERSION in lift_det/data/mini_files.py (so cached "
        "copies are regenerated), set MINI_SHA256 to the new hash, and rerun the mini results. "
        "If not: find the library or code change that altered the bytes."
    )


def test_study_generation_is_pinned_and_extends_the_default(mini_root: str, tmp_path) -> None:
    """The study's data (its own val size) is byte-identical everywhere, and its first 40 val
    images are the default val split's."""
    import inspect

    from lift_det.study import run as study

    num_val = inspect.signature(study.run_study).parameters["val_images"].default
    assert num_val >= 200
    root = str(tmp_path / "study")
    generate_mini_coco(root, num_val=num_val)
    assert _content_hash(root) == STUDY_SHA256, "see test_content_hash_is_pinned"
    default_val = sorted(os.listdir(os.path.join(mini_root, "val")))
    assert len(os.listdir(os.path.join(root, "val"))) == num_val and len(default_val) == 40
    for name in default_val:
        with open(os.path.join(root, "val", name), "rb") as a:
            with open(os.path.join(mini_root, "val", name), "rb") as b:
                assert a.read() == b.read(), name


def test_deterministic(tmp_path) -> None:
    roots = [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")]
    generate_mini_coco(roots[0], **TINY)
    generate_mini_coco(roots[1], **TINY)
    generate_mini_coco(roots[2], **TINY, seed=1)
    assert _files(roots[0]) == _files(roots[1])
    for name in _files(roots[0]):
        if not name.endswith(".lock"):
            with open(os.path.join(roots[0], name), "rb") as a, open(
                os.path.join(roots[1], name), "rb"
            ) as b:
                assert a.read() == b.read(), name
    assert _content_hash(roots[0]) != _content_hash(roots[2])


def test_objects_keep_their_gap(mini_root: str) -> None:
    """No object is within 3 px (a 7x7 square) of another: the dilation of the placement."""
    coco = _coco(mini_root, "val")
    for img in coco.dataset["images"]:
        masks = [coco.annToMask(a).astype(bool) for a in coco.loadAnns(coco.getAnnIds(img["id"]))]
        for i, a in enumerate(masks):
            grown = _grow(a, 3)
            assert not any((grown & b).any() for b in masks[i + 1 :]), img["file_name"]


def test_cached_and_regenerated(tmp_path) -> None:
    root = str(tmp_path / "mini")
    generate_mini_coco(root, **TINY)
    before = _mtimes(root)
    generate_mini_coco(root, **TINY)
    assert _mtimes(root) == before

    # another parameter: regenerated, and images of the former, larger split removed
    generate_mini_coco(root, num_train=TINY["num_train"], num_val=2)
    assert sorted(os.listdir(os.path.join(root, "val"))) == ["000000.jpg", "000001.jpg"]
    assert len(_coco(root, "val").dataset["images"]) == 2
    with open(os.path.join(root, ".complete")) as f:
        assert json.load(f)["num_val"] == 2
    val_json = os.path.join(root, "annotations", "instances_val.json")
    assert (
        os.stat(val_json).st_mtime_ns != before[os.path.join("annotations", "instances_val.json")]
    )

    # a missing stamp (interrupted generation, with its temporary files) or a corrupt one:
    # regenerated
    for corrupt in [False, True]:
        stamp = os.path.join(root, ".complete")
        os.remove(stamp)
        leftovers = [
            # the names lift_det.checkpoint's atomic writes give their temporary files
            os.path.join(root, "val", ".000001.jpg.0123abcd-99999.x7.tmp"),
            os.path.join(root, "annotations", ".instances_val.json.0123abcd-99999.x7.tmp"),
        ]
        for path in leftovers:
            open(path, "wb").close()
        if corrupt:
            with open(stamp, "w") as f:
                f.write("{")
        generate_mini_coco(root, num_train=TINY["num_train"], num_val=2)
        with open(stamp) as f:
            assert json.load(f)["num_val"] == 2
        assert not any(os.path.exists(path) for path in leftovers)


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="train"):
        ensure_mini_coco("test", root=str(tmp_path))
    with pytest.raises(ValueError, match="num_val"):
        generate_mini_coco(str(tmp_path), num_val=0)
    with pytest.raises(ValueError, match="image_size"):
        generate_mini_coco(str(tmp_path), image_size=32)
    assert not os.listdir(tmp_path)


def test_concurrent_generation(tmp_path) -> None:
    root = str(tmp_path / "mini")
    context = multiprocessing.get_context("fork")  # no re-import of torch and detectron2
    kwargs = {"num_train": 24, "num_val": 6}
    procs = [context.Process(target=generate_mini_coco, args=(root,), kwargs=kwargs) for _ in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert len(_coco(root, "train").dataset["images"]) == 24
    assert len(os.listdir(os.path.join(root, "val"))) == 6
    assert not [f for f in _files(root) if ".tmp" in f]


def test_default_root(monkeypatch) -> None:
    monkeypatch.delenv("LIFT_DET_MINI_ROOT", raising=False)
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    assert default_mini_root() == os.path.join("datasets", "lift_mini_coco")
    monkeypatch.setenv("DETECTRON2_DATASETS", "/data/d2")
    assert default_mini_root() == "/data/d2/lift_mini_coco"
    monkeypatch.setenv("LIFT_DET_MINI_ROOT", "/data/mini")
    assert default_mini_root() == "/data/mini"


def test_registered_at_import() -> None:
    for name in MINI_DATASETS:
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "coco"
        assert meta.thing_classes == list(MINI_CLASSES)


def test_register_generates_nothing(tmp_path, restore_registration) -> None:
    root = str(tmp_path / "mini")
    register_mini_coco(root)
    register_mini_coco(root)  # idempotent
    assert not os.path.exists(root)
    meta = MetadataCatalog.get("lift_mini_val")
    assert meta.json_file == os.path.join(root, "annotations", "instances_val.json")
    assert meta.image_root == os.path.join(root, "val")


def test_registration(mini_root: str, tmp_path, restore_registration) -> None:
    # a root registered earlier is replaced
    register_mini_coco(str(tmp_path / "elsewhere"))
    register_mini_coco(mini_root)
    assert not os.path.exists(tmp_path / "elsewhere")

    before = _mtimes(mini_root)
    dicts = DatasetCatalog.get("lift_mini_val")
    assert _mtimes(mini_root) == before  # complete already: nothing regenerated
    assert len(dicts) == 40
    for d in dicts:
        assert os.path.isfile(d["file_name"])
        assert (d["height"], d["width"]) == (256, 256)
        assert d["annotations"]
        for ann in d["annotations"]:
            assert ann["bbox_mode"] == BoxMode.XYWH_ABS
            assert 0 <= ann["category_id"] < len(MINI_CLASSES)
            assert ann["segmentation"]
    meta = MetadataCatalog.get("lift_mini_val")
    assert os.path.isfile(meta.json_file)
    assert meta.thing_classes == list(MINI_CLASSES)
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2}
    assert len(DatasetCatalog.get("lift_mini_train")) == 160

    assert ensure_mini_coco("val", mini_root) == "lift_mini_val"
    assert ensure_mini_coco("train", mini_root) == "lift_mini_train"
    with pytest.raises(ValueError, match="val"):
        ensure_mini_coco("minival", mini_root)
    assert _mtimes(mini_root) == before


def test_catalog_keeps_a_custom_generation(tmp_path, restore_registration) -> None:
    root = str(tmp_path / "mini")
    generate_mini_coco(root, **TINY, image_size=128)
    register_mini_coco(root)
    dicts = DatasetCatalog.get("lift_mini_train")
    assert len(dicts) == TINY["num_train"]
    assert all(d["height"] == d["width"] == 128 for d in dicts)


def test_ensure_registers_and_the_first_load_generates(
    tmp_path, monkeypatch, restore_registration
) -> None:
    root = str(tmp_path / "env_root")
    monkeypatch.setenv("LIFT_DET_MINI_ROOT", root)
    assert ensure_mini_coco("val") == "lift_mini_val"
    assert not os.path.exists(root)  # names and metadata only
    assert MetadataCatalog.get("lift_mini_val").thing_classes == list(MINI_CLASSES)
    # the first load, as the configs' dataset function makes it, generates the files
    assert len(get_detection_dataset_dicts("lift_mini_val", filter_empty=False)) == 40
    with open(os.path.join(root, ".complete")) as f:
        stamp = json.load(f)
    assert (stamp["num_train"], stamp["num_val"], stamp["image_size"]) == (160, 40, 256)
    assert MetadataCatalog.get("lift_mini_val").json_file.startswith(root)
    assert DatasetCatalog.get("lift_mini_val")[0]["file_name"].startswith(root)


def test_coco_evaluator_on_ground_truth(mini_root: str, tmp_path, restore_registration) -> None:
    """detectron2's COCOEvaluator works unchanged: the ground truth as predictions scores 100."""
    register_mini_coco(mini_root)
    evaluator = COCOEvaluator("lift_mini_val", tasks=("bbox", "segm"), output_dir=None)
    evaluator.reset()
    coco = _coco(mini_root, "val")
    for d in DatasetCatalog.get("lift_mini_val"):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=d["image_id"]))
        instances = Instances((d["height"], d["width"]))
        boxes = [BoxMode.convert(a["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for a in anns]
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        instances.scores = torch.ones(len(anns))
        instances.pred_classes = torch.tensor([a["category_id"] - 1 for a in anns])
        instances.pred_masks = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns]) > 0)
        evaluator.process([d], [{"instances": instances}])
    with contextlib.redirect_stdout(io.StringIO()):
        results = evaluator.evaluate()
    for task in ("bbox", "segm"):
        for metric in ("AP", "APs", "APm", "APl"):
            assert results[task][metric] == pytest.approx(100.0), (task, metric)


def test_metadata_without_generation(tmp_path, monkeypatch, restore_registration) -> None:
    """Class names come from the catalog; neither registering nor looking up writes files."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIFT_DET_MINI_ROOT", raising=False)
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    name = instantiate(L(ensure_mini_coco)(split="val"))  # as a config's dataset names
    assert MetadataCatalog.get(name).thing_classes == ["square", "disc", "triangle"]
    register_mini_coco()
    assert MetadataCatalog.get("lift_mini_train").thing_classes == ["square", "disc", "triangle"]
    assert os.listdir(tmp_path) == []


def test_root_that_is_a_file(tmp_path) -> None:
    root = tmp_path / "not_a_folder"
    root.write_text("a file")
    with pytest.raises(OSError, match="not_a_folder.*LIFT_DET_MINI_ROOT.*DETECTRON2_DATASETS"):
        generate_mini_coco(str(root), **TINY)


def test_read_only_root(tmp_path, monkeypatch) -> None:
    parent = tmp_path / "read_only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        (parent / "probe").touch()
    except PermissionError:
        pass
    else:  # running as root: permissions are ignored, so fail as a read-only disk does
        (parent / "probe").unlink()

        def read_only(path, *args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", path)

        monkeypatch.setattr(os, "makedirs", read_only)
    try:
        with pytest.raises(OSError, match="read_only/mini.*LIFT_DET_MINI_ROOT.*writable"):
            generate_mini_coco(str(parent / "mini"), **TINY)
    finally:
        parent.chmod(0o755)


def test_disk_full_names_the_root(tmp_path, monkeypatch) -> None:
    import lift_det.data.mini_files as mini_files

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(mini_files, "atomic_write_bytes", disk_full)
    root = str(tmp_path / "mini")
    with pytest.raises(OSError, match=f"No space left on {root}"):
        generate_mini_coco(root, **TINY)
    assert not os.path.exists(os.path.join(root, ".complete"))  # regenerated on the next use
