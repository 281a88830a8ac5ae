"""Checkpoint contract: official ViTDet (.pth / model-zoo .pkl), Cascade, MAE and LiFT files load
into the LiFT models through detectron2's own DetectionCheckpointer with exactly the documented
missing / unused keys; checkpoints are written atomically; weights that do not fit are refused
with one summary log line; broken LiFT files are never read."""

import errno
import hashlib
import logging
import numpy as np
import os
import pickle
import stat
import subprocess
import sys
import threading
import time
import pytest
import timm
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate

from conftest import TINY_VIT, load_config
from lift_det.checkpoint import (
    AtomicDetectionCheckpointer,
    atomic_write_bytes,
    atomic_write_text,
    is_temp_file,
    lift_metadata,
    load_lift_file,
    read_lift_file,
    remove_stale_temp_files,
    save_lift_file,
)
from lift_det.checkpoint.file_io import _HOST, torch_load_checked
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
        ("vitdet_mrcnn", "vitdet_mrcnn_lift_down", "pkl"),
        ("vitdet_mrcnn", "vitdet_mrcnn_lift_s8", "pkl"),
        ("vitdet_cascade", "vitdet_cascade_lift_s8", "pkl"),
    ],
)
def test_vitdet_checkpoint_loads_into_lift_model(tmp_path, base, lift_cfg, fmt):
    path, state = vitdet_checkpoint(tmp_path, base, fmt)
    model = instantiate(load_config(lift_cfg).model)
    lift_before = {k: v.clone() for k, v in model.state_dict().items() if ".lift." in k}
    missing, unexpected, shapes = load_and_report(model, path)

    assert shapes == []
    # the half placement (up, down) uses every ViTDet tensor; the stride-8 one all but ViTDet's
    # 4x stage (LiFT replaces its upsampling)
    s8 = lift_cfg.endswith("_s8")
    assert unexpected == ({k for k in state if k.startswith("backbone.simfp_2.")} if s8 else set())
    # only LiFT starts fresh: no other new stage in any placement
    lift_keys = {k for k in model.state_dict() if k.startswith("backbone.net.lift.")}
    assert missing == {k for k in lift_keys if not k.endswith("num_batches_tracked")}
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


def _load_without_lift(model, tmp_path):
    """Load a checkpoint of ``model`` that has no LiFT tensors (as a ViTDet one): the ViTLiFT load
    hook brings LiFT from ``lift_weights``."""
    path = str(tmp_path / "no_lift.pth")
    torch.save({"model": {k: v for k, v in model.state_dict().items() if "lift." not in k}}, path)
    AtomicDetectionCheckpointer(model).load(path)


def test_lift_file_round_trip_into_wrapper(tmp_path):
    trained = LiFT.from_preset("LiFT-S", 64)
    for p in trained.parameters():
        p.data.normal_()
    path = str(tmp_path / "lift_final.pth")
    save_lift_file(path, trained, backbone=_identity(), iteration=99)
    meta = read_lift_file(path)["lift_det"]
    assert meta["preset"] == "LiFT-S" and meta["in_channels"] == 64 and meta["patch_size"] == 16
    net = _tiny_vitlift(LiFT.from_preset("LiFT-S", 64), lift_weights=path)
    _load_without_lift(net, tmp_path)
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
    _load_without_lift(model, tmp_path)
    torch.testing.assert_close(model.backbone.net.lift.out_conv.weight, trained.out_conv.weight)


def test_lift_file_for_another_model_is_refused(tmp_path):
    path = str(tmp_path / "lift.pth")
    cases = [
        (
            LiFT.from_preset("LiFT-S", 64),
            _identity(depth=12),
            "backbone.depth is 12 in the file but 2",
        ),
        (
            LiFT.from_preset("LiFT-S", 64, patch_size=8),
            _identity(),
            "patch_size is 8 in the file but 16",
        ),
        (
            LiFT.from_preset("LiFT-B", 64),
            _identity(),
            "arch.image_channels is 64 in the file but 32",
        ),
        (LiFT.from_preset("LiFT-S", 32), _identity(), "in_channels is 32 in the file but 64"),
    ]
    for lift, identity, message in cases:
        save_lift_file(path, lift, backbone=identity)
        with pytest.raises(ValueError, match=message):
            net = _tiny_vitlift(LiFT.from_preset("LiFT-S", 64), lift_weights=path)
            _load_without_lift(net, tmp_path)


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


# ---- atomic writes ------------------------------------------------------------------------------
ENFORCE_FAIL = (
    "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
    "data/0: file write failed"
)


