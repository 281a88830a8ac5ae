"""The data checks at their boundaries: which boxes the detector's mapper drops (each side, each
box mode) and the smallest image stage one accepts (x/4 must span ``min_patches`` patches)."""

import numpy as np
import pytest
from PIL import Image

from detectron2.structures import BoxMode

from lift_det.data import DetectionDatasetMapper
from lift_det.data.dataset_mapper import has_valid_box
from lift_det.data.stage1 import Stage1DatasetMapper

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "bbox, mode, valid",
    [
        ([2, 3, 10, 5], BoxMode.XYWH_ABS, True),
        ([2, 3, 0.01, 0.01], BoxMode.XYWH_ABS, True),  # tiny but positive
        ([2, 3, 0, 5], BoxMode.XYWH_ABS, False),  # zero width
        ([2, 3, 10, 0], BoxMode.XYWH_ABS, False),  # zero height
        ([2, 3, -1, 5], BoxMode.XYWH_ABS, False),
        ([2, 3, 10, -1], BoxMode.XYWH_ABS, False),
        ([2, 3, NAN, 5], BoxMode.XYWH_ABS, False),
        ([2, 3, 10, INF], BoxMode.XYWH_ABS, False),
        ([2, 3, 12, 8], BoxMode.XYXY_ABS, True),
        ([2, 3, 2, 8], BoxMode.XYXY_ABS, False),  # x1 == x0
        ([2, 3, 12, 3], BoxMode.XYXY_ABS, False),  # y1 == y0
        ([12, 3, 2, 8], BoxMode.XYXY_ABS, False),  # x1 < x0
        ([2, 8, 12, 3], BoxMode.XYXY_ABS, False),  # y1 < y0
        ([10, 10, 0, 0, 30], BoxMode.XYWHA_ABS, True),  # rotated boxes are kept as they are
    ],
)
def test_has_valid_box(bbox, mode, valid):
    assert has_valid_box({"bbox": bbox, "bbox_mode": mode}) is valid


def test_mapper_counts_zero_width_and_zero_height_boxes(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(path)
    anns = [
        {"bbox": box, "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}
        for box in ([2, 3, 10, 5], [5, 5, 0, 7], [5, 5, 7, 0], [20, 20, 4, 8])
    ]
    mapper = DetectionDatasetMapper(
        is_train=True, augmentations=[], image_format="RGB", use_instance_mask=False
    )
    out = mapper({"file_name": str(path), "height": 48, "width": 64, "annotations": anns})
    assert mapper.num_dropped_boxes == 2
    assert out["instances"].gt_boxes.tensor.tolist() == [[2, 3, 12, 8], [20, 20, 24, 28]]


@pytest.mark.parametrize(
    "h, w, accepted",
    [
        # image_size 256, patches of 16, min_patches 2: the resized short side must be >= 4 * 32
        (128, 256, True),  # resized 128x256: x/4 is 32 px = 2 patches
        (124, 256, False),  # resized 124x256: x/4 is 31 px
        (32, 32, True),  # 2 patches at its own size, resized to 256x256
        (31, 31, False),  # fewer than 2 patches at its own size
    ],
)
def test_stage1_smallest_accepted_image(tmp_path, h, w, accepted):
    path = str(tmp_path / f"{h}x{w}.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)).save(path)
    mapper = Stage1DatasetMapper(is_train=False, image_size=256, patch_size=16, min_patches=2)
    out = mapper({"file_name": path})
    assert (out is not None) is accepted
    assert mapper.num_skipped["too_small"] == (0 if accepted else 1)
