"""A single-image predictor for LazyConfig models (detectron2's DefaultPredictor takes yacs)."""

import numpy as np
import torch

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from typing import Any, Dict

from ..checkpoint import AtomicDetectionCheckpointer

__all__ = ["LazyPredictor"]


class LazyPredictor:
    """
    Build ``cfg.model``, load ``weights``, and run it on one image with the config's own test-time
    resize (``cfg.dataloader.test.mapper.augmentations``) and input format, like
    :class:`detectron2.engine.DefaultPredictor` does for yacs configs.
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
        AtomicDetectionCheckpointer(self.model).load(weights)
        self.augmentations = T.AugmentationList(
            [instantiate(a) for a in cfg.dataloader.test.mapper.augmentations]
        )
        self.input_format = cfg.model.input_format
        names = cfg.dataloader.test.dataset.names
        name = instantiate(names) if not isinstance(names, str) else names
        self.metadata = MetadataCatalog.get(name if isinstance(name, str) else name[0])

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> Dict[str, Any]:
        """
        Args:
            image: (H, W, 3) uint8 array in ``cfg.model.input_format`` (RGB for ViTDet).

        Returns:
            the model's output dict for the image (``"instances"`` at the image's size).
        """
        height, width = image.shape[:2]
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        tensor = torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1))
        return self.model([{"image": tensor.to(self.device), "height": height, "width": width}])[0]