def test_disk_full_keeps_last_checkpoint_and_says_so(tmp_path, monkeypatch):
    ckpt = AtomicDetectionCheckpointer(torch.nn.Linear(2, 2), str(tmp_path))
    ckpt.save("model_0000009")
    before = (tmp_path / "model_0000009.pth").read_bytes()

    real_fdopen = os.fdopen

    class FullDisk:  # the file system fills up after 100 bytes of the new checkpoint
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 100:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    with pytest.raises(OSError) as e:  # through torch's real zip writer, which words it its way
        ckpt.save("model_0000019")
    assert e.value.errno == errno.ENOSPC
    assert str(e.value).endswith(
        f"no space left on {tmp_path}: the last good checkpoint "
        f"{tmp_path / 'model_0000009.pth'} is kept; free space and --resume"
    )
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]
    assert (tmp_path / "model_0000009.pth").read_bytes() == before


def test_atomic_save_of_lift_file_keeps_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "lift_final.pth")
    lift = LiFT.from_preset("LiFT-S", 64)
    save_lift_file(path, lift, backbone=_identity(), iteration=7)
    before = open(path, "rb").read()
    monkeypatch.setattr(torch, "save", lambda obj, f: f.write(b"half") and 1 / 0)
    with pytest.raises(ZeroDivisionError):
        save_lift_file(path, lift, backbone=_identity(), iteration=8)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["lift_final.pth"]
    assert open(path, "rb").read() == before
    assert read_lift_file(path)["lift_det"]["iteration"] == 7


def test_concurrent_saves_use_unique_temp_names(tmp_path, monkeypatch):
    """Two threads saving the same checkpoint at once: both temp files exist side by side (the old
    fixed `.tmp-<name>` collided), the result is one complete checkpoint and no temp is left."""
    ckpt = AtomicDetectionCheckpointer(torch.nn.Linear(2, 2), str(tmp_path))
    barrier, seen, real_save = threading.Barrier(2, timeout=20), [], torch.save

    def synchronized_save(obj, f, *a, **k):
        barrier.wait()  # both writers have opened their temp file
        seen.append(sorted(n for n in os.listdir(tmp_path) if n.startswith(".")))
        barrier.wait()
        real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", synchronized_save)
    errors = []
    threads = [
        threading.Thread(target=lambda: _catch(errors, ckpt.save, "model_final")) for _ in range(2)
    ]
    [t.start() for t in threads]
    [t.join() for t in threads]
    monkeypatch.undo()
    assert errors == []
    assert len(seen) == 2 and len(seen[0]) == 2 and all(is_temp_file(n) for n in seen[0])
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]
    assert set(torch.load(tmp_path / "model_final.pth")["model"]) == {"weight", "bias"}


def _catch(errors, fn, *args):
    try:
        fn(*args)
    except Exception as e:  # collected for the main thread
        errors.append(e)


def test_leftovers_of_killed_saves_are_cleaned(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftovers = {
        "dead": f".model_0000009.pth.{_HOST}-{dead.pid}.abcd1234.tmp",  # a killed writer: removed
        "live": f".model_0000019.pth.{_HOST}-{os.getppid()}.abcd1234.tmp",  # running: kept
        "self": f".model_0000029.pth.{_HOST}-{os.getpid()}.abcd1234.tmp",  # this process: kept
        "other": ".notes.tmp",  # not ours: kept
        "old_style": ".tmp-model_0000049.pth",  # lift_det 0.1's fixed name, 2 hours old: removed
        "old_fresh": ".tmp-model_0000059.pth",  # ... written a minute ago (may be running): kept
        "user": "model_0000009.pth",  # kept
    }
    for name in leftovers.values():
        (tmp_path / name).write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / leftovers["old_style"], (two_hours_ago, two_hours_ago))
    AtomicDetectionCheckpointer(torch.nn.Linear(2, 2), str(tmp_path))  # a start cleans
    kept = {k for k, v in leftovers.items() if (tmp_path / v).exists()}
    assert kept == {"live", "self", "other", "user", "old_fresh"}
    # ... and so does the next save
    (tmp_path / leftovers["dead"]).write_bytes(b"x")
    AtomicDetectionCheckpointer(torch.nn.Linear(2, 2), str(tmp_path / "sub")).save("m")
    assert (tmp_path / leftovers["dead"]).exists()  # another folder is not touched
    ckpt = AtomicDetectionCheckpointer(torch.nn.Linear(2, 2), "")
    ckpt.save_dir = str(tmp_path)
    ckpt.save("model_0000039")
    assert not (tmp_path / leftovers["dead"]).exists()
    assert remove_stale_temp_files(str(tmp_path)) == []


def test_atomic_write_text_and_bytes(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(str(tmp_path / "a.txt"), "héllo")
        atomic_write_bytes(str(tmp_path / "d" / "b.bin"), b"\x00\x01")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").read_bytes() == "héllo".encode("utf-8")
    assert (tmp_path / "d" / "b.bin").read_bytes() == b"\x00\x01"
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == 0o640  # umask, not mkstemp's 0600
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "d"]


