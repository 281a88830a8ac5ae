"""Checkpoint contract: official ViTDet (.pth / model-zoo .pkl), Cascade, MAE and LiFT files load
into the LiFT models through detectron2's own DetectionCheckpointer with exactly the documented
missing / unused keys; checkpoints are written atomically."""

import pytest
import timm
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate

import os
import pickle
from conftest import TINY_VIT, load_config
from lift_det.checkpoint import (
    AtomicDetectionCheckpointer,
    read_lift_file,
    save_lift_file,
)
from lift_det.modeling import LiFT, ViTLiFT


def load_and_report(model, path):
    """DetectionCheckpointer(model).load(path) -> (missing, unexpected, shape mismatches)."""
    ckpt = DetectionCheckpointer(model)
    report = {}
    ckpt._log_incompatible_keys = lambda inc: report.update(
        missing=set(inc.missing_keys),
        unexpected=set(inc.unexpected_keys),
        shapes=list(inc.incorrect_shapes),
    )
    ckpt.load(path)
    return report["missing"], report["unexpected"], report["shapes"]


def vitdet_checkpoint(tmp_path, base, fmt):
    """Write a randomly initialized ViTDet model in the model zoo's layout (.pth or .pkl)."""
    model = instantiate(load_config(base).model)
    state = model.state_dict()
    if fmt == "pth":
        path = str(tmp_path / "vitdet.pth")
        torch.save({"model": state, "iteration": 184374}, path)
    else:
        path = str(tmp_path / "model_final.pkl")
        with open(path, "wb") as f:
            data = {"model": {k: v.numpy() for k, v in state.items()}}
            pickle.dump({**data, "__author__": "Detectron2 Model Zoo"}, f)
    return path, state


@pytest.mark.parametrize(
    "base,lift_cfg,fmt",
    [
        ("vitdet_mrcnn", "vitdet_mrcnn_lift", "pth"),
        ("vitdet_mrcnn", "vitdet_mrcnn_lift", "pkl"),
        ("vitdet_cascade", "vitdet_cascade_lift", "pkl"),
    ],
)
def test_vitdet_checkpoint_loads_into_lift_model(tmp_path, base, lift_cfg, fmt):
    path, state = vitdet_checkpoint(tmp_path, base, fmt)
    model = instantiate(load_config(lift_cfg).model)
    lift_before = {k: v.clone() for k, v in model.state_dict().items() if ".lift." in k}
    missing, unexpected, shapes = load_and_report(model, path)

    assert shapes == []
    # documented: ViTDet's 4x stage has no counterpart (LiFT replaces its upsampling) ...
    assert unexpected == {k for k in state if k.startswith("backbone.simfp_2.")}
    # ... and only LiFT and the new 0.25x stage start fresh
    assert missing and all(
        k.startswith("backbone.net.lift.") or k.startswith("backbone.simfp_6.") for k in missing
    )
    lift_keys = {k for k in model.state_dict() if k.startswith("backbone.net.lift.")}
    assert {k for k in lift_keys if not k.endswith("num_batches_tracked")} <= missing
    # everything else carries ViTDet's values: the ViT, the reused stages (by scale), the heads
    new = model.state_dict()
    for k in new:
        if k in state:
            torch.testing.assert_close(new[k], torch.as_tensor(state[k]), msg=k)
    for k, v in lift_before.items():
        torch.testing.assert_close(new[k], v)


def mae_state_dict(embed_dim=64, depth=2, num_heads=2):
    """An MAE-format (timm names) ViT checkpoint from a random timm VisionTransformer at 224."""
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=224,
        patch_size=16,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        num_classes=0,
    )
    state = vit.state_dict()
    assert state["pos_embed"].shape == (1, 197, embed_dim) and "norm.weight" in state
    return state


