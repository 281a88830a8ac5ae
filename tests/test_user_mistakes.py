"""Mistakes found when the model, the weights or the data are built: each is one line naming the
problem and the fix, exit code 2, no traceback, nothing written over. They run the tool as users do
(a subprocess, their own config); the README's table of them is checked against this file."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import pytest
import torch

from conftest import CPU_ENV, REPO, doc_table_rows, load_tool, tool_python
from lift_det.checkpoint import save_lift_file
from lift_det.modeling import vit_identity

TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
HEADING = "### What is refused when the model, the weights or the data are built"

# README rows (a distinctive part of the first cell) -> the tests that demonstrate them
ROWS = {
    "weights that leave part of the model random": [
        "tests/test_train_net.py::test_eval_only_refuses_a_mostly_random_model",
        "tests/test_demo.py::test_demo_refuses_weights_that_leave_the_model_random",
        "tests/test_demo.py::test_predictor_refuses_a_partly_random_model_and_float_images",
    ],
    "a file that is not a checkpoint": [
        "tests/test_train_net.py::test_unreadable_init_checkpoint_is_one_line",
    ],
    "a LiFT file trained against another ViT": [
        "tests/test_user_mistakes.py::test_lift_file_of_another_teacher",
    ],
    "a model argument its constructor refuses": [
        "tests/test_user_mistakes.py::test_model_the_constructor_refuses",
    ],
    "a dataset with missing or unreadable images": [
        "tests/test_user_mistakes.py::test_broken_datasets",
        "tests/test_dataset_checks.py",
    ],
}

USER_CONFIG = """
from detectron2.data.datasets import register_coco_instances

from lift_det.model_zoo import get_config

_ann = "{root}/annotations/instances_train.json"
register_coco_instances("mine_train", {{}}, _ann, "{root}/train")
_cfg = get_config("mini/vitdet_mrcnn.py")
model, dataloader, optimizer, lr_multiplier, train = (
    _cfg.model, _cfg.dataloader, _cfg.optimizer, _cfg.lr_multiplier, _cfg.train)
