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

__all__ = [
    "MINI_CLASSES",
    "MINI_DATASETS",
    "default_mini_root",
    "ensure_mini_coco",
    "generate_mini_coco",
    "register_mini_coco",
]

# registration only: no file is generated at import time
register_mini_coco()
