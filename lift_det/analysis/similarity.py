"""Dense features of a ViT, of its controls and of (recursive) LiFT, and their self-similarity maps.

Self-similarity maps follow the paper's Fig. 5 (§6): the cosine similarity of the feature at every
location to the feature at one query location (the paper takes the center). They are drawn for the
ViT (stride p), the ViT + bilinear 2x upsampling, the ViT fed a 2x image (the costly way to stride
p/2), the ViT + LiFT, and LiFT applied k times (paper Table 8 / Fig. 6, stride p/2^k).

The feature model is a :class:`~lift_det.modeling.ViTLiFT` (a detectron2 ViT with ``.lift``), built
by :func:`build_feature_model` from a stage-one or detector LazyConfig (by default the mini
stage-one setup, ``configs/mini/lift_stage1.py``: a 4-block, 192-channel ViT + LiFT-S), with weights
from a detector / stage-one checkpoint and/or a LiFT file.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer

import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

from ..checkpoint import load_lift_file
from ..modeling import LIFT_PRESETS, BilinearUpsampler, LiFT, ViTLiFT

__all__ = [
    "IMAGENET_RGB256_MEAN",
    "IMAGENET_RGB256_STD",
    "FEATURE_METHODS",
    "default_feature_config",
    "build_feature_model",
    "load_feature_weights",
    "native_image_size",
    "default_image_path",
    "prepare_image",
    "dense_features",
    "method_label",
    "self_similarity",
    "query_to_grid",
    "self_similarity_maps",
    "plot_self_similarity",
]

logger = logging.getLogger(__name__)

# ViTDet's normalization (detectron2 model_zoo common/data/constants.py), on 0-255 RGB
IMAGENET_RGB256_MEAN = (123.675, 116.28, 103.53)
IMAGENET_RGB256_STD = (58.395, 57.12, 57.375)

# "vit": the ViT at stride p; "bilinear": + bilinear 2^k x; "vit_2x": the ViT on a 2x image;
# "lift": LiFT applied k times (stride p / 2^k).
FEATURE_METHODS = ("vit", "bilinear", "vit_2x", "lift")


def _lift_for(embed_dim: int, patch_size: int) -> LiFT:
    preset = "LiFT-B" if embed_dim >= 768 else "LiFT-S"
    return LiFT.from_preset(preset, embed_dim, patch_size)


def default_feature_config() -> str:
    """The mini stage-one config of the lift_det checkout (``configs/mini/lift_stage1.py``)."""
    here = os.path.dirname(__file__)
    return os.path.normpath(os.path.join(here, "..", "..", "configs", "mini", "lift_stage1.py"))


def build_feature_model(config_file: Optional[str] = None) -> ViTLiFT:
    """
    Build the ViT + LiFT whose features are analysed, in eval mode, with fresh weights (see
    :func:`load_feature_weights`).

    Args:
        config_file: a LazyConfig with

            * a stage-one model (``model.source.net``: the ViT, ``model.lift``: the LiFT), e.g.
              ``configs/mini/lift_stage1.py`` (the default) or ``configs/lift_stage1_coco.py``;
            * or a detector whose ``model.backbone.net`` is a ViT+LiFT (``ViTLiFT``, e.g.
              ``configs/vitdet_mrcnn_lift.py``; its ``lift_weights`` file is not loaded here) or
              a plain ViT (``configs/vitdet_mrcnn.py``: LiFT-B is attached for 768 channels,
              LiFT-S otherwise).
    """
    from detectron2.config import LazyConfig, instantiate

    config_file = config_file or default_feature_config()
    model = LazyConfig.load(config_file).model
    if "source" in model and "lift" in model:
        vit_cfg, lift = model.source.net, instantiate(model.lift)
    elif "backbone" in model and "net" in model.backbone:
        vit_cfg, lift = model.backbone.net, None
        if "lift" in vit_cfg:
            vit_cfg.lift_weights = ""
            net = instantiate(vit_cfg)
            if not isinstance(net, ViTLiFT):
                raise ValueError(f"{config_file}: model.backbone.net is a {type(net).__name__}.")
            return net.eval()
    else:
        raise ValueError(
            f"{config_file} has neither model.source.net + model.lift (stage one) nor "
            f"model.backbone.net (a ViTDet detector): no ViT to take features from."
        )
    vit_args = {k: vit_cfg[k] for k in vit_cfg if k != "_target_"}
    if lift is None:
        lift = _lift_for(vit_args.get("embed_dim", 768), vit_args.get("patch_size", 16))
    return ViTLiFT(lift=lift, **vit_args).eval()


class _FeatureCheckpointer(DetectionCheckpointer):
    """
    Loads detector checkpoints (ViT at ``backbone.net.*``, LiFT at ``backbone.net.lift.*``) and
    stage-one checkpoints (:class:`~lift_det.modeling.distill.LiFTDistiller`: ViT at
    ``backbone.net.*``, LiFT at ``lift.*``) into a module holding a ViTLiFT at ``backbone.net``.
    """

    def _load_file(self, filename: str) -> Dict:
        data = super()._load_file(filename)
        model = data.get("model", {})
        if any(k.startswith("lift.") for k in model):
            data["model"] = {
                (f"backbone.net.{k}" if k.startswith("lift.") else k): v for k, v in model.items()
            }
        return data


def load_feature_weights(
    net: ViTLiFT, weights: str = "", lift_weights: str = ""
) -> Dict[str, bool]:
    """
    Load weights into a feature model; warn about every part left at random initialization.

    Args:
        net: from :func:`build_feature_model`.
        weights: a detector or stage-one checkpoint, loaded by detectron2's
            :class:`DetectionCheckpointer` into a module whose ViT sits at ``backbone.net``; its
            LiFT, if any (``backbone.net.lift.*`` in a detector, ``lift.*`` in stage one), is
            loaded too.
        lift_weights: a LiFT file (``lift_final.pth``) loaded with :func:`load_lift_file`.

    Returns:
        {"vit": loaded, "lift": loaded}.
    """
    loaded = {"vit": False, "lift": False}
    if weights:
        holder = nn.Module()
        holder.backbone = nn.Module()
        holder.backbone.net = net
        before = {k: v.clone() for k, v in net.state_dict().items()}
        _FeatureCheckpointer(holder).load(weights)
        after = net.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        loaded["vit"] = any(not k.startswith("lift.") for k in changed)
        loaded["lift"] = any(k.startswith("lift.") for k in changed)
        if not loaded["vit"]:
            logger.warning(
                f"No ViT parameter was loaded from {weights}: expected them at backbone.net.*."
            )
    if lift_weights:
        load_lift_file(net.lift, lift_weights, backbone=net.backbone_identity())
        loaded["lift"] = True
    has_lift_params = any(True for _ in net.lift.parameters())
    for part, name, flag in (("vit", "ViT", "--weights"), ("lift", "LiFT", "--lift-weights")):
        if not loaded[part] and (part == "vit" or has_lift_params):
            logger.warning(
                f"The {name} has RANDOM weights (no {flag} given, or nothing loaded): features and "
                f"maps come from an untrained network and say nothing about the paper's claims."
            )
    net.eval()
    return loaded


def native_image_size(net: ViTLiFT) -> int:
    """
    The image size the ViT was built for (detectron2's ``img_size``), read from the relative
    position tables of its global-attention blocks (224 where it has none).
    """
    p = net.patch_embed.proj.kernel_size[0]
    for block in net.blocks:
        if block.window_size == 0 and block.attn.use_rel_pos:
            return (block.attn.rel_pos_h.shape[0] + 1) // 2 * p
    return 224


def default_image_path() -> str:
    """A real photograph shipped with matplotlib (Grace Hopper, 512x600)."""
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def prepare_image(
    image: np.ndarray, size: int, multiple: int = 16
) -> Tuple[torch.Tensor, np.ndarray]:
    """
    Resize an RGB image so that its longer side is about ``size`` and both sides are multiples of
    ``multiple`` (the patch size), then normalize it like ViTDet.

    Args:
        image: (H, W, 3) uint8 RGB.
        size: target of the longer side.
        multiple: both sides are rounded to a multiple of this.

    Returns:
        the normalized (1, 3, H', W') float tensor and the resized (H', W', 3) uint8 image.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"prepare_image expects an (H, W, 3) RGB array, got {image.shape}.")
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new_h = max(multiple, int(round(h * scale / multiple)) * multiple)
    new_w = max(multiple, int(round(w * scale / multiple)) * multiple)
    x = torch.as_tensor(np.array(image)).permute(2, 0, 1)[None].float()  # HWC -> NCHW
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    x = x.clamp(0, 255)
    resized = x[0].permute(1, 2, 0).round().to(torch.uint8).numpy()
    mean = torch.tensor(IMAGENET_RGB256_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_RGB256_STD).view(1, 3, 1, 1)
    return (x - mean) / std, resized


