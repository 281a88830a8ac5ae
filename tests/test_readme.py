"""The README's numbers are the committed outputs of the project's tools, and its paths exist."""

import json
import os
import re
import pytest

from conftest import FIRST_LINE, REPO, TOOLS, doc_text, load_tool, tool_help
from lift_det.study import main_job
from lift_det.study import report as study_report
from lift_det.study import schedule as study_schedule
from lift_det.study.check import STUDY_CHECKS_NONE

update_readme = load_tool("update_readme")

README = open(os.path.join(REPO, "README.md")).read()
DOCS = doc_text()  # the README and its pages


def test_generated_blocks_are_the_committed_outputs():
    blocks = update_readme.BLOCK.findall(DOCS)
    assert {b[1] for b in blocks} >= {
        "docs/main_job.md",
        "docs/benchmark.md",
        "docs/mini_study.md",
        "docs/mini_study.json",  # the README's headline
    }
    for page in update_readme.PAGES:
        text = open(os.path.join(REPO, page)).read()
        assert update_readme.updated(text) == text, f"{page}: run tools/update_readme.py"


def test_the_readme_is_short_and_links_every_page():
    """A newcomer's first screen: the two commands, what the project is, the result and a quick
    start; the reference lives in docs/ pages, each linked from the README."""
    assert len(README.splitlines()) <= 200
    assert {"docs/GETTING_STARTED.md", "docs/MODEL.md", "docs/STUDY.md"} <= set(update_readme.PAGES)
    for page in update_readme.PAGES[1:]:
        assert f"]({page})" in README, f"{page} is not linked from the README"
    for heading in ("## The commands", "## Result", "## Quick start"):
        assert heading in README


def test_main_job_table_is_its_json():
    with open(os.path.join(REPO, "docs", "main_job.json")) as f:
        summary = json.load(f)
    steps = summary["steps"]
    iters = {name: s["iterations"] for name, s in steps.items()}
    order = main_job.mini_steps("out", iters["baseline"], iters["stage1"], iters["lift"])
    assert [s.name for s in order] == list(steps)
    table = main_job.format_table(steps, order)
    with open(os.path.join(REPO, "docs", "main_job.md")) as f:
        assert f.read().startswith(table)
    # an independent spot check: the LiFT row carries the JSON's box AP with two decimals
    row = next(line for line in table.splitlines() if line.startswith("| ViTDet + LiFT |"))
    assert f"| {steps['lift']['bbox/AP']:.2f} |" in row
    for key in update_readme.PROVENANCE:
        assert summary[key], key


def test_mini_study_report_is_its_json():
    """docs/mini_study.md is the report of docs/mini_study.json (the README shows the .md), and
    spot checks against the JSON's raw per-seed numbers, computed here."""
    import numpy as np

    with open(os.path.join(REPO, "docs", "mini_study.json")) as f:
        study = json.load(f)
    with open(os.path.join(REPO, "docs", "mini_study.md")) as f:
        assert f.read() == study_report.format_report(study) + "\n"
    seeds = [str(s) for s in study["summary"]["seeds"]]
    assert len(seeds) >= 3 and study_schedule.CONTROL in study["arms"]
    ran_or_left = set(study["arms"]) | set(study["setup"].get("arms_left_out", []))
    # the arms of the study code that made it (recorded with their labels) are all accounted for
    arms = set(study.get("labels") or {a[0] for a in study_schedule.ARMS})
    assert ran_or_left == arms
    for arm in study["arms"]:
        box = [study["per_seed"][s][arm]["bbox/AP"] for s in seeds]
        got = study["summary"]["arms"][arm]["bbox/AP"]
        assert got["mean"] == np.mean(box) and got["std"] == np.std(box, ddof=1)
        if arm != study_schedule.CONTROL:
            ft = [study["per_seed"][s][study_schedule.CONTROL]["bbox/AP"] for s in seeds]
            diff = got["vs_control"]
            assert diff["mean"] == np.mean(np.subtract(box, ft))
            assert diff["low"] < diff["mean"] < diff["high"]
    assert os.path.isfile(os.path.join(REPO, study["figure"]))
    for key in update_readme.PROVENANCE:
        assert study[key], key