def _record_fsync_and_replace(monkeypatch):
    """Record, in order, every ``os.fsync`` (of a file: its inode and size on disk at that moment;
    of a folder: its inode) and every ``os.replace`` (the inode it moves, its target)."""
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        events.append(("fsync", kind, st.st_ino, st.st_size))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        events.append(("replace", os.stat(src).st_ino, os.path.abspath(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def _write_each_kind(folder):
    """Every kind of file lift_det writes atomically, through its public writer."""
    atomic_write_text(str(folder / "a.json"), '{"x": ' + "1" * 300 + "}")
    atomic_write_bytes(str(folder / "b.bin"), bytes(range(256)) * 40)
    save_lift_file(
        str(folder / "lift_final.pth"), LiFT.from_preset("LiFT-S", 64), backbone=_identity()
    )
    # a checkpoint, then the last_checkpoint pointer
    AtomicDetectionCheckpointer(torch.nn.Linear(8, 8), str(folder)).save("model_0000009")
    return ["a.json", "b.bin", "lift_final.pth", "model_0000009.pth", "last_checkpoint"]


def test_atomic_writes_fsync_the_complete_file_before_the_rename(tmp_path, monkeypatch):
    """The order of operations that makes a write survive a crash or power loss: the temporary
    file's complete data is flushed and fsync'ed, then it is renamed over the target, then the
    folder (which holds the rename) is fsync'ed."""
    events = _record_fsync_and_replace(monkeypatch)
    names = _write_each_kind(tmp_path)
    monkeypatch.undo()
    folder_ino = os.stat(tmp_path).st_ino
    replaces = [i for i, e in enumerate(events) if e[0] == "replace"]
    assert [events[i][2] for i in replaces] == [str(tmp_path / n) for n in names]
    for i in replaces:
        _, ino, target = events[i]
        final = os.stat(target)
        assert final.st_ino == ino  # what was renamed is what readers see
        # before the rename: an fsync of that very file, holding all of its bytes (flushed first)
        synced = [e for e in events[:i] if e[:3] == ("fsync", "file", ino)]
        assert synced and synced[-1][3] == final.st_size > 0, (target, synced, final.st_size)
        # after it (and before the next write's rename): an fsync of the folder
        nxt = next((j for j in replaces if j > i), len(events))
        assert ("fsync", "dir", folder_ino) in [e[:3] for e in events[i + 1 : nxt]], target


# ---- what is refused on load --------------------------------------------------------------------
class Stage2Like(torch.nn.Module):
    """A ViT-like frozen trunk at ``backbone.net`` and a trainable head."""

    def __init__(self, width=4, frozen=True):
        super().__init__()
        self.backbone = torch.nn.Module()
        self.backbone.net = torch.nn.Sequential(
            torch.nn.Linear(width, width), torch.nn.LayerNorm(width)
        )
        self.head = torch.nn.Linear(3, 10)
        if frozen:
            self.backbone.net.requires_grad_(False)


def _save(model, path, **extra):
    torch.save({"model": model.state_dict(), **extra}, path)
    return str(path)


def test_frozen_parameters_that_do_not_fit_are_refused(tmp_path):
    path = _save(Stage2Like(width=8), tmp_path / "other_width.pth")
    with pytest.raises(ValueError) as e:
        AtomicDetectionCheckpointer(Stage2Like(width=4)).load(path)
    msg = str(e.value)
    assert path in msg and "FROZEN" in msg and "4 did not fit" in msg
    assert "another shape: backbone.net (4)" in msg and "(8, 8) in the file vs (4, 4)" in msg
    # the same model unfrozen loads what fits (the head: 2 of 6 tensors, 40 of 68 parameters)
    AtomicDetectionCheckpointer(Stage2Like(width=4, frozen=False)).load(path)
    # frozen + explicit switch: loads what fits
    for ckpt, p in [
        (AtomicDetectionCheckpointer(Stage2Like(width=4)), path + "?allow_mismatch=True"),
        (AtomicDetectionCheckpointer(Stage2Like(width=4), allow_mismatch=True), path),
    ]:
        ckpt.load(p)
        torch.testing.assert_close(ckpt.model.head.weight, torch.load(path)["model"]["head.weight"])


def test_frozen_parameters_missing_are_refused(tmp_path):
    state = Stage2Like().state_dict()
    path = str(tmp_path / "head_only.pth")
    torch.save({"model": {k: v for k, v in state.items() if k.startswith("head.")}}, path)
    with pytest.raises(ValueError, match=r"FROZEN.*not in the file: backbone.net \(4\)"):
        AtomicDetectionCheckpointer(Stage2Like()).load(path)


def test_checkpoint_of_another_vit_width_is_refused_in_stage_two(tmp_path):
    path, _ = vitdet_checkpoint(tmp_path, "vitdet_mrcnn", "pth")  # embed_dim 64
    cfg = load_config("vitdet_mrcnn_lift")  # frozen ViT and LiFT
    cfg.model.backbone.net.embed_dim = 96
    cfg.model.backbone.net.lift.in_channels = 96
    model = instantiate(cfg.model)
    with pytest.raises(ValueError, match=r"FROZEN.*another shape: .*backbone.net.pos_embed"):
        AtomicDetectionCheckpointer(model).load(path)
    AtomicDetectionCheckpointer(model).load(path + "?allow_mismatch=True")


@pytest.mark.parametrize("what", ["lift file", "foreign"])
def test_load_where_almost_nothing_fits_is_refused(tmp_path, what):
    model = Stage2Like(frozen=False)
    if what == "lift file":
        path = str(tmp_path / "lift_final.pth")
        save_lift_file(path, LiFT.from_preset("LiFT-S", 64), backbone=_identity(), iteration=3)
        match = "is a LiFT file .* model.backbone.net.lift_weights"
    else:
        path = _save(Stage2Like(width=8), tmp_path / "foreign.pth", lift_det_=None)
        state = torch.load(path)
        state["model"] = {f"other.{k}": v for k, v in state["model"].items()}
        torch.save(state, path)
        match = r"does not fit this model: only 0% .* and 0% of the file's 6 tensors"
    with pytest.raises(ValueError, match=match):
        AtomicDetectionCheckpointer(model).load(path)
    AtomicDetectionCheckpointer(model).load(path + "?allow_mismatch=True")


@pytest.mark.parametrize("content", [b"\x00garbage" * 100, "truncated"])
def test_unreadable_checkpoint_names_the_file(tmp_path, content):
    path = str(tmp_path / "model_final.pth")
    if content == "truncated":
        _save(Stage2Like(), path)
        data = open(path, "rb").read()
        content = data[: len(data) // 2]
    open(path, "wb").write(content)
    with pytest.raises(RuntimeError) as e:
        AtomicDetectionCheckpointer(Stage2Like()).load(path)
    assert f"'{path}' ({len(content)} bytes) is not a checkpoint or is truncated" in str(e.value)
    assert "weights_only" not in str(e.value)


# ---- resume: fingerprint ------------------------------------------------------------------------
def _expected_hash(model):
    lines = sorted(f"{k}:{list(v.shape)}" for k, v in model.state_dict().items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


class Counter:
    def __init__(self):
        self.n = 0

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, d):
        self.n = d["n"]


def test_resume_with_a_changed_model_is_refused(tmp_path):
    old = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 3))
    counter = Counter()
    counter.n = 7
    AtomicDetectionCheckpointer(old, str(tmp_path), trainer=counter).save("model_0000006")
    stored = torch.load(tmp_path / "model_0000006.pth", weights_only=False)["model_fingerprint"]
    assert stored["hash"] == _expected_hash(old)
    # a model that lost a layer: everything it has loads, only the fingerprint tells
    new = torch.nn.Sequential(torch.nn.Linear(2, 3))
    resumed = Counter()
    ckpt = AtomicDetectionCheckpointer(new, str(tmp_path), trainer=resumed)
    with pytest.raises(ValueError) as e:
        ckpt.resume_or_load("", resume=True)
    msg = str(e.value)
    assert str(tmp_path / "model_0000006.pth") in msg
    assert f"fingerprint {_expected_hash(old)})" in msg and f"({_expected_hash(new)})" in msg
    assert "1.weight: [3, 3] in the file vs absent here" in msg
    assert resumed.n == 0
    # the same model resumes; a plain load (no checkpointables) of another model's file is not a
    # resume and loads what fits
    same = Counter()
    AtomicDetectionCheckpointer(old, str(tmp_path), trainer=same).resume_or_load("", resume=True)
    assert same.n == 7
    ckpt.resume_or_load(str(tmp_path / "model_0000006.pth"), resume=False)


def test_resume_from_a_checkpoint_without_fingerprint_that_does_not_fit(tmp_path):
    path = _save(torch.nn.Linear(2, 3), tmp_path / "model_0000009.pth", trainer={"n": 1})
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    ckpt = AtomicDetectionCheckpointer(torch.nn.Linear(2, 4), str(tmp_path), trainer=Counter())
    with pytest.raises(ValueError, match=f"Cannot resume from '{path}': it does not fit"):
        ckpt.resume_or_load("", resume=True)


# ---- the loading log ----------------------------------------------------------------------------
def _records(caplog, level):
    return [r for r in caplog.records if r.levelno == level and r.name.startswith("lift_det")]


@pytest.mark.parametrize("config", ["vitdet_mrcnn_lift", "vitdet_mrcnn_lift_s8"])
def test_vitdet_checkpoint_into_lift_model_logs_one_line(tmp_path, caplog, config):
    path, state = vitdet_checkpoint(tmp_path, "vitdet_mrcnn", "pth")
    lift_path = str(tmp_path / "lift_final.pth")
    save_lift_file(lift_path, LiFT.from_preset("LiFT-B", 64), backbone=_identity(), iteration=5)
    cfg = load_config(config)
    cfg.model.backbone.net.lift_weights = lift_path
    model = instantiate(cfg.model)
    model.backbone.net.lift_weights = lift_path
    keys = list(model.state_dict())
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        AtomicDetectionCheckpointer(model).load(path)
    n_lift = len([k for k in keys if k.startswith("backbone.net.lift.")])
    n_unused = len([k for k in state if k.startswith("backbone.simfp_2.")])
    (info,) = [r.getMessage() for r in _records(caplog, logging.INFO)]
    assert info.startswith(f"Loaded {len(keys) - n_lift}/{len(keys)} tensors of the model from")
    assert "new (not in the file" not in info  # no placement has a fresh stage
    unused = f"unused (not in this model): backbone.simfp_2 ({n_unused})"
    if config.endswith("_s8"):
        assert unused in info
        assert "(as expected: ViTDet's 4x stage simfp_2 has no counterpart here)" in info
    else:  # the half placement: every ViTDet tensor is used
        assert "unused" not in info
    assert f"backbone.net.lift ({n_lift}): from lift_weights={lift_path}" in info
    assert "\n" not in info
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    lift = LiFT.from_preset("LiFT-B", 64)
    load_lift_file(lift, lift_path)
    for k, v in lift.state_dict().items():
        torch.testing.assert_close(model.backbone.net.lift.state_dict()[k], v)


class LiFTNetStandIn(torch.nn.Module):
    """Mimics ViTLiFT's load hook: a state dict without ``lift.*`` gets LiFT from
    ``lift_weights``; one with ``lift.*`` wins and the file is never read; either is reported to
    the checkpointer (``report_part``), which knows no module by name."""

    def __init__(self, lift_weights):
        super().__init__()
        self.trunk = torch.nn.Linear(2, 2)
        self.lift = torch.nn.Linear(2, 2)
        self.lift_weights = lift_weights
        self.file_reads = 0
        self.requires_grad_(False)
        self.register_load_state_dict_pre_hook(self._fill_lift)

    @staticmethod
    def _fill_lift(module, state_dict, prefix, *args):
        from lift_det.checkpoint import report_part

        origin = f"lift_weights={module.lift_weights}"
        if not any(k.startswith(prefix + "lift.") for k in state_dict):
            module.file_reads += 1
            for k, v in torch.load(module.lift_weights).items():
                state_dict[f"{prefix}lift.{k}"] = v
            report_part(prefix + "lift.", "file", origin=origin, tensors=2)
        else:
            report_part(prefix + "lift.", "checkpoint", origin=origin, tensors=2)


@pytest.mark.parametrize("ckpt_has_lift", [True, False])
def test_log_says_where_lift_came_from(tmp_path, caplog, ckpt_has_lift):
    lift_file = str(tmp_path / "lift.pth")
    torch.save({"weight": torch.full((2, 2), 2.0), "bias": torch.zeros(2)}, lift_file)
    donor = torch.nn.Module()
    donor.net = LiFTNetStandIn(lift_file)
    torch.nn.init.constant_(donor.net.lift.weight, 3.0)
    state = donor.state_dict()
    if not ckpt_has_lift:
        state = {k: v for k, v in state.items() if ".lift." not in k}
    path = str(tmp_path / "model.pth")
    torch.save({"model": state}, path)
    model = torch.nn.Module()
    model.net = LiFTNetStandIn(lift_file)
    with caplog.at_level(logging.INFO):
        AtomicDetectionCheckpointer(model).load(path)
    (info,) = [r.getMessage() for r in _records(caplog, logging.INFO)]
    if ckpt_has_lift:
        assert model.net.file_reads == 0 and (model.net.lift.weight == 3).all()
        assert f"net.lift: from the checkpoint (lift_weights={lift_file} not used)" in info
        assert info.startswith(f"Loaded 4/4 tensors of the model from {path}")
    else:
        assert model.net.file_reads == 1 and (model.net.lift.weight == 2).all()
        assert f"net.lift (2): from lift_weights={lift_file} (the checkpoint has none)" in info
        assert info.startswith(f"Loaded 2/4 tensors of the model from {path}")


# ---- LiFT files ---------------------------------------------------------------------------------
def _lift_file(path, edit_state=None, **meta):
    lift = LiFT.from_preset("LiFT-S", 64)
    state = lift.state_dict()
    if edit_state:
        edit_state(state)
    data = {
        "model": state,
        "lift_det": {**lift_metadata(lift, _identity()), "iteration": 10, **meta},
    }
    torch.save(data, path)


def _set(key, value):
    def edit(state):
        state[key] = state[key].clone()
        state[key].view(-1)[0] = value

    return edit


BAD_LIFT_FILES = {
    "nan": (dict(edit_state=_set("out_conv.weight", float("nan"))), "out_conv.weight has NaN/inf"),
    "inf": (dict(edit_state=_set("out_conv.bias", float("inf"))), "out_conv.bias has NaN/inf"),
    "1e6": (
        dict(edit_state=_set("out_conv.weight", 1e6)),
        "has exploded (max |w| = 1e+06 > 1e+04)",
    ),
    "var_inf": (
        dict(edit_state=_set("image_encoder.0.norm_layer.running_var", float("inf"))),
        "image_encoder.0.norm_layer.running_var has NaN/inf",
    ),
    "var_0": (
        dict(edit_state=_set("image_encoder.1.norm_layer.running_var", 0.0)),
        "BatchNorm image_encoder.1.norm_layer.running_var has values <= 0",
    ),
    "1e6_bias": (dict(edit_state=_set("out_conv.bias", -1e6)), "out_conv.bias has exploded"),
    "iter_0": (dict(iteration=0), "iteration 0 <= 0, LiFT was never trained"),
    "iter_-5": (dict(iteration=-5), "iteration -5 <= 0"),
}


@pytest.mark.parametrize(
    "case", list(BAD_LIFT_FILES) + ["truncated", "random bytes", "detector checkpoint"]
)
def test_broken_lift_files_are_refused_on_load(tmp_path, case):
    path = str(tmp_path / "lift_final.pth")
    if case in BAD_LIFT_FILES:
        kwargs, fragment = BAD_LIFT_FILES[case]
        _lift_file(path, **kwargs)
    elif case == "truncated":
        _lift_file(path)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) - 100])
        fragment = "is not a LiFT file or is truncated"
    elif case == "random bytes":  # seeded: many more seeds in test_every_unpickling_failure...
        open(path, "wb").write(_random_bytes(seed=0, size=5000))
        fragment = "(5000 bytes) is not a LiFT file or is truncated (not a zip archive)"
    else:
        vitdet_path, _ = vitdet_checkpoint(tmp_path, "vitdet_mrcnn", "pth")
        os.replace(vitdet_path, path)
        fragment = "is not a LiFT file written by lift_det"
    with pytest.raises((ValueError, RuntimeError)) as e:
        load_lift_file(LiFT.from_preset("LiFT-S", 64), path)
    assert fragment in str(e.value) and path in str(e.value)
    assert "weights_only" not in str(e.value)
    if case in BAD_LIFT_FILES and "iter" not in case:
        assert "lower optimizer.lr" in str(e.value)  # the fix


