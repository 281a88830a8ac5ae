"""tools/benchmark.py's detectors at tiny sizes, in one run: the FLOPs of Mask / Cascade Mask R-CNN
with and without LiFT, and the timings (torch.utils.benchmark, interleaved) of inference with and
without LiFT and of one stage-one step against a frozen ViT-B forward; their tables and ratios.
Behaviour only: no timing is compared with a number."""

import json
import os
import runpy
import pytest

from conftest import one_torch_thread, shrunk_config_dir
from lift_det.benchmark import lift_cost

TOOL = os.path.join(os.path.dirname(__file__), "..", "tools", "benchmark.py")


@pytest.fixture(scope="module")
def timed(tmp_path_factory):
    """One run that counts and times the detectors and times stage one at 64 px, their ViT-B at 2
    blocks (through --config-dir); ViT-B and LiFT-B counted at 224 (test_benchmark.py counts them
    at 1024)."""
    tool = runpy.run_path(TOOL, run_name="lift_det_test")
    out = tmp_path_factory.mktemp("benchmark_detectors")
    names = [name for name, _ in lift_cost.DETECTORS.values()] + ["lift_stage1_coco.py"]
    configs = shrunk_config_dir(tmp_path_factory.mktemp("configs"), names)
    args = ["--device", "cpu", "--presets", "LiFT-B", "--image-size", "224"]
    args += ["--config-dir", configs, "--detector-size", "64", "--time-size", "64"]
    args += ["--repeats", "2", "--proposals", "20", "--detections", "5"]
    args += ["--json", str(out / "b.json"), "--markdown", str(out / "b.md")]
    with one_torch_thread():
        tool["main"](tool["get_parser"]().parse_args(args))
    with open(out / "b.json") as f, open(out / "b.md") as g:
        return json.load(f), g.read()


def test_detector_rows_and_ratios(timed):
    result, text = timed
    names = [r["name"] for r in result["rows"]]
    assert names[5:] == [  # after ViT-B, LiFT-B and the three controls
        "Mask R-CNN, ViTDet-B",
        "Mask R-CNN, ViTDet-B + LiFT-B, down",
        "Mask R-CNN, ViTDet-B + LiFT-B, stride 8",
        "Cascade Mask R-CNN, ViTDet-B",
        "Cascade Mask R-CNN, ViTDet-B + LiFT-B, down",
    ]
    rows = {r["name"]: r for r in result["rows"]}
    # LiFT adds its own parameters to the detector; in the down placement the ViT sees a quarter
    # of the pixels (fewer FLOPs than ViTDet), at stride 8 it sees them all (more)
    plain = rows["Mask R-CNN, ViTDet-B"]
    down, s8 = (rows[f"Mask R-CNN, ViTDet-B + LiFT-B, {p}"] for p in ("down", "stride 8"))
    assert down["params_M"] > plain["params_M"] and down["flops_G"] < plain["flops_G"]
    assert s8["params_M"] > plain["params_M"] and s8["flops_G"] > plain["flops_G"]
    for kind in ("mrcnn", "cascade"):
        lift, base = (
            rows[lift_cost.DETECTORS[f"{kind}_lift"][1]],
            rows[lift_cost.DETECTORS[kind][1]],
        )
        assert result["ratios"][f"flops {kind}_lift/{kind}"] == pytest.approx(
            lift["flops_G"] / base["flops_G"]
        )
    for name in names:
        assert f"| {name} |" in text


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
    for name in timings:
        assert f"| {name} | 64x64 |" in text
    assert "| time mrcnn_lift/mrcnn | 64x64 |" in text