@torch.no_grad()
def dense_features(
    net: ViTLiFT, image: torch.Tensor, method: str = "lift", num_passes: int = 1
) -> torch.Tensor:
    """
    Dense features of a normalized image by one of :data:`FEATURE_METHODS`.

    Args:
        net: a ViT + LiFT (:class:`ViTLiFT`).
        image: (B, 3, H, W), normalized like ViTDet.
        method: "vit" (stride p), "bilinear" (ViT then bilinear 2^k x), "vit_2x" (the ViT on the
            image bilinearly resized 2x: stride p/2 in the original pixels), "lift" (``net.lift``
            applied ``num_passes`` times: stride p / 2^k, paper Table 8).
        num_passes: k, for "bilinear" and "lift".

    Returns:
        (B, C, h, w) features.
    """
    if method not in FEATURE_METHODS:
        raise ValueError(f"Unknown feature method {method!r}; use one of {FEATURE_METHODS}.")
    if method == "vit_2x":
        big = F.interpolate(image, scale_factor=2.0, mode="bilinear", align_corners=False)
        return net.vit_forward(big)
    features = net.vit_forward(image)
    if method == "vit":
        return features
    if method == "bilinear":
        upsampler = BilinearUpsampler(net.lift.in_channels, net.lift.patch_size)
        return upsampler(image, features, num_passes=num_passes)
    return net.lift(image, features, num_passes=num_passes)


