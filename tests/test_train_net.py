"""tools/train_net.py on the mini detector configs (a smaller mini dataset): stage two, --eval-only,
resume after a kill, and what the tool refuses before it builds anything."""

import glob
import json
import logging
import numpy as np
import os
import re
import subprocess
import pytest
import torch
from pycocotools.coco import COCO

from detectron2.config import LazyConfig

from conftest import CPU_ENV, REPO, doc_table_rows, load_tool, tool_python
from lift_det.engine import check_overrides, lock_output_dir, parse_args

TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
tool = load_tool("train_net")


def config(name):
    return os.path.join(REPO, "configs", "mini", f"{name}.py")


def run_tool(args, cwd, check=True):
    """The tool in a subprocess on the CPU, in ``cwd`` (a tmp dir: nothing lands in the repo)."""
    env = dict(os.environ, **CPU_ENV)
    cmd = [tool_python(), TRAIN_NET, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-5000:])
    return proc


def last_evaluation(output_dir):
    """The last row of metrics.json (detectron2's JSONWriter) that holds box AP."""
    with open(os.path.join(output_dir, "metrics.json")) as f:
        rows = [json.loads(line) for line in f]
    return [r for r in rows if "bbox/AP" in r][-1]


# every detection is scored, so box and mask post-processing run even on a barely trained model
ALL_DETS = "model.roi_heads.box_predictor.test_score_thresh=0.0"


@pytest.fixture(scope="module")
def trained(small_mini, tiny_main):
    """The main job's runs at one iteration each (conftest's tiny_main, built once per session
    from the same small mini data): the mini ViTDet, the LiFT file of its stage one and, from
    both, the +LiFT stage two, each evaluated at its end. Tests copy a run they change."""
    out = tiny_main[0]
    with open(os.path.join(out, "lift", "pipeline_stdout.txt")) as f:
        lift_log = f.read()  # the stage-two run's stdout and stderr
    return {
        "base": os.path.join(out, "baseline"),
        "lift": os.path.join(out, "lift"),
        "lift_file": os.path.join(out, "stage1", "lift_final.pth"),
        "lift_log": lift_log,
    }


def test_lift_stage_two_trains_only_heads(trained):
    before = torch.load(os.path.join(trained["base"], "model_final.pth"), weights_only=False)
    after = torch.load(os.path.join(trained["lift"], "model_final.pth"), weights_only=False)
    before, after = before["model"], after["model"]
    vit_key = "backbone.net.blocks.0.attn.qkv.weight"
    torch.testing.assert_close(after[vit_key], before[vit_key])  # frozen ViT
    head_key = "roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(after[head_key], before[head_key])  # finetuned heads
    # the up placement: every ViTDet tensor loads, only LiFT comes from elsewhere (its file)
    (loaded,) = {
        line for line in trained["lift_log"].splitlines() if "tensors of the model" in line
    }
    assert "backbone.net.lift" in loaded and "from lift_weights=" in loaded
    assert "unused" not in loaded and "new (not in the file" not in loaded
    lift = torch.load(trained["lift_file"], weights_only=False)["model"]
    for k, v in lift.items():  # the frozen LiFT is the stage-one file's, unchanged
        torch.testing.assert_close(after[f"backbone.net.lift.{k}"], v)


def test_eval_only_reproduces_the_final_evaluation(trained, tmp_path, caplog):
    """--eval-only on the stage-two checkpoint gives the APs the run itself measured at its end
    (a model not loaded from the checkpoint would not), with sane detections; the checkpoint is
    the whole model: the config's LiFT file may be gone, and nothing warns."""
    out = str(tmp_path / "eval")
    gone = str(tmp_path / "deleted" / "lift_final.pth")  # stage one's file, no longer there
    # the config's score threshold, as the run evaluated with (its classes' scores, one iteration
    # from a random init, are about 1/4 each: detections on every image all the same)
    args = parse_args(
        ["--config-file", config("vitdet_mrcnn_lift"), "--eval-only"]
        + [f"train.output_dir={out}", f"model.backbone.net.lift_weights={gone}"]
        + [f"train.init_checkpoint={trained['lift']}/model_final.pth", "train.device=cpu"]
    )
    lift_logger = logging.getLogger("lift_det")
    lift_logger.addHandler(caplog.handler)
    try:
        res = tool.main(args)
    finally:
        lift_logger.removeHandler(caplog.handler)
    ours = [r for r in caplog.records if not r.name.startswith("torch")]  # not torch's own
    assert [r.getMessage() for r in ours if r.levelno >= logging.WARNING] == []
    assert os.listdir(out) == ["inference_model_final"]  # the evaluation's own folder
    out = os.path.join(out, "inference_model_final")
    measured = last_evaluation(trained["lift"])
    for key in ["bbox/AP", "bbox/AP50", "segm/AP"]:
        task, metric = key.split("/")
        assert res[task][metric] == pytest.approx(measured[key], abs=1e-9), key
    gt = COCO(os.path.join(os.environ["LIFT_DET_MINI_ROOT"], "annotations", "instances_val.json"))
    with open(os.path.join(out, "coco_instances_results.json")) as f:
        dets = json.load(f)
    assert len({d["image_id"] for d in dets}) == len(gt.getImgIds())  # detections on every image
    for d in dets:
        img = gt.imgs[d["image_id"]]
        x, y, w, h = d["bbox"]
        assert 0 <= x and 0 <= y and x + w <= img["width"] + 1e-3 and y + h <= img["height"] + 1e-3
        assert d["category_id"] in gt.getCatIds()
        assert d["segmentation"]["size"] == [img["height"], img["width"]]