def test_mae_checkpoint_loads_with_matching_heuristics(tmp_path):
    state = mae_state_dict(TINY_VIT["embed_dim"], TINY_VIT["depth"], TINY_VIT["num_heads"])
    path = str(tmp_path / "mae_pretrain_vit_tiny.pth")
    torch.save({"model": state}, path)
    model = instantiate(load_config("vitdet_mrcnn_lift").model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    DetectionCheckpointer(model).load(path + "?matching_heuristics=True")
    after = model.state_dict()
    vit = model.backbone.net
    torch.testing.assert_close(vit.pos_embed.detach(), state["pos_embed"])
    torch.testing.assert_close(
        vit.patch_embed.proj.weight.detach(), state["patch_embed.proj.weight"]
    )
    for i in range(TINY_VIT["depth"]):
        for name in ["norm1.weight", "attn.qkv.weight", "attn.proj.bias", "mlp.fc2.weight"]:
            torch.testing.assert_close(
                after[f"backbone.net.blocks.{i}.{name}"], state[f"blocks.{i}.{name}"]
            )
    # nothing outside the ViT took an MAE tensor (MAE's `norm.*` in particular)
    for k in after:
        if not k.startswith("backbone.net.") or k.startswith("backbone.net.lift."):
            torch.testing.assert_close(after[k], before[k], msg=k)


def _identity(**kw):
    return {
        "type": "detectron2.ViT",
        "embed_dim": 64,
        "depth": 2,
        "num_heads": 2,
        "patch_size": 16,
        **kw,
    }


def _tiny_vitlift(lift, **kw):
    args = {k: v for k, v in TINY_VIT.items()}
    return ViTLiFT(lift=lift, **args, **kw)


def test_lift_file_round_trip_into_wrapper(tmp_path):
    trained = LiFT.from_preset("LiFT-S", 64)
    for p in trained.parameters():
        p.data.normal_()
    path = str(tmp_path / "lift_final.pth")
    save_lift_file(path, trained, backbone=_identity(), iteration=99)
    meta = read_lift_file(path)["lift_det"]
    assert meta["preset"] == "LiFT-S" and meta["in_channels"] == 64 and meta["patch_size"] == 16
    net = _tiny_vitlift(LiFT.from_preset("LiFT-S", 64), lift_weights=path)
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(net.lift.state_dict()[k], v)
    # the LiFT model built from the config takes it through its own key
    cfg = load_config("vitdet_mrcnn_lift")
    cfg.model.backbone.net.lift = {
        "_target_": LiFT.from_preset,
        "name": "LiFT-S",
        "in_channels": 64,
        "patch_size": 16,
    }
    cfg.model.backbone.net.lift_weights = path
    model = instantiate(cfg.model)
    torch.testing.assert_close(model.backbone.net.lift.out_conv.weight, trained.out_conv.weight)


def test_lift_file_for_another_model_is_refused(tmp_path):
    path = str(tmp_path / "lift.pth")
    save_lift_file(path, LiFT.from_preset("LiFT-S", 64), backbone=_identity(depth=12))
    with pytest.raises(ValueError, match="backbone.depth is 12 in the file but 2 in the model"):
        _tiny_vitlift(LiFT.from_preset("LiFT-S", 64), lift_weights=path)
    save_lift_file(path, LiFT.from_preset("LiFT-S", 64, patch_size=8), backbone=_identity())
    with pytest.raises(ValueError, match="patch_size is 8 in the file but 16"):
        _tiny_vitlift(LiFT.from_preset("LiFT-S", 64), lift_weights=path)
    save_lift_file(path, LiFT.from_preset("LiFT-B", 64), backbone=_identity())
    with pytest.raises(ValueError, match="arch.image_channels is 64 in the file but 32"):
        _tiny_vitlift(LiFT.from_preset("LiFT-S", 64), lift_weights=path)
    save_lift_file(path, LiFT.from_preset("LiFT-S", 32), backbone=_identity())
    with pytest.raises(ValueError, match="in_channels is 32 in the file but 64"):
        _tiny_vitlift(LiFT.from_preset("LiFT-S", 64), lift_weights=path)


def test_bad_lift_files(tmp_path):
    lift = LiFT.from_preset("LiFT-S", 64)
    with pytest.raises(FileNotFoundError, match="tools/train_lift.py"):
        _tiny_vitlift(lift, lift_weights=str(tmp_path / "nope.pth"))
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="corrupt"):
        _tiny_vitlift(lift, lift_weights=str(bad))
    det = tmp_path / "detector.pth"
    torch.save({"model": {}}, det)
    with pytest.raises(ValueError, match="not a LiFT file"):
        _tiny_vitlift(lift, lift_weights=str(det))


def test_atomic_checkpointer_keeps_previous_checkpoint_on_failure(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    ckpt = AtomicDetectionCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000009")
    assert ckpt.get_checkpoint_file().endswith("model_0000009.pth")

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt.save("model_0000019")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]
    assert ckpt.get_checkpoint_file().endswith("model_0000009.pth")
    assert "weight" in torch.load(ckpt.get_checkpoint_file())["model"]


def test_checkpoint_for_another_model_size_is_reported(tmp_path):
    """A ViTDet checkpoint of another width loads nothing of the ViT and says so."""
    path, _ = vitdet_checkpoint(tmp_path, "vitdet_mrcnn", "pth")  # embed_dim 64
    cfg = load_config("vitdet_mrcnn_lift")
    cfg.model.backbone.net.embed_dim = 96
    model = instantiate(cfg.model)
    missing, unexpected, shapes = load_and_report(model, path)
    mismatched = {k for k, *_ in shapes}
    assert "backbone.net.blocks.0.attn.qkv.weight" in mismatched
    assert "backbone.net.pos_embed" in mismatched
