"""The ViTDet+LiFT backbone (paper §3.5): detectron2's ViT (ViTDet's parameter names), then LiFT
(or a control) at ``lift.*`` on its last feature. LiFT's weights come from the checkpoint when it
holds them, else from the stage-one file ``lift_weights``, read when a checkpoint is loaded."""

from contextlib import nullcontext
from typing import Any, Dict
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.modeling import ViT

from ..checkpoint import check_lift_file, report_part, teacher_fingerprint
from .attention import AttnViT, keyword_signature
from .lift import check_num_passes, check_upsampler_fits


def vit_identity(vit: nn.Module) -> Dict[str, Any]:
    """What a LiFT file records about (and is checked against) a detectron2 :class:`ViT`: type,
    embed_dim, depth, num_heads, patch_size."""
    if not isinstance(vit, ViT):
        raise TypeError(f"vit_identity needs a detectron2 ViT, got {type(vit).__name__}.")
    return {
        "type": "detectron2.ViT",
        "embed_dim": int(vit._out_feature_channels[vit._out_features[0]]),
        "depth": len(vit.blocks),
        "num_heads": int(vit.blocks[0].attn.num_heads),
        "patch_size": int(vit.patch_embed.proj.kernel_size[0]),
    }


def _mark_loaded(module, state_dict, prefix, *args) -> None:
    """load_state_dict pre-hook on the LiFT module: remember that weights were loaded into it."""
    if any(k.startswith(prefix) for k in state_dict):
        module._lift_det_loaded = True