@pytest.mark.parametrize(
    "name", ["vitdet_mrcnn_lift", "vitdet_mrcnn_lift_down", "vitdet_mrcnn_lift_s8"]
)
def test_zero_shot_eval_from_a_vitdet_checkpoint_and_a_lift_file(trained, tmp_path, name):
    """--eval-only with a plain ViTDet checkpoint and a stage-one LiFT file evaluates the +LiFT
    detector with no stage two, in every placement, and writes detectron2's metrics.json with the
    numbers it printed."""
    out = str(tmp_path / "zero_shot")
    proc = run_tool(
        ["--config-file", config(name), "--eval-only", ALL_DETS, f"train.output_dir={out}"]
        + [f"train.init_checkpoint={trained['base']}/model_final.pth"]
        + [f"model.backbone.net.lift_weights={trained['lift_file']}"],
        cwd=tmp_path,
    )
    log = proc.stdout + proc.stderr
    # quiet: no third-party deprecation notice (lift_det filters them where they arise)
    assert "FutureWarning" not in log and "pkg_resources" not in log and "meshgrid" not in log
    (loaded,) = {line for line in log.splitlines() if "tensors of the model" in line}
    assert "backbone.net.lift (" in loaded and f"from lift_weights={trained['lift_file']}" in loaded
    assert ("unused" in loaded) == name.endswith("_s8")  # ViTDet's 4x stage, at stride 8 only
    row = last_evaluation(os.path.join(out, "inference_model_final"))
    (printed,) = re.findall(r"copypaste: ([\d.]+),([\d.]+),([\d.]+),", log)[:1]
    assert row["bbox/AP"] == pytest.approx(float(printed[0]), abs=1e-4)
    assert row["bbox/AP50"] == pytest.approx(float(printed[1]), abs=1e-4)


KILL_CONFIG = """
import multiprocessing, os, signal
from detectron2.config import LazyCall as L, LazyConfig
from detectron2.engine import HookBase

class KillAfter(HookBase):
    def __init__(self, iteration):
        self.iteration = iteration

    def after_step(self):  # after the checkpointer's after_step of this iteration
        if self.trainer.iter == self.iteration:  # its data-loader workers first, as a machine
            for worker in multiprocessing.active_children():  # going down takes them all
                os.kill(worker.pid, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

_cfg = LazyConfig.load({config!r})
model, dataloader, optimizer, lr_multiplier, train = (
    _cfg.model, _cfg.dataloader, _cfg.optimizer, _cfg.lr_multiplier, _cfg.train)
train.export = [L(KillAfter)(iteration=3)]
"""


def final_state(out):
    return torch.load(os.path.join(out, "model_final.pth"), weights_only=False)


def moments(checkpoint):
    """The optimizer's state tensors (AdamW's moments) in a trainer's checkpoint."""
    state = checkpoint["trainer"]["optimizer"]["state"]
    return [v for s in state.values() for v in s.values() if torch.is_tensor(v)]


