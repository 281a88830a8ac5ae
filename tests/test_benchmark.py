"""tools/benchmark.py: fvcore counts of known layers, the component table (ViT-B, LiFT-B and the
controls) and the README's promise (LiFT-B costs at most 10% of ViT-B's FLOPs at 1024x1024) as the
run counts it."""

import json
import os
import runpy
import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from conftest import one_torch_thread
from lift_det.benchmark import lift_cost
from lift_det.benchmark.costs import count_flops, detector_config
from lift_det.model_zoo import get_config_file
from lift_det.modeling import LIFT_PRESETS, build_upsampler

TOOL = os.path.join(os.path.dirname(__file__), "..", "tools", "benchmark.py")


@pytest.fixture(scope="module")
def tool():
    return runpy.run_path(TOOL, run_name="lift_det_test")


@pytest.fixture(scope="module")
def run(tool, tmp_path_factory):
    """One run: ViT-B, LiFT-B and the controls counted at 1024 (the README's size); no detectors
    and no timings (test_benchmark_detectors.py counts and times the detectors)."""
    out = tmp_path_factory.mktemp("benchmark")
    args = ["--device", "cpu", "--presets", "LiFT-B", "--image-size", "1024"]
    args += ["--detector-size", "0", "--time-size", "0"]
    args += ["--json", str(out / "b.json"), "--markdown", str(out / "b.md")]
    with one_torch_thread():
        tool["main"](tool["get_parser"]().parse_args(args))
    with open(out / "b.json") as f, open(out / "b.md") as g:
        return json.load(f), g.read()


def test_counts_of_known_layers():
    linear = nn.Linear(10, 20)
    from fvcore.nn import FlopCountAnalysis, parameter_count

    assert parameter_count(linear)[""] == 220
    assert count_flops(FlopCountAnalysis(linear, (torch.zeros(4, 10),))) == 4 * 10 * 20
    conv = nn.Conv2d(3, 8, 3)
    x = torch.zeros(1, 3, 16, 16)
    assert count_flops(FlopCountAnalysis(conv, (x,))) == 8 * 3 * 9 * 14 * 14


def test_detector_config_applies_overrides_then_its_own_settings():
    """A config's key=value overrides (a study's steps') reach the counted model; the counting
    settings are applied after them."""
    path = get_config_file("mini/vitdet_mrcnn_lift.py")
    plain = detector_config(path, size=384)
    model = detector_config(
        path,
        size=384,
        overrides=["model.roi_heads.box_head.fc_dims=[32]", "model.backbone.square_pad=64"],
    )
    assert plain.roi_heads.box_head.fc_dims != [32] and model.roi_heads.box_head.fc_dims == [32]
    assert model.backbone.square_pad == 384 and model.backbone.net.allow_random_lift is True


def test_vit_sizes_are_vitdets(tool):
    # upstream's projects/ViTDet/configs/COCO: global attention in blocks 2, 5, 8, 11 (B),
    # 5, 11, 17, 23 (L), 7, 15, 23, 31 (H)
    from detectron2 import model_zoo

    from lift_det.config import vitdet_vit_args

    for size, dim, depth, globals_ in [
        ("B", 768, 12, [2, 5, 8, 11]),
        ("L", 1024, 24, [5, 11, 17, 23]),
        ("H", 1280, 32, [7, 15, 23, 31]),
    ]:
        args = vitdet_vit_args(size)
        assert (args["embed_dim"], args["depth"]) == (dim, depth)
        assert [i for i in range(depth) if i not in args["window_block_indexes"]] == globals_
    # ViT-B is detectron2's own (the ViTDet model zoo config), argument for argument
    vit_b = model_zoo.get_config("common/models/mask_rcnn_vitdet.py").model.backbone.net
    assert {k: vit_b[k] for k in vitdet_vit_args("B")} == vitdet_vit_args("B")
    # the tool builds the ViTs of that table
    vit = lift_cost.build_vit("S", 224)
    assert [i for i, b in enumerate(vit.blocks) if b.window_size == 0] == [2, 5, 8, 11]
    assert vit.patch_embed.proj.out_channels == 384 and len(vit.blocks) == 12
    # its parameters and FLOPs counted block by block (the tool's way) are those of the whole ViT,
    # on any grid
    for size in (224, 256):
        x = torch.zeros(1, 3, size, size)
        whole = lift_cost.build_vit("S", 224)
        flops = count_flops(FlopCountAnalysis(whole, (x,)))
        params = sum(p.numel() for p in whole.parameters())
        assert lift_cost.count_vit("S", 224, x) == (params, flops)


