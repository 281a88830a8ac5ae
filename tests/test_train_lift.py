"""Tests of stage one end to end: configs, tools/train_lift.py, resume, NaN, launch, LiFT files."""

import json
import logging
import os
import subprocess
from typing import Dict, Iterator, List
import pytest
import torch
from PIL import Image

from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng

from conftest import CPU_ENV, load_tool, tool_python, vitdet_vit_kwargs
from lift_det.data import MINI_DATASETS, default_mini_root, generate_mini_coco, register_mini_coco
from lift_det.data.stage1 import stage1_dataset_dicts
from lift_det.engine import parse_args
from lift_det.modeling import LiFT, ResizeConvUpsampler, ViTLiFT, vit_identity

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINI_CONFIG = os.path.join(REPO, "configs", "mini", "lift_stage1.py")
COCO_CONFIG = os.path.join(REPO, "configs", "lift_stage1_coco.py")
ALIAS = os.path.join(REPO, "tools", "train_lift.py")  # an alias of tools/train_net.py
tool = load_tool("train_net")

# the ViT of configs/mini/lift_stage1.py
MINI_VIT = vitdet_vit_kwargs(
    img_size=256,
    embed_dim=192,
    depth=4,
    num_heads=3,
    window_size=8,
    window_block_indexes=[0, 2],
    mlp_ratio=4,
)
# small runs: batch of 4 (2 per process when launched with 2)
FAST = ["dataloader.train.total_batch_size=4", "train.log_period=1"]


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small mini COCO (16 train / 8 val images) used through ensure_mini_coco."""
    old_env, old_root = os.environ.get("LIFT_DET_MINI_ROOT"), default_mini_root()
    root = str(tmp_path_factory.mktemp("mini") / "lift_mini_coco")
    generate_mini_coco(root, num_train=16, num_val=8)
    os.environ["LIFT_DET_MINI_ROOT"] = root
    yield root
    if old_env is None:
        os.environ.pop("LIFT_DET_MINI_ROOT")
    else:
        os.environ["LIFT_DET_MINI_ROOT"] = old_env
    for name in MINI_DATASETS:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_mini_coco(old_root)


def run_tool(args: List[str]):
    """tools/train_net.py in this process (as launch() runs it with one process)."""
    return tool.main(parse_args(args))


def test_coco_config():
    cfg = LazyConfig.load(COCO_CONFIG)
    # 25 epochs of COCO train2017 at 64 images per iteration (within a GPU-day: test_configs)
    epochs = cfg.train.max_iter * cfg.dataloader.train.total_batch_size / 118287
    assert 25 <= epochs < 25.001
    assert cfg.dataloader.train.mapper.image_size == 1024 == cfg.model.square_pad
    assert cfg.dataloader.test.mapper.image_size == 1024
    assert cfg.dataloader.train.dataset.names == "coco_2017_train"
    assert cfg.optimizer.lr == 1e-3
    assert "mask_rcnn_vitdet_b" in cfg.train.init_checkpoint
    assert cfg.train.export[0].teacher_weights == cfg.train.init_checkpoint
    model = instantiate(cfg.model)
    assert model.lift.preset == "LiFT-B"
    assert model.backbone.identity() == {
        "type": "detectron2.ViT",
        "embed_dim": 768,
        "depth": 12,
        "num_heads": 12,
        "patch_size": 16,
    }
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("lift.") for n in trainable)
    assert model.backbone.net.blocks[0].drop_path.__class__.__name__ == "Identity"


def test_timm_dino_config():
    """The paper's setting: LiFT-S on DINO ViT-S/16 (timm) at 448; the teacher recorded is the
    weights file given on the command line."""
    cfg = LazyConfig.load(os.path.join(REPO, "configs", "lift_stage1_timm_dino_s16.py"))
    cfg = LazyConfig.apply_overrides(cfg, ["model.source.weights=/w/dino_vits16.pth"])
    assert cfg.model.source.model_name == "vit_small_patch16_224.dino"
    assert cfg.model.square_pad == 448 == cfg.dataloader.train.mapper.image_size
    assert cfg.dataloader.test.mapper.image_size == 448
    assert cfg.dataloader.train.mapper.patch_size == cfg.dataloader.test.mapper.patch_size == 16
    lift = cfg.model.lift
    assert (lift.name, lift.in_channels, lift.patch_size) == ("LiFT-S", 384, 16)
    assert cfg.train.init_checkpoint == ""
    assert instantiate(cfg.train.export[0]).teacher_weights == "/w/dino_vits16.pth"
    epochs = cfg.train.max_iter * cfg.dataloader.train.total_batch_size / 118287
    assert 100 <= epochs < 100.001
    cfg.model.source.update(weights="", depth=1)
    source = instantiate(cfg.model.source)  # DINO's normalization (ImageNet), on 0-255 input
    torch.testing.assert_close(source.pixel_mean, (123.675, 116.28, 103.53))
    torch.testing.assert_close(source.pixel_std, (58.395, 57.12, 57.375))


def test_mini_run_writes_lift_file_for_stage_two(mini_root, tmp_path, caplog):
    out = str(tmp_path / "run")
    lift_logger = logging.getLogger("lift_det")  # the tool stops it propagating to the root
    lift_logger.addHandler(caplog.handler)
    try:
        run_tool(
            ["--config-file", MINI_CONFIG]
            + FAST
            + [f"train.output_dir={out}", "train.max_iter=4", "train.eval_period=4"]
        )
    finally:
        lift_logger.removeHandler(caplog.handler)
    assert "RANDOMLY INITIALIZED" in caplog.text  # train.init_checkpoint is empty
    assert "Feature quality on 8 images" in caplog.text
    path = os.path.join(out, "lift_final.pth")
    data = torch.load(path, weights_only=False)
    meta = data["lift_det"]
    vit_lift = ViTLiFT(lift=LiFT.from_preset("LiFT-S", 192, 16), lift_weights=path, **MINI_VIT)
    vit_lift.load_state_dict({}, strict=False)  # a load without LiFT tensors reads the file
    assert meta["backbone"] == vit_identity(vit_lift)
    assert meta["preset"] == "LiFT-S" and meta["in_channels"] == 192 and meta["patch_size"] == 16
    assert meta["feature_layer"] == "last_feat" and meta["iteration"] == 4
    assert meta["teacher_weights"] == ""
    for k, v in vit_lift.lift.state_dict().items():
        assert torch.equal(v, data["model"][k]), k
    # the distiller's checkpoint holds the same LiFT
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)
    assert torch.equal(final["model"]["lift.out_conv.weight"], data["model"]["out_conv.weight"])
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = [json.loads(line) for line in f]
    quality = [m for m in metrics if "lift_quality/cos_lift" in m]
    assert quality and {"lift_quality/cos_bilinear", "lift_quality/cos_nearest"} <= set(quality[-1])

    # refused: another width, patch size or ViT
    other_width = dict(MINI_VIT, embed_dim=384, num_heads=6)
    for lift, vit, match in [
        (LiFT.from_preset("LiFT-S", 384, 16), other_width, "in_channels"),
        (LiFT.from_preset("LiFT-S", 192, 8), dict(MINI_VIT, patch_size=8), "patch_size"),
        (
            LiFT.from_preset("LiFT-S", 192, 16),
            dict(MINI_VIT, depth=6, window_block_indexes=[0]),
            "backbone.depth",
        ),
    ]:
        with pytest.raises(ValueError, match=match):
            ViTLiFT(lift=lift, lift_weights=path, **vit).load_state_dict({}, strict=False)

    # --eval-only on the stage-one checkpoint
    res = run_tool(
        ["--config-file", MINI_CONFIG, "--eval-only"]
        + [f"train.output_dir={out}", f"train.init_checkpoint={out}/model_final.pth"]
    )
    assert set(res["lift_quality"]) == {"cos_lift", "cos_bilinear", "cos_nearest"}
    assert res["lift_quality"]["cos_lift"] == pytest.approx(quality[-1]["lift_quality/cos_lift"])


class _CrashAt(HookBase):
    """Simulates a killed job: raises after iteration ``iteration`` (and its checkpoint)."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter == self.iteration:
            raise KeyboardInterrupt(f"simulated interruption after iteration {self.iteration}")


