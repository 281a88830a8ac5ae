"""tools/benchmark.py's timings (torch.utils.benchmark, interleaved, in one run): inference with and
without LiFT and one stage-one step against a frozen ViT-B forward, at tiny sizes; their table
and ratios. Behaviour only: no timing is compared with a number."""

import json
import os
import runpy
import pytest

from conftest import shrunk_config_dir

TOOL = os.path.join(os.path.dirname(__file__), "..", "tools", "benchmark.py")


@pytest.fixture(scope="module")
def timed(tmp_path_factory):
    """One run that times the detectors and stage one at 64 px, their ViT-B at 2 blocks (through
    --config-dir; ViT-B and LiFT-B counted at 224, no detector FLOPs: test_benchmark.py counts
    them)."""
    tool = runpy.run_path(TOOL, run_name="lift_det_test")
    out = tmp_path_factory.mktemp("benchmark_timing")
    names = ["vitdet_mrcnn.py", "vitdet_mrcnn_lift_down.py", "lift_stage1_coco.py"]
    configs = shrunk_config_dir(tmp_path_factory.mktemp("configs"), names)
    args = [
        "--device",
        "cpu",
        "--presets",
        "LiFT-B",
        "--image-size",
        "224",
        "--config-dir",
        configs,
    ]
    args += ["--detector-size", "0", "--time-size", "64", "--repeats", "2"]
    args += ["--proposals", "20", "--detections", "5"]
    args += ["--json", str(out / "b.json"), "--markdown", str(out / "b.md")]
    tool["main"](tool["get_parser"]().parse_args(args))
    with open(out / "b.json") as f, open(out / "b.md") as g:
        return json.load(f), g.read()


def test_timings_and_their_ratios(timed):
    result, text = timed
    assert [t["name"] for t in result["timings"]] == [
        "Mask R-CNN, ViTDet-B",
        "Mask R-CNN, ViTDet-B + LiFT-B, down",
    ]
    for t in result["timings"]:  # --repeats 2: a median per repeat, and the peak memory
        assert len(t["times_s"]) == 2 and t["image_size"] == 64 and t["peak_memory_MiB"] > 0
    timings = {t["name"]: t["median_s"] for t in result["timings"]}
    ratio = timings["Mask R-CNN, ViTDet-B + LiFT-B, down"] / timings["Mask R-CNN, ViTDet-B"]
    assert result["ratios"]["time mrcnn_lift/mrcnn"] == pytest.approx(ratio)
    assert result["ratios"]["time stage-one step/frozen ViT-B forward"] > 0
    # no detector FLOPs were asked for: the component rows only
    assert [r["name"] for r in result["rows"]][:2] == ["ViT-B/16", "LiFT-B"]
    assert not any("Mask R-CNN" in r["name"] for r in result["rows"])
    for name in timings:
        assert f"| {name} | 64x64 |" in text
    assert "| time mrcnn_lift/mrcnn | 64x64 |" in text
