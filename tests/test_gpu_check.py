"""tools/gpu_check.py --toy: one run from empty folders (the GPU check's code paths on a CPU) and
its report: keys, provenance, losses, export, LiFT files, the md being the JSON."""

import contextlib
import glob
import io
import itertools
import json
import math
import os
import subprocess
from types import SimpleNamespace
import pytest

from conftest import CPU_ENV, REPO, load_tool, tool_python
from lift_det.benchmark import gpu_check, gpu_report
from lift_det.benchmark.costs import time_interleaved

update_readme = load_tool("update_readme")


@pytest.fixture(scope="module")
def tool():
    return load_tool("gpu_check")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    cwd, out = tmp_path_factory.mktemp("cwd"), tmp_path_factory.mktemp("gpu")
    env = dict(os.environ, **CPU_ENV)  # one thread, as the other tools' runs here
    env.pop("LIFT_DET_MINI_ROOT", None)
    cmd = [tool_python(), os.path.join(REPO, "tools", "gpu_check.py"), "--toy"]
    run = subprocess.run(
        cmd + ["--output-dir", str(out)], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (path,) = glob.glob(str(out / "*.json"))
    with open(path) as f:
        result = json.load(f)
    with open(path[: -len(".json")] + ".md") as f:
        text = f.read()
    assert os.listdir(cwd) == []  # nothing written outside --output-dir (mini data in a temp dir)
    return result, text, os.path.basename(path)


def test_keys_and_provenance(report):
    result, _, name = report
    assert result["toy"] is True and name == result["device_slug"] + ".json"
    for key in update_readme.PROVENANCE + ("device", "cuda", "amp_dtype", "wall_s", "budget_s"):
        assert result[key], key
    assert result["command"].startswith("tools/gpu_check.py --toy")
    assert result["amp_dtype"] == "bfloat16"
    for key in ("inference", "stage_one", "stage_two", "correctness", "vit_sizes", "skipped"):
        assert key in result
    assert [s["what"] for s in result["skipped"]] == ["ViT-L / ViT-H rows"]


def _falling(losses):
    half = len(losses) // 2
    return sum(losses[-half:]) / half < sum(losses[:half]) / half


def test_losses_are_finite_and_falling(report):
    c = report[0]["correctness"]
    for run in (c["stage_one"]["fp32"], c["stage_one"]["amp"], c["stage_two"]):
        assert len(run["losses"]) == run["iterations"] >= 4
        assert all(math.isfinite(v) for v in run["losses"])
        assert run["finite"] and run["falling"] and _falling(run["losses"])
    # the same seed and batch: AMP's first loss is fp32's up to bf16 rounding
    fp32, amp = c["stage_one"]["fp32"]["losses"], c["stage_one"]["amp"]["losses"]
    assert amp[0] == pytest.approx(fp32[0], rel=0.02)


def test_amp_and_fp32_lift_files_alike_and_export_equal(report):
    c = report[0]["correctness"]
    assert c["stage_one"]["lift_file"]["same_format"] and c["stage_one"]["lift_file"]["tensors"]
    assert c["stage_one"]["lift_file"]["differences"] == []
    assert [e["attn_impl"] for e in c["export"]] == ["eager", "sdpa"]
    for e in c["export"]:
        assert e["equal"] and e["detections"] > 0
        assert max(e["max_abs_diff"].values()) < 1e-3


def test_measurements_cover_the_grid(report):
    result = report[0]
    rows = result["inference"]["rows"]
    grid = {(r["model"], r["part"], r["batch"], r["attn_impl"], r["precision"]) for r in rows}
    # models (plain, down, stride 8) x batches x attentions x (the detector at 2 precisions + its
    # backbone at AMP)
    assert len(grid) == len(rows) == 3 * 2 * 2 * 3
    assert {(r["part"], r["precision"]) for r in rows} == {
        ("detector", "fp32"),
        ("detector", "amp"),
        ("backbone", "amp"),
    }
    assert all(r["median_s"] > 0 and r["peak_memory_MiB"] > 0 and r["runs"] >= 2 for r in rows)
    for r in rows:  # each detector timed twice per setting: the mean, and the spread of the two
        a, b = r["repeats_s"]
        assert r["median_s"] == pytest.approx((a + b) / 2)
        assert r["spread"] == pytest.approx(abs(a - b) / ((a + b) / 2))
    ratios = result["inference"]["ratios"]
    assert len(ratios["+LiFT / plain time"]) == 2 * 12 and len(ratios["sdpa / eager time"]) == 18
    one = ratios["+LiFT / plain time"][0]
    plain = [r for r in rows if r["model"] == rows[0]["model"]]
    base = next(
        r for r in plain if all(r[k] == one[k] for k in ("part", "batch", "attn_impl", "precision"))
    )
    lift = next(
        r
        for r in rows
        if r["model"] == one["model"]
        and all(r[k] == one[k] for k in ("part", "batch", "attn_impl", "precision"))
    )
    assert one["ratio"] == pytest.approx(lift["median_s"] / base["median_s"])
    s2 = result["stage_two"]
    # plain, +LiFT (down, stride 8) and the control; +LiFT (down) over each of the other three
    assert [r["config"] for r in s2["rows"]] == [
        "configs/mini/vitdet_mrcnn.py",
        "configs/mini/vitdet_mrcnn_lift_down.py",
        "configs/mini/vitdet_mrcnn_lift_s8.py",
        "configs/mini/vitdet_mrcnn_bilinear_down.py",
    ]
    plain, lift, s8, control = s2["rows"]
    assert [r["over"] for r in s2["ratios"]] == [plain["model"], s8["model"], control["model"]]
    assert s2["ratios"][0]["time"] == pytest.approx(lift["median_s"] / plain["median_s"])
    assert s2["ratios"][2]["memory"] == pytest.approx(
        lift["peak_memory_MiB"] / control["peak_memory_MiB"]
    )
    # +LiFT freezes the ViT and LiFT, the control the ViT (bilinear has no parameters): both train
    # the same pyramid and heads, the plain config everything; stride 8 has no 4x stage to train
    assert plain["trained_params"] > lift["trained_params"] == control["trained_params"] > 0
    assert 0 < s8["trained_params"] < lift["trained_params"]
    # the up placement beside ViTDet on the 2x image, at twice the toy size
    up = result["up"]
    assert up["image_size"] == 2 * result["image_size"]
    assert [r["config"] for r in up["rows"][:2]] == [
        "configs/mini/vitdet_mrcnn.py",
        "configs/mini/vitdet_mrcnn_lift.py",
    ]
    assert {(r["batch"], r["precision"], r["part"]) for r in up["rows"]} == {(1, "amp", "detector")}
    assert len(up["ratios"]["+LiFT / plain time"]) == 2  # eager and sdpa


def test_stage_one_estimate_arithmetic(report):
    s1 = report[0]["stage_one"]
    assert s1["images_per_s"] == pytest.approx(s1["batch_per_gpu"] / s1["median_s"])
    assert s1["epoch_s"] == pytest.approx(118287 / s1["images_per_s"])
    # the COCO stage-one config's schedule: 46207 iters * 64 images / 118287 images per epoch
    assert s1["schedule_epochs"] == pytest.approx(25.0, abs=0.01)
    assert s1["schedule_s"] == pytest.approx(s1["schedule_epochs"] * s1["epoch_s"])


def test_markdown_is_the_json(report):
    result, text, _ = report
    assert text == gpu_report.format_markdown(result)
    # spot checks against the JSON's raw numbers, formatted here
    for r in result["inference"]["rows"]:
        assert (
            f"| {r['part']} | {r['batch']} | {r['attn_impl']} | {r['precision']} | "
            f"{r['median_s'] * 1e3:.1f} | "
            f"{r['spread'] * 100:.1f} |" in text
        )
    s1 = result["stage_one"]
    assert f"{s1['epoch_images']} images / {s1['images_per_s']:.2f} images/s = " in text
    assert f"= {s1['schedule_s']:.0f} s = {s1['schedule_s'] / 3600:.1f} h" in text
    assert f"commit `{result['commit']}`" in text and result["command"] in text


def test_readme_tables_from_a_report(report):
    result = dict(report[0], toy=False)
    tables = update_readme.gpu_tables([result])
    s1 = result["stage_one"]
    assert f"| {result['device']} |" in tables
    assert f"| {s1['images_per_s']:.1f} |" in tables
    ratios = result["inference"]["ratios"]["+LiFT / plain time"]
    at = dict(batch=1, attn_impl="eager", precision="amp")
    # the first +LiFT model's (the down placement, the detector's own size)
    first = result["inference"]["rows"][1]["model"]
    assert first.endswith("down")
    (detector,) = [
        r
        for r in ratios
        if r["part"] == "detector" and at.items() <= r.items() and r["model"] == first
    ]
    (backbone,) = [
        r
        for r in ratios
        if r["part"] == "backbone" and at.items() <= r.items() and r["model"] == first
    ]

    def spread(part):  # the larger A/B spread of the +LiFT and plain rows behind a ratio
        rows = [r for r in result["inference"]["rows"] if r["part"] == part]
        return max(r["spread"] for r in rows if at.items() <= r.items()) * 100

    assert (
        f"| {detector['ratio']:.3f} (spread {spread('detector'):.0f}%) | "
        f"{backbone['ratio']:.3f} (spread {spread('backbone'):.0f}%) |" in tables
    )
    assert f"`docs/gpu/{result['device_slug']}.md`" in tables
    for r in result["stage_two"]["rows"]:
        assert f"| {r['batch']} | {r['peak_memory_MiB']:.0f} |" in tables
    assert update_readme.GPU_PENDING not in tables


def test_readme_tables_from_a_report_with_failed_sections(report):
    """A report whose inference and stage one failed still makes the tables: n/a where they
    would be, the failures named, stage two's memory rows kept."""
    result = dict(report[0], toy=False)
    for key in ("inference", "stage_one"):
        del result[key]
    result["failed"] = [
        dict(section="inference", error="RuntimeError: x"),
        dict(section="stage one", error="RuntimeError: y"),
    ]
    tables = update_readme.gpu_tables([result])
    (row,) = [
        line for line in tables.splitlines() if line.startswith(f"| {result['device']} | n/a")
    ]
    assert row.count("n/a") == 7 and "; inference failed; stage one failed |" in row
    assert "stage one, `" not in tables
    assert tables.count("| stage two, `") == len(result["stage_two"]["rows"])


def test_refuses_without_cuda_unless_toy(tool, tmp_path, monkeypatch):
    """No CUDA and no --toy: one line, exit code 2, nothing written. main() runs in this process
    as the script's __main__ block runs it (run_main; the ``report`` fixture runs the script
    itself in a subprocess), with CUDA hidden as CUDA_VISIBLE_DEVICES="" hides it there. Only
    stderr is redirected (not capsys: the logger main() sets up keeps the stdout it finds)."""
    monkeypatch.setattr(tool.torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with pytest.raises(SystemExit) as e, contextlib.redirect_stderr(err):
        tool.run_main(tool.main, tool.get_parser(), ["--output-dir", "x"])
    err = err.getvalue()
    assert e.value.code == 2 and "Traceback" not in err
    assert "No CUDA device" in err.splitlines()[-1] and "--toy" in err
    assert os.listdir(tmp_path) == []


def test_a_failing_section_is_reported_and_the_others_run(tool, tmp_path, monkeypatch):
    """A section that raises is recorded with its error, the next sections still run, the report
    is written (atomically, after each section) and the exit status is 1."""

    def broken(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(tool, "inference_rows", broken)
    for name in ("stage_one_runs", "stage_two_rows"):
        monkeypatch.setattr(tool.gpu_training, name, broken)
    monkeypatch.delenv("LIFT_DET_MINI_ROOT", raising=False)
    args = tool.get_parser().parse_args(["--toy", "--output-dir", str(tmp_path / "gpu")])
    assert tool.main(args) == 1
    (path,) = glob.glob(str(tmp_path / "gpu" / "*.json"))
    with open(path) as f:
        result = json.load(f)
    failed = {f["section"]: f["error"] for f in result["failed"]}
    assert failed == {
        "correctness": "RuntimeError: planted failure",
        "inference": "RuntimeError: planted failure",
        "up placement": "RuntimeError: planted failure",
        "stage two": "RuntimeError: planted failure",
        "ViT-L/H": "KeyError: 'inference'",
    }
    assert result["stage_one"]["batch_per_gpu"] == 2 and result["stage_one"]["median_s"] > 0
    for key in ("correctness", "inference", "up", "stage_two"):
        assert key not in result
    with open(path[: -len(".json")] + ".md") as f:
        text = f.read()
    assert "#### Failed" in text and "- inference: `RuntimeError: planted failure`" in text
    assert "#### Stage one" in text and "#### Inference" not in text
    assert sorted(os.listdir(tmp_path / "gpu")) == sorted(
        [os.path.basename(path), os.path.basename(path)[:-5] + ".md"]
    )  # no temporary files left behind


def test_time_interleaved_runs_a_b_b_a():
    """The one timing helper takes its rounds A B C, then C B A: a drift falls on all alike."""
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "ABC"}
    out = time_interleaved(fns, rounds=2)
    assert [k for k, _ in itertools.groupby(calls)] == list("ABCBA")
    assert [len(v) for v in out.values()] == [2, 2, 2]


def test_detectors_are_timed_together_and_measured_alone(monkeypatch):
    """Within each setting the detectors are timed back to back, twice; a row holds the mean of
    its two medians and their spread. Peak memory is taken while a detector is the only one built
    (the others are not yet built or moved off)."""
    import torch

    alive, switched = [], []

    class Fake(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name, self.w = name, torch.nn.Parameter(torch.zeros(1))
            alive.append(self)

        def forward(self, inputs):
            return self.name

    def fake_timing(fns, rounds, min_run_time, device):
        out, before = {k: [] for k in fns}, len(switched)
        for i, k in enumerate(list(fns) + list(fns)[::-1]):
            assert fns[k]() == detectors[k]
            out[k].append(SimpleNamespace(median=float(i + 1), times=[0.0] * 3))
        assert len(switched) == before  # nothing but the model itself in the timed call
        return out

    monkeypatch.setattr(gpu_check, "build_detector", lambda rel, setup, device: Fake(rel))
    monkeypatch.setattr(gpu_check, "set_attn_impl", lambda model, impl: switched.append(impl))
    monkeypatch.setattr(gpu_check, "time_interleaved", fake_timing)
    # how many detectors exist when a memory is measured
    monkeypatch.setattr(gpu_check, "peak_memory_mib", lambda fn, device: float(len(alive)))
    detectors = {"plain": "A", "+LiFT": "B"}
    rows = gpu_check.inference_rows(
        detectors, gpu_check.TOY, torch.device("cpu"), [1], None, precisions=("fp32",), backbone=()
    )
    by = {(r["model"], r["attn_impl"]): r for r in rows}
    first = by["plain", next(iter(gpu_check.ATTN_IMPLS))]
    assert first["repeats_s"] == [1.0, 4.0] and first["median_s"] == 2.5 and first["runs"] == 6
    assert first["spread"] == pytest.approx(3 / 2.5)
    assert by["+LiFT", next(iter(gpu_check.ATTN_IMPLS))]["repeats_s"] == [2.0, 3.0]
    assert first["peak_memory_MiB"] == 1.0  # plain measured before +LiFT was built


def test_a_report_cut_short_while_written_keeps_the_previous_one(tmp_path, monkeypatch):
    """The report is written atomically: a run killed between writing and renaming (os.replace
    raising here) leaves the previous report whole and no temporary file beside it."""
    from lift_det.checkpoint import file_io

    base = str(tmp_path / "gpu" / "dev")
    old = dict(
        toy=True,
        device="dev",
        torch="t",
        cuda="none",
        amp_dtype="bf16",
        image_size=8,
        wall_s=1.0,
        budget_s=2.0,
        date="d",
        commit="c",
        machine="m",
        command="x",
        skipped=[],
        failed=[],
    )
    gpu_report.write_report(old, base)
    before = {p: open(base + p).read() for p in (".json", ".md")}

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(file_io.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        gpu_report.write_report(dict(old, wall_s=99.0), base)
    assert {p: open(base + p).read() for p in (".json", ".md")} == before
    assert sorted(os.listdir(tmp_path / "gpu")) == ["dev.json", "dev.md"]
