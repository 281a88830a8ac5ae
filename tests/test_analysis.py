"""lift_det.analysis (linear CKA, self-similarity, dense features) against independent
computations, and the tools built on it (lift_det/analysis/feature_model.py,
tools/visualize_features.py, tools/scale_invariance.py) on tiny inputs."""

import json
import math
import numpy as np
import os
import runpy
import pytest
import torch
from PIL import Image

from lift_det.analysis import (
    dense_features,
    feature_map_cka,
    linear_cka,
    query_to_grid,
    resize_features,
    self_similarity,
)
from lift_det.analysis.feature_model import (
    build_feature_model,
    default_image_path,
    load_feature_weights,
    native_image_size,
    prepare_image,
)
from lift_det.checkpoint import save_lift_file
from lift_det.model_zoo import get_config_file
from lift_det.modeling import vit_identity
from lift_det.utils import UserError

TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")


def _tool(name):
    return runpy.run_path(os.path.join(TOOLS, name), run_name="lift_det_test")


def _png(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_feature_model()


# --- linear CKA ---------------------------------------------------------------------------------


def test_cka_equals_the_gram_matrix_formula():
    # CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = X X^T, L = Y Y^T and the centering
    # matrix H (Kornblith et al. 2019, Eq. 3): n x n Gram matrices in numpy, not the code's
    # feature-space formula
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 7))
    y = x @ rng.normal(size=(7, 4)) + rng.normal(size=(50, 4))
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    expected = np.trace(k @ l_) / np.sqrt(np.trace(k @ k) * np.trace(l_ @ l_))
    assert 0.2 < expected < 0.95
    assert linear_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
        expected, rel=1e-10
    )
    assert linear_cka(torch.from_numpy(x).float(), torch.from_numpy(y).float()) == pytest.approx(
        expected, rel=1e-5
    )


def test_cka_of_a_representation_with_itself_is_one():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 12, generator=g, dtype=torch.float64)
    y = x @ torch.randn(12, 20, generator=g, dtype=torch.float64) + 0.5 * torch.randn(
        300, 20, generator=g, dtype=torch.float64
    )
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    reference = linear_cka(x, y)
    assert 0.1 < reference < 0.99
    assert linear_cka(x, y @ q) == pytest.approx(reference, rel=1e-9)
    assert linear_cka(7.5 * x, y) == pytest.approx(reference, rel=1e-9)
    assert linear_cka(x + 3.0, y - 1.0) == pytest.approx(reference, rel=1e-9)  # centered
    assert linear_cka(y, x) == pytest.approx(reference, rel=1e-9)  # symmetric


def test_cka_is_not_invariant_to_any_linear_map():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 8, generator=g, dtype=torch.float64)
    stretched = x * torch.tensor([100.0] + [1.0] * 7, dtype=torch.float64)
    assert linear_cka(x, stretched) < 0.5


def test_cka_of_independent_features_is_small():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(4000, 10, generator=g), torch.randn(4000, 10, generator=g)
    assert linear_cka(x, y) < 0.02


def test_cka_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(torch.randn(10, 3), torch.randn(11, 3))
    with pytest.raises(ValueError, match="2-D"):
        linear_cka(torch.randn(10, 3, 1), torch.randn(10, 3))


def test_feature_map_cka_compares_maps_of_different_grids():
    g = torch.Generator().manual_seed(3)
    smooth = resize_features(torch.randn(2, 6, 4, 4, generator=g), (16, 16))
    coarse = resize_features(smooth, (8, 8))
    assert feature_map_cka(smooth, coarse, (16, 16)) > 0.95
    other = torch.randn(2, 6, 8, 8, generator=g)
    assert feature_map_cka(smooth, other, (16, 16)) < 0.5


# --- self-similarity ----------------------------------------------------------------------------


def test_self_similarity_on_a_constructed_map():
    # left half: direction e0, right half: e1, bottom-right cell: -e0
    f = torch.zeros(3, 4, 6)
    f[0, :, :3] = 2.0
    f[1, :, 3:] = 0.5
    f[:, 3, 5] = torch.tensor([-1.0, 0.0, 0.0])
    sim = self_similarity(f, (1, 1))
    assert sim.shape == (4, 6)
    torch.testing.assert_close(sim[:, :3], torch.ones(4, 3))
    torch.testing.assert_close(sim[:3, 3:], torch.zeros(3, 3))
    assert sim[3, 5].item() == pytest.approx(-1.0)
    torch.testing.assert_close(self_similarity(f[None], (1, 1)), sim)
    with pytest.raises(ValueError, match="outside"):
        self_similarity(f, (4, 0))


def test_self_similarity_equals_cosines_by_hand():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    sim = self_similarity(f, (2, 1))
    q = f[:, 2, 1].numpy()
    for r in range(3):
        for c in range(4):
            v = f[:, r, c].numpy()
            expected = float(v @ q / np.sqrt((v @ v) * (q @ q)))
            assert sim[r, c].item() == pytest.approx(expected, abs=1e-6)


