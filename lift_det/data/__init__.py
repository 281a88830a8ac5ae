"""
Datasets of lift_det. Importing this package registers the built-in mini COCO dataset
(``lift_mini_train``, ``lift_mini_val``) in detectron2's catalogs; its files are generated lazily,
on first use.
"""

from .mini import (
    MINI_CLASSES,
    MINI_DATASETS,
    default_mini_root,
    ensure_mini_coco,
    generate_mini_coco,
    register_mini_coco,
)
from .stage1 import Stage1DatasetMapper, image_folder_dicts, read_rgb_image, stage1_dataset_dicts

__all__ = [
    "MINI_CLASSES",
    "MINI_DATASETS",
    "default_mini_root",
    "ensure_mini_coco",
    "generate_mini_coco",
    "register_mini_coco",
    "Stage1DatasetMapper",
    "image_folder_dicts",
    "read_rgb_image",
    "stage1_dataset_dicts",
]

# registration only: no file is generated at import time
register_mini_coco()