@pytest.mark.parametrize(
    "name, period",
    [("vitdet_mrcnn", "train.eval_period=2"), ("lift_stage1", "train.eval_period=0")],
)
def test_resume_after_kill_is_exact(small_mini, tmp_path, name, period):
    """SIGKILL right after iteration 3's checkpoint (deterministic: a hook kills the process and
    its data-loader workers, which would otherwise hold its output open until they notice),
    then --resume (given after the key=value overrides): training continues at 4 and ends with
    the very weights (BatchNorm statistics included) and optimizer state of an uninterrupted run.
    The detector also evaluates at iteration 3, before the checkpoint is written (an evaluation
    draws random numbers); a finished run resumed with a longer schedule trains on, saying so."""
    out, whole = str(tmp_path / "run"), str(tmp_path / "whole")
    killing = tmp_path / "kill_after_3.py"
    killing.write_text(KILL_CONFIG.format(config=config(name)))
    args = ["train.max_iter=6", "train.checkpointer.period=2", period]
    proc = run_tool(
        ["--config-file", str(killing), f"train.output_dir={out}", *args], tmp_path, False
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert not os.path.exists(os.path.join(out, "model_final.pth"))
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_0000003.pth"

    resumed = run_tool(
        ["--config-file", config(name), f"train.output_dir={out}", *args, "--resume"], tmp_path
    )
    log = resumed.stdout + resumed.stderr
    assert "Starting training from iteration 4" in log
    assert "Exact resume: 4 batches replayed" in log
    run_tool(["--config-file", config(name), f"train.output_dir={whole}", *args], tmp_path)
    a, b = final_state(out), final_state(whole)
    assert a["iteration"] == b["iteration"] == 5
    assert a["model"].keys() == b["model"].keys()
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert (
        not differ
    ), f"{len(differ)} tensors differ from the uninterrupted run's, e.g. {differ[:3]}"
    assert moments(a) and all(torch.equal(x, y) for x, y in zip(moments(a), moments(b)))

    if name == "vitdet_mrcnn":  # a finished run, a longer schedule: one more iteration
        args[0] = "train.max_iter=7"
        more_args = [f"train.output_dir={out}", *args, "--resume"]
        more = run_tool(["--config-file", config(name), *more_args], tmp_path)
        assert "train.max_iter changed on resume: 6 (the run being resumed) -> 7" in (
            more.stdout + more.stderr
        )
        assert final_state(out)["iteration"] == 6


def test_late_switches_are_taken_out_of_the_overrides():
    args = parse_args(["--config-file", "c.py", "a.b=1", "--resume", "c=2", "--eval-only"])
    assert args.resume and args.eval_only and not args.overwrite
    assert args.opts == ["a.b=1", "c=2"]
    args = parse_args(["--config-file", "c.py", "a.b=1", "--overwrite"])
    assert args.overwrite and not args.resume and args.opts == ["a.b=1"]


def test_overrides_may_set_any_argument_of_the_lazy_call():
    cfg = LazyConfig.load(config("vitdet_mrcnn"))
    assert "use_act_checkpoint" not in cfg.model.backbone.net  # a ViT argument left at default
    check_overrides(cfg, ["model.backbone.net.use_act_checkpoint=True", "train.max_iter=3"])
    with pytest.raises(ValueError, match="did you mean 'model.backbone.net.embed_dim'"):
        check_overrides(cfg, ["model.backbone.net.embed_dimm=3"])


def _existing_run(tmp_path):
    folder = tmp_path / "finished"
    folder.mkdir()
    (folder / "last_checkpoint").write_text("model_final.pth")
    return str(folder)


def _a_file(tmp_path):
    (tmp_path / "a_file").write_text("x")
    return str(tmp_path / "a_file")


def _yacs_yaml(tmp_path):
    (tmp_path / "yacs.yaml").write_text("MODEL:\n  META_ARCHITECTURE: GeneralizedRCNN\n")
    return str(tmp_path / "yacs.yaml")


# README rows of "What is refused before anything is built" (a distinctive part of the first cell)
ROW_KEY = "an override key the config does not have"
ROW_TYPE = "an override that gives text to a number or bool"
ROW_INT = "`train.max_iter`, `train.log_period`"
ROW_BATCH = "`dataloader.train.total_batch_size` < 1"
ROW_SWITCH = "a switch after the first `key=value`"
ROW_PROCS = "`--num-gpus`, `--num-machines` < 1"
ROW_CONFIG = "a `--config-file` that does not exist"
ROW_WEIGHTS = "`--eval-only` without `train.init_checkpoint`"
ROW_FOLDER = "`train.output_dir` that is empty, a file"
ROW_RUN = "`train.output_dir` holding a run"
ROW_LOCK = "a second run into a folder in use"  # test_locked_output_dir_is_refused


def _broken_config(line):
    """A LazyConfig file whose third line is ``line`` (after a valid import and config)."""

    def write(tmp_path):
        path = tmp_path / "broken.py"
        path.write_text(
            "from lift_det.model_zoo import get_config\n"
            "_cfg = get_config('mini/vitdet_mrcnn.py')\n" + line
        )
        return str(path)

    write.__name__ = "broken_config"
    return write


# (README row, extra command-line arguments (callables take tmp_path), output folder maker,
#  what the error must say)
REFUSED = [
    (ROW_KEY, ["train.max_iterr=5"], None, "key 'train.max_iterr'.*did you mean 'train.max_iter'"),
    (
        ROW_KEY,
        ["model.backbone.net.window_sise=4"],
        None,
        "unknown config key 'model.backbone.net.window_sise'",
    ),
    (
        ROW_TYPE,
        ["dataloader.train.dataset=[1]"],
        None,
        "the override dataloader.train.dataset=.1. cannot be applied to .*vitdet_mrcnn.py: ",
    ),
    (
        ROW_TYPE,
        ["train.max_iter=abc"],
        None,
        "train.max_iter must be a number .the config has 400.*'abc'",
    ),
    (
        ROW_TYPE,
        ["model.roi_heads.num_classes=abc"],
        None,
        "model.roi_heads.num_classes must be a number .the config has 3., got 'abc'; e.g. ",
    ),
    (ROW_INT, ["train.max_iter=-5"], None, "train.max_iter must be an integer >= 1, got -5"),
    (ROW_INT, ["train.max_iter=2.5"], None, "train.max_iter must be an integer >= 1, got 2.5"),
    (
        ROW_INT,
        ["train.checkpointer.period=0"],
        None,
        "train.checkpointer.period must be an integer >= 1",
    ),
    (
        ROW_INT,
        ["train.checkpointer.max_to_keep=0"],
        None,
        "train.checkpointer.max_to_keep must be an integer >= 1, got 0",
    ),
    (ROW_INT, ["train.log_period=0"], None, "train.log_period must be an integer >= 1, got 0"),
    (ROW_INT, ["train.eval_period=-1"], None, "train.eval_period must be an integer >= 0, got -1"),
    (
        ROW_BATCH,
        ["dataloader.train.total_batch_size=0"],
        None,
        "total_batch_size must be an integer >= 1",
    ),
    (
        ROW_BATCH,
        ["--num-gpus", "2", "dataloader.train.total_batch_size=3"],
        None,
        r"total_batch_size=3 is not divisible by the number of processes \(2\)",
    ),
    (
        ROW_SWITCH,
        ["train.max_iter=3", "--num-gpus", "2"],
        None,
        "'--num-gpus' is neither key=value",
    ),
    (ROW_SWITCH, ["--resume", "--overwrite"], None, "--resume and --overwrite contradict"),
    (ROW_PROCS, ["--num-gpus", "0"], None, "--num-gpus must be an integer >= 1, got 0"),
    (
        ROW_PROCS,
        ["--num-machines", "2", "--machine-rank", "2"],
        None,
        r"--machine-rank must be in \[0, --num-machines=2\), got 2",
    ),
    (
        ROW_CONFIG,
        ["--config-file", "configs/nope.py"],
        None,
        "--config-file 'configs/nope.py' does not exist .relative paths start at ",
    ),
    (
        ROW_CONFIG,
        ["--config-file", _yacs_yaml],
        None,
        "yacs.yaml' is a yacs config .top-level keys MODEL.: this tool reads LazyConfig files",
    ),
    (
        ROW_CONFIG,
        ["--config-file", _broken_config("x = = 1\n")],
        None,
        r"broken.py': invalid syntax at line 3 of .*broken.py: fix the file's Python",
    ),
    (
        ROW_CONFIG,
        ["--config-file", _broken_config("model = _cfg.modell\n")],
        None,
        r"broken.py' failed when it ran: ConfigAttributeError: Missing key modell "
        r".*at .*broken.py, line 3\)",
    ),
    (ROW_WEIGHTS, ["--eval-only"], None, "--eval-only needs weights: set train.init_checkpoint="),
    (
        ROW_WEIGHTS,
        ["--eval-only", "train.init_checkpoint=/nonexistent/m.pth"],
        None,
        "train.init_checkpoint '/nonexistent/m.pth' does not exist",
    ),
    (
        ROW_WEIGHTS,
        ["train.init_checkpoint=/nonexistent/m.pth"],
        None,
        "'/nonexistent/m.pth' does not exist",
    ),
    (ROW_FOLDER, [], lambda p: "", "train.output_dir is empty: set train.output_dir="),
    (ROW_FOLDER, [], _a_file, "is a file, not a folder"),
    (ROW_FOLDER, [], lambda p: os.path.join(_a_file(p), "out"), "cannot be written"),
    (
        ROW_RUN,
        [],
        _existing_run,
        "holds a run.*--resume to continue it, --overwrite to start afresh",
    ),
]


def test_the_readme_lists_exactly_the_refusals_tested_here():
    """Every row of the README's table is demonstrated by a case above, and every case belongs to
    a row: the list users read cannot drift from what the tool does."""
    cells = doc_table_rows("### What is refused before anything is built, and why")
    keys = {r[0] for r in REFUSED} | {ROW_LOCK}
    for key in keys:
        assert sum(key in cell for cell in cells) == 1, (key, cells)
    for cell in cells:
        assert any(key in cell for key in keys), f"README row without a test: {cell}"


@pytest.mark.parametrize(
    "row,extra,folder,message",
    REFUSED,
    ids=[" ".join(a if isinstance(a, str) else a.__name__ for a in r[1]) for r in REFUSED],
)
def test_refused_before_anything_is_built(
    row, extra, folder, message, tmp_path, capsys, monkeypatch
):
    out = folder(tmp_path) if folder else str(tmp_path / "out")
    extra = [a(tmp_path) if callable(a) else a for a in extra]
    monkeypatch.setattr(tool, "launch", None)  # a check that lets it through fails with TypeError

    def snapshot():  # every path under the output folder with its modification time
        root = out.rstrip(os.sep)
        if not root or not os.path.exists(root):
            return None
        paths = [root] + (
            glob.glob(os.path.join(root, "**"), recursive=True) if os.path.isdir(root) else []
        )
        return {p: os.stat(p).st_mtime_ns for p in paths}

    before = snapshot()
    with pytest.raises(SystemExit) as e:
        tool.invoke_main(
            ["--config-file", config("vitdet_mrcnn"), *extra, f"train.output_dir={out}"]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err.replace("\n", " ")), err
    assert snapshot() == before, "a refused run changed its output folder"


def test_exploding_stage_one_stops_at_the_first_diverged_step(small_mini, tmp_path):
    """Stage one's loss (a cosine distance) stays finite while its weights blow up: the run stops
    at the first step whose weights exceed the LiFT file's bound, in one line, with the last
    checkpoint from before it and no LiFT file."""
    out = tmp_path / "s1"
    proc = run_tool(
        ["--config-file", config("lift_stage1"), f"train.output_dir={out}", "train.max_iter=30"]
        + ["optimizer.lr=1e4", "train.checkpointer.period=1", "train.eval_period=0"],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("train_net.py: error:")]
    stopped = int(re.search(r"diverged at iteration (\d+): largest \|w\| = ", line).group(1))
    assert stopped < 29 and "lower the learning rate" in line
    assert not (out / "lift_final.pth").exists()
    # checkpoints every iteration: the newest is the step before the diverged one
    assert (out / "last_checkpoint").read_text() == f"model_{stopped - 1:07d}.pth"
    weights = torch.load(out / f"model_{stopped - 1:07d}.pth", weights_only=False)["model"]
    assert (
        max(
            v.abs().max().item()
            for k, v in weights.items()
            if ".lift." in f".{k}" and "running" not in k and v.is_floating_point()
        )
        <= 1e4
    )


def test_missing_lift_file_is_refused_before_anything_is_built(tmp_path, capsys, monkeypatch):
    """(README row ROW_WEIGHTS) A stage-two run whose LiFT file is missing stops in one line
    before the model and the data are built, and leaves no folder behind."""
    out = tmp_path / "out"
    monkeypatch.setattr(tool, "launch", None)  # a check that lets it through fails with TypeError
    with pytest.raises(SystemExit) as e:
        tool.invoke_main(
            ["--config-file", config("vitdet_mrcnn_lift"), f"train.output_dir={out}"]
            + ["model.backbone.net.lift_weights=/nonexistent/lift_final.pth"]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "model.backbone.net.lift_weights '/nonexistent/lift_final.pth' does not exist" in err
    assert "lift_final.pth), or '' when train.init_checkpoint holds LiFT" in err
    assert not out.exists()


def test_existing_run_is_accepted_with_resume_or_overwrite(tmp_path, monkeypatch):
    out = _existing_run(tmp_path)
    calls = []
    monkeypatch.setattr(tool, "launch", lambda main, n, **kw: calls.append(kw["args"][0]))
    argv = ["--config-file", config("vitdet_mrcnn"), f"train.output_dir={out}"]
    tool.invoke_main(argv + ["--resume"])
    assert os.path.exists(os.path.join(out, "last_checkpoint"))
    tool.invoke_main(argv + ["--overwrite"])
    # nothing of the old run is touched before the new one is built and its weights loaded
    assert os.path.exists(os.path.join(out, "last_checkpoint"))
    assert [(a.resume, a.overwrite) for a in calls] == [(True, False), (False, True)]


def test_a_folder_in_use_is_refused_naming_the_holder(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "busy")
    os.makedirs(out)
    monkeypatch.setattr(tool, "launch", None)
    with lock_output_dir(out):
        with pytest.raises(SystemExit):
            tool.invoke_main(["--config-file", config("vitdet_mrcnn"), f"train.output_dir={out}"])
    assert f"is in use by another run (pid {os.getpid()}" in capsys.readouterr().err
    with lock_output_dir(out):  # released: usable again
        pass


def test_unreadable_init_checkpoint_is_one_line(small_mini, tmp_path):
    """Random bytes (seeded) as train.init_checkpoint: exit 2, one line naming the file and the
    fix, no traceback (every unpickler's failures: test_checkpoints.py, 120 seeded files)."""
    rng = np.random.default_rng(0)
    # one run through the tool (each file kind's unpickler: test_checkpoints.py, 120 files)
    for name, content in [("model.pkl", rng.bytes(3000))]:
        bad = tmp_path / name
        bad.write_bytes(content)
        r = run_tool(
            [
                "--config-file",
                config("vitdet_mrcnn"),
                "--eval-only",
                "train.device=cpu",
                f"train.init_checkpoint={bad}",
                f"train.output_dir={tmp_path / 'out'}",
            ],
            cwd=tmp_path,
            check=False,
        )
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Traceback" not in r.stderr
        assert f"'{bad}' ({len(content)} bytes) is not a checkpoint or is truncated" in r.stderr


def test_configs_need_no_hidden_registration():
    """detectron2's own lazyconfig_train_net flow: LazyConfig.load + instantiate, with no
    lift_det import beforehand (the configs import what they use)."""
    code = (
        "import sys; from detectron2.config import LazyConfig, instantiate; "
        f"cfg = LazyConfig.load({config('vitdet_mrcnn_lift')!r}); "
        "m = instantiate(cfg.model); "
        "assert 'lift_det' in sys.modules and 'lift_mini_val' in __import__("
        "'detectron2.data', fromlist=['x']).DatasetCatalog.list(); print('ok')"
    )
    proc = subprocess.run([tool_python(), "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_cpu_fallbacks(caplog):
    """On the CPU: no DDP device ids (gloo), fp32 SimpleTrainer instead of AMP (with a warning),
    and train.device=cuda falls back to the CPU where CUDA is missing."""
    from detectron2.engine import AMPTrainer, SimpleTrainer

    from lift_det.engine import build_trainer, ddp_kwargs, fit_device

    cfg = LazyConfig.load(config("vitdet_mrcnn"))
    cfg.train.ddp = {"broadcast_buffers": False, "find_unused_parameters": False}
    cfg.train.device = "cpu"
    assert ddp_kwargs(cfg) == {**cfg.train.ddp, "device_ids": None}
    cfg.train.device = "cuda:0"
    assert ddp_kwargs(cfg) == dict(cfg.train.ddp)  # create_ddp_model then picks the local GPU
    fit_device(cfg)
    assert cfg.train.device == ("cuda:0" if torch.cuda.is_available() else "cpu")

    model = torch.nn.Linear(2, 2)
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg.train.device, cfg.train.amp.enabled = "cpu", True
    d2_logger = logging.getLogger("detectron2")  # default_setup stops it propagating
    d2_logger.addHandler(caplog.handler)
    try:
        trainer = build_trainer(cfg, model, optim, [])
    finally:
        d2_logger.removeHandler(caplog.handler)
    assert type(trainer) is SimpleTrainer and "training in fp32" in caplog.text
    if torch.cuda.is_available():
        cfg.train.device = "cuda"
        assert type(build_trainer(cfg, model.cuda(), optim, [])) is AMPTrainer


def test_missing_dataset_names_the_dataset_root(monkeypatch):
    """A missing dataset file is bad input (one line, exit 2 from the tool) naming the root."""
    from detectron2.config import LazyCall as L

    from lift_det.data.detection_utils import datasets_hint
    from lift_det.engine import instantiate_data
    from lift_det.engine.checks import UsageError

    def missing(path):
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{path}'")

    monkeypatch.setenv("DETECTRON2_DATASETS", "/data/sets")
    with pytest.raises(UsageError) as e:
        instantiate_data(L(missing)(path="/data/sets/coco/x.json"), "the training data")
    msg = str(e.value)
    assert msg.startswith("the training data: [Errno 2]") and "/data/sets/coco/x.json" in msg
    assert "Set DETECTRON2_DATASETS to the folder that holds them" in msg
    assert "now '/data/sets'; e.g. /data/sets/coco/train2017" in msg
    assert msg.endswith(datasets_hint())  # lift_det.data's hint, the one the datasets give


def test_missing_dataset_hint_is_given_once(monkeypatch, tmp_path):
    """lift_det's dataset functions give the hint already: the tool does not repeat it."""
    from detectron2.config import LazyCall as L

    from lift_det.data.detection_utils import datasets_hint
    from lift_det.data.stage1 import image_folder_dicts
    from lift_det.engine import instantiate_data
    from lift_det.engine.checks import UsageError

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(UsageError) as e:
        instantiate_data(L(image_folder_dicts)(root=str(tmp_path / "nowhere")), "the test data")
    msg = str(e.value)
    assert msg.startswith("the test data: Image folder") and "nowhere" in msg
    assert msg.count(datasets_hint()) == 1


def _files(folder):
    """{name: bytes} of the files of a folder (not its subfolders)."""
    names = sorted(os.listdir(folder))
    return {
        n: open(os.path.join(folder, n), "rb").read()
        for n in names
        if os.path.isfile(os.path.join(folder, n))
    }


def test_eval_only_into_a_training_folder_keeps_its_files(trained, tmp_path):
    """--eval-only with train.output_dir = a finished run writes into a new subfolder per
    evaluation: the run's config.yaml, results and checkpoints are unchanged, and a second
    evaluation does not replace the first."""
    import shutil

    run = str(tmp_path / "run")
    shutil.copytree(trained["lift"], run)
    before = _files(run)
    args = ["--config-file", config("vitdet_mrcnn_lift"), "--eval-only", f"train.output_dir={run}"]
    args += [f"train.init_checkpoint={run}/model_final.pth", ALL_DETS]
    for _ in range(2):
        run_tool(args, cwd=tmp_path)
    after = _files(run)
    assert {k: v for k, v in after.items() if k != "log.txt"} == {
        k: v for k, v in before.items() if k != "log.txt"
    }
    assert after.get("log.txt", b"").startswith(before.get("log.txt", b""))
    for name in ["inference_model_final", "inference_model_final_2"]:
        evaluation = set(os.listdir(os.path.join(run, name)))
        assert {"config.yaml", "coco_instances_results.json", "log.txt"} <= evaluation, name


def test_overwrite_with_a_bad_run_keeps_the_old_run(trained, tmp_path):
    """--overwrite whose new run fails before training (weights refused: known only once the model
    is built) leaves the old run as it was (last_checkpoint, config.yaml, model_final.pth), so the
    next plain run is still refused."""
    import shutil

    run = str(tmp_path / "run")
    shutil.copytree(trained["base"], run)
    before = _files(run)
    common = ["--config-file", config("vitdet_mrcnn"), f"train.output_dir={run}", ALL_DETS]
    bad = [f"train.init_checkpoint={trained['lift_file']}", "--overwrite"]  # a LiFT file
    proc = run_tool(common + ["train.max_iter=1"] + bad, tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "is a LiFT file" in proc.stderr.strip().splitlines()[-1]
    after = _files(run)
    for name in ["last_checkpoint", "config.yaml", "model_final.pth"]:
        assert after[name] == before[name], name
    proc = run_tool(common + ["train.max_iter=1"], tmp_path, check=False)
    assert proc.returncode == 2 and "holds a run" in proc.stderr


USER_CONFIG = """
from detectron2.data.datasets import register_coco_instances

from lift_det.model_zoo import get_config

# a user's own dataset, registered at the top of the config (as many detectron2 users do)
_ann = "{root}/annotations/instances_{{}}.json"
register_coco_instances("user_train", {{}}, _ann.format("train"), "{root}/train")
register_coco_instances("user_val", {{}}, _ann.format("val"), "{root}/val")

_cfg = get_config("mini/vitdet_mrcnn.py")
model, dataloader, optimizer, lr_multiplier, train = (
    _cfg.model, _cfg.dataloader, _cfg.optimizer, _cfg.lr_multiplier, _cfg.train)
dataloader.train.dataset.names = "user_train"
dataloader.test.dataset.names = "user_val"
"""


def test_a_config_that_registers_its_dataset(small_mini, tmp_path):
    """A config file runs once per process: registering a dataset at its top level works."""
    user = tmp_path / "my_config.py"
    user.write_text(USER_CONFIG.format(root=small_mini))
    out = str(tmp_path / "out")
    proc = run_tool(
        ["--config-file", str(user), f"train.output_dir={out}", "train.max_iter=1"], tmp_path
    )
    assert "already registered" not in proc.stderr
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert "bbox" in open(os.path.join(out, "log.txt")).read()  # evaluated on user_val
    proc = run_tool(
        [
            "--config-file",
            str(user),
            "--eval-only",
            f"train.output_dir={out}",
            f"train.init_checkpoint={out}/model_final.pth",
        ],
        tmp_path,
    )
    assert os.path.isfile(os.path.join(out, "inference_model_final", "coco_instances_results.json"))


def test_resume_applies_a_new_learning_rate(small_mini, tmp_path, caplog):
    """--resume optimizer.lr=... trains on with the new learning rate (the checkpoint's optimizer
    state would otherwise bring back the old one) and says so."""
    out = str(tmp_path / "run")
    common = ["--config-file", config("vitdet_mrcnn"), f"train.output_dir={out}"]
    common += ["train.eval_period=0", "train.device=cpu", "train.log_period=1"]
    # no loader worker: this process's trainers outlive the test, and a worker left to the
    # garbage collector takes seconds to shut down in whichever test collects it
    common += ["dataloader.train.num_workers=0"]
    tool.main(parse_args(common + ["train.max_iter=2"]))
    d2_logger = logging.getLogger("detectron2")  # default_setup stops it propagating
    d2_logger.addHandler(caplog.handler)
    try:
        trainer = tool.main(
            parse_args(common + ["train.max_iter=3", "optimizer.lr=0.0008", "--resume"])
        )
    finally:
        d2_logger.removeHandler(caplog.handler)
    assert {g["initial_lr"] for g in trainer.optimizer.param_groups} == {0.0008}
    # iteration 2 of 3: past the warmup (50/400 of the schedule), before the drop at 90%
    assert trainer.storage.history("lr").values()[-1][0] == pytest.approx(0.0008)
    assert (
        "Optimizer settings changed on resume" in caplog.text
        and "lr 0.0004 -> 0.0008" in caplog.text
    )


def test_eval_only_refuses_a_mostly_random_model(trained, tmp_path):
    """--eval-only with a checkpoint that holds only part of the detector (here: the ViT of a
    stage-one run's teacher, renamed) is refused with the numbers and the fix, exit code 2."""
    ckpt = torch.load(os.path.join(trained["base"], "model_final.pth"), weights_only=False)
    vit_only = {k: v for k, v in ckpt["model"].items() if k.startswith("backbone.net.")}
    path = str(tmp_path / "vit_only.pth")
    torch.save({"model": vit_only}, path)
    proc = run_tool(
        [
            "--config-file",
            config("vitdet_mrcnn"),
            "--eval-only",
            f"train.init_checkpoint={path}",
            f"train.output_dir={tmp_path / 'o'}",
        ],
        tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr
    assert re.search(r"leaves \d+ of the model's \d+ tensors \(\d+% of its parameters\)", last)
    assert "roi_heads" in last and "allow_mismatch=True" in last
    assert not os.path.exists(tmp_path / "o")  # the refused evaluation left nothing behind


def test_overwrite_keeps_the_old_metrics_aside(tmp_path):
    """--overwrite: the old run's metrics.json moves to metrics.previous.json and the new run's
    JSONWriter, opened (append mode) before the run is known good, writes a file of its own."""
    from detectron2.utils.events import EventStorage, JSONWriter

    from lift_det.engine.run_dir import forget_run

    old = '{"iteration": 19, "total_loss": 1.0}\n{"iteration": 39, "total_loss": 0.5}\n'
    (tmp_path / "metrics.json").write_text(old)
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    writer = JSONWriter(str(tmp_path / "metrics.json"))  # as train_net registers it
    forget_run(str(tmp_path))
    with EventStorage(0) as storage:
        storage.put_scalar("total_loss", 2.0, smoothing_hint=False)
        writer.write()
    writer.close()
    assert (tmp_path / "metrics.previous.json").read_text() == old
    lines = (tmp_path / "metrics.json").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"iteration": 0, "total_loss": 2.0}]
    assert not (tmp_path / "last_checkpoint").exists()


FULL_DISK_CONFIG = """
import errno
from detectron2.config import LazyCall as L, LazyConfig
from detectron2.engine import HookBase

class DiskFull(HookBase):
    def after_step(self):  # as a checkpoint save on a full disk fails
        raise OSError(errno.ENOSPC, "no space left on the output folder: free space and --resume")

_cfg = LazyConfig.load({config!r})
model, dataloader, optimizer, lr_multiplier, train = (
    _cfg.model, _cfg.dataloader, _cfg.optimizer, _cfg.lr_multiplier, _cfg.train)
train.export = [L(DiskFull)()]
"""


def test_faults_of_the_machine_are_one_line(small_mini, tmp_path):
    """A full disk during training, and a datasets root that is a file (the mini data cannot be
    generated there): one line naming the cause on stderr, no traceback there, and a refused run
    leaves no output folder."""
    full = tmp_path / "full_disk.py"
    full.write_text(FULL_DISK_CONFIG.format(config=config("lift_stage1")))
    out = tmp_path / "s1"
    proc = run_tool(["--config-file", str(full), f"train.output_dir={out}"], tmp_path, False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "train_net.py: error: [Errno 28] no space left on the output folder: "
        "free space and --resume"
    )

    (tmp_path / "not_a_folder").write_text("")
    env = dict(os.environ, **CPU_ENV, DETECTRON2_DATASETS=str(tmp_path / "not_a_folder"))
    env.pop("LIFT_DET_MINI_ROOT", None)
    cmd = [tool_python(), TRAIN_NET, "--config-file", config("lift_stage1")]
    proc = subprocess.run(
        cmd + [f"train.output_dir={tmp_path / 'o'}"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert f"'{tmp_path / 'not_a_folder'}' is a file, not a folder" in line, line
    assert not (tmp_path / "o").exists()
