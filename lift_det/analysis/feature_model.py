"""The ViT + LiFT whose features tools/visualize_features.py and tools/scale_invariance.py analyse:
built from a stage-one or detector LazyConfig, with weights from a checkpoint and/or a LiFT file."""

import glob
import logging
import numpy as np
import os
from typing import Dict, List, Optional, Sequence, Tuple
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import LazyConfig, instantiate
from detectron2.data.detection_utils import read_image

from ..checkpoint import AtomicDetectionCheckpointer, load_lift_file
from ..config import LIFT_PRESET_FOR_WIDTH
from ..data import IMAGE_EXTENSIONS
from ..engine.checks import check_weights
from ..model_zoo import get_config_file
from ..modeling import ViTLiFT, build_upsampler, vit_identity
from ..modeling.feature_source import IMAGENET_MEAN, IMAGENET_STD
from ..utils.cli import UserError

logger = logging.getLogger("lift_det.tools")


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) 0-255 RGB -> ViTDet's input."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def build_feature_model(config_file: Optional[str] = None) -> ViTLiFT:
    """The ViT + LiFT whose features are analysed, in eval mode, with fresh weights (see
    :func:`load_feature_weights`), from a stage-one LazyConfig (``model.source.net`` and
    ``model.lift``; default: ``configs/mini/lift_stage1.py``) or a detector's whose
    ``model.backbone.net`` is a ViTLiFT (its ``lift_weights`` not loaded) or a plain ViT (then with
    the LiFT preset of its width, LiFT-S where none)."""
    config_file = config_file or get_config_file("mini/lift_stage1.py")
    model = LazyConfig.load(config_file).model
    if "source" in model and "lift" in model:
        if "net" not in model.source:  # e.g. a timm ViT (configs/mini/lift_stage1_timm.py)
            source = model.source.get("_target_")
            raise UserError(
                f"{config_file}: its stage-one source ({getattr(source, '__name__', source)}) has "
                "no model.source.net; the feature tools take a detectron2 ViT: a stage-one config "
                "with model.source.net, or a detector config (model.backbone.net)."
            )
        vit_cfg, lift = model.source.net, instantiate(model.lift)
    elif "backbone" in model and "net" in model.backbone:
        vit_cfg, lift = model.backbone.net, None
        if "lift" in vit_cfg:
            vit_cfg.lift_weights = ""
            net = instantiate(vit_cfg)
            if not isinstance(net, ViTLiFT):
                raise UserError(f"{config_file}: model.backbone.net is a {type(net).__name__}.")
            return net.eval()
    else:
        raise UserError(
            f"{config_file} has neither model.source.net + model.lift (stage one) nor "
            "model.backbone.net (a ViTDet detector): no ViT to take features from."
        )
    vit_args = {k: vit_cfg[k] for k in vit_cfg if k != "_target_"}
    if lift is None:  # LiFT-S (the smallest) for a width without a preset (the mini ViT)
        width, patch = vit_args.get("embed_dim", 768), vit_args.get("patch_size", 16)
        lift = build_upsampler(LIFT_PRESET_FOR_WIDTH.get(width, "LiFT-S"), width, patch)
    return ViTLiFT(lift=lift, **vit_args).eval()


def load_feature_weights(
    net: ViTLiFT, weights: str = "", lift_weights: str = ""
) -> Dict[str, bool]:
    """Loads a detector or stage-one checkpoint ``weights`` (the ViT at ``backbone.net``, LiFT at
    ``backbone.net.lift`` or ``lift``: whatever fits) and/or a LiFT file ``lift_weights`` into a
    :func:`build_feature_model` net; warns about every part left random. Returns ``{"vit": loaded,
    "lift": loaded}``."""
    loaded = {"vit": False, "lift": False}
    try:  # refused weights: the user's to fix
        if weights:
            check_weights(weights, "--weights")  # a missing file: named, as train_net names it
            # a stage-one checkpoint (LiFTDistiller) keeps LiFT at lift.*: the same module under
            # both names, so either layout loads through the project's one checked loader (aliases
            # of a loaded tensor are not missing); allow_mismatch: a detector's other parts
            holder = nn.ModuleDict({"backbone": nn.ModuleDict({"net": net}), "lift": net.lift})
            before = {k: v.clone() for k, v in net.state_dict().items()}
            AtomicDetectionCheckpointer(holder, allow_mismatch=True).load(weights)
            changed = {k for k, v in net.state_dict().items() if not torch.equal(before[k], v)}
            loaded["vit"] = any(not k.startswith("lift.") for k in changed)
            loaded["lift"] = any(k.startswith("lift.") for k in changed)
            if not loaded["vit"]:  # nothing at backbone.net.*: a random ViT's figures
                raise UserError(
                    f"--weights {weights} holds no ViT (a LiFT file goes to --lift-weights)"
                )
        if lift_weights:
            net.lift_file_meta = load_lift_file(net.lift, lift_weights, backbone=vit_identity(net))
            loaded["lift"] = True
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    for part, name, flag in (("vit", "ViT", "--weights"), ("lift", "LiFT", "--lift-weights")):
        if not loaded[part] and (part == "vit" or any(True for _ in net.lift.parameters())):
            logger.warning(
                f"The {name} has RANDOM weights (no {flag} given, or nothing loaded): features and "
                "maps come from an untrained network and say nothing about the paper's claims."
            )
    net.eval()
    return loaded


