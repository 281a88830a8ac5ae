"""Official LiFT checkpoints (the authors' code, github.com/saksham-s/lift) in lift_det.

The official script saves ``LiFT(in_channels, patch_size).state_dict()`` as a plain torch file
(``module.``-prefixed after DataParallel): the paper's LiFT-S, which ``LiFT.from_preset("LiFT-S", C,
p)`` computes with other parameter names. The official image-branch convolutions have a bias right
before their BatchNorm, folded exactly into ``running_mean`` (``BN(conv(x) + b)`` equals
``BN(conv(x))`` with ``running_mean - b``, in both modes). :func:`read_lift_file` converts such a
file on load; it records neither its patch size nor its teacher, so neither is checked."""

import logging
from typing import Any, Dict, List, Mapping, Tuple
import torch

logger = logging.getLogger(__name__)

_BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, channels: int) -> List[Tuple[str, Tuple[int, ...]]]:
    """A BatchNorm's entries of the layout below: its leaves (a count has no dimensions)."""
    return [(f"{prefix}.{k}", () if k == _BN_LEAVES[-1] else (channels,)) for k in _BN_LEAVES]


# The official LiFT(in_channels=384, patch_size=16).state_dict(), in its order: names and shapes
# read off github.com/saksham-s/lift, lift.py at commit fd6d929 (1,187,280 parameters).
OFFICIAL_LIFT_S16_LAYOUT: List[Tuple[str, Tuple[int, ...]]] = [
    ("up1.up.weight", (416, 208, 2, 2)),
    ("up1.up.bias", (208,)),
    ("up1.conv_1.double_conv.0.weight", (192, 240, 3, 3)),
    *_bn("up1.conv_1.double_conv.1", 192),
    ("up1.conv_1.double_conv.3.weight", (192, 192, 3, 3)),
    *_bn("up1.conv_1.double_conv.4", 192),
    ("outc.weight", (384, 192, 1, 1)),
    ("outc.bias", (384,)),
    ("image_convs_1.0.weight", (32, 3, 3, 3)),
    ("image_convs_1.0.bias", (32,)),
    *_bn("image_convs_1.1", 32),
    ("image_convs_1.3.weight", (32, 32, 3, 3)),
    ("image_convs_1.3.bias", (32,)),
    *_bn("image_convs_1.4", 32),
    ("image_convs_2.0.weight", (32, 32, 3, 3)),
    ("image_convs_2.0.bias", (32,)),
    *_bn("image_convs_2.1", 32),
]
OFFICIAL_LIFT_S16_PARAMETERS = 1187280

# official module prefix -> (lift_det module, conv bias to fold into this BatchNorm or None)
_CONVS = {
    "image_convs_1.0": ("image_encoder.0.conv", "image_encoder.0.norm_layer"),
    "image_convs_1.3": ("image_encoder.1.conv", "image_encoder.1.norm_layer"),
    "image_convs_2.0": ("image_down.conv", "image_down.norm_layer"),
    "up1.conv_1.double_conv.0": ("decoder.0.conv", None),
    "up1.conv_1.double_conv.3": ("decoder.1.conv", None),
    "up1.up": ("upsample", None),
    "outc": ("out_conv", None),
}
_NORMS = {
    "image_convs_1.1": "image_encoder.0.norm_layer",
    "image_convs_1.4": "image_encoder.1.norm_layer",
    "image_convs_2.1": "image_down.norm_layer",
    "up1.conv_1.double_conv.1": "decoder.0.norm_layer",
    "up1.conv_1.double_conv.4": "decoder.1.norm_layer",
}
_SIGNATURE = ("up1.up.weight", "outc.weight", "image_convs_1.0.weight", "image_convs_2.0.weight")


def _strip_module(state: Mapping[str, Any]) -> Dict[str, Any]:
    return {k.removeprefix("module."): v for k, v in state.items()}


def is_official_lift_state(data: Any) -> bool:
    """Whether ``data`` (what ``torch.load`` returned) is an official LiFT state dict."""
    if not isinstance(data, Mapping) or not data:
        return False
    tensors = all(isinstance(k, str) and torch.is_tensor(v) for k, v in data.items())
    return tensors and all(k in _strip_module(data) for k in _SIGNATURE)


def convert_official_lift_state(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An official LiFT state dict as the state dict of ``LiFT.from_preset("LiFT-S", C, p)``
    (every tensor used, conv biases folded); a name missing or unknown raises ``ValueError``."""
    state = _strip_module(state)
    expected = {name for name, _ in OFFICIAL_LIFT_S16_LAYOUT}  # names do not depend on widths
    missing, unknown = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unknown:
        raise ValueError(
            f"Not the official LiFT layout (github.com/saksham-s/lift, lift.py): missing "
            f"{missing[:5]}, unknown {unknown[:5]}. Only the authors' LiFT module converts."
        )
    out: Dict[str, torch.Tensor] = {}
    for old, new in _NORMS.items():
        for leaf in _BN_LEAVES:
            out[f"{new}.{leaf}"] = state[f"{old}.{leaf}"].clone()
    for old, (new, fold_into) in _CONVS.items():
        out[f"{new}.weight"] = state[f"{old}.weight"].clone()
        bias = state.get(f"{old}.bias")
        if bias is not None and fold_into is None:
            out[f"{new}.bias"] = bias.clone()
        elif bias is not None:
            out[f"{fold_into}.running_mean"] = out[f"{fold_into}.running_mean"] - bias
    return out


def official_lift_file(state: Mapping[str, torch.Tensor], path: str) -> Dict[str, Any]:
    """An official LiFT file (a bare state dict) as a LiFT-S file; its metadata holds only what
    the tensors tell (width); patch size and teacher are not recorded, so not checked."""
    model = convert_official_lift_state(state)
    in_channels = int(model["out_conv.weight"].shape[0])
    arch = dict(
        in_channels=in_channels, image_channels=32, num_image_blocks=3, fuse_channels=0, norm="BN"
    )
    logger.warning(
        f"'{path}' is an official LiFT file (github.com/saksham-s/lift), loaded as LiFT-S for "
        f"{in_channels}-channel features. It records neither its patch size nor its teacher: make "
        f"sure it was trained for this ViT and layer."
    )
    meta = {
        "class": "LiFT",
        "preset": "LiFT-S",
        "arch": arch,
        "in_channels": in_channels,
        "backbone": {},
        "teacher": {"weights": "official LiFT file: not recorded", "initialized": True},
        "source": "official",
    }
    return {"model": model, "lift_det": meta}
