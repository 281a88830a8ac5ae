"""LiFT-B / L / H pinned to their documented layout (the LiFT class docstring) by a functional
forward written here from the state dict, and LiFT-B's size to the paper's Appendix B ("a total
of 7M parameters" at ViT-B). Shapes and parameter counts alone do not notice a swapped
concatenation, an average pool for a max pool or a ReLU before its BatchNorm; values do."""

import pytest
import torch
import torch.nn.functional as F

from lift_det.modeling import LiFT

# the widths each preset documents: image branch, image blocks, fusion, decoder
LAYOUTS = {
    "LiFT-B": dict(in_channels=768, image=64, blocks=4, fuse=480, decoder=192),
    "LiFT-L": dict(in_channels=1024, image=64, blocks=4, fuse=640, decoder=256),
    "LiFT-H": dict(in_channels=1280, image=64, blocks=4, fuse=800, decoder=320),
}
BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default, which "BN" builds


def layout_shapes(in_channels, image, blocks, fuse, decoder):
    """{name: shape} of every tensor of the state dict, from the documented layout.

    ConvNormAct (3x3 conv without bias, BatchNorm, ReLU) is ``<name>.conv`` + ``<name>.norm_layer``.
    """
    shapes = {}

    def conv_bn(name, cin, cout):
        shapes[f"{name}.conv.weight"] = (cout, cin, 3, 3)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.norm_layer.{stat}"] = (cout,)
        shapes[f"{name}.norm_layer.num_batches_tracked"] = ()

    conv_bn("image_encoder.0", 3, image)  # stride 2
    conv_bn("image_encoder.1", image, image)  # stride 2
    for i in range(2, blocks - 1):  # stride 1
        conv_bn(f"image_encoder.{i}", image, image)
    conv_bn("image_down", image, image)
    conv_bn("fuse.0", in_channels + image, fuse)
    conv_bn("fuse.1", fuse, fuse)
    up = fuse // 2
    shapes["upsample.weight"] = (fuse, up, 2, 2)  # ConvTranspose2d: (in, out, k, k)
    shapes["upsample.bias"] = (up,)
    conv_bn("decoder.0", up + image, decoder)
    conv_bn("decoder.1", decoder, decoder)
    shapes["out_conv.weight"] = (in_channels, decoder, 1, 1)
    shapes["out_conv.bias"] = (in_channels,)
    return shapes


def randomized(preset: str, seed: int = 0) -> LiFT:
    """The preset in eval mode with every weight and BatchNorm statistic drawn from a seeded
    generator (fresh BN statistics are 0 / 1: they would hide a norm in the wrong place)."""
    lift = LiFT.from_preset(preset, LAYOUTS[preset]["in_channels"]).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in lift.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var") or name.endswith("norm_layer.weight"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(0.3 * torch.randn(t.shape, generator=g))
            else:  # conv weights: unit-variance outputs
                fan_in = t[0].numel() if "upsample" not in name else t.shape[0]
                t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)
    return lift


def reference_forward(sd, image, features):
    """The documented layout with torch.nn.functional, from the state dict ``sd``."""

    def conv_bn_relu(x, name, stride=1):
        x = F.conv2d(x, sd[f"{name}.conv.weight"], None, stride=stride, padding=1)
        n = f"{name}.norm_layer"
        x = F.batch_norm(
            x,
            sd[f"{n}.running_mean"],
            sd[f"{n}.running_var"],
            sd[f"{n}.weight"],
            sd[f"{n}.bias"],
            training=False,
            eps=BN_EPS,
        )
        return F.relu(x)

    h, w = features.shape[-2:]
    img = conv_bn_relu(image, "image_encoder.0", stride=2)
    img = conv_bn_relu(img, "image_encoder.1", stride=2)
    i = 2
    while f"image_encoder.{i}.conv.weight" in sd:
        img = conv_bn_relu(img, f"image_encoder.{i}")
        i += 1
    img_half = F.adaptive_max_pool2d(img, (2 * h, 2 * w))  # stride p/2
    img_full = conv_bn_relu(img_half, "image_down", stride=2)  # stride p
    x = torch.cat([features, img_full], dim=1)  # ViT features first
    x = conv_bn_relu(conv_bn_relu(x, "fuse.0"), "fuse.1")
    x = F.conv_transpose2d(x, sd["upsample.weight"], sd["upsample.bias"], stride=2)
    x = torch.cat([x, img_half], dim=1)  # upsampled features first
    x = conv_bn_relu(conv_bn_relu(x, "decoder.0"), "decoder.1")
    return F.conv2d(x, sd["out_conv.weight"], sd["out_conv.bias"])


@pytest.mark.parametrize("preset", sorted(LAYOUTS))
def test_state_dict_is_the_documented_layout(preset):
    lift = LiFT.from_preset(preset, LAYOUTS[preset]["in_channels"])
    got = {k: tuple(v.shape) for k, v in lift.state_dict().items()}
    assert got == layout_shapes(**LAYOUTS[preset])


@pytest.mark.parametrize("preset", sorted(LAYOUTS))
def test_forward_equals_the_documented_layout(preset):
    lift = randomized(preset)
    g = torch.Generator().manual_seed(1)
    # non-square, batch 2; per-pixel detail so that max- and average-pooling differ
    image = torch.randn(2, 3, 48, 64, generator=g)
    features = torch.randn(2, LAYOUTS[preset]["in_channels"], 3, 4, generator=g)
    with torch.no_grad():
        out = lift(image, features)
        ref = reference_forward(lift.state_dict(), image, features)
    assert out.shape == (2, LAYOUTS[preset]["in_channels"], 6, 8)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert ref.std() > 0.1  # a signal that the comparison can see


def test_lift_b_parameter_count_is_the_papers_7m():
    """Appendix B: "This larger LiFT module has a total of 7M parameters" (for ViT-B, 768
    channels). The exact count is the layout's (BatchNorm running statistics are buffers, not
    parameters); "7M" is that count rounded to the nearest million: within [6.5M, 7.5M)."""
    lift = LiFT.from_preset("LiFT-B", 768)
    n = sum(p.numel() for p in lift.parameters())
    image, fuse, dec, up, c = 64, 480, 192, 240, 768
    by_hand = (
        (3 * image * 9 + 2 * image)  # image_encoder.0: conv + BN weight/bias
        + 3 * (image * image * 9 + 2 * image)  # image_encoder.1, .2 and image_down
        + ((c + image) * fuse * 9 + 2 * fuse)  # fuse.0
        + (fuse * fuse * 9 + 2 * fuse)  # fuse.1
        + (fuse * up * 4 + up)  # upsample (2x2 transposed conv with bias)
        + ((up + image) * dec * 9 + 2 * dec)  # decoder.0
        + (dec * dec * 9 + 2 * dec)  # decoder.1
        + (dec * c + c)  # out_conv (1x1 with bias)
    )
    assert n == by_hand == 7_249_712
    assert 6.5e6 <= n < 7.5e6
