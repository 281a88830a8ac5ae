"""Datasets of lift_det. Importing this package registers the built-in mini COCO dataset
(``lift_mini_train``, ``lift_mini_val``: names and metadata) in detectron2's catalogs; its files are
generated on first load."""

from inspect import ismodule as _ismodule

# detectron2's reader, mapper and dataset loader, with 16-bit images and clear errors
from .dataset_mapper import DetectionDatasetMapper
from .detection_utils import IMAGE_EXTENSIONS, get_detection_dataset_dicts, read_image

from .mini import (
    MINI_CLASSES,
    MINI_DATASETS,
    default_mini_root,
    ensure_mini_coco,
    generate_mini_coco,
    register_mini_coco,
)

from .stage1 import Stage1DatasetMapper, image_folder_dicts, read_rgb_image, stage1_dataset_dicts

__all__ = [k for k, v in globals().items() if not k.startswith("_") and not _ismodule(v)]

# registration only: no file is generated at import time
register_mini_coco()