def weights_caveat(net: ViTLiFT, loaded: Dict[str, bool]) -> str:
    """What a figure's title must say about the weights behind it: parts left RANDOM, and a LiFT
    file marked UNDERTRAINED (held-out cosine below bilinear's); "" when neither."""
    parts = []
    random = [{"vit": "ViT", "lift": "LiFT"}[k] for k in ("vit", "lift") if not loaded.get(k)]
    if random:
        parts.append(f"RANDOM weights: {', '.join(random)}")
    meta = getattr(net, "lift_file_meta", None) or {}
    if meta.get("undertrained"):
        q = meta.get("quality") or {}
        parts.append(
            f"LiFT UNDERTRAINED: held-out cosine {q.get('cos_lift', float('nan')):.3f} < "
            f"bilinear {q.get('cos_bilinear', float('nan')):.3f}"
        )
    return "; ".join(parts)


def load_feature_model(args):
    """The feature tools' model from their ``--config``, ``--weights``, ``--lift-weights`` (and
    ``--passes``, checked first): :func:`build_feature_model` (random parts the same every run)
    with :func:`load_feature_weights`; returns it, what was loaded and :func:`weights_caveat`."""
    if args.passes < 1:
        raise UserError(f"--passes must be >= 1, got {args.passes}.")
    torch.manual_seed(0)
    net = build_feature_model(args.config)
    loaded = load_feature_weights(net, args.weights, args.lift_weights)
    return net, loaded, weights_caveat(net, loaded)


def native_image_size(net: ViTLiFT) -> int:
    """The ViT's ``img_size``, from its global-attention blocks' relative position tables (224
    where it has none)."""
    p = net.patch_embed.proj.kernel_size[0]
    for block in net.blocks:
        if block.window_size == 0 and block.attn.use_rel_pos:
            return (block.attn.rel_pos_h.shape[0] + 1) // 2 * p
    return 224


def default_image_path() -> str:
    """A real photograph shipped with matplotlib (Grace Hopper, 512x600)."""
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def image_paths(specs: Sequence[str], limit: Optional[int] = None) -> List[str]:
    """The image files (:data:`~lift_det.data.IMAGE_EXTENSIONS`) of files, folders and globs, at
    most ``limit``; without ``specs``: :func:`default_image_path`."""
    paths = []
    for spec in specs or [default_image_path()]:
        if os.path.isdir(spec):
            found = [os.path.join(spec, n) for n in sorted(os.listdir(spec))]
        else:
            found = sorted(glob.glob(spec)) or [spec]
        paths += [p for p in found if p.lower().endswith(IMAGE_EXTENSIONS)]
    if not paths:
        raise UserError(f"--images: no images found in {specs}.")
    return paths[:limit]  # limit None: all


def read_rgb(path: str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; a file that is not there is the user's mistake."""
    try:
        return read_image(path, format="RGB")
    except FileNotFoundError as e:
        raise UserError(str(e)) from None


def prepare_image(image: np.ndarray, size: int, multiple: int) -> Tuple[torch.Tensor, np.ndarray]:
    """An (H, W, 3) uint8 RGB image resized (longer side about ``size``, both sides multiples of
    ``multiple``) as the normalized (1, 3, H', W') tensor and the resized (H', W', 3) image."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"prepare_image expects an (H, W, 3) RGB array, got {image.shape}.")
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new_h, new_w = (max(multiple, int(round(s * scale / multiple)) * multiple) for s in (h, w))
    x = torch.as_tensor(np.array(image)).permute(2, 0, 1)[None].float()  # HWC -> NCHW
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    x = x.clamp(0, 255)
    resized = x[0].permute(1, 2, 0).round().to(torch.uint8).numpy()
    return normalize(x), resized
