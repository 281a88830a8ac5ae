"""Stage one's feature-quality numbers (LiFTDistiller in eval + FeatureQualityEvaluator) against
a hand computation with numpy loops: per feature cell the cosine over channels, per image the
mean over its content cells, per key the mean over all images of all processes. The inputs make
the other axes give other answers: non-square images of different sizes (padding), batches of
more than one image, a different value in every cell and for every key."""

import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.utils import comm

from lift_det.evaluation import FeatureQualityEvaluator
from lift_det.modeling import LiFT
from lift_det.modeling.distill import LiFTDistiller

KEYS = ("cos_lift", "cos_bilinear", "cos_nearest")
P, C = 16, 8  # patch size, feature channels


class PatchSource(nn.Module):
    """A stand-in frozen feature source: a fixed random patch embedding and a nonlinearity, so
    every cell has its own feature vector."""

    embed_dim, patch_size = C, P
    pixel_mean, pixel_std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.embed = nn.Conv2d(3, C, kernel_size=P, stride=P)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(self.embed.weight.shape, generator=g) / 8)
            self.embed.bias.copy_(torch.randn(C, generator=g))
        self.requires_grad_(False)

    def identity(self):
        return {"type": "PatchSource", "embed_dim": C, "patch_size": P}

    def forward(self, images):
        return torch.tanh(self.embed(images))


def images(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for h, w in sizes:
        low = torch.rand(1, 3, h // 8, w // 8, generator=g)
        image = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0]
        image = image + 0.2 * torch.rand(3, h, w, generator=g)  # per-pixel detail
        out.append({"image": (image.clamp(0, 1) * 255).round().to(torch.uint8)})
    return out


def distiller():
    torch.manual_seed(0)
    lift = LiFT.from_preset("LiFT-S", C, P)
    return LiFTDistiller(source=PatchSource(), lift=lift).eval()


def hand_similarities(model, batch):
    """Per image and key: the mean over the image's content cells of the per-cell cosine over
    channels, with explicit loops. The upsampled candidates come from torch (their correctness
    is test_distill's); the reductions here are numpy."""
    mean, std = (
        torch.tensor(v).view(3, 1, 1) for v in (PatchSource.pixel_mean, PatchSource.pixel_std)
    )
    H = max(x["image"].shape[1] for x in batch)
    W = max(x["image"].shape[2] for x in batch)
    H, W = (math.ceil(s / (4 * P)) * 4 * P for s in (H, W))  # padded to a multiple of 4p
    x = torch.zeros(len(batch), 3, H, W)
    for i, b in enumerate(batch):
        _, h, w = b["image"].shape
        x[i, :, :h, :w] = (b["image"].float() - mean) / std
    x2 = F.interpolate(x, size=(H // 2, W // 2), mode="bilinear", antialias=True)
    with torch.no_grad():
        f1, f2 = model.backbone(x), model.backbone(x2)
        ups = {
            "cos_lift": model.lift(x2, f2),
            "cos_bilinear": F.interpolate(f2, scale_factor=2.0, mode="bilinear"),
            "cos_nearest": F.interpolate(f2, scale_factor=2.0, mode="nearest"),
        }
    f1 = f1.double().numpy()
    result = []
    for i, b in enumerate(batch):
        _, h, w = b["image"].shape
        rows, cols = math.ceil(h / P), math.ceil(w / P)  # cells that see image content
        per_key = {}
        for key, up in ups.items():
            up = up.double().numpy()
            cells = []
            for r in range(rows):
                for c in range(cols):
                    a, t = up[i, :, r, c], f1[i, :, r, c]
                    cells.append(float(a @ t) / (np.linalg.norm(a) * np.linalg.norm(t)))
            per_key[key] = sum(cells) / len(cells)
        result.append(per_key)
    return result


BATCHES = [[(64, 128), (100, 44)], [(48, 96), (128, 64), (96, 96)]]  # (H, W) per image


def test_distiller_eval_and_evaluator_against_numpy():
    model = distiller()
    evaluator = FeatureQualityEvaluator(distributed=False)
    evaluator.reset()
    hand = []
    for seed, sizes in enumerate(BATCHES):
        batch = images(sizes, seed)
        with torch.no_grad():
            outputs = model(batch)
        expected = hand_similarities(model, batch)
        assert len(outputs) == len(sizes)
        for out, exp in zip(outputs, expected):
            assert out == pytest.approx(exp, abs=1e-5)
        evaluator.process(batch, outputs)
        hand += expected
    res = evaluator.evaluate()["lift_quality"]
    expected = {k: sum(s[k] for s in hand) / len(hand) for k in KEYS}
    assert res == pytest.approx(expected, abs=1e-5)
    # the inputs tell the axes apart: another reduction is another number
    per_image = np.array([[s[k] for k in KEYS] for s in hand])
    assert np.abs(per_image.mean(axis=1)[:3] - per_image.mean(axis=0)).min() > 1e-3
    batch_means = [per_image[:2].mean(axis=0), per_image[2:].mean(axis=0)]
    assert np.abs(np.mean(batch_means, axis=0) - per_image.mean(axis=0)).min() > 1e-4


def test_evaluator_mean_over_images_of_all_processes(monkeypatch):
    """Two processes with 3 and 1 images: the mean over the 4 images, not over the processes'
    means, and not over the keys."""
    parts = [
        [
            {"cos_lift": 0.9, "cos_bilinear": 0.5, "cos_nearest": 0.1},
            {"cos_lift": 0.7, "cos_bilinear": 0.6, "cos_nearest": 0.2},
            {"cos_lift": 0.8, "cos_bilinear": 0.4, "cos_nearest": 0.6},
        ],
        [{"cos_lift": 0.2, "cos_bilinear": 0.3, "cos_nearest": 0.9}],
    ]
    monkeypatch.setattr(comm, "synchronize", lambda: None)
    monkeypatch.setattr(comm, "is_main_process", lambda: True)
    monkeypatch.setattr(comm, "gather", lambda data, dst=0: [parts[0], data])
    evaluator = FeatureQualityEvaluator(distributed=True)
    evaluator.reset()
    evaluator.process([{}], [{k: np.float32(v) for k, v in parts[1][0].items()}])
    res = evaluator.evaluate()["lift_quality"]
    # by hand: (0.9 + 0.7 + 0.8 + 0.2) / 4 = 0.65, (0.5 + 0.6 + 0.4 + 0.3) / 4 = 0.45, ...
    assert res == pytest.approx({"cos_lift": 0.65, "cos_bilinear": 0.45, "cos_nearest": 0.45})
    assert list(res) == list(KEYS)


def test_evaluator_without_images_and_with_foreign_outputs():
    evaluator = FeatureQualityEvaluator(distributed=False)
    assert evaluator.evaluate() == {}
    with pytest.raises(KeyError, match="missing \\['cos_nearest'\\]"):
        evaluator.process([{}], [{"cos_lift": 1.0, "cos_bilinear": 1.0}])
