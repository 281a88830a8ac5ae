"""SDPA attention: upstream's outputs and gradients, the same checkpoints, selectable by config."""

import copy
import pytest
import torch

from detectron2.config import instantiate
from detectron2.modeling import ViT
from detectron2.modeling.backbone.vit import Attention

from conftest import TINY_VIT, load_config, vitdet_vit_kwargs
from lift_det.modeling import ATTN_IMPLS, AttnViT, SDPAttention, ViTLiFT, set_attn_impl


def _attention_pair(dim, heads, use_rel_pos, input_size):
    torch.manual_seed(0)
    eager = Attention(
        dim, heads, use_rel_pos=use_rel_pos, rel_pos_zero_init=False, input_size=input_size
    ).double()
    sdpa = set_attn_impl(copy.deepcopy(eager), "sdpa")
    return eager, sdpa


@pytest.mark.parametrize(
    "batch, size, input_size, use_rel_pos",
    [
        (4, (7, 7), (7, 7), True),  # a windowed block: windows are the batch
        (2, (8, 8), (8, 8), True),  # a global block
        (2, (6, 10), (8, 8), True),  # non-square, rel-pos tables interpolated
        (1, (5, 3), (5, 3), True),  # non-square, tables of the input's size
        (3, (6, 6), (6, 6), False),  # no relative positions
    ],
)
def test_sdpa_equals_upstream_outputs_and_gradients(batch, size, input_size, use_rel_pos):
    eager, sdpa = _attention_pair(32, 4, use_rel_pos, input_size)
    assert type(sdpa) is SDPAttention and sdpa.state_dict().keys() == eager.state_dict().keys()
    x = torch.randn(batch, *size, 32, dtype=torch.double)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out1, out2 = eager(x1), sdpa(x2)
    torch.testing.assert_close(out2, out1)
    g = torch.randn_like(out1)
    out1.backward(g)
    out2.backward(g)
    torch.testing.assert_close(x2.grad, x1.grad)
    grads = {n: p.grad for n, p in eager.named_parameters()}
    assert (grads["rel_pos_h"].abs().sum() > 0) if use_rel_pos else "rel_pos_h" not in grads
    for n, p in sdpa.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], msg=f"gradient of {n}")


def test_sdpa_under_autocast_is_close():
    eager, sdpa = _attention_pair(32, 4, True, (8, 8))
    eager, sdpa = eager.float(), sdpa.float()
    x = torch.randn(2, 8, 8, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out1, out2 = eager(x), sdpa(x)
    assert out2.dtype == out1.dtype
    torch.testing.assert_close(out2.float(), out1.float(), rtol=0.05, atol=0.05)


def _tiny_vit(cls, **kwargs):
    return cls(**vitdet_vit_kwargs(**TINY_VIT), **kwargs)


def test_vit_with_sdpa_loads_a_plain_vit_checkpoint_and_gives_its_features():
    torch.manual_seed(0)
    plain = _tiny_vit(ViT).eval()
    for p in plain.parameters():  # rel-pos tables are zero at init: make them count
        p.data.normal_(0, 0.1)
    fast = _tiny_vit(AttnViT, attn_impl="sdpa").eval()
    assert fast.attn_impl == "sdpa"
    assert [type(b.attn) for b in fast.blocks] == [SDPAttention] * TINY_VIT["depth"]
    assert [b.window_size for b in fast.blocks] == [4, 0]  # windowed and global blocks
    fast.load_state_dict(plain.state_dict())  # strict: the same keys and shapes
    x = torch.rand(2, 3, 128, 96)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x))
    assert set_attn_impl(fast, "eager").attn_impl == "eager"


def test_unknown_attn_impl_is_refused():
    with pytest.raises(NotImplementedError, match="attn_impl='flash'"):
        _tiny_vit(AttnViT, attn_impl="flash")
    assert set(ATTN_IMPLS) == {"eager", "sdpa"}


@pytest.mark.parametrize("name", ["vitdet_mrcnn", "vitdet_mrcnn_lift", "vitdet_cascade_l_lift"])
def test_selectable_in_the_lazyconfig(name):
    cfg = load_config(name)
    assert cfg.model.backbone.net.attn_impl == "eager"  # upstream's by default
    cfg.model.backbone.net.attn_impl = "sdpa"  # = the override model.backbone.net.attn_impl=sdpa
    vit = instantiate(cfg.model).backbone.net
    assert isinstance(vit, AttnViT) and vit.attn_impl == "sdpa"
    assert all(type(b.attn) is SDPAttention for b in vit.blocks)


def test_selectable_for_the_stage_one_teacher():
    from detectron2.config import LazyConfig

    from conftest import REPO

    cfg = LazyConfig.load(f"{REPO}/configs/mini/lift_stage1.py")
    assert cfg.model.source.net.attn_impl == "eager"
    cfg.model.source.net.attn_impl = "sdpa"
    model = instantiate(cfg.model)
    assert model.backbone.net.attn_impl == "sdpa"


def test_selectable_in_the_yacs_builder():
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec

    from lift_det.config import add_lift_config
    from lift_det.modeling import build_vit_lift_backbone

    cfg = add_lift_config(get_cfg())
    assert cfg.MODEL.VIT_LIFT.ATTN_IMPL == "eager"
    cfg.MODEL.VIT_LIFT.merge_from_list(
        ["IMG_SIZE", 128, "EMBED_DIM", 64, "DEPTH", 2, "NUM_HEADS", 2, "WINDOW_SIZE", 4]
    )
    cfg.MODEL.VIT_LIFT.WINDOW_BLOCK_INDEXES = [0]
    cfg.MODEL.VIT_LIFT.UPSAMPLER = "bilinear"
    cfg.MODEL.VIT_LIFT.ATTN_IMPL = "sdpa"
    backbone = build_vit_lift_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(backbone.net, ViTLiFT) and backbone.net.attn_impl == "sdpa"