def test_paths_in_the_readme_exist():
    pattern = r"\b((?:tools|configs|tests|dev|docs)/[\w./-]+\.(?:py|sh|md|json))"
    paths = set(re.findall(pattern, DOCS))
    assert len(paths) > 20
    upstream = {"tools/lazyconfig_train_net.py", "tools/analyze_model.py"}  # detectron2's, named
    missing = sorted(p for p in paths - upstream if not os.path.exists(os.path.join(REPO, p)))
    assert missing == []


def test_every_file_in_tools_is_a_script():
    """tools/ holds scripts only, as upstream's: a shebang, the executable bit and a __main__
    block; code that several tools share is a module of lift_det."""
    assert len(TOOLS) > 5
    for tool in TOOLS:
        path = os.path.join(REPO, "tools", tool)
        with open(path) as f:
            text = f.read()
        where = f"tools/{tool} is not a script: move shared code into lift_det/"
        assert text.startswith("#!/usr/bin/env python3\n"), where
        first = next(line for line in text.splitlines() if line.startswith(("import", "from")))
        assert first.startswith(FIRST_LINE), f"tools/{tool}: its first import is {FIRST_LINE}"
        assert re.search(r"^if __name__ == .__main__.:", text, re.M), where
        assert os.access(path, os.X_OK), f"chmod +x tools/{tool}"


@pytest.mark.parametrize("tool", TOOLS)
def test_tools_run(tool, tmp_path_factory):
    """Each tool as users run it: ``--help`` in a fresh interpreter (conftest's tool_help, once per
    session: test_docs.py reads the same run)."""
    out = tool_help(tmp_path_factory, tool)
    assert out["returncode"] == 0 and "usage:" in out["stdout"], out["stderr"][-2000:]


def test_study_checks_block_lists_the_recorded_machines(tmp_path):
    assert "<!-- generated: docs/study_checks/ -->" in DOCS
    assert update_readme.render_study_checks(str(tmp_path)) == STUDY_CHECKS_NONE + "\n"
    steps = [
        {"name": "baseline", "identical": True, "first_iter": None, "max_abs": 0.0, "max_rel": 0.0}
    ]
    record = {
        "machine": "CPU X, 2 CPUs, no GPU",
        "date": "d",
        "commit": "abc",
        "torch": "2.x",
        "identical": True,
        "iters": 10,
        "trace": {"commit": "def"},
        "steps": steps,
    }
    (tmp_path / "x.json").write_text(json.dumps(record))
    table = update_readme.render_study_checks(str(tmp_path))
    row = "| CPU X, 2 CPUs, no GPU | - | d | `abc` | 2.x | `def` | identical bit for bit (10 "
    assert row in table
    # a record that names numpy and Python (older ones do not)
    (tmp_path / "x.json").write_text(
        json.dumps({**record, "numpy": "1.y", "pillow": "9.p", "python": "3.z"})
    )
    table = update_readme.render_study_checks(str(tmp_path))
    assert "| `abc` | 2.x, numpy 1.y, Pillow 9.p, Python 3.z | `def` |" in table


def test_gpu_block_is_pending_without_a_gpu_report(tmp_path):
    assert "<!-- generated: docs/gpu/ -->" in DOCS
    assert update_readme.render_gpu_reports(str(tmp_path)) == update_readme.GPU_PENDING + "\n"
    # a --toy report is not a GPU figure
    (tmp_path / "cpu.json").write_text(json.dumps({"toy": True}))
    assert update_readme.render_gpu_reports(str(tmp_path)) == update_readme.GPU_PENDING + "\n"


def test_make_test_time_is_the_timers_output():
    """docs/make_test.md (shown in the README) is what dev/time_make_test.sh writes: its sentence,
    and a total that holds the setup and the pytest time it names."""
    with open(os.path.join(REPO, "docs", "make_test.md")) as f:
        text = f.read()
    pattern = (
        r"`make test` from a fresh clone took \*\*(\d+) min (\d+) s\*\* on \d+ CPUs\n\(.+\), "
        r"\d{4}-\d\d-\d\d at commit `[0-9a-f]{7,}`: (\d+) s of setup\n\(with .+\) and (\d+) s of "
        r"pytest for \d+ tests\. Measured by\n`bash dev/time_make_test.sh`\.\n"
    )
    minutes, seconds, setup, pytest_s = map(int, re.fullmatch(pattern, text).groups())
    assert setup + pytest_s <= 60 * minutes + seconds
    with open(os.path.join(REPO, "dev", "time_make_test.sh")) as f:
        assert "took **$((total / 60)) min $((total % 60)) s** on $(nproc) CPUs" in f.read()
