"""The main job's driver (tools/run_mini.py, lift_det/study/main_job.py), 1 iteration a step."""

import json
import os
import shutil
import subprocess
import pytest

from conftest import CPU_ENV, REPO, tool_python
from lift_det.study import main_job as mini
from lift_det.study import pipeline as runner
from lift_det.utils.cli import UserError


def test_format_table():
    steps = mini.mini_steps("/o", baseline_iters=7, stage1_iters=5, stage2_iters=3)
    results = {
        "baseline": {
            "bbox/AP": 10.0,
            "bbox/AP50": 20.5,
            "bbox/AP75": 5.25,
            "bbox/APs": 1.0,
            "segm/AP": 12.345,
            "iterations": 7,
        },
        "stage1": {
            "lift_quality/cos_lift": 0.91234,
            "lift_quality/cos_bilinear": 0.9,
            "lift_quality/cos_nearest": 0.85,
            "iterations": 5,
        },
        "baseline_ft": {"bbox/AP": 11.0, "bbox/AP50": float("nan"), "iterations": 3},
        "bilinear": {"iterations": 3},
        "lift": {
            "bbox/AP": 12.0,
            "bbox/AP50": 30.0,
            "bbox/AP75": 6.0,
            "bbox/APs": 2.0,
            "segm/AP": 13.0,
            "iterations": 3,
        },
    }
    assert mini.format_table(results, steps).split("\n") == [
        "| model | iterations | box AP | AP50 | AP75 | APs | mask AP |",
        "|---|---|---|---|---|---|---|",
        "| ViTDet (baseline) | 7 | 10.00 | 20.50 | 5.25 | 1.00 | 12.35 |",
        "| ViTDet + same extra iterations | 7 + 3 | 11.00 | n/a | n/a | n/a | n/a |",
        "| ViTDet + bilinear 2x (control) | 7 + 3 | n/a | n/a | n/a | n/a | n/a |",
        "| ViTDet + LiFT | 7 + 3 | 12.00 | 30.00 | 6.00 | 2.00 | 13.00 |",
        "",
        "Stage one, held-out mean cosine similarity to the ViT's features of the 2x image:",
        "",
        "| LiFT | bilinear | nearest |",
        "|---|---|---|",
        "| 0.9123 | 0.9000 | 0.8500 |",
    ]


def test_format_table_flags_an_undertrained_lift():
    steps = mini.mini_steps("/o", baseline_iters=7, stage1_iters=5, stage2_iters=3)
    stage1 = {
        "lift_quality/cos_lift": 0.85,
        "lift_quality/cos_bilinear": 0.9,
        "lift_quality/cos_nearest": 0.8,
        "iterations": 5,
    }
    results = {"baseline": {"iterations": 7}, "stage1": stage1}
    table = mini.format_table(results, steps)
    assert "| 0.8500 | 0.9000 | 0.8000 |" in table
    assert table.endswith(
        "**LiFT is UNDERTRAINED**: its held-out cosine is below bilinear "
        "upsampling's. Train stage one longer; the +LiFT rows above say little "
        "about LiFT."
    )
    stage1["lift_quality/cos_lift"] = 0.91
    assert "UNDERTRAINED" not in mini.format_table(results, steps)


def _last_metrics(step_dir):
    with open(os.path.join(step_dir, "metrics.json")) as f:
        rows = [json.loads(line) for line in f]
    return [r for r in rows if any(k.startswith(("bbox/", "lift_quality/")) for k in r)][-1]


@pytest.fixture(scope="module")
def pipeline(small_mini, tiny_main):
    """The whole main job, one iteration per step, its stdout captured (conftest's tiny_main, built
    once per session: tests that change it work on a copy)."""
    return tiny_main


def test_pipeline_writes_results(pipeline):
    out, summary, stdout = pipeline
    with open(os.path.join(out, "results.json")) as f:
        written = json.load(f)
    assert written == json.loads(json.dumps(summary))
    names = ["baseline", "stage1", "baseline_ft", "bilinear", "lift"]
    assert list(written["steps"]) == names
    for name in names:
        step = written["steps"][name]
        assert step["iterations"] == 1
        for k, v in _last_metrics(os.path.join(out, name)).items():
            assert step[k] == v, (name, k)
    assert "lift_quality/cos_lift" in written["steps"]["stage1"]
    assert os.path.isfile(os.path.join(out, "stage1", "lift_final.pth"))
    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    table = mini.format_table(written["steps"], mini.mini_steps(out, 1, 1, 1))
    assert md.startswith(table) and mini.CAVEAT in md
    assert mini.CAVEAT in stdout and "One seed is noise-limited" in mini.CAVEAT


def test_resume_skips_finished_steps(pipeline, tmp_path, monkeypatch):
    out = str(tmp_path / "mini")
    shutil.copytree(pipeline[0], out)
    ran = []
    monkeypatch.setattr(
        runner, "_run_step", lambda step, o, extra, env=None: ran.append((step.name, extra)) or 0.0
    )
    summary = mini.run_pipeline(out, 1, 1, 1, resume=True)
    assert ran == []
    assert summary["steps"] == json.loads(json.dumps(pipeline[1]["steps"]))
    os.remove(os.path.join(out, "lift", "model_final.pth"))  # as if killed during that step
    mini.run_pipeline(out, 1, 1, 1, resume=True)
    assert ran == [("lift", ["--resume"])]  # continues it from its last checkpoint


def test_rerun_without_resume_refuses_and_keeps_results(pipeline, tmp_path, monkeypatch):
    out = str(tmp_path / "mini")
    shutil.copytree(pipeline[0], out)
    final = os.path.join(out, "baseline", "model_final.pth")
    before = open(final, "rb").read()
    for k, v in CPU_ENV.items():
        monkeypatch.setenv(k, v)
    log = os.path.join(out, "baseline", "pipeline_stdout.txt")
    log_before = open(log).read()
    with pytest.raises(UserError, match=r"holds the runs of \['baseline', 'stage1', 'baseline_ft'"):
        mini.run_pipeline(out, 1, 1, 1)
    assert open(final, "rb").read() == before
    assert open(log).read() == log_before  # refused before any step started


def test_run_mini_says_in_one_line_why_it_stops(pipeline, tmp_path):
    """`make main` into a folder holding a main job: exit 2 before any step starts; a step that
    fails: exit 1 with the step, its own error line and its log (no traceback)."""
    out = str(tmp_path / "mini")
    shutil.copytree(pipeline[0], out)
    env = dict(os.environ, **CPU_ENV)
    tool = [tool_python(), os.path.join(REPO, "tools", "run_mini.py")]
    run = subprocess.run(
        [*tool, "--output-dir", out],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr and run.stdout == ""
    assert "holds the runs of ['baseline'" in run.stderr.splitlines()[-1]

    fresh = str(tmp_path / "fresh")
    run = subprocess.run(
        [*tool, "--output-dir", fresh, "train.max_iterr=1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("run_mini.py: step 'baseline' failed (exit 2): train_net.py: error: ")
    assert "did you mean 'train.max_iter'?" in line
    assert line.endswith(os.path.join(fresh, "baseline", "pipeline_stdout.txt"))
