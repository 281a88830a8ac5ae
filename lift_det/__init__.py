"""lift_det: LiFT (Lightweight Feature Transform, ECCV 2024) for ViTDet, as a detectron2 extension.

Importing the package registers ``build_vit_lift_backbone`` in detectron2's BACKBONE_REGISTRY and
the built-in mini COCO dataset (``lift_mini_train`` / ``lift_mini_val``) in its DatasetCatalog."""

__version__ = "0.1.0"

import warnings as _warnings

# Deprecation notices of third-party code that say nothing to a lift_det user, filtered before
# detectron2 is imported here (the tools import lift_det first, so its own imports are quiet too)
for _message, _category in (
    (r"`torch\.jit\.script` is deprecated", FutureWarning),  # detectron2's layers, at import
    (r"pkg_resources is deprecated", UserWarning),  # detectron2.model_zoo, at import
    (r"Importing from timm\.models\.layers is deprecated", FutureWarning),  # detectron2's ViT
    (r"torch\.meshgrid: in an upcoming release", UserWarning),  # detectron2's anchors
):
    _warnings.filterwarnings("ignore", message=_message, category=_category)

# models: LiFT, controls, the ViT+LiFT backbone and its pyramid placements
from .modeling import (  # noqa: E402
    LIFT_PRESETS,
    BilinearUpsampler,
    D2ViTSource,
    LiFT,
    LiFTDistiller,
    LiFTSimpleFeaturePyramid,
    ResizeConvUpsampler,
    TimmViTSource,
    ViTLiFT,
    build_vit_lift_backbone,
)

from .checkpoint import AtomicDetectionCheckpointer, load_lift_file, save_lift_file  # noqa: E402
from .config import add_lift_config, lift_backbone  # noqa: E402

# datasets (registration only; files are generated on first use)
from . import data, evaluation  # noqa: E402,F401

# inference: DefaultPredictor for LazyConfigs (BGR uint8 in, checked weights)
from .engine.predictor import LazyPredictor  # noqa: E402
