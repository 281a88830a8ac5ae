"""Shared helpers: tiny ViTDet configs (the real structure, small sizes) for CPU tests."""

import os
import warnings
import pytest
import torch

from detectron2.config import LazyConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="torch")

# a tiny ViT with ViTDet's structure: windowed + global blocks, rel-pos, abs-pos from 224 pretrain
TINY_VIT = dict(
    img_size=128, embed_dim=64, depth=2, num_heads=2, window_size=4, window_block_indexes=[0]
)


# The test files that take longest (`make test`'s --durations), slowest first. They are collected
# first, so pytest-xdist (`--dist loadfile --no-loadscope-reorder` in the Makefile) hands them out
# before the short files, which then fill the gaps: both workers finish at about the same time.
# Every other file follows in the usual order; tests within a file keep theirs.
SLOWEST_FILES = [
    "test_train_net.py",
    "test_study.py",
    "test_benchmark.py",
    "test_study_check.py",
    "test_readme_stages.py",
    "test_gpu_check.py",
    "test_run_mini.py",
    "test_train_lift.py",
    "test_export.py",
    "test_user_mistakes.py",
]


def pytest_collection_modifyitems(config, items):
    first = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable


# p2-p6 of every ViTDet pyramid (also with LiFT, at any number of passes)
PYRAMID_STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def vitdet_vit_kwargs(**sizes):
    """Arguments of detectron2's ``ViT`` as ViTDet sets them, with the given sizes."""
    from functools import partial
    from torch import nn

    return dict(
        patch_size=16,
        use_rel_pos=True,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        pretrain_img_size=224,
        pretrain_use_cls_token=True,
        drop_path_rate=0.0,
        out_feature="last_feat",
        **sizes,
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


@pytest.fixture(scope="module")
def small_mini(tmp_path_factory):
    """A small mini dataset (8 train / 6 val images) that every subprocess finds by env var."""
    from lift_det.data.mini import generate_mini_coco, register_mini_coco

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


def load_tool(name: str):
    """``tools/<name>.py`` as a module (its functions run in this process, as launch() with one
    process runs them)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tool_{name}", f"{REPO}/tools/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# subprocesses of the tools run on the CPU even where a GPU exists
CPU_ENV = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def doc_text() -> str:
    """The README and the pages it links (tools/update_readme.py's PAGES) as one text: a section
    is found wherever it lives."""
    pages = load_tool("update_readme").PAGES
    return "\n".join(open(os.path.join(REPO, page)).read() for page in pages)


def doc_table_rows(heading: str):
    """First cells of the table under ``heading`` in the documentation (header row skipped)."""
    section = doc_text().split(heading, 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [row.split(" | ")[0][2:] for row in rows[1:]]
