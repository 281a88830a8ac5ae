"""The README's "Step by step on the mini data" blocks, as written, in order, in subprocesses:
from an empty data root and an empty output folder, each training stage at 2 iterations."""

import os
import re
import subprocess

from conftest import CPU_ENV, REPO, tool_python

SECTION = "## Quick start: step by step on the mini data"


def readme_blocks():
    """(language, code) of the fenced blocks of the section, in order."""
    text = open(os.path.join(REPO, "README.md")).read()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    return re.findall(r"^```(bash|python)\n(.*?)^```$", section, flags=re.M | re.S)


def test_the_section_has_every_stage():
    blocks = readme_blocks()
    assert [lang for lang, _ in blocks] == ["bash"] * 6 + ["python"]
    code = "\n".join(c for _, c in blocks)
    for needed in ["configs/mini/vitdet_mrcnn.py", "configs/mini/lift_stage1.py", "--eval-only"]:
        assert needed in code
    assert "model.backbone.net.lift_weights" in blocks[2][1] and "--eval-only" in blocks[2][1]
    assert "tools/demo.py" in code and "LazyPredictor" in code


def test_the_stages_run_as_written(tmp_path):
    """The user's path: a fresh folder (the repository's tools, configs and .venv, nothing else),
    the mini data never generated, no output yet."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ["tools", "configs"]:
        os.symlink(os.path.join(REPO, name), work / name)
    # .venv/bin/python: this interpreter, warm for tools/*.py (conftest.tool_python)
    os.makedirs(work / ".venv" / "bin")
    os.symlink(tool_python(), work / ".venv" / "bin" / "python")
    data = work / "datasets" / "lift_mini_coco"  # where the README's image paths point
    data.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "DETECTRON2_DATASETS"}
    env.update(CPU_ENV, LIFT_DET_MINI_ROOT=str(data), QUICK="train.max_iter=2")
    logs = []
    for i, (lang, code) in enumerate(readme_blocks()):
        cmd = ["bash", "-euo", "pipefail", "-c", code]
        if lang == "python":
            cmd = [str(work / ".venv" / "bin" / "python"), "-c", code]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        logs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, f"block {i}:\n{code}\n" + logs[-1][-4000:]
    steps = work / "output" / "steps"
    assert (steps / "stage1" / "lift_final.pth").is_file()
    assert (steps / "vitdet_lift" / "model_final.pth").is_file()
    evaluation = steps / "vitdet_lift" / "inference_model_final"
    assert (evaluation / "coco_instances_results.json").is_file()
    assert (steps / "demo" / "000000.jpg").is_file()
    # zero-shot: every baseline tensor and LiFT from its file, evaluated, metrics.json written
    assert "from lift_weights=output/steps/stage1/lift_final.pth" in logs[2]
    assert (steps / "zero_shot" / "inference_model_final" / "metrics.json").is_file()
    assert "from lift_weights=output/steps/stage1/lift_final.pth" in logs[3]  # LiFT loaded
    assert re.search(r"\[\('(square|disc|triangle)'|\[\]", logs[6])  # class names printed
    assert os.listdir(data)  # the data was generated where the README says
