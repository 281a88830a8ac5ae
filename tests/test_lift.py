"""LiFT module: shapes, presets, recursion, size rules, bad input."""

import pytest
import torch

from lift_det.modeling import LIFT_PRESETS, BilinearUpsampler, LiFT, ResizeConvUpsampler


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
    assert set(LIFT_PRESETS) == {"LiFT-S", "LiFT-B"}


def test_recursive_passes_halve_stride():
    lift = LiFT.from_preset("LiFT-S", 16, patch_size=16).eval()
    img = torch.rand(1, 3, 64, 96)
    feats = torch.rand(1, 16, 4, 6)
    assert lift(img, feats, num_passes=2).shape == (1, 16, 16, 24)
    assert lift(img, feats, num_passes=3).shape == (1, 16, 32, 48)
    with pytest.raises(ValueError, match="num_passes"):
        lift(img, feats, num_passes=0)


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
