"""LiFT-S is the official LiFT: the authors' layout loads strictly and computes the same function.

The reference is the layout recorded in ``lift_det.checkpoint.official_lift`` (names, shapes and
order of ``LiFT(384, 16).state_dict()`` in github.com/saksham-s/lift, lift.py). The official
forward is written here independently, with ``torch.nn.functional`` on the official tensors, from
that code's structure: image convs (conv+bias, BN, ReLU) x2 at stride 2 -> max-pool 2x2 (patch 16)
-> imgs_1; conv+bias, BN, ReLU at stride 2 -> imgs_2; cat([features, imgs_2]) -> 2x2 transposed
conv -> cat([., imgs_1]) -> (conv, BN, ReLU) x2 -> 1x1 conv.
"""

import logging
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_VIT
from lift_det.checkpoint import load_lift_file
from lift_det.checkpoint.official_lift import (
    OFFICIAL_LIFT_S16_LAYOUT,
    OFFICIAL_LIFT_S16_PARAMETERS,
    convert_official_lift_state,
)
from lift_det.modeling import LiFT

EPS = 1e-5  # nn.BatchNorm2d's default, the official module's


def official_state(seed: int = 0, prefix: str = ""):
    """Random weights in the official layout (BN statistics and the conv biases far from their
    defaults, so that a wrong fold or a wrong mode changes the output)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in OFFICIAL_LIFT_S16_LAYOUT:
        if name.endswith("num_batches_tracked"):
            state[prefix + name] = torch.tensor(7)
            continue
        if name.endswith("running_var"):
            t = 0.5 + 1.5 * torch.rand(shape, generator=g)
        elif name.endswith("running_mean"):
            t = 0.5 * torch.randn(shape, generator=g)
        elif len(shape) == 4:  # conv weights, roughly unit-variance outputs
            fan_in = shape[1] * shape[2] * shape[3]
            t = torch.randn(shape, generator=g) / fan_in**0.5
        elif ".1." in name or ".4." in name:  # BatchNorm weight / bias
            t = (
                (0.5 + torch.rand(shape, generator=g))
                if name.endswith("weight")
                else 0.3 * (torch.randn(shape, generator=g))
            )
        else:  # conv biases
            t = 0.5 * torch.randn(shape, generator=g)
        state[prefix + name] = t
    return state


def official_forward(s, image, features, patch_size, training=False):
    """The official LiFT.forward (pre_shape=post_shape=False), written with functional ops."""
    stats = {}

    def conv_bn_relu(x, conv, bn, stride):
        x = F.conv2d(x, s[conv + ".weight"], s.get(conv + ".bias"), stride=stride, padding=1)
        mean, var = s[bn + ".running_mean"].clone(), s[bn + ".running_var"].clone()
        x = F.batch_norm(
            x, mean, var, s[bn + ".weight"], s[bn + ".bias"], training=training, eps=EPS
        )
        stats[bn] = mean  # updated in place in training mode
        return F.relu(x)

    imgs_1 = conv_bn_relu(image, "image_convs_1.0", "image_convs_1.1", 2)
    imgs_1 = conv_bn_relu(imgs_1, "image_convs_1.3", "image_convs_1.4", 2)
    if patch_size == 16:
        imgs_1 = F.max_pool2d(imgs_1, 2, 2)
    imgs_2 = conv_bn_relu(imgs_1, "image_convs_2.0", "image_convs_2.1", 2)
    x = torch.cat([features, imgs_2], dim=1)
    x = F.conv_transpose2d(x, s["up1.up.weight"], s["up1.up.bias"], stride=2)
    x = torch.cat([x, imgs_1], dim=1)
    x = conv_bn_relu(x, "up1.conv_1.double_conv.0", "up1.conv_1.double_conv.1", 1)
    x = conv_bn_relu(x, "up1.conv_1.double_conv.3", "up1.conv_1.double_conv.4", 1)
    return F.conv2d(x, s["outc.weight"], s["outc.bias"]), stats


def test_recorded_layout_is_consistent_and_lift_s_has_its_parameters():
    """The recorded table sums to its recorded count (1.2M, paper §3.2), and LiFT-S has exactly
    those parameters less the three image-branch conv biases that fold into BatchNorm."""
    counted = 0
    for name, shape in OFFICIAL_LIFT_S16_LAYOUT:
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            counted += int(torch.Size(shape).numel())
    assert counted == OFFICIAL_LIFT_S16_PARAMETERS == 1187280
    lift = LiFT.from_preset("LiFT-S", 384, patch_size=16)
    assert sum(p.numel() for p in lift.parameters()) == OFFICIAL_LIFT_S16_PARAMETERS - 3 * 32


def test_official_state_loads_strictly_into_lift_s():
    lift = LiFT.from_preset("LiFT-S", 384, patch_size=16)
    converted = convert_official_lift_state(official_state())
    lift.load_state_dict(converted, strict=True)  # no missing, no unexpected, same shapes
    assert set(converted) == set(lift.state_dict())


@pytest.mark.parametrize(
    "patch_size,size,training",
    [(16, (224, 224), False), (16, (96, 160), False), (8, (64, 96), False), (16, (96, 64), True)],
)
def test_lift_s_computes_the_official_function(patch_size, size, training):
    """Same output as the independent official forward: evaluation (running statistics, so the
    folded biases matter) and training (batch statistics, and the running means they update)."""
    torch.manual_seed(1)
    official = official_state(seed=2)
    lift = LiFT.from_preset("LiFT-S", 384, patch_size=patch_size)
    lift.load_state_dict(convert_official_lift_state(official), strict=True)
    lift.train(training)
    H, W = size
    image = torch.randn(2, 3, H, W)
    features = torch.randn(2, 384, H // patch_size, W // patch_size)
    expected, stats = official_forward(official, image, features, patch_size, training)
    with torch.no_grad():
        out = lift(image, features)
    assert out.shape == (2, 384, 2 * H // patch_size, 2 * W // patch_size)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    if training:  # our running mean = the official one less the folded bias
        torch.testing.assert_close(
            lift.image_encoder[0].norm_layer.running_mean,
            stats["image_convs_1.1"] - official["image_convs_1.0.bias"],
        )


def test_official_file_loads_as_a_lift_file(tmp_path, caplog):
    """A file as the official training script writes it (DataParallel's 'module.' prefix
    included) loads through load_lift_file, with a warning naming what it does not record; it is
    refused by a LiFT of another width."""
    official = official_state(seed=3, prefix="module.")
    path = tmp_path / "lift_dino_vits16.pth"
    torch.save(official, path)
    lift = LiFT.from_preset("LiFT-S", 384, patch_size=16).eval()
    with caplog.at_level(logging.WARNING):
        meta = load_lift_file(lift, str(path))
    assert meta["preset"] == "LiFT-S" and meta["source"] == "official"
    assert "official LiFT file" in caplog.text and "teacher" in caplog.text
    image, features = torch.randn(1, 3, 64, 64), torch.randn(1, 384, 4, 4)
    bare = {k[len("module.") :]: v for k, v in official.items()}
    with torch.no_grad():
        torch.testing.assert_close(
            lift(image, features), official_forward(bare, image, features, 16)[0]
        )
    with pytest.raises(ValueError, match="in_channels is 384 in the file but 768"):
        load_lift_file(LiFT.from_preset("LiFT-S", 768), str(path))
    with pytest.raises(ValueError, match="arch.image_channels is 32 in the file but 64"):
        load_lift_file(LiFT.from_preset("LiFT-B", 384), str(path))


def test_official_file_as_lift_weights_of_the_backbone(tmp_path):
    """Stage two's path: ``lift_weights`` = an official file, LiFT taken from it when a ViT-only
    checkpoint is loaded into the +LiFT backbone."""
    from detectron2.modeling.backbone.vit import ViT

    from lift_det.modeling import ViTLiFT

    official = official_state(seed=4)
    torch.save(official, tmp_path / "lift.pth")
    args = dict(TINY_VIT, embed_dim=384, num_heads=6)
    args.pop("img_size")
    net = ViTLiFT(
        lift=LiFT.from_preset("LiFT-S", 384),
        lift_weights=str(tmp_path / "lift.pth"),
        freeze_lift=True,
        img_size=64,
        **args,
    )
    vit_only = ViT(img_size=64, **args).state_dict()
    net.load_state_dict(vit_only, strict=True)
    converted = convert_official_lift_state(official)
    for k, v in net.lift.state_dict().items():
        torch.testing.assert_close(v, converted[k], msg=k)


def test_not_the_official_layout_is_refused_by_name():
    state = official_state()
    state.pop("image_convs_2.1.running_var")
    state["up1.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="missing.*image_convs_2.1.running_var.*up1.extra"):
        convert_official_lift_state(state)