def _random_bytes(seed, size):
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def test_every_unpickling_failure_names_the_file(tmp_path):
    """Random bytes and truncated files make torch's unpickler raise anything (EOFError,
    UnpicklingError, IndexError, KeyError, UnicodeDecodeError, OSError(EINVAL) ...): every one is
    the project's error naming the file and the fix. 200 seeded random files (about 7% of them
    raise IndexError or KeyError) and a real LiFT file cut at many points."""
    path = str(tmp_path / "lift_final.pth")
    contents = [_random_bytes(seed, 100 + 61 * seed) for seed in range(200)]
    _lift_file(path)
    data = open(path, "rb").read()
    cuts = [0, 1, 2, 10, 64, 100, 1000, 5010, len(data) // 2, len(data) - 100, len(data) - 1]
    contents += [data[:cut] for cut in cuts + list(range(0, len(data), len(data) // 40))]
    for content in contents:
        open(path, "wb").write(content)
        with pytest.raises(RuntimeError) as e:
            read_lift_file(path)
        msg = str(e.value)
        assert f"'{path}' ({len(content)} bytes) is not a LiFT file or is truncated" in msg
        assert msg.endswith("Download/copy it again or fix the path.")


def test_every_unreadable_detector_checkpoint_names_the_file(tmp_path):
    """The checkpointer too (torch's unpickler for .pth, pickle for .pkl): 60 seeded random files
    of each kind are the project's error, a ValueError the tools report in one line."""
    from lift_det.checkpoint.file_io import NotACheckpointError

    for seed in range(60):
        for ext in ("pth", "pkl"):
            path = str(tmp_path / f"model_{seed}.{ext}")
            content = _random_bytes(1000 + seed, 50 + 37 * seed)
            open(path, "wb").write(content)
            with pytest.raises(NotACheckpointError) as e:
                AtomicDetectionCheckpointer(torch.nn.Linear(2, 2)).load(path)
            assert isinstance(e.value, ValueError) and isinstance(e.value, RuntimeError)
            assert f"'{path}' ({len(content)} bytes) is not a checkpoint or is truncated" in str(
                e.value
            )


def test_a_lift_file_that_cannot_be_opened_is_an_os_error_naming_it(tmp_path):
    folder = str(tmp_path / "lift_final.pth")
    os.makedirs(folder)  # a folder where the file should be: not its content's fault
    with pytest.raises(IsADirectoryError, match=f"cannot open LiFT file '{folder}' "):
        torch_load_checked(folder, what="LiFT file")
    with pytest.raises(FileNotFoundError, match="lift_missing.pth"):
        read_lift_file(str(tmp_path / "lift_missing.pth"))


def _drop(key):
    return lambda state: state.pop(key)


def _add(key):
    return lambda state: state.__setitem__(key, torch.zeros(3))


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (_drop("out_conv.bias"), 'Missing key(s) in state_dict: "out_conv.bias"'),
        (_drop("decoder.1.norm_layer.running_var"), '"decoder.1.norm_layer.running_var"'),
        (_add("fuse.0.conv.weight"), 'Unexpected key(s) in state_dict: "fuse.0.conv.weight"'),
    ],
    ids=["missing tensor", "missing statistic", "extra tensor"],
)
def test_lift_file_with_a_missing_or_extra_tensor_is_refused_by_name(tmp_path, edit, fragment):
    """The load is strict: LiFT is never left with its random init for a tensor the file lacks,
    and a file holding more than this LiFT (another layout) is refused."""
    path = str(tmp_path / "lift.pth")
    _lift_file(path, edit_state=edit)
    lift = LiFT.from_preset("LiFT-S", 64)
    before = {k: v.clone() for k, v in lift.state_dict().items()}
    with pytest.raises(ValueError) as e:
        load_lift_file(lift, path)
    for k, v in lift.state_dict().items():  # a refused file leaves nothing of itself behind
        assert torch.equal(v, before[k]), k
    assert f"LiFT file '{path}' does not fit this model" in str(e.value)
    assert fragment in str(e.value)
    assert "Train a LiFT for this backbone with stage one" in str(e.value)  # the fix


def test_broken_lift_weights_are_never_written(tmp_path):
    lift = LiFT.from_preset("LiFT-S", 64)
    with torch.no_grad():
        lift.out_conv.weight[0, 0, 0, 0] = float("nan")
    path = str(tmp_path / "lift_final.pth")
    with pytest.raises(ValueError, match="out_conv.weight has NaN/inf"):
        save_lift_file(path, lift, backbone=_identity(), iteration=10)
    assert os.listdir(tmp_path) == []


def test_format_1_lift_file_still_loads(tmp_path, caplog):
    """A file written by lift_det's first format (no teacher / quality fields), by hand."""
    lift = LiFT.from_preset("LiFT-S", 64)
    torch.nn.init.normal_(lift.out_conv.weight)
    meta = {
        "format": 1,
        "class": "LiFT",
        "preset": "LiFT-S",
        "arch": dict(lift.arch),
        "in_channels": 64,
        "patch_size": 16,
        "backbone": _identity(),
        "feature_layer": "last_feat",
        "iteration": 1234,
        "teacher_weights": "vitdet_b.pkl",
        "distance": "cosine",
    }
    path = str(tmp_path / "old.pth")
    torch.save({"model": lift.state_dict(), "lift_det": meta}, path)
    fresh = LiFT.from_preset("LiFT-S", 64)
    with caplog.at_level(logging.WARNING):
        assert load_lift_file(fresh, path, backbone=_identity()) == meta
    torch.testing.assert_close(fresh.out_conv.weight, lift.out_conv.weight)
    assert caplog.records == []


@pytest.mark.parametrize(
    "meta,warning",
    [
        (dict(teacher={"weights": "", "initialized": False}), "UNINITIALIZED (random) ViT teacher"),
        (dict(teacher_weights=""), "UNINITIALIZED (random) ViT teacher"),  # format 1
        (dict(undertrained=True, quality={"cos_lift": 0.5, "cos_bilinear": 0.75}), "UNDERTRAINED"),
    ],
)
def test_lift_file_warnings_on_load(tmp_path, caplog, meta, warning):
    path = str(tmp_path / "lift.pth")
    _lift_file(path, **meta)
    with caplog.at_level(logging.WARNING):
        load_lift_file(LiFT.from_preset("LiFT-S", 64), path)
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning in record.getMessage() and path in record.getMessage()
    if "quality" in meta:
        assert "(0.5000) is below bilinear upsampling's (0.7500)" in record.getMessage()


def test_large_batchnorm_statistics_are_not_refused(tmp_path):
    """Running statistics follow the ViT's activations (a mini run had running_var 1.4e4)."""
    path = str(tmp_path / "lift.pth")
    _lift_file(path, edit_state=_set("decoder.0.norm_layer.running_var", 1e6))
    lift = LiFT.from_preset("LiFT-S", 64)
    load_lift_file(lift, path)
    assert lift.decoder[0].norm_layer.running_var[0].item() == 1e6


def test_mae_into_frozen_vit_zero_rel_pos_is_fine_nonzero_is_refused(tmp_path, caplog):
    from detectron2.modeling import ViT

    state = mae_state_dict(TINY_VIT["embed_dim"], TINY_VIT["depth"], TINY_VIT["num_heads"])
    path = str(tmp_path / "mae.pth")
    torch.save({"model": state}, path)
    vit = ViT(**TINY_VIT, use_rel_pos=True, rel_pos_zero_init=True).requires_grad_(False)
    with caplog.at_level(logging.INFO):
        AtomicDetectionCheckpointer(vit).load(path + "?matching_heuristics=True")
    torch.testing.assert_close(vit.pos_embed.detach(), state["pos_embed"])
    (info,) = [r.getMessage() for r in _records(caplog, logging.INFO)]
    assert f"; {2 * TINY_VIT['depth']} relative-position tables not in the file stay zero" in info
    with torch.no_grad():
        vit.blocks[1].attn.rel_pos_w.fill_(0.5)
    with pytest.raises(ValueError, match=r"FROZEN .* 1 did not fit .*blocks.1.attn.rel_pos_w"):
        AtomicDetectionCheckpointer(vit).load(path + "?matching_heuristics=True")


class ReportingStandIn(torch.nn.Module):
    """Any module may tell the checkpointer where its tensors come from (load_report)."""

    def __init__(self, source, reason="on purpose"):
        super().__init__()
        self.trunk = torch.nn.Linear(2, 2)
        self.extra = torch.nn.Linear(2, 2)
        self.source = source
        self.register_load_state_dict_pre_hook(self._report)

    @staticmethod
    def _report(module, state_dict, prefix, *args):
        from lift_det.checkpoint import report_part

        if module.source and not any(k.startswith(prefix + "extra.") for k in state_dict):
            report_part(prefix + "extra.", module.source, tensors=2, reason=module.reason)

    reason = "a part this format never has"


@pytest.mark.parametrize("source", ["random", "new", None])
def test_reported_parts_decide_what_is_refused(tmp_path, caplog, source):
    """The checkpointer's exemptions come only from what modules report: a part reported
    "random" may stay at its init in training and inference, a "new" one in training and for
    inference (complete=True), an unreported missing one only in training (it is trainable)."""
    donor = ReportingStandIn(source)
    state = {k: v for k, v in donor.state_dict().items() if not k.startswith("extra.")}
    path = str(tmp_path / "model.pth")
    torch.save({"model": state}, path)
    with caplog.at_level(logging.INFO):
        AtomicDetectionCheckpointer(ReportingStandIn(source)).load(path)
    info = [r.getMessage() for r in _records(caplog, logging.INFO)][-1]
    if source == "random":
        assert "extra: left random (a part this format never has)" in info
        assert info.startswith(f"Loaded 2/4 tensors of the model from {path}")
    elif source == "new":
        assert "(as expected: a part this format never has)" in info
    if source is None:
        with pytest.raises(ValueError, match=r"leaves 2 of the model's 4 tensors"):
            AtomicDetectionCheckpointer(ReportingStandIn(source), complete=True).load(path)
    else:
        AtomicDetectionCheckpointer(ReportingStandIn(source), complete=True).load(path)


def test_a_tied_tensor_loaded_under_one_name_is_not_missing():
    """Two modules sharing one weight: loaded under one name, the other is not missing (fvcore's
    rule, here on public torch API); both names absent: both missing; an unshared one: missing."""
    from lift_det.checkpoint.load_report import really_missing

    model = torch.nn.Module()
    model.a = torch.nn.Linear(2, 2)
    model.b = torch.nn.Linear(2, 2)
    model.b.weight = model.a.weight  # tied
    assert really_missing(model, ["b.weight"]) == set()
    assert really_missing(model, ["a.weight", "b.weight"]) == {"a.weight", "b.weight"}
    assert really_missing(model, ["b.bias", "a.weight"]) == {"b.bias"}


def test_tied_tensor_through_the_checkpointer(tmp_path, caplog):
    model = torch.nn.Module()
    model.a = torch.nn.Linear(2, 2)
    model.b = torch.nn.Linear(2, 2)
    model.b.weight = model.a.weight
    model.requires_grad_(False)  # frozen: a missing one would be refused
    state = {k: v for k, v in model.state_dict().items() if k != "b.weight"}
    torch.save({"model": state}, tmp_path / "m.pth")
    with caplog.at_level(logging.INFO):
        AtomicDetectionCheckpointer(model).load(str(tmp_path / "m.pth"))
    assert "new (not in the file" not in caplog.text
