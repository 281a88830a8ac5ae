"""The image-guided learned upsamplers ("jbu", "attention"): shapes, their window sums checked
against a per-pixel reference, locality, gradients in stage two, export, building by name and by
yacs, and their LiFT files from stage one (the CLI) into stage two."""

import io
import math
import os
import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate

from conftest import load_config, load_tool
from lift_det.checkpoint import save_lift_file
from lift_det.engine import parse_args
from lift_det.model_zoo import get_config_file
from lift_det.modeling import (
    AttentionUpsampler,
    JBUUpsampler,
    ViTLiFT,
    build_upsampler,
    vit_identity,
)

NAMES = ["jbu", "attention"]
KINDS = {"jbu": JBUUpsampler, "attention": AttentionUpsampler}
# configs/mini/: stage one, stage two
CONFIGS = {
    "jbu": ("lift_stage1_jbu", "vitdet_mrcnn_jbu"),
    "attention": ("lift_stage1_attn", "vitdet_mrcnn_attn"),
}


def randomized(name, channels=16, patch_size=16, **kwargs):
    """The upsampler with random weights (not its bilinear-like initialization)."""
    torch.manual_seed(0)
    m = build_upsampler(name, channels, patch_size, **kwargs).eval()
    for p in m.parameters():
        p.data.normal_(0, 0.1)
    return m


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("patch", [14, 16])
def test_shapes_two_x_per_pass(name, patch):
    m = randomized(name, patch_size=patch)
    image, features = torch.rand(2, 3, 6 * patch, 4 * patch), torch.rand(2, 16, 6, 4)
    assert m(image, features).shape == (2, 16, 12, 8)
    assert m(image, features, num_passes=2).shape == (2, 16, 24, 16)
    # a ViT that floors (image 1 px larger) or pads (1 px smaller) gives the same grid
    assert m(image[..., :-1, :-1], features).shape == (2, 16, 12, 8)
    larger = torch.nn.functional.pad(image, (0, 5, 0, 3), value=9.0)  # cropped away
    for passes in (1, 2):  # 14 / 4 = 3.5 px per output cell in the second pass
        torch.testing.assert_close(m(larger, features, passes), m(image, features, passes))


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_are_refused(name):
    m = build_upsampler(name, 16)
    image, features = torch.rand(1, 3, 64, 64), torch.rand(1, 16, 4, 4)
    with pytest.raises(ValueError, match=r"features of shape \(B,16,h,w\)"):
        m(image, torch.rand(1, 8, 4, 4))
    with pytest.raises(ValueError, match=r"an image of shape \(2,3,H,W\)"):
        m(image, torch.rand(2, 16, 4, 4))
    with pytest.raises(ValueError, match="Image size 64x64 and feature size 8x8"):
        m(image, torch.rand(1, 16, 8, 8))
    with pytest.raises(ValueError, match="num_passes must be an integer >= 1"):
        m(image, features, num_passes=0)
    with pytest.raises(ValueError, match="positive odd"):
        build_upsampler(name, 16, **{"kernel_size" if name == "jbu" else "window_size": 4})


