"""A single-image predictor for LazyConfig models, like detectron2's DefaultPredictor (yacs)."""

import numpy as np
from typing import Any, Dict
import torch
from omegaconf import DictConfig

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from ..checkpoint import AtomicDetectionCheckpointer

__all__ = ["LazyPredictor", "check_image", "config_metadata"]


def config_metadata(cfg):
    """
    The metadata (class names, ...) of ``cfg.dataloader.test.dataset.names`` from detectron2's
    MetadataCatalog, without calling the dataset function (no data is loaded or generated). The
    built-in mini data and detectron2's COCO have ``thing_classes`` at registration; a dataset of
    your own registered with ``register_coco_instances`` gets them only when its JSON is loaded:
    set ``MetadataCatalog.get(name).thing_classes = [...]`` (else drawings show class indices).
    """
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
    """
    :class:`detectron2.engine.DefaultPredictor` for a LazyConfig: builds ``cfg.model``, loads
    ``weights``, and runs it on one **BGR** uint8 image (as read by ``cv2.imread``), converted to
    the model's ``input_format`` and resized with the config's test-time augmentations.

    The weights are loaded with :class:`AtomicDetectionCheckpointer` for inference: a LiFT file,
    or a checkpoint that would leave part of the model random (e.g. a +LiFT config with a
    checkpoint that holds no LiFT and no ``lift_weights``), is refused with a ``ValueError``.
    ``self.metadata`` (class names for drawing) is the MetadataCatalog entry of
    ``cfg.dataloader.test.dataset.names`` (see :func:`config_metadata`).
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
        AtomicDetectionCheckpointer(self.model, complete=True).load(weights)
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
            original_image: (H, W, 3) uint8 array in BGR order, like DefaultPredictor's
                (``cv2.imread``; from PIL / matplotlib RGB: ``np.asarray(img)[:, :, ::-1]``).
                Other dtypes are taken as 0-255 values, except floats in [0, 1] (refused).

        Returns:
            the model's output dict for the image (``"instances"`` at the image's size).
        """
        check_image(original_image)
        if self.input_format == "RGB":  # whether the model expects BGR inputs or RGB
            original_image = original_image[:, :, ::-1]
        height, width = original_image.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(original_image))
        self.aug(aug_input)
        image = torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1))
        return self.model([{"image": image.to(self.device), "height": height, "width": width}])[0]
