"""ExportLiFTFile: what the stage-one LiFT file records (teacher, iteration reached, held-out
quality) and what it refuses to write."""

import logging
import os
from types import SimpleNamespace
import pytest
import torch
from torch import nn

from detectron2.utils.events import EventStorage

from lift_det.checkpoint import load_lift_file, read_lift_file
from lift_det.engine.hooks import ExportLiFTFile
from lift_det.modeling import LiFT

IDENTITY = {"type": "detectron2.ViT", "embed_dim": 64, "depth": 2, "num_heads": 2, "patch_size": 16}


class DistillerStandIn(nn.Module):
    """What the hook reads from a LiFTDistiller: ``lift``, ``backbone.identity()``, ``distance``."""

    def __init__(self):
        super().__init__()
        self.lift = LiFT.from_preset("LiFT-S", 64)
        self.backbone = SimpleNamespace(identity=lambda: dict(IDENTITY))
        self.distance = "cosine"


def export(tmp_path, start_iter=0, max_iter=10, iter=None, quality=None, teacher="vitdet.pkl"):
    """Run the hook's after_train as a trainer that ran ``range(start_iter, max_iter)`` would."""
    model = DistillerStandIn()
    hook = ExportLiFTFile(teacher_weights=teacher, output_dir=str(tmp_path))
    with EventStorage(start_iter) as storage:
        for k, v in (quality or {}).items():
            storage.put_scalar(f"lift_quality/{k}", v, smoothing_hint=False)
        # TrainerBase.train: iter = max_iter after a full loop; start_iter + 1 if the loop was empty
        it = iter if iter is not None else max(max_iter, start_iter + 1)
        hook.trainer = SimpleNamespace(
            iter=it, start_iter=start_iter, max_iter=max_iter, model=model, storage=storage
        )
        hook.after_train()
    return hook, model


def test_export_records_teacher_iteration_and_quality(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        hook, model = export(tmp_path, quality={"cos_lift": 0.9, "cos_bilinear": 0.8})
    assert hook.path == str(tmp_path / "lift_final.pth")
    data = read_lift_file(hook.path)
    meta = data["lift_det"]
    assert meta["iteration"] == 10 and meta["format"] == 2
    assert meta["teacher"] == {"weights": "vitdet.pkl", "initialized": True}
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
    assert read_lift_file(hook.path)["lift_det"]["teacher"] == {"weights": "", "initialized": False}
    with caplog.at_level(logging.WARNING):
        load_lift_file(LiFT.from_preset("LiFT-S", 64), hook.path)
    (w,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "UNINITIALIZED (random) ViT teacher" in w


def test_lowered_max_iter_on_resume_keeps_the_iteration_reached(tmp_path, caplog):
    # trained 100 iterations, resumed with max_iter=50: the loop is empty
    with caplog.at_level(logging.WARNING):
        hook, _ = export(tmp_path, start_iter=100, max_iter=50)
    assert read_lift_file(hook.path)["lift_det"]["iteration"] == 100
    assert any("records iteration 100" in r.getMessage() for r in caplog.records)
    # resumed from 40 to 60: 60 iterations
    hook, _ = export(tmp_path, start_iter=40, max_iter=60)
    assert read_lift_file(hook.path)["lift_det"]["iteration"] == 60


@pytest.mark.parametrize("max_iter", [0, -5])
def test_no_training_is_never_exported(tmp_path, max_iter):
    with pytest.raises(ValueError, match=r"iteration 0 <= 0, LiFT was never trained.*max_iter"):
        export(tmp_path, max_iter=max_iter)
    assert os.listdir(tmp_path) == []


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
    assert os.listdir(tmp_path) == []


def test_stopped_training_writes_nothing(tmp_path):
    hook, _ = export(tmp_path, max_iter=10, iter=4)
    assert hook.path is None and os.listdir(tmp_path) == []