def test_readme_promise_lift_b_flops_at_most_10_percent_of_vit_b(run):
    result, _ = run
    rows = {r["name"]: r for r in result["rows"]}
    vit, lift = rows["ViT-B/16"], rows["LiFT-B"]
    assert vit["image_size"] == lift["image_size"] == 1024
    assert lift["flops_G"] <= 0.10 * vit["flops_G"]
    assert result["ratios"]["flops LiFT-B/ViT-B"] == pytest.approx(lift["flops_G"] / vit["flops_G"])
    # the parameters are those of the modules themselves
    assert lift["params_M"] * 1e6 == sum(
        p.numel() for p in build_upsampler("LiFT-B", 768).parameters()
    )
    assert vit["params_M"] * 1e6 == pytest.approx(85.89e6, rel=1e-3)


def test_component_rows_and_controls(run):
    result, text = run
    names = [r["name"] for r in result["rows"]]
    assert names == [
        "ViT-B/16",
        "LiFT-B",
        "bilinear 2x (control)",
        "JBU 2x (control, FeatUp)",
        "attention 2x (control, JAFAR)",
    ]  # --detector-size 0 and --time-size 0: no detector rows, no timings
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["bilinear 2x (control)"]["params_M"] == 0
    # the learned controls: their own parameters; far fewer FLOPs than LiFT-B, more than bilinear
    for name in ("jbu", "attention"):
        label = lift_cost.CONTROLS[name][0]
        control = build_upsampler(name, 768)
        assert rows[label]["params_M"] * 1e6 == sum(p.numel() for p in control.parameters())
        assert rows["bilinear 2x (control)"]["flops_G"] < rows[label]["flops_G"]
        assert rows[label]["flops_G"] < 0.1 * rows["LiFT-B"]["flops_G"]
    assert result["timings"] == [] and not any(k.startswith("time") for k in result["ratios"])
    assert list(result["ratios"]) == ["flops LiFT-B/ViT-B"]
    for name in names:
        assert f"| {name} |" in text
    assert "| flops LiFT-B/ViT-B | 1024x1024 |" in text
    assert "FLOPs of LiFT-B by module (fvcore)" in text


def test_every_preset_is_listed_by_default(tool):
    from lift_det.model_zoo import CONFIG_DIR, get_config_file

    args = tool["get_parser"]().parse_args([])
    assert args.presets == list(LIFT_PRESETS)
    # the detectors are lift_det's configs (the model zoo's folder), wherever the tool runs
    assert args.config_dir == CONFIG_DIR
    path = get_config_file("vitdet_mrcnn.py")
    assert os.path.samefile(os.path.join(args.config_dir, "vitdet_mrcnn.py"), path)


def test_unknown_preset_is_refused(tool, tmp_path):
    args = tool["get_parser"]().parse_args(["--presets", "LiFT-X", "--json", str(tmp_path / "j")])
    with pytest.raises(ValueError, match="Unknown LiFT presets"):  # the tool's UserError
        tool["main"](args)
    assert not (tmp_path / "j").exists()


def test_stage1_ratio_restores_lift(tool):
    from detectron2.config import instantiate

    from lift_det.model_zoo import get_config

    cfg = get_config("mini/lift_stage1.py")
    cfg.model.square_pad = 128
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    before = {k: v.clone() for k, v in model.lift.state_dict().items()}
    batch = [{"image": torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8)} for _ in range(2)]
    ratio = lift_cost.measure_stage1_ratio(model, batch, repeats=2)
    assert ratio > 0 and model.training
    for k, v in model.lift.state_dict().items():
        torch.testing.assert_close(v, before[k])
