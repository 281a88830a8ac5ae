"""A single-image predictor for LazyConfig models, like detectron2's DefaultPredictor (yacs)."""

import numpy as np
from typing import Any, Dict
import torch
from omegaconf import DictConfig

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

__all__ = ["LazyPredictor", "config_metadata"]


def config_metadata(cfg):
    """
    The metadata (class names, ...) of ``cfg.dataloader.test.dataset.names`` from detectron2's
    MetadataCatalog, without calling the dataset function (no data is loaded or generated).
    """
    names = cfg.dataloader.test.dataset.names
    if isinstance(names, DictConfig):  # L(ensure_mini_coco)(split=...): read the name, don't call
        from ..data import MINI_DATASETS, ensure_mini_coco

        if names.get("_target_") is not ensure_mini_coco:
            raise ValueError(f"Cannot tell the test dataset's name from {names}; set it by name.")
        names = dict(zip(("train", "val"), MINI_DATASETS))[names.get("split", "train")]
    return MetadataCatalog.get(names if isinstance(names, str) else names[0])


class LazyPredictor:
    """
    :class:`detectron2.engine.DefaultPredictor` for a LazyConfig: builds ``cfg.model``, loads
    ``weights``, and runs it on one **BGR** image (as read by ``cv2.imread``), converted to the
    model's ``input_format`` and resized with the config's test-time augmentations.
    """

    def __init__(self, cfg, weights: str, device: str = ""):
        """
        Args:
            cfg: a LazyConfig with ``model`` and ``dataloader.test``.
            weights (str): a checkpoint of this model (OUTPUT_DIR/model_final.pth, a zoo .pkl).
            device (str): defaults to ``cfg.train.device`` when CUDA exists, else "cpu".
        """
        if not weights:
            raise ValueError("LazyPredictor needs weights: pass a checkpoint of this model.")
        self.device = device or (cfg.train.device if torch.cuda.is_available() else "cpu")
        self.model = instantiate(cfg.model).to(self.device).eval()
        DetectionCheckpointer(self.model).load(weights)
        self.aug = T.AugmentationList(
            [instantiate(a) for a in cfg.dataloader.test.mapper.augmentations]
        )
        self.input_format = cfg.model.input_format
        assert self.input_format in ("RGB", "BGR"), self.input_format
        self.metadata = config_metadata(cfg)

    @torch.no_grad()
    def __call__(self, original_image: np.ndarray) -> Dict[str, Any]:
        """
        Args:
            original_image: (H, W, 3) uint8 array in BGR order, like DefaultPredictor's.

        Returns:
            the model's output dict for the image (``"instances"`` at the image's size).
        """
        if self.input_format == "RGB":  # whether the model expects BGR inputs or RGB
            original_image = original_image[:, :, ::-1]
        height, width = original_image.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(original_image))
        self.aug(aug_input)
        image = torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1))
        return self.model([{"image": image.to(self.device), "height": height, "width": width}])[0]