dataloader.train.dataset.names = "mine_train"
"""


def run_tool(args, cwd):
    env = dict(os.environ, **CPU_ENV)
    cmd = [tool_python(), TRAIN_NET, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def assert_one_line(proc, *fragments):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train_net.py: error: "), last
    for fragment in fragments:
        assert fragment in last, (fragment, last)


def config(name):
    return os.path.join(REPO, "configs", "mini", f"{name}.py")


def test_model_the_constructor_refuses(small_mini, tmp_path):
    out = tmp_path / "out"
    proc = run_tool(
        [
            "--config-file",
            config("vitdet_mrcnn_lift"),
            f"train.output_dir={out}",
            "model.backbone.net.num_passes=4",
            "model.backbone.net.allow_random_lift=True",
            "train.max_iter=1",
        ],
        tmp_path,
    )
    assert_one_line(
        proc,
        "the model (model): The pyramid's finest level (p2) has stride 4",
        "num_passes=4",
        "Use fewer LiFT passes",
    )
    assert not os.path.exists(out)  # the refused run left nothing: no config.yaml, log or lock


def _broken_copy(small_mini, tmp_path, edit):
    root = tmp_path / "mine"
    shutil.copytree(small_mini, root)
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    edit(root, data)
    path.write_text(json.dumps(data))
    user = tmp_path / "my_config.py"
    user.write_text(USER_CONFIG.format(root=root))
    return str(user), data


def _drop_image(root, data):
    os.remove(root / "train" / data["images"][2]["file_name"])


def _no_mask(root, data):
    data["annotations"][0]["segmentation"] = []


def _rle_mask(root, data):
    from pycocotools import mask as mask_utils

    a, image = data["annotations"][0], data["images"][0]
    h, w = image["height"], image["width"]
    rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w))
    a["segmentation"] = {"counts": rle["counts"].decode(), "size": [h, w]}


@pytest.mark.parametrize(
    "edit,fragments",
    [
        (_drop_image, ["1 image file(s) do not exist", "(image id 3)", "Fix the image root"]),
        (_no_mask, ["1 instance(s) have no segmentation", "mapper.use_instance_mask=False"]),
        (_rle_mask, ["1 instance(s) have RLE masks", "instance_mask_format=bitmask"]),
    ],
)
def test_broken_datasets(small_mini, tmp_path, edit, fragments):
    """A user's dataset with a problem that would crash a loader worker later: refused when it is
    loaded, before training, naming the file and image."""
    user, data = _broken_copy(small_mini, tmp_path, edit)
    out = tmp_path / "out"
    proc = run_tool(
        ["--config-file", user, f"train.output_dir={out}", "train.max_iter=1"], tmp_path
    )
    assert_one_line(proc, "the training data (dataloader.train): Dataset mine_train: ", *fragments)
    assert not os.path.exists(out)


def test_lift_file_of_another_teacher(small_mini, tmp_path):
    """Stage two with a LiFT file whose recorded teacher is not the ViT of train.init_checkpoint."""
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(config("vitdet_mrcnn_lift"))
    cfg.model.backbone.net.allow_random_lift = True
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    detector = str(tmp_path / "vitdet.pth")  # a trained ViTDet stands here: the ViT's tensors
    state = {k: v for k, v in model.state_dict().items() if ".lift." not in k}
    torch.save({"model": state}, detector)
    net = model.backbone.net
    lift_file = str(tmp_path / "lift_final.pth")
    teacher = {"weights": "another_vitdet.pth", "initialized": True, "fingerprint": "0" * 16}
    save_lift_file(lift_file, net.lift, backbone=vit_identity(net), teacher=teacher, iteration=5)
    proc = run_tool(
        [
            "--config-file",
            config("vitdet_mrcnn_lift"),
            f"train.init_checkpoint={detector}",
            f"model.backbone.net.lift_weights={lift_file}",
            "train.max_iter=1",
            f"train.output_dir={tmp_path / 'out'}",
        ],
        tmp_path,
    )
    assert_one_line(
        proc,
        f"LiFT file '{lift_file}' was trained against another ViT",
        "another_vitdet.pth",
        "train stage one against this ViT",
    )
    assert not os.path.exists(tmp_path / "out")
    # a folder that held something keeps it, and gets nothing new
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    proc = run_tool(
        [
            "--config-file",
            config("vitdet_mrcnn_lift"),
            f"train.init_checkpoint={detector}",
            f"model.backbone.net.lift_weights={lift_file}",
            "train.max_iter=1",
            f"train.output_dir={tmp_path / 'out'}",
        ],
        tmp_path,
    )
    assert proc.returncode == 2 and os.listdir(tmp_path / "out") == ["notes.txt"]


def test_the_readme_lists_exactly_these_refusals():
    cells = doc_table_rows(HEADING)
    for key, tests in ROWS.items():
        assert sum(key in cell for cell in cells) == 1, (key, cells)
        for node in tests:  # the demonstrating tests exist
            path, _, name = node.partition("::")
            with open(os.path.join(REPO, path)) as f:
                assert not name or f"def {name}(" in f.read(), node
    for cell in cells:
        assert any(key in cell for key in ROWS), f"README row without a test: {cell}"


TOOLS = os.path.join(REPO, "tools")

OTHER_REFUSALS = [
    (
        "demo.py",
        ["--config-file", "configs/nope.py", "--input", "{img}", "--output", "o.jpg"],
        "--config-file 'configs/nope.py' does not exist",
    ),
    (  # refused before its --output folder is made
        "demo.py",
        [
            "--config-file",
            "{cfg}",
            "--input",
            "{img}",
            "--output",
            "out/",
            "train.init_checkpoint=",
        ],
        "no weights: give --weights OUTPUT_DIR/model_final.pth (or set train.init_checkpoint).",
    ),
    (
        "demo.py",
        ["--config-file", "{cfg}", "--input", "{img}", "--output", "drawn"],
        "--output drawn: OpenCV writes no image with no extension: give a .jpg or .png file",
    ),
    (
        "demo.py",
        ["--config-file", "{cfg}", "--input", "{img}", "--output", "notes.txt"],
        "--output notes.txt: OpenCV writes no image with .txt",
    ),
    (
        "visualize_features.py",
        ["--lift-weights", "missing.pth", "--output", "v.png"],
        "LiFT file 'missing.pth' does not exist",
    ),
    (
        "scale_invariance.py",
        ["--weights", "missing.pth", "--output", "c.png"],
        "--weights 'missing.pth' does not exist. Give the path of a checkpoint",
    ),
    (
        "visualize_features.py",
        ["--passes", "0", "--output", "v.png"],
        "--passes must be >= 1, got 0",
    ),
    (
        "scale_invariance.py",
        ["--passes", "0", "--output", "c.png"],
        "--passes must be >= 1, got 0",
    ),
    (
        "scale_invariance.py",
        ["--images", "nothing/", "--output", "c.png"],
        "--images: no images found in ['nothing/']",
    ),
    (
        "visualize_features.py",
        ["--config", "{timm}", "--output", "v.png"],
        "has no model.source.net; the feature tools take a detectron2 ViT",
    ),
    (
        "scale_invariance.py",
        ["--config", "{timm}", "--output", "c.png"],
        "has no model.source.net; the feature tools take a detectron2 ViT",
    ),
    ("benchmark.py", ["--presets", "LiFT-X"], "Unknown LiFT presets ['LiFT-X']"),
    ("run_mini.py", ["--seeds", "1", "--jobs", "0"], "--jobs must be >= 1, got 0"),
]
# a tool's first refusal runs the script as users do (a subprocess: conftest.tool_python, whose
# --help runs are the tools' cold starts); its others run its main() in this process as the
# script's __main__ block runs it (run_main: the same exit code and stderr)
AS_SCRIPT = {row[0]: i for i, row in reversed(list(enumerate(OTHER_REFUSALS)))}


def run_script_in_process(tool, args, cwd, monkeypatch):
    """``tools/<tool> *args`` in this process, in ``cwd``: (exit code, stderr). Only stderr is
    redirected (not capsys: a logger the tool sets up keeps the stdout it finds, and a capsys
    stream is closed after the test)."""
    module = load_tool(tool[: -len(".py")])
    err = io.StringIO()
    with monkeypatch.context() as mp, contextlib.redirect_stderr(err):
        for k, v in CPU_ENV.items():
            mp.setenv(k, v)
        mp.chdir(cwd)
        try:
            module.run_main(module.main, module.get_parser(), args)
            code = 0
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


@pytest.mark.parametrize(
    "tool,args,fragment,as_script",
    [(*row, AS_SCRIPT[row[0]] == i) for i, row in enumerate(OTHER_REFUSALS)],
    ids=lambda x: "script" if x is True else "in-process" if x is False else None,
)
def test_other_tools_refuse_in_one_line(tool, args, fragment, as_script, tmp_path, monkeypatch):
    """The demo and the figure tools: a bad argument is one line, exit code 2, nothing written."""
    image = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    cfgs = dict(cfg=config("vitdet_mrcnn"), timm=config("lift_stage1_timm"))
    args = [a.format(img=image, **cfgs) for a in args]
    if as_script:
        env = dict(os.environ, **CPU_ENV)
        proc = subprocess.run(
            [tool_python(), os.path.join(TOOLS, tool), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        code, stderr = proc.returncode, proc.stderr
    else:
        code, stderr = run_script_in_process(tool, args, tmp_path, monkeypatch)
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    assert fragment in stderr.strip().splitlines()[-1]
    assert sorted(os.listdir(tmp_path)) == ["img.png"]
