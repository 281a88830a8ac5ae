"""Shared helpers: tiny ViTDet configs (the real structure, small sizes) for CPU tests."""

import pytest
import torch

from detectron2.config import LazyConfig

import os
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="torch")

# a tiny ViT with ViTDet's structure: windowed + global blocks, rel-pos, abs-pos from 224 pretrain
TINY_VIT = dict(
    img_size=128, embed_dim=64, depth=2, num_heads=2, window_size=4, window_block_indexes=[0]
)


def load_config(name: str, tiny: bool = True):
    """Load ``configs/<name>.py``; with ``tiny`` shrink the ViT to TINY_VIT (128x128 input)."""
    cfg = LazyConfig.load(os.path.join(REPO, "configs", f"{name}.py"))
    if tiny:
        for k, v in TINY_VIT.items():
            setattr(cfg.model.backbone.net, k, v)
        cfg.model.backbone.square_pad = TINY_VIT["img_size"]
    if "lift_weights" in cfg.model.backbone.net:
        cfg.model.backbone.net.lift_weights = ""
    return cfg


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