class ViTLiFT(AttnViT):
    """detectron2's :class:`ViT` followed by LiFT (or a control upsampler): one output, named like
    the ViT's, with its channels, at stride ``patch_size / 2**num_passes / image_scale``."""

    def __init__(
        self,
        *,
        lift: nn.Module,
        lift_weights: str = "",
        num_passes: int = 1,
        freeze_vit: bool = False,
        freeze_lift: bool = False,
        allow_random_lift: bool = False,
        image_scale: float = 1.0,
        **vit_kwargs: Any,
    ):
        """``lift``: a :class:`LiFT` or a control (:func:`build_upsampler`) for the ViT's channels
        and patch size; ``lift_weights``: the stage-one LiFT file, read when a checkpoint without
        ``<prefix>lift.*`` tensors is loaded (:meth:`load_lift_weights`); ``num_passes``:
        recursive LiFT passes (the stride halves with each); ``freeze_vit``, ``freeze_lift``: no
        gradients, eval mode (and ``no_grad`` for the ViT) whatever ``train()`` is called with;
        ``allow_random_lift``: allow training a frozen LiFT that nothing loaded; ``image_scale``:
        the ViT and LiFT see the detector's image resized by this factor (bilinear, antialiased;
        0.5: ViTDet's own stride, the "half" placement); ``vit_kwargs``: :class:`AttnViT`'s."""
        super().__init__(**vit_kwargs)
        identity = vit_identity(self)
        embed_dim, patch_size = identity["embed_dim"], identity["patch_size"]
        if patch_size % (2 ** check_num_passes(num_passes)):
            raise ValueError(
                f"num_passes={num_passes} halves the stride {num_passes} times, but patch_size="
                f"{patch_size} is not divisible by {2**num_passes}: use fewer passes."
            )
        check_upsampler_fits(lift, embed_dim, patch_size, "the ViT")
        number = isinstance(image_scale, (int, float)) and not isinstance(image_scale, bool)
        stride = patch_size / 2**num_passes / image_scale if number and image_scale > 0 else 0.5
        if not number or not 0 < image_scale <= 1 or stride != int(stride):
            raise ValueError(
                f"image_scale={image_scale!r} must be in (0, 1] and give a whole output stride "
                f"(patch_size / 2**num_passes / image_scale = {stride:g}): use 1.0 or 0.5."
            )
        self.image_scale = float(image_scale)
        self.lift = lift
        self.lift_weights = lift_weights
        self.num_passes = num_passes
        self.freeze_vit = freeze_vit
        self.freeze_lift = freeze_lift
        self.allow_random_lift = allow_random_lift
        self.register_load_state_dict_pre_hook(type(self).load_lift_weights)
        self.lift.register_load_state_dict_pre_hook(_mark_loaded)
        for name, p in self.named_parameters():
            is_lift = name.startswith("lift.")
            if (freeze_lift and is_lift) or (freeze_vit and not is_lift):
                p.requires_grad_(False)
        self._out_feature_strides = {self._out_features[0]: int(stride)}
        self.train()

    def load_lift_weights(self, state_dict: Dict[str, torch.Tensor], prefix: str = "", *_) -> None:
        """The load pre-hook: an incoming state dict without ``<prefix>lift.*`` tensors gets those
        of ``lift_weights`` (checked by :func:`check_lift_file`); where LiFT came from is reported
        to the loading checkpointer (:func:`~lift_det.checkpoint.report_part`)."""
        part = prefix + "lift."
        lift_keys = [k for k in state_dict if k.startswith(part)]
        n = len(self.lift.state_dict())
        if not n:  # a control without parameters (bilinear)
            return
        origin = f"lift_weights={self.lift_weights}" if self.lift_weights else ""
        if lift_keys:
            report_part(part, "checkpoint", origin=origin, tensors=len(lift_keys))
            return
        if not self.lift_weights:
            if self.allow_random_lift:
                report_part(part, "random", tensors=n, reason="allow_random_lift=True")
            return
        # the incoming ViT, if complete, is checked against the teacher the file records
        vit_keys = {k for k in self.state_dict() if not k.startswith("lift.")}
        incoming = {k: state_dict[prefix + k] for k in vit_keys if prefix + k in state_dict}
        teacher = teacher_fingerprint(incoming) if set(incoming) == vit_keys else None
        lift = check_lift_file(self.lift, self.lift_weights, vit_identity(self), teacher)["model"]
        for k, v in lift.items():  # loaded with the rest of the state dict, once
            state_dict[part + k] = v
        report_part(part, "file", origin=origin, tensors=n)

    def train(self, mode: bool = True) -> "ViTLiFT":
        super().train(mode)
        if self.freeze_vit:
            for name, child in self.named_children():
                if name != "lift":
                    child.eval()
        if self.freeze_lift:
            self.lift.eval()
        return self

    def _check_lift_loaded(self) -> None:
        loaded = getattr(self.lift, "_lift_det_loaded", False)
        if loaded or self.allow_random_lift or not self.freeze_lift or not self.lift.state_dict():
            return
        how = (
            f"lift_weights={self.lift_weights} is set but no checkpoint was loaded (the file is "
            f"read when one is, e.g. train.init_checkpoint)"
            if self.lift_weights
            else "no checkpoint held backbone.net.lift.* and no lift_weights were given"
        )
        raise RuntimeError(
            f"The frozen {getattr(self.lift, 'preset', type(self.lift).__name__)} was never "
            f"loaded: {how}, so the detector would train on a random LiFT. Set "
            f"model.backbone.net.lift_weights=<stage-one OUTPUT_DIR>/lift_final.pth and load a "
            f"checkpoint, or set model.backbone.net.allow_random_lift=True to train it anyway."
        )

    def vit_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The plain ViT's output feature (B, C, H/p, W/p)."""
        return super().forward(x)[self._out_features[0]]

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if self.training:
            self._check_lift_loaded()
        if self.image_scale != 1.0:  # bilinear (align_corners=False), antialiased
            x = F.interpolate(x, scale_factor=self.image_scale, mode="bilinear", antialias=True)
        with torch.no_grad() if self.freeze_vit else nullcontext():
            features = self.vit_forward(x)
        return {self._out_features[0]: self.lift(x, features, num_passes=self.num_passes)}


ViTLiFT.__signature__ = keyword_signature(ViTLiFT)
