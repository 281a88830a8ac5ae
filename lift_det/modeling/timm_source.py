"""A timm ViT as a frozen feature source for stage one (e.g. the paper's DINO ViT-S/16); the
interface is :class:`~lift_det.modeling.feature_source.FrozenFeatureSource`'s."""

import logging
import os
import sys
from typing import Any, Dict, Optional
import torch

from .feature_source import FrozenFeatureSource, _rgb_tuple

logger = logging.getLogger(__name__)


class TimmViTSource(FrozenFeatureSource):
    """A timm ViT (e.g. ``"vit_small_patch16_224.dino"``) as a frozen feature source: the patch
    tokens of ``forward_features`` as an NCHW map, at any input size (``dynamic_img_size``). Nothing
    is downloaded: weights come from a local file."""

    def __init__(
        self,
        model_name: str,
        weights: str = "",
        img_size: Optional[int] = None,
        autocast: bool = True,
        **model_kwargs: Any,
    ):
        """``model_name``: a timm model name, whose pretrained config gives the normalization;
        ``weights``: a local checkpoint (:meth:`load_weights`; empty: random, warned); ``img_size``:
        the ViT's reference image size (None: the model's default); ``autocast``: fp16 on CUDA;
        ``model_kwargs``: more arguments of ``timm.create_model``."""
        import timm

        kwargs = dict(pretrained=False, num_classes=0, dynamic_img_size=True, **model_kwargs)
        if img_size is not None:
            kwargs["img_size"] = img_size
        net = timm.create_model(model_name, **kwargs)
        if not hasattr(net, "forward_features") or not hasattr(net, "patch_embed"):
            raise TypeError(f"timm model '{model_name}' is not a ViT with patch embeddings.")
        super().__init__(net, autocast=autocast)
        self.model_name = model_name
        self.embed_dim = int(net.embed_dim)
        patch = net.patch_embed.patch_size
        patch = tuple(patch) if isinstance(patch, (tuple, list)) else (patch, patch)
        if patch[0] != patch[1]:
            raise NotImplementedError(f"Non-square patches {patch} are not supported.")
        self.patch_size = int(patch[0])
        self.num_prefix_tokens = int(getattr(net, "num_prefix_tokens", 1))
        cfg = getattr(net, "pretrained_cfg", None) or {}
        mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
        self.pixel_mean = _rgb_tuple([255.0 * m for m in mean], "mean")
        self.pixel_std = _rgb_tuple([255.0 * s for s in std], "std")
        if weights:
            self.load_weights(weights)
        else:
            logger.warning(
                f"TimmViTSource('{model_name}'): no weights given, the ViT is randomly initialized "
                f"(unless a checkpoint is loaded into the model later)."
            )

    def load_weights(self, path: str) -> None:
        """Load a local checkpoint (a state dict, optionally under "model" or "state_dict", or
        ``.safetensors``) into the ViT, strictly, after timm's own key conversion."""
        from timm.models import load_state_dict

        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"TimmViTSource: weights file '{path}' does not exist (nothing is downloaded; "
                f"give a local checkpoint of '{self.model_name}')."
            )
        try:
            state = load_state_dict(path, weights_only=False)
        except Exception as e:
            raise RuntimeError(
                f"TimmViTSource: weights file '{path}' is corrupt or not a checkpoint: {e}"
            ) from e
        # timm's conversion for its family (e.g. DINOv2 / CLIP layouts, position embedding
        # resampling to this img_size), if the model's module has one
        filter_fn = getattr(sys.modules[type(self.net).__module__], "checkpoint_filter_fn", None)
        if filter_fn is not None:
            state = filter_fn(state, self.net)
        own = self.net.state_dict()
        # the classifier is not part of a feature source
        state = {k: v for k, v in state.items() if k in own or not k.startswith("head")}
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"TimmViTSource: '{path}' does not fit '{self.model_name}': missing keys "
                f"{missing[:8]}{'...' if len(missing) > 8 else ''}, unexpected keys "
                f"{unexpected[:8]}{'...' if len(unexpected) > 8 else ''}."
            )
        self.freeze()
        logger.info(f"TimmViTSource: loaded '{self.model_name}' weights from {path}.")

    def identity(self) -> Dict[str, Any]:
        return {
            "type": "timm",
            "model_name": self.model_name,
            "embed_dim": self.embed_dim,
            "patch_size": self.patch_size,
            "depth": len(self.net.blocks),
        }

    def features(self, images: torch.Tensor) -> torch.Tensor:
        B, _, H, W = images.shape
        h, w = H // self.patch_size, W // self.patch_size
        tokens = self.net.forward_features(images)
        if tokens.dim() == 4:  # NHWC output (some timm ViTs keep the grid)
            return tokens.permute(0, 3, 1, 2)
        tokens = tokens[:, self.num_prefix_tokens :]
        if tokens.shape[1] != h * w:
            raise RuntimeError(
                f"'{self.model_name}' returned {tokens.shape[1]} patch tokens for a {H}x{W} image, "
                f"expected {h}x{w}={h * w}."
            )
        # NLC -> NCHW
        return tokens.transpose(1, 2).reshape(B, self.embed_dim, h, w)
