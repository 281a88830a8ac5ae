"""Stage two / the main job: tools/train_net.py on the mini configs (a smaller mini dataset)."""

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import json
import os
import signal
import socket
import subprocess
import sys
import time
from conftest import REPO
from lift_det.data.mini import generate_mini_coco, register_mini_coco
from lift_det.engine.mini_pipeline import read_final_metrics

TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")


@pytest.fixture(scope="module")
def small_mini(tmp_path_factory):
    """A small mini dataset (8 train / 6 val images) that every subprocess finds by env var."""
    root = str(tmp_path_factory.mktemp("mini"))
    generate_mini_coco(root, num_train=8, num_val=6)
    old = os.environ.get("LIFT_DET_MINI_ROOT")
    os.environ["LIFT_DET_MINI_ROOT"] = root
    register_mini_coco(root)
    yield root
    if old is None:
        os.environ.pop("LIFT_DET_MINI_ROOT")
    else:
        os.environ["LIFT_DET_MINI_ROOT"] = old
    register_mini_coco()


def run_tool(args, check=True, timeout=600):
    proc = subprocess.run(
        [sys.executable, TRAIN_NET, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-5000:])
    return proc


def config(name):
    return os.path.join(REPO, "configs", "mini", f"{name}.py")


def test_reported_ap_equals_pycocotools(small_mini, tmp_path):
    out = str(tmp_path / "run")
    run_tool(
        [
            "--config-file",
            config("vitdet_mrcnn"),
            f"train.output_dir={out}",
            "train.max_iter=3",
            "train.eval_period=3",
            "model.roi_heads.box_predictor.test_score_thresh=0.0",
        ]
    )
    reported = read_final_metrics(out)
    gt = COCO(os.path.join(small_mini, "annotations", "instances_val.json"))
    with open(os.path.join(out, "coco_instances_results.json")) as f:
        dets = json.load(f)
    assert dets, "no detections were dumped"
    for iou_type, key in [("bbox", "bbox/AP"), ("segm", "segm/AP")]:
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert reported[key] == pytest.approx(ev.stats[0] * 100, abs=1e-6)
        assert reported[f"{iou_type}/AP50"] == pytest.approx(ev.stats[1] * 100, abs=1e-6)


def test_resume_after_kill_continues_at_the_right_iteration(small_mini, tmp_path):
    out = str(tmp_path / "run")
    args = [
        "--config-file",
        config("vitdet_mrcnn"),
        f"train.output_dir={out}",
        "train.max_iter=6",
        "train.checkpointer.period=2",
        "train.eval_period=100",
    ]
    proc = subprocess.Popen(
        [sys.executable, TRAIN_NET, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    tag = os.path.join(out, "last_checkpoint")

    def tagged():  # a checkpoint is complete once last_checkpoint names it
        return os.path.exists(tag) and open(tag).read().strip() == "model_0000001.pth"

    deadline = time.time() + 300
    while not tagged() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert tagged(), "no checkpoint written before the deadline"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(out, "model_final.pth"))
    with open(os.path.join(out, "last_checkpoint")) as f:
        last = f.read().strip()
    assert not any(n.startswith(".tmp-") for n in os.listdir(out)) or last.startswith("model_")
    saved_iter = torch.load(os.path.join(out, last), weights_only=False)["iteration"]

    resumed = run_tool(["--resume", *args])
    log = resumed.stdout + resumed.stderr
    assert f"Starting training from iteration {saved_iter + 1}" in log
    assert torch.load(os.path.join(out, "model_final.pth"), weights_only=False)["iteration"] == 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_cpu_launch(small_mini, tmp_path):
    out = str(tmp_path / "ddp")
    url = f"tcp://127.0.0.1:{free_port()}"
    proc = run_tool(
        [
            "--num-gpus",
            "2",
            "--dist-url",
            url,
            "--config-file",
            config("vitdet_mrcnn"),
            f"train.output_dir={out}",
            "train.max_iter=2",
            "train.eval_period=100",
        ]
    )
    assert "world size: 2" in (proc.stdout + proc.stderr).lower() or os.path.exists(
        os.path.join(out, "model_final.pth")
    )
    assert os.path.exists(os.path.join(out, "model_final.pth"))
    assert "bbox/AP" in read_final_metrics(out)


def test_lift_stage_two_config_trains_only_heads(small_mini, tmp_path):
    out = str(tmp_path / "base")
    run_tool(
        [
            "--config-file",
            config("vitdet_mrcnn"),
            f"train.output_dir={out}",
            "train.max_iter=1",
            "train.eval_period=100",
        ]
    )
    base = os.path.join(out, "model_final.pth")
    out2 = str(tmp_path / "lift")
    proc = run_tool(
        [
            "--config-file",
            config("vitdet_mrcnn_lift"),
            f"train.output_dir={out2}",
            f"train.init_checkpoint={base}",
            "train.max_iter=2",
            "train.eval_period=100",
        ]
    )
    before = torch.load(base, weights_only=False)["model"]
    after = torch.load(os.path.join(out2, "model_final.pth"), weights_only=False)["model"]
    vit_key = "backbone.net.blocks.0.attn.qkv.weight"
    torch.testing.assert_close(after[vit_key], before[vit_key])  # frozen ViT
    head_key = "roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(after[head_key], before[head_key])  # finetuned heads
    assert "simfp_2" in proc.stdout + proc.stderr  # ViTDet's 4x stage reported as unused


def test_bad_inputs_give_clear_errors(small_mini, tmp_path):
    proc = run_tool(["--config-file", config("vitdet_mrcnn"), "--eval-only"], check=False)
    assert proc.returncode != 0 and "--eval-only needs weights" in proc.stderr
    proc = run_tool(
        [
            "--config-file",
            config("vitdet_mrcnn"),
            "--eval-only",
            "train.init_checkpoint=/nonexistent/model.pth",
        ],
        check=False,
    )
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    bad = tmp_path / "lift.pth"
    torch.save({"model": {}}, bad)
    proc = run_tool(
        [
            "--config-file",
            config("vitdet_mrcnn_lift"),
            f"train.output_dir={tmp_path}",
            f"model.backbone.net.lift_weights={bad}",
        ],
        check=False,
    )
    assert proc.returncode != 0 and "not a LiFT file" in proc.stderr


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
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
