"""LiFT module: shapes, presets, recursion, size rules, bad input."""

import pytest
import torch

from lift_det.modeling import (
    LIFT_PRESETS,
    UPSAMPLER_NAMES,
    AttentionUpsampler,
    BilinearUpsampler,
    JBUUpsampler,
    LiFT,
    ResizeConvUpsampler,
    build_upsampler,
)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("patch", [8, 14, 16])
def test_output_shape(patch):
    lift = LiFT.from_preset("LiFT-S", 32, patch_size=patch).eval()
    img = torch.rand(2, 3, 6 * patch, 4 * patch)
    out = lift(img, torch.rand(2, 32, 6, 4))
    assert out.shape == (2, 32, 12, 8)


def test_presets_sizes():
    assert 1.1e6 < n_params(LiFT.from_preset("LiFT-S", 384)) < 1.3e6  # paper: 1.2M
    assert 6.5e6 <= n_params(LiFT.from_preset("LiFT-B", 768)) <= 7.5e6  # paper App. B: 7M
    assert set(LIFT_PRESETS) == {"LiFT-S", "LiFT-B", "LiFT-L", "LiFT-H"}


def test_wider_presets_follow_the_vit_width():
    """LiFT-L / LiFT-H: LiFT-B's layout with fusion and decoder widths scaled with the ViT."""
    b, l, h = (
        LiFT.from_preset(n, c) for n, c in [("LiFT-B", 768), ("LiFT-L", 1024), ("LiFT-H", 1280)]
    )
    assert n_params(b) < n_params(l) < n_params(h)
    for lift, c in [(l, 1024), (h, 1280)]:
        assert (
            lift.fuse[0].conv.in_channels == c + 64 and lift.fuse[0].conv.out_channels == c * 5 // 8
        )
        assert lift.decoder[1].conv.out_channels == c // 4 and lift.out_conv.out_channels == c
    assert n_params(l) < 0.05 * 304e6 and n_params(h) < 0.05 * 632e6  # small next to ViT-L / ViT-H


@pytest.mark.parametrize("name", UPSAMPLER_NAMES)
def test_build_upsampler_names(name):
    expected = {
        "bilinear": BilinearUpsampler,
        "resize_conv": ResizeConvUpsampler,
        "jbu": JBUUpsampler,
        "attention": AttentionUpsampler,
    }.get(name, LiFT)
    m = build_upsampler(name, 32, patch_size=8)
    assert type(m) is expected and m.in_channels == 32 and m.patch_size == 8
    # the learned controls, like the presets, record the name that builds them
    guided = name in LIFT_PRESETS or expected in (JBUUpsampler, AttentionUpsampler)
    assert m.preset == (name if guided else expected.__name__)


def test_build_upsampler_bad_names_and_options():
    with pytest.raises(
        ValueError, match="Unknown upsampler 'nearest'; valid names: LiFT-S, .*bilinear"
    ):
        build_upsampler("nearest", 32)
    assert build_upsampler("LiFT-S", 64, norm="GN").decoder[0].norm_layer.__class__.__name__ == (
        "GroupNorm"
    )
    with pytest.raises(ValueError, match="'bilinear' control takes no options"):
        build_upsampler("bilinear", 32, norm="BN")
    # a misspelled option is named with the valid ones, for presets and learned upsamplers alike
    for name, typo, valid in (
        ("LiFT-S", "nrom", "'norm'"),
        ("jbu", "kernal_size", "'kernel_size'"),
        ("attention", "window", "'window_size'"),
    ):
        with pytest.raises(
            ValueError, match=rf"Unknown option\(s\) \['{typo}'\] for the '{name}'.*{valid}"
        ):
            build_upsampler(name, 32, **{typo: 3})


def test_bilinear_control_hand_computed():
    """2x2 -> 4x4, align_corners=False: source positions -0.25 (clamped), 0.25, 0.75, 1.25."""
    w = torch.tensor([0.0, 0.25, 0.75, 1.0])  # weight of the second row / column
    feats = torch.tensor([[0.0, 4.0], [8.0, 12.0]]).view(1, 1, 2, 2)
    expected = 8.0 * w[:, None] + 4.0 * w[None, :]
    out = BilinearUpsampler(1)(torch.rand(1, 3, 32, 32), feats)
    torch.testing.assert_close(out[0, 0], expected)


