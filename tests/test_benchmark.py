"""Tests of lift_det.analysis.flops and tools/benchmark.py: the table's shape, never its speed."""

import pytest
import torch
from torch import nn

import json
import math
import os
import runpy
from lift_det.analysis.flops import (
    flop_count,
    flop_count_meta,
    paired_ratio,
    parameter_count,
    time_interleaved,
)

TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")
ROWS = [
    "ViT-B/16 (ViTDet)",
    "LiFT-B",
    "bilinear 2x (control)",
    "ViT-B/16 at 2048x2048",
    "Backbone: ViT + pyramid (ViTDet)",
    "Backbone: ViT + LiFT-B + pyramid",
    "Backbone: ViT + bilinear + pyramid (control)",
    "Mask R-CNN, ViTDet-B",
    "Mask R-CNN, ViTDet-B + LiFT-B",
    "Cascade Mask R-CNN, ViTDet-B",
    "Cascade Mask R-CNN, ViTDet-B + LiFT-B",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One run of tools/benchmark.py --tiny (about a minute on 2 CPU cores)."""
    out = tmp_path_factory.mktemp("benchmark")
    json_path, md_path = str(out / "bench.json"), str(out / "bench.md")
    tool = runpy.run_path(os.path.join(TOOLS, "benchmark.py"), run_name="lift_det_test")
    args = ["--tiny", "--device", "cpu", "--json", json_path, "--markdown", md_path]
    tool["main"](tool["get_parser"]().parse_args(args))
    with open(json_path) as f, open(md_path) as g:
        return json.load(f), g.read()


def test_parameter_and_flop_counts_of_known_layers():
    linear = nn.Linear(10, 20)
    assert parameter_count(linear) == 220
    total, by_module = flop_count(linear, (torch.zeros(4, 10),))
    assert total == 4 * 10 * 20 and by_module[""] == total
    conv = nn.Conv2d(3, 8, 3)
    x = torch.zeros(1, 3, 16, 16)
    assert flop_count(conv, (x,))[0] == 8 * 3 * 9 * 14 * 14
    assert flop_count_meta(conv, (x,)) == 8 * 3 * 9 * 14 * 14


def test_time_interleaved_alternates_order():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times, peaks = time_interleaved(fns, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert set(peaks) == {"a", "b"}


def test_paired_ratio_is_the_median_of_per_repeat_ratios():
    # a slow second repeat (a busy machine) slows both calls alike
    assert paired_ratio([1.1, 2.2, 1.0], [1.0, 2.0, 1.0]) == pytest.approx(1.1)
    with pytest.raises(ValueError, match="paired"):
        paired_ratio([1.0], [1.0, 2.0])


def test_benchmark_json(tiny_run):
    result, _ = tiny_run
    for key in ("lift_flops_ratio", "inference_time_ratio", "stage1_step_ratio"):
        assert isinstance(result[key], float) and math.isfinite(result[key]) and result[key] > 0
    assert result["lift_flops_ratio_image_size"] == [1024, 1024]
    assert result["timing_image_size"] == [128, 128] and result["mode"] == "tiny"
    assert result["device"] and result["torch"] == torch.__version__
    assert [r["name"] for r in result["rows"]] == ROWS
    rows = {r["name"]: r for r in result["rows"]}
    vit, lift = rows["ViT-B/16 (ViTDet)"], rows["LiFT-B"]
    assert vit["flops_image_size"] == lift["flops_image_size"] == 1024
    assert result["lift_flops_ratio"] == pytest.approx(lift["flops_G"] / vit["flops_G"])
    assert rows["bilinear 2x (control)"]["params_M"] == 0
    assert set(result["goals"]) == {"lift_flops_ratio", "inference_time_ratio", "stage1_step_ratio"}
    assert {t["name"] for t in result["timings"]} >= {
        "Mask R-CNN inference",
        "Mask R-CNN + LiFT-B",
        "Stage-one step / frozen-ViT forward",
    }


def test_benchmark_markdown(tiny_run):
    _, text = tiny_run
    for name in ROWS:
        assert f"| {name} |" in text
    assert "| LiFT-B / ViT-B FLOPs (1024x1024) |" in text
    assert "Mask R-CNN inference time, with / without LiFT" in text
    assert "Stage-one step / one frozen-ViT forward" in text
    assert "| Mask R-CNN + LiFT-B | 128x128 |" in text
    assert "skipped in tiny mode" in text  # the ViT at 2048 is not timed in tiny mode
