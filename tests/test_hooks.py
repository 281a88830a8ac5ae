"""ExportLiFTFile: what the stage-one LiFT file records (teacher, iteration reached, held-out
quality) and what it refuses to write."""

import logging
import os
from types import SimpleNamespace
import pytest
import torch
from torch import nn

from detectron2.utils.events import EventStorage

from lift_det.checkpoint import load_lift_file, read_lift_file, teacher_fingerprint
from lift_det.engine.hooks import ExportLiFTFile
from lift_det.modeling import LiFT

IDENTITY = {"type": "detectron2.ViT", "embed_dim": 64, "depth": 2, "num_heads": 2, "patch_size": 16}


class DistillerStandIn(nn.Module):
    """What the hook reads from a LiFTDistiller: ``lift``, ``backbone.identity()``, ``distance``."""

    def __init__(self):
        super().__init__()
        self.lift = LiFT.from_preset("LiFT-S", 64)
        self.backbone = SimpleNamespace(identity=lambda: dict(IDENTITY), net=nn.Linear(4, 3))
        self.distance = "cosine"


def export(
    tmp_path,
    start_iter=0,
    max_iter=10,
    iter=None,
    quality=None,
    teacher="vitdet.pkl",
    model=None,
    meanwhile=None,
):
    """Run the hook as a trainer that ran ``range(start_iter, max_iter)`` would: before_train,
    ``meanwhile()`` (what happens while it trains), after_train."""
    model = model or DistillerStandIn()
    hook = ExportLiFTFile(teacher_weights=teacher, output_dir=str(tmp_path))
    with EventStorage(start_iter) as storage:
        for k, v in (quality or {}).items():
            storage.put_scalar(f"lift_quality/{k}", v, smoothing_hint=False)
        # TrainerBase.train: iter = max_iter after a full loop; start_iter + 1 if the loop was empty
        it = iter if iter is not None else max(max_iter, start_iter + 1)
        hook.trainer = SimpleNamespace(
            iter=it, start_iter=start_iter, max_iter=max_iter, model=model, storage=storage
        )
        hook.before_train()
        if meanwhile:
            meanwhile()
        hook.after_train()
    return hook, model


