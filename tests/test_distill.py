"""Tests of stage one's model (lift_det.modeling.distill) and feature sources."""

import copy
from typing import Dict, List
import pytest
import torch
import torch.nn.functional as F

from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.modeling import ViT

from conftest import vitdet_vit_kwargs
from lift_det.modeling import LiFT, ResizeConvUpsampler, ViTLiFT, vit_identity
from lift_det.modeling.distill import LiFTDistiller
from lift_det.modeling.feature_source import D2ViTSource
from lift_det.modeling.timm_source import TimmViTSource

TINY_VIT = vitdet_vit_kwargs(
    img_size=128,
    embed_dim=64,
    depth=2,
    num_heads=2,
    window_size=4,
    window_block_indexes=[0],
    mlp_ratio=2,
)


def tiny_distiller(seed: int = 0, **kwargs) -> LiFTDistiller:
    torch.manual_seed(seed)
    source = D2ViTSource(ViT(**TINY_VIT))
    # give the ViT non-trivial weights (rel-pos tables start at zero)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return LiFTDistiller(source=source, lift=LiFT.from_preset("LiFT-S", 64, 16), **kwargs)


def synthetic_batch(n: int = 4, size=(128, 128), seed: int = 0) -> List[Dict]:
    """Smooth random images with a few sharp rectangles, uint8 RGB in 0-255."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(n):
        low = torch.rand(1, 3, 6, 6, generator=g)
        image = F.interpolate(low, size=size, mode="bicubic", align_corners=False)[0]
        for _ in range(3):
            y, x = (torch.randint(0, s - 16, (1,), generator=g).item() for s in size)
            h, w = torch.randint(8, 40, (2,), generator=g).tolist()
            image[:, y : y + h, x : x + w] = torch.rand(3, 1, 1, generator=g)
        batch.append({"image": (image.clamp(0, 1) * 255).round().to(torch.uint8)})
    return batch


def train_steps(model: LiFTDistiller, batch, steps: int, lr: float = 1e-3) -> List[float]:
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss_dict = model(batch)
        loss = sum(loss_dict.values())
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    return losses


def test_vit_frozen_bit_identical_and_eval_mode():
    model = tiny_distiller()
    before = copy.deepcopy(model.backbone.state_dict())
    lift_before = copy.deepcopy(model.lift.state_dict())
    model.train()
    assert model.training and model.lift.training
    assert not model.backbone.training
    assert not any(m.training for m in model.backbone.modules())
    train_steps(model, synthetic_batch(2), steps=3)
    for name, p in model.backbone.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, lift_before[k]) for k, v in model.lift.state_dict().items())
    assert all(p.grad is not None for p in model.lift.parameters())


def _scales(model, batch):
    """x/2, x/4 and F at x, x/2, x/4 of a batch, computed here (not by the model)."""
    x = model.preprocess_image(batch).tensor
    x2 = F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True)
    x4 = F.interpolate(x, scale_factor=0.25, mode="bilinear", antialias=True)
    return x2, x4, model.backbone(x), model.backbone(x2), model.backbone(x4)


def test_loss_falls():
    # judged by a distance computed here, not by the model's loss (a flipped sign would also make
    # the model's own loss fall, while LiFT moves away from the teacher)
    model = tiny_distiller()
    batch = synthetic_batch(4, seed=1)

    def distance():
        model.train()
        with torch.no_grad():
            x2, _, f1, f2, _ = _scales(model, batch)
            return 1 - F.cosine_similarity(model.lift(x2, f2), f1, dim=1).mean().item()

    before = distance()
    losses = train_steps(model, batch, steps=12)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[0] > 0
    assert distance() < 0.7 * before, (before, distance(), losses)


@pytest.mark.parametrize(
    "distance, d",
    [
        ("l1", lambda a, b: torch.abs(a - b).mean()),
        ("l2", lambda a, b: ((a - b) ** 2).mean()),
        ("cosine", lambda a, b: 1 - F.cosine_similarity(a, b, dim=1).mean()),
    ],
)
def test_distances_by_hand(distance, d):
    model = tiny_distiller(distance=distance).train()
    batch = synthetic_batch(2)
    with torch.no_grad():
        losses = model(batch)  # Eq. 1
        x2, x4, f1, f2, f4 = _scales(model, batch)
        s2, s4 = d(model.lift(x2, f2), f1), d(model.lift(x4, f4), f2)
    assert set(losses) == {"loss_lift_s2", "loss_lift_s4"}
    torch.testing.assert_close(losses["loss_lift_s2"], s2, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(losses["loss_lift_s4"], s4, atol=1e-6, rtol=1e-5)


def test_eval_outputs_similarities():
    model = tiny_distiller().eval()
    batch = synthetic_batch(3)
    with torch.no_grad():
        out = model(batch)
        x2, _, f1, f2, _ = _scales(model, batch)
        candidates = {
            "cos_lift": model.lift(x2, f2),
            "cos_bilinear": F.interpolate(f2, scale_factor=2.0, mode="bilinear"),
            "cos_nearest": F.interpolate(f2, scale_factor=2.0, mode="nearest"),
        }
    assert len(out) == 3
    for key, up in candidates.items():
        cos = F.cosine_similarity(up, f1, dim=1)  # (B, h, w)
        for i in range(3):
            assert out[i][key] == pytest.approx(cos[i].mean().item(), abs=1e-5), key
    # the three differ: LiFT is not a copy of a fixed upsampling
    assert len({round(v, 4) for v in out[0].values()}) == 3


def test_mixed_sizes_padded_and_padding_ignored():
    model = tiny_distiller(square_pad=128).eval()
    batch = synthetic_batch(1, size=(128, 64)) + synthetic_batch(1, size=(96, 128))
    images = model.preprocess_image(batch)
    assert images.tensor.shape[-2:] == (128, 128)
    # content cells at stride 16: 8x4 and 6x8 of the 8x8 grid; at stride 32: 4x2 and 3x4 of 4x4
    crops1, crops2 = [(8, 4), (6, 8)], [(4, 2), (3, 4)]
    with torch.no_grad():
        out = model(batch)
        x2, x4, f1, f2, f4 = _scales(model, batch)
        near = F.cosine_similarity(F.interpolate(f2, scale_factor=2.0, mode="nearest"), f1, dim=1)
    for i, (h, w) in enumerate(crops1):  # eval: the mean over the cropped content
        assert out[i]["cos_nearest"] == pytest.approx(near[i, :h, :w].mean().item(), abs=1e-5)
    model.train()
    with torch.no_grad():
        losses = model(batch)
        d2 = 1 - F.cosine_similarity(model.lift(x2, f2), f1, dim=1)
        d4 = 1 - F.cosine_similarity(model.lift(x4, f4), f2, dim=1)

    def crop_mean(d, crops):  # every content cell of the batch counts once
        cells = torch.cat([d[i, :h, :w].reshape(-1) for i, (h, w) in enumerate(crops)])
        return cells.mean()

    torch.testing.assert_close(losses["loss_lift_s2"], crop_mean(d2, crops1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(losses["loss_lift_s4"], crop_mean(d4, crops2), atol=1e-6, rtol=1e-5)
    # and padding matters here: the plain mean over all cells is another number
    assert abs(losses["loss_lift_s2"].item() - d2.mean().item()) > 1e-3


def test_bad_arguments():
    source = D2ViTSource(ViT(**TINY_VIT))
    with pytest.raises(ValueError, match="64"):
        LiFTDistiller(source=source, lift=LiFT.from_preset("LiFT-S", 96, 16))
    with pytest.raises(NotImplementedError, match="distance"):
        LiFTDistiller(source=source, lift=LiFT.from_preset("LiFT-S", 64, 16), distance="kl")
    with pytest.raises(ValueError, match="square_pad"):
        LiFTDistiller(source=source, lift=LiFT.from_preset("LiFT-S", 64, 16), square_pad=100)
    with pytest.raises(ValueError, match="divisible by patch size"):
        source(torch.zeros(1, 3, 40, 48))


def test_control_upsampler_trains():
    source = D2ViTSource(ViT(**TINY_VIT))
    model = LiFTDistiller(source=source, lift=ResizeConvUpsampler(64, 16))
    losses = train_steps(model, synthetic_batch(2), steps=2)
    assert all(v == v for v in losses)


@pytest.mark.parametrize("size", [(32, 48), (64, 64), (96, 160)])
def test_d2_source_small_and_odd_grids(size):
    # grids of 2x3, 4x4 and 6x10 patches: windowed blocks pad to window_size=4, global blocks
    # interpolate their relative positions, absolute positions are interpolated from 14x14
    source = D2ViTSource(ViT(**TINY_VIT))
    feats = source(torch.randn(2, 3, *size))
    assert feats.shape == (2, 64, size[0] // 16, size[1] // 16)
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()


def test_d2_source_identity_matches_stage_two():
    source = D2ViTSource(ViT(**TINY_VIT))
    stage2 = ViTLiFT(lift=LiFT.from_preset("LiFT-S", 64, 16), **TINY_VIT)
    assert source.identity() == vit_identity(stage2)
    assert source.pixel_mean == (123.675, 116.28, 103.53)
    assert source.embed_dim == 64 and source.patch_size == 16


def _tiny_vitdet_model():
    cfg = model_zoo.get_config("common/models/mask_rcnn_vitdet.py")
    cfg.model.backbone.net.update(TINY_VIT)
    cfg.model.backbone.square_pad = 128
    torch.manual_seed(3)
    return instantiate(cfg.model)


def test_vitdet_checkpoint_loads_into_vit(tmp_path):
    detector = _tiny_vitdet_model()
    with torch.no_grad():
        for p in detector.backbone.net.parameters():
            p.add_(torch.randn_like(p))
    path = str(tmp_path / "vitdet.pth")
    torch.save({"model": detector.state_dict()}, path)
    model = tiny_distiller(seed=7)
    lift_before = copy.deepcopy(model.lift.state_dict())
    # what do_train does with train.init_checkpoint
    DetectionCheckpointer(model).resume_or_load(path, resume=False)
    theirs = detector.backbone.net.state_dict()
    ours = model.backbone.net.state_dict()
    assert set(ours) == set(theirs)
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k
    for k, v in model.lift.state_dict().items():
        assert torch.equal(v, lift_before[k]), k


def test_mae_checkpoint_loads_with_matching_heuristics(tmp_path):
    C, depth = TINY_VIT["embed_dim"], TINY_VIT["depth"]
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g)

    mae = {
        "cls_token": rnd(1, 1, C),
        "pos_embed": rnd(1, 1 + 196, C),
        "patch_embed.proj.weight": rnd(C, 3, 16, 16),
        "patch_embed.proj.bias": rnd(C),
        "norm.weight": rnd(C),
        "norm.bias": rnd(C),
    }
    hidden = int(C * TINY_VIT["mlp_ratio"])
    for i in range(depth):
        shapes = {
            "norm1": [(C,), (C,)],
            "attn.qkv": [(3 * C, C), (3 * C,)],
            "attn.proj": [(C, C), (C,)],
            "norm2": [(C,), (C,)],
            "mlp.fc1": [(hidden, C), (hidden,)],
            "mlp.fc2": [(C, hidden), (C,)],
        }
        for name, (w, b) in shapes.items():
            mae[f"blocks.{i}.{name}.weight"] = rnd(*w)
            mae[f"blocks.{i}.{name}.bias"] = rnd(*b)
    path = str(tmp_path / "mae_pretrain_tiny.pth")
    torch.save(mae, path)
    model = tiny_distiller(seed=5)
    lift_before = copy.deepcopy(model.lift.state_dict())
    DetectionCheckpointer(model).resume_or_load(path + "?matching_heuristics=True", resume=False)
    vit = model.backbone.net.state_dict()
    for k, v in mae.items():
        if k in ("cls_token", "norm.weight", "norm.bias"):
            continue
        assert torch.equal(vit[k], v), k
    for k, v in model.lift.state_dict().items():
        assert torch.equal(v, lift_before[k]), k


def test_timm_source_trains_in_distiller():
    torch.manual_seed(0)
    source = TimmViTSource("vit_tiny_patch16_224", img_size=64, depth=2)
    assert source.identity() == {
        "type": "timm",
        "model_name": "vit_tiny_patch16_224",
        "embed_dim": 192,
        "patch_size": 16,
        "depth": 2,
    }
    assert source.pixel_mean == (127.5, 127.5, 127.5)
    feats = source(torch.zeros(2, 3, 64, 96))
    assert feats.shape == (2, 192, 4, 6) and not feats.requires_grad
    model = LiFTDistiller(source=source, lift=LiFT.from_preset("LiFT-S", 192, 16))
    before = copy.deepcopy(source.state_dict())
    losses = train_steps(model, synthetic_batch(2, size=(64, 64)), steps=2)
    assert all(v == v for v in losses)
    assert not source.training
    for k, v in source.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_timm_source_local_weights(tmp_path):
    torch.manual_seed(1)
    reference = TimmViTSource("vit_tiny_patch16_224", img_size=64, depth=2)
    path = str(tmp_path / "vit_tiny.pth")
    torch.save({"model": reference.net.state_dict()}, path)
    loaded = TimmViTSource("vit_tiny_patch16_224", weights=path, img_size=64, depth=2)
    for k, v in loaded.net.state_dict().items():
        assert torch.equal(v, reference.net.state_dict()[k]), k
    assert all(not p.requires_grad for p in loaded.parameters())
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        TimmViTSource("vit_tiny_patch16_224", weights=str(tmp_path / "missing.pth"), depth=2)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="corrupt"):
        TimmViTSource("vit_tiny_patch16_224", weights=str(corrupt), img_size=64, depth=2)
    with pytest.raises(ValueError, match="does not fit"):
        TimmViTSource("vit_tiny_patch16_224", weights=path, img_size=64, depth=3)