def reference_pixel(m, image, features, y, x):
    """Output pixel (y, x) of one pass from the papers' formulas, one window cell at a time."""
    k, (h, w), p = m.kernel_size, features.shape[-2:], m.patch_size
    guide = torch.nn.functional.avg_pool2d(image, p // 2)  # (1, 3, 2h, 2w)
    i, j, a, b = y // 2, x // 2, y % 2, x % 2
    cells = [(di, dj) for di in range(-(k // 2), k // 2 + 1) for dj in range(-(k // 2), k // 2 + 1)]
    if isinstance(m, JBUUpsampler):
        g = m.guidance(guide)[0]
        low = torch.nn.functional.avg_pool2d(g[None], 2)[0]
        cos = torch.nn.functional.cosine_similarity
        sigma, t = m.log_sigma.exp(), m.log_temperature.exp()
    else:
        enc = m.image_encoder(guide)
        q = m.query_conv(enc)[0, :, y, x]
        normed = torch.nn.functional.layer_norm(features.permute(0, 2, 3, 1), (m.in_channels,))
        keys = m.key_conv(normed.permute(0, 3, 1, 2)) + m.key_image_conv(
            torch.nn.functional.avg_pool2d(enc, 2)
        )
    logits, values = [], []
    for n, (di, dj) in enumerate(cells):
        ni, nj = min(max(i + di, 0), h - 1), min(max(j + dj, 0), w - 1)  # edge cells repeat
        values.append(features[0, :, ni, nj])
        if isinstance(m, JBUUpsampler):
            # output pixel (y, x) lies at cell (i - 1/4 + a/2, j - 1/4 + b/2)
            d2 = (di - (a / 2 - 0.25)) ** 2 + (dj - (b / 2 - 0.25)) ** 2
            logits.append(t * cos(g[:, y, x], low[:, ni, nj], dim=0) - d2 / (2 * sigma**2))
        else:
            dot = q @ keys[0, :, ni, nj] / math.sqrt(q.numel())
            logits.append(dot + m.position_bias[2 * a + b, n])
    weights = torch.softmax(torch.stack(logits), dim=0)
    return weights @ torch.stack(values), weights


@pytest.mark.parametrize("name", NAMES)
def test_each_pixel_is_the_papers_window_sum(name):
    """Against a per-pixel reference: every sub-pixel phase, corners and edges (where cells
    repeat), the window's cell order; the weights are a softmax (>= 0, sum 1)."""
    m = randomized(name, kernel_size=5) if name == "jbu" else randomized(name, window_size=5)
    image, features = torch.randn(1, 3, 96, 80), torch.randn(1, 16, 6, 5)
    with torch.no_grad():
        out = m(image, features)
        for y, x in [(0, 0), (0, 1), (1, 0), (1, 1), (11, 9), (5, 6), (6, 3), (10, 0)]:
            expected, weights = reference_pixel(m, image, features, y, x)
            torch.testing.assert_close(out[0, :, y, x], expected, rtol=1e-4, atol=1e-5)
            assert (weights >= 0).all() and torch.isclose(weights.sum(), torch.tensor(1.0))


@pytest.mark.parametrize("name", NAMES)
def test_a_constant_feature_map_is_reproduced(name):
    """Weights that sum to 1 over the window, edges included: a constant per channel comes out
    unchanged, whatever the image and the weights."""
    m = randomized(name)
    features = torch.randn(2, 16, 1, 1).expand(2, 16, 5, 7).contiguous()
    with torch.no_grad():
        out = m(torch.randn(2, 3, 80, 112), features, num_passes=2)
    torch.testing.assert_close(out, features[:, :, :1, :1].expand_as(out), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_output_sees_only_its_window(name):
    """Output pixel (5, 6) is at cell (2, 3): a 3x3 window holds cells 1-3 x 2-4. A feature
    outside leaves it unchanged (keys and values are per cell), one inside changes it."""
    m = randomized(name, kernel_size=3) if name == "jbu" else randomized(name, window_size=3)
    image, features = torch.randn(1, 3, 96, 96), torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        out = m(image, features)[0, :, 5, 6]
        for cell, inside in [((0, 3), False), ((2, 5), False), ((4, 4), False), ((1, 2), True)]:
            changed = features.clone()
            changed[0, :, cell[0], cell[1]] += 10.0
            moved = (m(image, changed)[0, :, 5, 6] - out).abs().max()
            assert (moved > 1e-3) if inside else (moved == 0), (cell, moved)


@pytest.mark.parametrize("name", NAMES)
def test_starts_close_to_bilinear(name):
    """The documented initialization: a Gaussian of the distance (sigma = 0.5 cells)."""
    m = build_upsampler(name, 16).eval()
    smooth = torch.nn.functional.interpolate(torch.randn(1, 16, 3, 3), size=(8, 8), mode="bicubic")
    bilinear = torch.nn.functional.interpolate(smooth, scale_factor=2.0, mode="bilinear")
    with torch.no_grad():
        out = m(torch.randn(1, 3, 128, 128), smooth)
    assert (out - bilinear).norm() < 0.05 * bilinear.norm()


def tiny_vit_lift(name, **kwargs):
    from conftest import TINY_VIT, vitdet_vit_kwargs

    return ViTLiFT(lift=build_upsampler(name, 64), **vitdet_vit_kwargs(**TINY_VIT), **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_upsampler_not_the_frozen_vit(name):
    net = tiny_vit_lift(name, freeze_vit=True).train()
    for p in net.lift.parameters():  # the attention's zero query would leave its keys no gradient
        p.data.normal_(0, 0.1)
    net(torch.rand(2, 3, 128, 128))["last_feat"].square().mean().backward()
    for k, p in net.lift.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, k
    assert all(p.grad is None for k, p in net.named_parameters() if not k.startswith("lift."))
    frozen = tiny_vit_lift(name, freeze_vit=True, freeze_lift=True, allow_random_lift=True)
    assert not any(p.requires_grad for p in frozen.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_trace_and_onnx_equal_eager(name, tmp_path):
    m = randomized(name)
    image, features = torch.rand(1, 3, 128, 96), torch.rand(1, 16, 8, 6)
    with torch.no_grad():
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.trace(m, (image, features)), buffer)
        buffer.seek(0)
        traced = torch.jit.load(buffer)
        image, features = torch.rand(1, 3, 128, 96), torch.rand(1, 16, 8, 6)  # new inputs
        expected = m(image, features)
        torch.testing.assert_close(traced(image, features), expected)
    onnxruntime = pytest.importorskip("onnxruntime")
    path = str(tmp_path / f"{name}.onnx")
    torch.onnx.export(m, (image, features), path, input_names=["image", "features"], dynamo=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"image": image.numpy(), "features": features.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-4, atol=1e-4)


def test_build_by_name_with_options_and_by_yacs():
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    from lift_det.config import add_lift_config

    jbu = build_upsampler("jbu", 32, 8, kernel_size=7, guidance_channels=8)
    assert type(jbu) is JBUUpsampler and jbu.preset == "jbu" and jbu.kernel_size == 7
    assert jbu.arch == {"kernel_size": 7, "guidance_channels": 8} and jbu.patch_size == 8
    attn = build_upsampler("attention", 32, window_size=5, key_channels=16)
    assert type(attn) is AttentionUpsampler and attn.kernel_size == 5
    assert attn.key_conv.out_channels == 16 and attn.position_bias.shape == (4, 25)
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['norm'\] for the 'jbu'"):
        build_upsampler("jbu", 32, norm="BN")
    for name in NAMES:
        cfg = add_lift_config(get_cfg())
        cfg.MODEL.BACKBONE.NAME = "build_vit_lift_backbone"
        c = cfg.MODEL.VIT_LIFT
        c.IMG_SIZE, c.EMBED_DIM, c.DEPTH, c.NUM_HEADS, c.WINDOW_SIZE = 128, 64, 2, 2, 4
        c.WINDOW_BLOCK_INDEXES, c.UPSAMPLER, c.FREEZE_LIFT = [0], name, True
        bb = build_backbone(cfg)
        assert type(bb.net.lift) is KINDS[name]
        feats = bb.eval()(torch.rand(1, 3, 128, 128))
        assert feats["p2"].shape == (1, 256, 32, 32) and feats["p6"].shape == (1, 256, 2, 2)


def test_parameters_are_few():
    """Well under LiFT-S (1.2M at 384 channels)."""
    for channels in (192, 384):
        assert sum(p.numel() for p in build_upsampler("jbu", channels).parameters()) < 5e3
        assert sum(p.numel() for p in build_upsampler("attention", channels).parameters()) < 1e5


def stage_two(name, lift_weights, **lift_options):
    """The mini stage-two config of ``name`` with the tiny ViT (conftest.load_config)."""
    cfg = load_config(f"mini/{CONFIGS[name][1]}")
    cfg.model.backbone.net.lift_weights = lift_weights
    cfg.model.backbone.net.lift.update(lift_options)
    return instantiate(cfg.model)


@pytest.mark.parametrize("name", NAMES)
def test_lift_file_round_trip_and_refusals(name, tmp_path):
    """Written by save_lift_file (stage one's writer), read through lift_weights when a ViT
    checkpoint is loaded; the other upsampler or another window refuses it."""
    path = str(tmp_path / "lift_final.pth")
    model = stage_two(name, path)
    net = model.backbone.net
    trained = randomized(name, 64)
    save_lift_file(path, trained, backbone=vit_identity(net), iteration=10)
    vit = {k: v for k, v in model.state_dict().items() if ".lift." not in k}
    torch.save({"model": vit}, tmp_path / "vit.pth")
    DetectionCheckpointer(model).load(str(tmp_path / "vit.pth"))
    x = torch.rand(1, 3, 128, 128)
    # the half placement: the ViT and the upsampler see the antialiased half image
    half = torch.nn.functional.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x)["last_feat"], trained(half, net.vit_forward(half)))
    assert not any(p.requires_grad for p in net.parameters())  # frozen like LiFT
    other = stage_two(next(n for n in NAMES if n != name), path)
    with pytest.raises(ValueError, match=f"module class is '{type(trained).__name__}' in the"):
        DetectionCheckpointer(other).load(str(tmp_path / "vit.pth"))
    option = "kernel_size" if name == "jbu" else "window_size"
    wider = stage_two(name, path, **{option: 7})
    with pytest.raises(ValueError, match=f"arch.{option} is [35] in the file but 7"):
        DetectionCheckpointer(wider).load(str(tmp_path / "vit.pth"))


@pytest.mark.parametrize("name", NAMES)
def test_stage_one_from_the_cli_into_stage_two(name, small_mini, tmp_path):
    """tools/train_net.py with the stage-one config (2 iterations, 128 px) writes the upsampler's
    LiFT file; the stage-two config loads it through lift_weights and gives its outputs."""
    out = str(tmp_path / "stage1")
    tool = load_tool("train_net")
    tool.main(
        parse_args(
            ["--config-file", get_config_file(f"mini/{CONFIGS[name][0]}.py")]
            + ["dataloader.train.total_batch_size=2", "model.square_pad=128"]
            + ["train.max_iter=2", "train.eval_period=0", f"train.output_dir={out}"]
        )
    )
    data = torch.load(os.path.join(out, "lift_final.pth"), weights_only=False)
    meta = data["lift_det"]
    assert meta["class"] == KINDS[name].__name__ and meta["preset"] == name
    assert meta["in_channels"] == 192 and meta["iteration"] == 2
    stage1 = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)["model"]
    cfg = load_config(f"mini/{CONFIGS[name][1]}", tiny=False)
    cfg.model.backbone.net.lift_weights = os.path.join(out, "lift_final.pth")
    model = instantiate(cfg.model)
    # the teacher's weights (stage one's frozen ViT, same names) as the detector's ViT
    vit = {k: v for k, v in stage1.items() if k.startswith("backbone.net.")}
    torch.save({"model": vit}, tmp_path / "vit.pth")
    DetectionCheckpointer(model).load(str(tmp_path / "vit.pth"))
    lift = model.backbone.net.lift
    for k, v in lift.state_dict().items():
        assert torch.equal(v, stage1[f"lift.{k}"]), k
    initial = build_upsampler(name, 192).state_dict()
    assert any(not torch.equal(v, initial[k]) for k, v in lift.state_dict().items())  # trained