def test_query_to_grid():
    assert query_to_grid((0, 0), (64, 32), (4, 2)) == (0, 0)
    assert query_to_grid((31.9, 63.9), (64, 32), (4, 2)) == (3, 1)
    assert query_to_grid((16, 32), (64, 32), (8, 4)) == (4, 2)


def test_prepare_image_sizes_and_normalization():
    image = np.full((50, 100, 3), (123.675, 116.28, 103.53), dtype=np.float64).round()
    x, resized = prepare_image(image.astype(np.uint8), size=64, multiple=16)
    assert x.shape == (1, 3, 32, 64) and resized.shape == (32, 64, 3)
    assert x.abs().max() < 0.02  # the ImageNet mean maps to ~0


# --- features -----------------------------------------------------------------------------------


def test_feature_model_from_the_mini_stage_one_config(net):
    assert native_image_size(net) == 256
    assert net.lift.preset == "LiFT-S" and net.lift.in_channels == 192 and not net.training


@pytest.mark.parametrize(
    "config, preset, size",
    [
        ("mini/vitdet_mrcnn_lift.py", "LiFT-S", 256),
        ("mini/vitdet_mrcnn.py", "LiFT-S", 256),
        ("vitdet_mrcnn.py", "LiFT-B", 1024),  # a plain ViT-B: the preset of its width
        ("vitdet_mrcnn_lift.py", "LiFT-B", 1024),
        ("lift_stage1_coco.py", "LiFT-B", 1024),
    ],
)
def test_feature_model_from_other_configs(config, preset, size):
    net = build_feature_model(get_config_file(config))
    assert net.lift.preset == preset and native_image_size(net) == size


@pytest.mark.parametrize(
    "method, passes, grid",
    [("vit", 1, 4), ("bilinear", 1, 8), ("vit_2x", 1, 8), ("lift", 1, 8)]
    + [("bilinear", 2, 16), ("lift", 2, 16), ("lift", 3, 32)],
)
def test_dense_feature_grids(net, method, passes, grid):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = dense_features(net, x, method, num_passes=passes)
    assert out.shape == (1, 192, grid, grid)
    assert torch.isfinite(out).all()


def test_self_similarity_maps_labels_and_query(net):
    x = torch.randn(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    maps = _tool("visualize_features.py")["self_similarity_maps"](net, x, (24.0, 32.0), 2)
    labels = [label for label, _ in maps]
    assert labels == ["ViT", "ViT+bilinear", "ViT, 2x input", "ViT+LiFT-S", "ViT+2xLiFT-S"]
    assert [tuple(m.shape) for _, m in maps] == [(4, 3), (8, 6), (8, 6), (8, 6), (16, 12)]
    for _, m in maps:  # the query cell is the maximum, similarity 1
        assert m.max().item() == pytest.approx(1.0, abs=1e-5)


def test_load_feature_weights(tmp_path):
    torch.manual_seed(1)
    source = build_feature_model()
    lift_file = str(tmp_path / "lift_final.pth")
    save_lift_file(lift_file, source.lift, backbone=vit_identity(source))
    state = {f"backbone.net.{k}": v for k, v in source.state_dict().items()}
    detector = str(tmp_path / "detector.pth")
    torch.save({"model": {k: v for k, v in state.items() if ".lift." not in k}}, detector)

    torch.manual_seed(2)
    target = build_feature_model()
    assert load_feature_weights(target, detector, "") == {"vit": True, "lift": False}
    assert load_feature_weights(target, "", lift_file) == {"vit": False, "lift": True}
    for k, v in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[k], v)
    # the LiFT file given as --weights holds no ViT: refused (figures of a random ViT), by flag
    with pytest.raises(UserError, match="holds no ViT .a LiFT file goes to --lift-weights."):
        load_feature_weights(build_feature_model(), lift_file, "")


def test_load_stage_one_checkpoint(tmp_path):
    # LiFTDistiller's layout: the ViT at backbone.net.*, LiFT at lift.*
    torch.manual_seed(1)
    source = build_feature_model()
    state = {}
    for k, v in source.state_dict().items():
        state[k if k.startswith("lift.") else f"backbone.net.{k}"] = v
    path = str(tmp_path / "model_final.pth")
    torch.save({"model": state}, path)
    torch.manual_seed(2)
    target = build_feature_model()
    assert load_feature_weights(target, path) == {"vit": True, "lift": True}
    for k, v in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[k], v)


# --- tools --------------------------------------------------------------------------------------


def test_default_image_is_a_photo():
    assert os.path.isfile(default_image_path())


def test_visualize_features_writes_a_png(tmp_path):
    tool = _tool("visualize_features.py")
    out = str(tmp_path / "sim.png")
    tool["main"](
        tool["get_parser"]().parse_args(["--output", out, "--size", "64", "--passes", "3"])
    )
    pixels = _png(out)
    # 8 panels (image + 7 maps) on a 4-wide grid of 3-inch panels at 100 dpi
    assert pixels.shape[1] == 1200 and pixels.shape[0] > 500
    assert pixels.std() > 20