def test_export_records_teacher_iteration_and_quality(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        hook, model = export(tmp_path, quality={"cos_lift": 0.9, "cos_bilinear": 0.8})
    assert hook.path == str(tmp_path / "lift_final.pth")
    data = read_lift_file(hook.path)
    meta = data["lift_det"]
    assert meta["iteration"] == 10 and meta["format"] == 2
    fingerprint = teacher_fingerprint(model.backbone.net.state_dict())
    assert meta["teacher"] == {
        "weights": "vitdet.pkl",
        "initialized": True,
        "fingerprint": fingerprint,
    }
    assert meta["teacher_weights"] == "vitdet.pkl"  # format 1's field stays
    assert meta["quality"] == pytest.approx({"cos_lift": 0.9, "cos_bilinear": 0.8})
    assert meta["undertrained"] is False
    assert meta["backbone"] == IDENTITY
    for k, v in model.lift.state_dict().items():
        torch.testing.assert_close(data["model"][k], v)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_undertrained_lift_is_written_with_a_flag_and_warned_about_twice(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        hook, _ = export(tmp_path, quality={"cos_lift": 0.70, "cos_bilinear": 0.75})
    (w,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "UNDERTRAINED" in w and "0.7000 is below bilinear upsampling's 0.7500" in w
    assert read_lift_file(hook.path)["lift_det"]["undertrained"] is True
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_lift_file(LiFT.from_preset("LiFT-S", 64), hook.path)  # stage two repeats it
    (w,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "UNDERTRAINED" in w and hook.path in w


def test_equal_cosine_is_not_undertrained(tmp_path):
    hook, _ = export(tmp_path, quality={"cos_lift": 0.75, "cos_bilinear": 0.75})
    assert read_lift_file(hook.path)["lift_det"]["undertrained"] is False


def test_random_teacher_is_recorded_and_warned_about_on_load(tmp_path, caplog):
    hook, _ = export(tmp_path, teacher="")
    teacher = read_lift_file(hook.path)["lift_det"]["teacher"]
    assert (teacher["weights"], teacher["initialized"]) == ("", False)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_lift_file(LiFT.from_preset("LiFT-S", 64), hook.path)
    (w,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "UNINITIALIZED (random) ViT teacher" in w


def test_lowered_max_iter_on_resume_keeps_the_iteration_reached(tmp_path, caplog):
    # trained 100 iterations, resumed with max_iter=50: the loop is empty
    model = DistillerStandIn()
    with caplog.at_level(logging.WARNING):
        hook, _ = export(tmp_path, start_iter=100, max_iter=50, model=model)
    assert read_lift_file(hook.path)["lift_det"]["iteration"] == 100
    assert any("records iteration 100" in r.getMessage() for r in caplog.records)
    # resumed from 40 to 60: 60 iterations
    hook, _ = export(tmp_path, start_iter=40, max_iter=60, model=model)
    assert read_lift_file(hook.path)["lift_det"]["iteration"] == 60


@pytest.mark.parametrize("max_iter", [0, -5])
def test_no_training_is_never_exported(tmp_path, max_iter):
    with pytest.raises(ValueError, match=r"iteration 0 <= 0, LiFT was never trained.*max_iter"):
        export(tmp_path, max_iter=max_iter)
    assert os.listdir(tmp_path) == ["teacher.json"]


def test_exploded_lift_is_never_exported(tmp_path, monkeypatch):
    real_init = DistillerStandIn.__init__

    def exploded(self):
        real_init(self)
        with torch.no_grad():
            self.lift.out_conv.weight.mul_(1e6)
            self.lift.out_conv.weight[0, 0, 0, 0] = 1e6

    monkeypatch.setattr(DistillerStandIn, "__init__", exploded)
    with pytest.raises(ValueError, match=f"'{tmp_path}/lift_final.pth'.*out_conv.weight has explo"):
        export(tmp_path)
    assert os.listdir(tmp_path) == ["teacher.json"]


def test_stopped_training_writes_nothing(tmp_path):
    hook, _ = export(tmp_path, max_iter=10, iter=4)
    assert hook.path is None and os.listdir(tmp_path) == ["teacher.json"]


def test_a_resumed_run_records_the_teacher_it_trained_against(tmp_path, caplog):
    """The first run records its teacher; a resume that names another init_checkpoint still
    trains against the resumed ViT, and the file says so (with a warning); a resumed ViT that is
    not the first run's is refused."""
    model = DistillerStandIn()
    export(tmp_path, max_iter=5, teacher="vitdet_a.pkl", model=model)
    with caplog.at_level(logging.WARNING):
        hook, _ = export(tmp_path, start_iter=5, teacher="vitdet_b.pkl", model=model)
    teacher = read_lift_file(hook.path)["lift_det"]["teacher"]
    assert teacher["weights"] == "vitdet_a.pkl"
    assert teacher["fingerprint"] == teacher_fingerprint(model.backbone.net.state_dict())
    assert "train.init_checkpoint='vitdet_b.pkl' is not used on --resume" in caplog.text
    with torch.no_grad():
        model.backbone.net.weight[0, 0] += 1.0
    with pytest.raises(ValueError, match="is not the teacher its first run recorded"):
        export(tmp_path, start_iter=5, teacher="vitdet_a.pkl", model=model)


def test_another_runs_export_is_not_overwritten(tmp_path, caplog):
    """A LiFT file written to the same path by another run while this one trained stays; this
    run's LiFT is written next to it, and the log says where."""

    def other_run():
        (tmp_path / "lift_final.pth").write_bytes(b"the other run's LiFT")

    with caplog.at_level(logging.WARNING):
        hook, model = export(tmp_path, meanwhile=other_run)
    assert (tmp_path / "lift_final.pth").read_bytes() == b"the other run's LiFT"
    assert hook.path != str(tmp_path / "lift_final.pth") and os.path.isfile(hook.path)
    assert f"this run's LiFT goes to {hook.path}" in caplog.text
    torch.testing.assert_close(
        read_lift_file(hook.path)["model"]["out_conv.bias"], model.lift.out_conv.bias
    )
    # a file that was there before this run started is replaced as usual
    hook, _ = export(tmp_path)
    assert hook.path == str(tmp_path / "lift_final.pth")


def test_stage_two_refuses_a_lift_file_trained_against_another_vit(tmp_path):
    """The +LiFT backbone compares the ViT weights it loads with the teacher the LiFT file
    records: the same weights load; one changed weight is refused, naming both."""
    from detectron2.modeling import ViT

    from conftest import TINY_VIT
    from lift_det.checkpoint import save_lift_file
    from lift_det.modeling import ViTLiFT, vit_identity

    args = dict(TINY_VIT)
    args.pop("img_size")
    torch.manual_seed(0)
    teacher = ViT(img_size=128, **args).state_dict()
    path = str(tmp_path / "lift_final.pth")
    source = ViTLiFT(lift=LiFT.from_preset("LiFT-S", 64), img_size=128, **args)
    recorded = {
        "weights": "a.pth",
        "initialized": True,
        "fingerprint": teacher_fingerprint(teacher),
    }
    save_lift_file(path, source.lift, backbone=vit_identity(source), teacher=recorded, iteration=3)

    def stage_two(vit_state):
        net = ViTLiFT(lift=LiFT.from_preset("LiFT-S", 64), lift_weights=path, img_size=128, **args)
        holder = nn.Module()  # a detector's layout: the ViT at backbone.net
        holder.backbone = nn.Module()
        holder.backbone.net = net
        holder.load_state_dict({f"backbone.net.{k}": v for k, v in vit_state.items()}, strict=False)
        return net

    net = stage_two(teacher)
    torch.testing.assert_close(net.lift.out_conv.bias, source.lift.out_conv.bias)
    other = {k: v.clone() for k, v in teacher.items()}
    other["blocks.1.mlp.fc2.bias"][0] += 1e-3
    with pytest.raises(ValueError, match=r"trained against another ViT: its teacher \(a.pth"):
        stage_two(other)