def test_recursive_passes_halve_stride():
    lift = LiFT.from_preset("LiFT-S", 16, patch_size=16).eval()
    img = torch.rand(1, 3, 64, 96)
    feats = torch.rand(1, 16, 4, 6)
    assert lift(img, feats, num_passes=2).shape == (1, 16, 16, 24)
    assert lift(img, feats, num_passes=3).shape == (1, 16, 32, 48)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="num_passes must be an integer >= 1"):
            lift(img, feats, num_passes=bad)


def test_image_not_multiple_of_patch_follows_vit_rule():
    lift = LiFT.from_preset("LiFT-S", 16, patch_size=16).eval()
    img = torch.rand(1, 3, 70, 90)
    # detectron2/timm floor: 70 // 16 = 4, 90 // 16 = 5; a padding ViT gives 5 x 6
    assert lift(img, torch.rand(1, 16, 4, 5)).shape == (1, 16, 8, 10)
    assert lift(img, torch.rand(1, 16, 5, 6)).shape == (1, 16, 10, 12)
    with pytest.raises(ValueError, match=r"Image size 70x90 and feature size 3x5"):
        lift(img, torch.rand(1, 16, 3, 5))


def test_bad_inputs_name_the_sizes():
    lift = LiFT.from_preset("LiFT-S", 16, patch_size=16)
    with pytest.raises(ValueError, match="built for 16-channel features, got 8"):
        lift(torch.rand(1, 3, 64, 64), torch.rand(1, 8, 4, 4))
    with pytest.raises(ValueError, match="4-D"):
        lift(torch.rand(3, 64, 64), torch.rand(1, 16, 4, 4))
    with pytest.raises(ValueError, match="3-channel"):
        lift(torch.rand(1, 1, 64, 64), torch.rand(1, 16, 4, 4))
    with pytest.raises(ValueError, match="Batch sizes differ"):
        lift(torch.rand(2, 3, 64, 64), torch.rand(1, 16, 4, 4))
    with pytest.raises(NotImplementedError, match="patch_size=12"):
        LiFT(16, patch_size=12)
    with pytest.raises(KeyError, match="LiFT-XL"):
        LiFT.from_preset("LiFT-XL", 16)


@pytest.mark.parametrize("norm", ["BN", "FrozenBN", "GN", ""])
def test_norm_choices(norm):
    lift = LiFT.from_preset("LiFT-S", 64, norm=norm).train()  # GN: widths multiple of 32
    out = lift(torch.rand(2, 3, 64, 64), torch.rand(2, 64, 4, 4))
    out.mean().backward()
    assert torch.isfinite(out).all()


def test_uses_image_detail():
    """LiFT's output depends on the image, the bilinear control's does not."""
    lift = LiFT.from_preset("LiFT-S", 16).eval()
    feats = torch.rand(1, 16, 4, 4)
    a, b = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    assert not torch.allclose(lift(a, feats), lift(b, feats))
    bl = BilinearUpsampler(16)
    torch.testing.assert_close(bl(a, feats), bl(b, feats))


def test_controls_start_equal():
    """The resize-conv control starts as exact bilinear upsampling (zero-initialized conv)."""
    feats = torch.rand(2, 16, 4, 5)
    img = torch.rand(2, 3, 64, 80)
    torch.testing.assert_close(
        ResizeConvUpsampler(16)(img, feats), BilinearUpsampler(16)(img, feats)
    )
    assert BilinearUpsampler(16)(img, feats, num_passes=2).shape == (2, 16, 16, 20)


def test_no_parameter_named_like_mae_keys():
    """detectron2's matching heuristics load a checkpoint key into any model key ending with it."""
    mae_suffixes = [
        "norm.weight",
        "norm.bias",
        "proj.weight",
        "proj.bias",
        "fc1.weight",
        "fc2.weight",
        "qkv.weight",
        "head.weight",
        "pos_embed",
        "cls_token",
    ]
    for name in LiFT.from_preset("LiFT-B", 768).state_dict():
        full = "backbone.net.lift." + name
        assert not any(full.endswith("." + s) for s in mae_suffixes), name