def method_label(net: ViTLiFT, method: str, num_passes: int = 1) -> str:
    """A short panel/legend label, e.g. "ViT+LiFT-S", "ViT+2xLiFT-S", "ViT, 2x input"."""
    lift_name = getattr(net.lift, "preset", "LiFT")
    lift_name = lift_name if lift_name in LIFT_PRESETS else type(net.lift).__name__
    k = f"{num_passes}x" if num_passes > 1 else ""
    return {
        "vit": "ViT",
        "bilinear": f"ViT+{k}bilinear",
        "vit_2x": "ViT, 2x input",
        "lift": f"ViT+{k}{lift_name}",
    }[method]


def self_similarity(features: torch.Tensor, query: Tuple[int, int]) -> torch.Tensor:
    """
    Cosine similarity of every location's feature to the feature at ``query``.

    Args:
        features: (C, h, w) or (1, C, h, w).
        query: (row, col) on the feature grid.

    Returns:
        (h, w) float tensor in [-1, 1]; 1 at the query.
    """
    if features.dim() == 4:
        if features.shape[0] != 1:
            raise ValueError(f"self_similarity takes one feature map, got {features.shape[0]}.")
        features = features[0]
    if features.dim() != 3:
        raise ValueError(f"self_similarity expects (C, h, w) features, got {features.shape}.")
    row, col = query
    h, w = features.shape[-2:]
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"Query {query} is outside the {h}x{w} feature grid.")
    features = F.normalize(features.float(), dim=0)
    return torch.einsum("chw,c->hw", features, features[:, row, col])


def query_to_grid(
    query_xy: Tuple[float, float], image_hw: Tuple[int, int], grid_hw: Tuple[int, int]
) -> Tuple[int, int]:
    """(x, y) in image pixels -> (row, col) of the cell of a grid covering the image."""
    x, y = query_xy
    (H, W), (h, w) = image_hw, grid_hw
    if not (0 <= x < W and 0 <= y < H):
        raise ValueError(f"Query (x={x}, y={y}) is outside the {W}x{H} image.")
    return min(int(y * h / H), h - 1), min(int(x * w / W), w - 1)


def self_similarity_maps(
    net: ViTLiFT,
    image: torch.Tensor,
    query_xy: Tuple[float, float],
    num_passes: int = 2,
) -> List[Tuple[str, torch.Tensor]]:
    """
    The maps of Fig. 5 for one normalized image (1, 3, H, W): ViT, ViT+bilinear, the ViT at 2x
    input, ViT+LiFT and k x LiFT for k = 2..num_passes, each as (label, (h, w) map).

    Args:
        query_xy: the query location (x, y) in the image's pixels.
    """
    runs = [("vit", 1), ("bilinear", 1), ("vit_2x", 1)]
    runs += [("lift", k) for k in range(1, max(num_passes, 1) + 1)]
    out = []
    for method, k in runs:
        features = dense_features(net, image, method, num_passes=k)
        query = query_to_grid(query_xy, image.shape[-2:], features.shape[-2:])
        out.append((method_label(net, method, k), self_similarity(features, query)))
    return out


def plot_self_similarity(
    image: np.ndarray,
    maps: Sequence[Tuple[str, torch.Tensor]],
    query_xy: Tuple[float, float],
    path: str,
    title: str = "",
    panel_size: float = 3.0,
) -> None:
    """
    Write a PNG grid: the image with the query marked, then every map (per-map color range,
    brighter = more similar) with its grid size and the query marked.

    Args:
        image: (H, W, 3) uint8, the image the maps were computed on.
        maps: (label, (h, w) map) pairs from :func:`self_similarity_maps`.
        query_xy: (x, y) in the image's pixels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    H, W = image.shape[:2]
    n = len(maps) + 1
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size * ncols, panel_size * H / W * nrows + 0.6), squeeze=False
    )
    axes = axes.reshape(-1)
    for ax in axes:
        ax.axis("off")
    panels = [("image", None)] + list(maps)
    for ax, (label, sim) in zip(axes, panels):
        if sim is None:
            ax.imshow(image)
            ax.set_title(f"image ({H}x{W})", fontsize=9)
        else:
            h, w = sim.shape
            ax.imshow(sim.numpy(), cmap="inferno", extent=(0, W, H, 0), interpolation="nearest")
            ax.set_title(f"{label} ({h}x{w})", fontsize=9)
        ax.plot(*query_xy, marker="o", markersize=7, markerfacecolor="none", color="red", mew=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