def _one_image_cfg(folder: str, out: str, max_iter: int):
    """The mini config on a one-image folder without jitter: every batch is the same, so a
    resumed run sees the same data as an uninterrupted one (detectron2 does not restore the
    position of the data stream on resume)."""
    cfg = LazyConfig.load(MINI_CONFIG)
    cfg.dataloader.train.dataset = L(stage1_dataset_dicts)(image_folders=folder)
    cfg.dataloader.train.mapper.color_jitter_strength = 0.0
    cfg.dataloader.train.total_batch_size = 2
    cfg.model.square_pad = 128  # and the mapper's image_size: a cheaper 8x8-patch view
    cfg.train.output_dir = out
    cfg.train.max_iter = max_iter
    cfg.train.eval_period = 0
    cfg.dataloader.pop("evaluator")  # no evaluation at the end
    cfg.train.checkpointer.period = 2
    cfg.train.log_period = 1
    return cfg


def _train(cfg, resume: bool = False, crash_at: int = -1):
    if crash_at >= 0:
        cfg.train.export = list(cfg.train.export) + [L(_CrashAt)(iteration=crash_at)]
    seed_all_rng(0)
    args = parse_args(["--resume"] if resume else [])
    return tool.do_train(args, cfg)


def test_resume_continues_iteration_optimizer_and_schedule(mini_root, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    image = Image.open(os.path.join(mini_root, "train", "000000.jpg"))
    image.save(folder / "only.jpg")
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")

    trainer = _train(_one_image_cfg(str(folder), whole, 6))
    assert trainer.iter == 6
    with pytest.raises(KeyboardInterrupt):
        _train(_one_image_cfg(str(folder), parts, 6), crash_at=3)
    assert not os.path.exists(os.path.join(parts, "lift_final.pth"))
    with open(os.path.join(parts, "last_checkpoint")) as f:
        assert f.read().strip() == "model_0000003.pth"
    trainer = _train(_one_image_cfg(str(folder), parts, 6), resume=True)
    assert trainer.start_iter == 4 and trainer.iter == 6

    a = torch.load(os.path.join(whole, "model_final.pth"), weights_only=False)
    b = torch.load(os.path.join(parts, "model_final.pth"), weights_only=False)
    assert a["iteration"] == b["iteration"] == 5
    a, b = a["trainer"], b["trainer"]
    assert a["iteration"] == b["iteration"] == 5
    # the lr scheduler (last iteration, last lr) and the optimizer (lr, step counts, moments)
    assert a["hooks"]["LRScheduler"] == b["hooks"]["LRScheduler"]
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for k, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(
                b["optimizer"]["state"][k][name], value, rtol=1e-4, atol=1e-6
            )
    a = torch.load(os.path.join(whole, "model_final.pth"), weights_only=False)
    b = torch.load(os.path.join(parts, "model_final.pth"), weights_only=False)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-6, msg=k)
    lift_a = torch.load(os.path.join(whole, "lift_final.pth"), weights_only=False)
    lift_b = torch.load(os.path.join(parts, "lift_final.pth"), weights_only=False)
    assert lift_a["lift_det"]["iteration"] == lift_b["lift_det"]["iteration"] == 6