def test_scale_invariance_writes_png_and_json(tmp_path):
    rng = np.random.default_rng(0)
    image = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).resize((80, 80)).save(image)
    out = str(tmp_path / "cka.png")
    tool = _tool("scale_invariance.py")
    args = ["--output", out, "--images", str(image), "--size", "64", "--scales", "0.5", "1", "2"]
    tool["main"](tool["get_parser"]().parse_args(args))
    pixels = _png(out)
    assert pixels.shape[:2] == (720, 3 * 360) and pixels.std() > 20
    with open(str(tmp_path / "cka.json")) as f:
        data = json.load(f)
    assert data["scales"] == [0.5, 1.0, 2.0] and data["grid"] == [8, 8]
    assert set(data["cka"]) == {"ViT", "ViT+bilinear", "ViT+LiFT-S"}
    for matrix in data["cka"].values():
        assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
        assert all(0.0 <= v <= 1.0 + 1e-9 and math.isfinite(v) for row in matrix for v in row)
        assert [matrix[i][i] for i in range(3)] == [1.0, 1.0, 1.0]
    assert data["images_found"] == 1 and len(data["images"]) == 1


def test_scale_invariance_says_how_many_images_it_used(tmp_path):
    """Three images with --max-images 2: the figure's title says 2 of 3, the JSON names both."""
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((80, 80)).save(tmp_path / f"img{i}.png")
    tool = _tool("scale_invariance.py")
    args = [
        "--output",
        str(tmp_path / "cka.png"),
        "--images",
        str(tmp_path),
        "--size",
        "64",
        "--scales",
        "1",
        "2",
        "--max-images",
        "2",
    ]
    title = tool["main"](tool["get_parser"]().parse_args(args))
    assert "the first 2 of 3 images, --max-images 2" in title
    with open(str(tmp_path / "cka.json")) as f:
        data = json.load(f)
    assert data["images_found"] == 3 and len(data["images"]) == 2


def test_scale_invariance_reads_a_folders_image_files(tmp_path):
    """A folder's images are lift_det's image files (lift_det.data.IMAGE_EXTENSIONS), any case."""
    from lift_det.data import IMAGE_EXTENSIONS

    names = [f"img{i}{e.upper() if i % 2 else e}" for i, e in enumerate(IMAGE_EXTENSIONS)]
    for name in names + ["notes.txt", "labels.json"]:
        (tmp_path / name).write_bytes(b"")
    paths = _tool("scale_invariance.py")["image_paths"]([str(tmp_path)], limit=100)
    assert sorted(os.path.basename(p) for p in paths) == sorted(names)


def test_scale_cka_figure_shows_every_scale_in_a_range_that_shows_differences(tmp_path):
    """Five scales: a curve panel for each (none dropped), heatmaps coloured from the smallest
    value (rounded down to 0.05) to 1, not 0 to 1 where CKA values of 0.9+ look the same."""
    tool = _tool("scale_invariance.py")
    scales = [0.5, 0.75, 1.0, 1.5, 2.0]
    rng = np.random.default_rng(0)
    results = {}
    for method in ("ViT", "ViT+LiFT-S"):
        m = 0.93 + 0.07 * rng.random((5, 5))
        m = (m + m.T) / 2
        np.fill_diagonal(m, 1.0)
        results[method] = m.tolist()
    low = min(v for m in results.values() for row in m for v in row)
    drawn = tool["plot_scale_cka"](results, scales, str(tmp_path / "cka.png"))
    assert drawn["curves"] == scales and drawn["heatmaps"] == ["ViT", "ViT+LiFT-S"]
    assert drawn["color_range"] == (math.floor(low * 20) / 20, 1.0)
    assert 0.9 <= drawn["color_range"][0] <= low
    assert _png(tmp_path / "cka.png").shape[1] == 5 * 360  # five columns of panels


def test_figures_say_when_lift_is_undertrained(tmp_path):
    """A LiFT file marked undertrained (held-out cosine below bilinear's) is named in the
    titles of both feature figures, with its numbers."""
    torch.manual_seed(1)
    source = build_feature_model()
    lift_file = str(tmp_path / "lift_final.pth")
    quality = {"cos_lift": 0.812, "cos_bilinear": 0.845}
    save_lift_file(
        lift_file, source.lift, backbone=vit_identity(source), quality=quality, undertrained=True
    )
    vis = _tool("visualize_features.py")
    args = ["--output", str(tmp_path / "sim.png"), "--size", "64", "--lift-weights", lift_file]
    title = vis["main"](vis["get_parser"]().parse_args(args))
    assert "RANDOM weights: ViT" in title
    assert "LiFT UNDERTRAINED: held-out cosine 0.812 < bilinear 0.845" in title
    cka = _tool("scale_invariance.py")
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(image)
    args = ["--output", str(tmp_path / "cka.png"), "--images", str(image), "--size", "64"]
    args += ["--scales", "1", "2", "--lift-weights", lift_file]
    assert "LiFT UNDERTRAINED" in cka["main"](cka["get_parser"]().parse_args(args))
    save_lift_file(lift_file, source.lift, backbone=vit_identity(source), quality=quality)
    args = ["--output", str(tmp_path / "sim.png"), "--size", "64", "--lift-weights", lift_file]
    assert "UNDERTRAINED" not in vis["main"](vis["get_parser"]().parse_args(args))
