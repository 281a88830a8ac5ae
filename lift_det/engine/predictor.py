"""A single-image predictor for LazyConfig models, like detectron2's DefaultPredictor (yacs)."""

import numpy as np
from typing import Any, Dict
import torch
from omegaconf import DictConfig

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from ..checkpoint import AtomicDetectionCheckpointer


def config_metadata(cfg):
    """The MetadataCatalog entry of ``cfg.dataloader.test.dataset.names``, without loading the
    dataset (a dataset of ``register_coco_instances`` has ``thing_classes`` only once loaded)."""
    names = cfg.dataloader.test.dataset.names
    if isinstance(names, DictConfig):  # L(ensure_mini_coco)(split=...): read the name, don't call
        from ..data import MINI_DATASETS, ensure_mini_coco

        if names.get("_target_") is not ensure_mini_coco:
            raise ValueError(f"Cannot tell the test dataset's name from {names}; set it by name.")
        names = dict(zip(("train", "val"), MINI_DATASETS))[names.get("split", "train")]
    return MetadataCatalog.get(names if isinstance(names, str) else names[0])


def check_image(image: np.ndarray) -> None:
    """Refuse what is not a (H, W, 3) image in 0-255, naming the fix."""
    if image is None:
        raise ValueError(
            "LazyPredictor got None for the image: cv2.imread returns None when the file does not "
            "exist or is not an image. Check the path (and LIFT_DET_MINI_ROOT for the mini data)."
        )
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(
            f"LazyPredictor takes one (H, W, 3) BGR image as a numpy array (cv2.imread), got "
            f"{shape}; a (3, H, W) tensor: image.permute(1, 2, 0).numpy()[:, :, ::-1]."
        )
    if image.dtype.kind == "f" and image.size and float(image.max()) <= 1.0:
        low, high = float(image.min()), float(image.max())
        raise ValueError(
            f"LazyPredictor takes 0-255 values (uint8 BGR, as cv2.imread gives), got a "
            f"{image.dtype} image with values in [{low:.3g}, {high:.3g}]: for a float RGB "
            f"image in [0, 1] pass (image[:, :, ::-1] * 255).round().astype(np.uint8)."
        )


class LazyPredictor:
    """:class:`detectron2.engine.DefaultPredictor` for a LazyConfig: builds ``cfg.model``, loads
    ``weights`` (a checkpoint that would leave part of the model random is refused: ValueError), and
    runs it on one **BGR** uint8 image with the config's test-time augmentations. ``self.metadata``:
    :func:`config_metadata`. ``device``: default ``cfg.train.device`` with CUDA, else "cpu"."""

    def __init__(self, cfg, weights: str, device: str = ""):
        if not weights:
            raise ValueError("LazyPredictor needs weights: pass a checkpoint of this model.")
        self.device = device or (cfg.train.device if torch.cuda.is_available() else "cpu")
        self.model = instantiate(cfg.model).to(self.device).eval()
        AtomicDetectionCheckpointer(self.model, complete=True).load(weights)
        augmentations = [instantiate(a) for a in cfg.dataloader.test.mapper.augmentations]
        self.aug = T.AugmentationList(augmentations)
        self.input_format = cfg.model.input_format
        assert self.input_format in ("RGB", "BGR"), self.input_format
        self.metadata = config_metadata(cfg)

    @torch.no_grad()
    def __call__(self, original_image: np.ndarray) -> Dict[str, Any]:
        """The model's output for an (H, W, 3) BGR image in 0-255 (``cv2.imread``'s)."""
        check_image(original_image)
        if self.input_format == "RGB":  # whether the model expects BGR inputs or RGB
            original_image = original_image[:, :, ::-1]
        height, width = original_image.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(original_image))
        self.aug(aug_input)
        image = torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1))
        return self.model([{"image": image.to(self.device), "height": height, "width": width}])[0]