class _Snapshot(HookBase):
    """Keeps the model's state as training starts (after train.init_checkpoint was loaded)."""

    state: Dict[str, torch.Tensor] = {}

    def before_train(self):
        model = self.trainer.model
        _Snapshot.state = {k: v.clone() for k, v in model.state_dict().items()}


def _mae_checkpoint(vit: Dict, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random weights under MAE's (timm's) names for a ViT with these arguments."""
    C, hidden = vit["embed_dim"], int(vit["embed_dim"] * vit["mlp_ratio"])
    num_patches = (vit["pretrain_img_size"] // vit["patch_size"]) ** 2
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "cls_token": (1, 1, C),
        "pos_embed": (1, 1 + num_patches, C),
        "patch_embed.proj.weight": (C, 3, vit["patch_size"], vit["patch_size"]),
        "patch_embed.proj.bias": (C,),
        "norm.weight": (C,),
        "norm.bias": (C,),
    }
    for i in range(vit["depth"]):
        for name, w in [
            ("norm1", (C,)),
            ("attn.qkv", (3 * C, C)),
            ("attn.proj", (C, C)),
            ("norm2", (C,)),
            ("mlp.fc1", (hidden, C)),
            ("mlp.fc2", (C, hidden)),
        ]:
            shapes[f"blocks.{i}.{name}.weight"] = w
            shapes[f"blocks.{i}.{name}.bias"] = (w[0],)
    return {k: torch.randn(*s, generator=g) for k, s in shapes.items()}


def _init_cfg(out: str, init_checkpoint: str):
    cfg = LazyConfig.load(MINI_CONFIG)
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.pop("evaluator")
    cfg.model.square_pad = 128
    cfg.train.output_dir = out
    cfg.train.max_iter = 1
    cfg.train.init_checkpoint = init_checkpoint
    cfg.train.export = list(cfg.train.export) + [L(_Snapshot)()]
    return cfg


def test_init_checkpoint_vitdet_and_mae(mini_root, tmp_path):
    # a ViTDet checkpoint ({"model": ...} with backbone.net.* keys) of the same small ViT
    det_cfg = model_zoo.get_config("common/models/mask_rcnn_vitdet.py")
    det_cfg.model.backbone.net.update(MINI_VIT)
    det_cfg.model.backbone.square_pad = 256
    torch.manual_seed(1)
    detector = instantiate(det_cfg.model)
    with torch.no_grad():
        for p in detector.backbone.net.parameters():
            p.add_(torch.randn_like(p))
    vitdet_path = str(tmp_path / "vitdet_mini.pth")
    torch.save({"model": detector.state_dict()}, vitdet_path)
    trainer = _train(_init_cfg(str(tmp_path / "vitdet"), vitdet_path))
    expected = detector.backbone.net.state_dict()
    for k, v in trainer.model.backbone.net.state_dict().items():
        assert torch.equal(_Snapshot.state[f"backbone.net.{k}"], expected[k]), k
        assert torch.equal(v, expected[k]), k  # and still after training: frozen
    meta = torch.load(str(tmp_path / "vitdet" / "lift_final.pth"), weights_only=False)["lift_det"]
    assert meta["teacher_weights"] == vitdet_path

    # an MAE checkpoint (timm names), through detectron2's matching heuristics
    mae = _mae_checkpoint(MINI_VIT)
    mae_path = str(tmp_path / "mae_mini.pth")
    torch.save(mae, mae_path)
    cfg = _init_cfg(str(tmp_path / "mae"), mae_path + "?matching_heuristics=True")
    seed_all_rng(0)
    fresh_lift = instantiate(cfg.model).lift.state_dict()  # what do_train builds, same seed
    _train(cfg)
    loaded = _Snapshot.state
    for k, v in mae.items():
        if k not in ("cls_token", "norm.weight", "norm.bias"):  # not in detectron2's ViT
            assert torch.equal(loaded[f"backbone.net.{k}"], v), k
    for k, v in fresh_lift.items():
        assert torch.equal(loaded[f"lift.{k}"], v), k  # LiFT untouched by the MAE file


class _NaNLift(ResizeConvUpsampler):
    def forward(self, image, features, num_passes=1):
        return super().forward(image, features, num_passes) * float("nan")


def test_nan_loss_stops_naming_iteration(mini_root, tmp_path):
    cfg = LazyConfig.load(MINI_CONFIG)
    cfg.model.lift = L(_NaNLift)(in_channels=192, patch_size=16)
    cfg.dataloader.train.total_batch_size = 2
    cfg.model.square_pad = 128
    cfg.train.output_dir = str(tmp_path)
    cfg.train.max_iter = 3
    with pytest.raises(FloatingPointError, match="iteration") as e:
        _train(cfg)
    assert "Last checkpoint" in str(e.value)
    assert not os.path.exists(os.path.join(str(tmp_path), "lift_final.pth"))


def test_two_process_launch(mini_root, tmp_path):
    """Two processes on the CPU (even where a GPU exists) through the train_lift.py alias: each
    rank logs its rank and the world size to its own file (detectron2's default_setup)."""
    out = str(tmp_path / "ddp")
    cmd = [tool_python(), ALIAS, "--num-gpus", "2", "--dist-url", "auto"]
    cmd += ["--config-file", MINI_CONFIG] + FAST
    cmd += [f"train.output_dir={out}", "train.max_iter=2", "train.eval_period=2"]
    env = dict(os.environ, LIFT_DET_MINI_ROOT=mini_root, **CPU_ENV)
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rank, log in [(0, "log.txt"), (1, "log.txt.rank1")]:
        with open(os.path.join(out, log)) as f:
            assert f"Rank of current process: {rank}. World size: 2" in f.read(), log
    assert os.path.isfile(os.path.join(out, "lift_final.pth"))
    assert "Feature quality on 8 images" in proc.stdout + proc.stderr


@pytest.mark.parametrize("root", ["LIFT_DET_MINI_ROOT", "default"])
def test_stage_one_from_a_machine_without_the_mini_data(root, tmp_path):
    """The first stage-one run on a machine generates the mini data (as the detector configs
    do): an empty LIFT_DET_MINI_ROOT, or no variable at all (./datasets/lift_mini_coco)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LIFT_DET_MINI_ROOT", "DETECTRON2_DATASETS")
    }
    data = tmp_path / "data"
    data.mkdir()
    if root == "LIFT_DET_MINI_ROOT":
        env[root] = str(data)
    out = tmp_path / "out"
    cmd = [tool_python(), ALIAS, "--config-file", MINI_CONFIG, "train.max_iter=1"]
    cmd += [f"train.output_dir={out}"]
    proc = subprocess.run(
        cmd, env={**env, **CPU_ENV}, cwd=data, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.path.isfile(out / "lift_final.pth")
    mini = data if root == "LIFT_DET_MINI_ROOT" else data / "datasets" / "lift_mini_coco"
    assert os.path.isfile(mini / "annotations" / "instances_train.json")


def test_timm_stage_one_from_an_empty_data_root(tmp_path):
    """configs/mini/lift_stage1_timm.py (the DINO ViT-S/16 config on the mini data) from an empty
    data root: its LiFT file names the timm backbone, and its teacher is the weights file given
    as model.source.weights (not train.init_checkpoint), fingerprinted as loaded."""
    import timm

    from lift_det.checkpoint import load_lift_file, read_lift_file, teacher_fingerprint

    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, depth=2)
    with torch.no_grad():  # weights no (seeded) random initialization of the config gives
        for p in vit.parameters():
            p.mul_(0.5)
    weights = str(tmp_path / "vit_s16_depth2.pth")
    torch.save(vit.state_dict(), weights)
    env = {k: v for k, v in os.environ.items() if k != "DETECTRON2_DATASETS"}
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    config = os.path.join(REPO, "configs", "mini", "lift_stage1_timm.py")
    cmd = [tool_python(), os.path.join(REPO, "tools", "train_net.py"), "--config-file", config]
    cmd += ["train.max_iter=2", f"train.output_dir={out}", f"model.source.weights={weights}"]
    env.update(CPU_ENV, LIFT_DET_MINI_ROOT=str(data))
    proc = subprocess.run(cmd, env=env, cwd=data, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "RANDOMLY INITIALIZED" not in proc.stdout + proc.stderr
    meta = read_lift_file(str(out / "lift_final.pth"))["lift_det"]
    identity = dict(
        type="timm", model_name="vit_small_patch16_224", embed_dim=384, patch_size=16, depth=2
    )
    assert meta["backbone"] == identity
    assert (meta["preset"], meta["in_channels"], meta["patch_size"]) == ("LiFT-S", 384, 16)
    assert meta["iteration"] == 2 and meta["feature_layer"] == "forward_features"
    assert meta["teacher_weights"] == weights
    assert meta["teacher"] == dict(
        weights=weights, initialized=True, fingerprint=teacher_fingerprint(vit.state_dict())
    )
    lift = LiFT.from_preset("LiFT-S", in_channels=384, patch_size=16)
    load_lift_file(lift, str(out / "lift_final.pth"), backbone=identity)
