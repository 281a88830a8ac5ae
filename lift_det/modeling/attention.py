"""ViTDet's attention through ``torch.nn.functional.scaled_dot_product_attention`` (SDPA).

:class:`SDPAttention` is detectron2's ``Attention`` (same parameters, same state-dict keys) whose
decomposed relative-position bias (:paper:`mvitv2`, detectron2's ``add_decomposed_rel_pos``) is
passed to SDPA as its additive ``attn_mask``, so PyTorch can pick a fused kernel. :class:`AttnViT`
is detectron2's ``ViT`` with an ``attn_impl`` argument."""

import inspect
from typing import Dict, Type
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.modeling import ViT
from detectron2.modeling.backbone.utils import get_rel_pos
from detectron2.modeling.backbone.vit import Attention


def decomposed_rel_pos_bias(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, q_size: tuple, k_size: tuple
) -> torch.Tensor:
    """The (B, q_h * q_w, k_h * k_w) term detectron2's ``add_decomposed_rel_pos`` adds to the
    attention logits (same arguments, without the logits)."""
    q_h, q_w = q_size
    k_h, k_w = k_size
    Rh = get_rel_pos(q_h, k_h, rel_pos_h)
    Rw = get_rel_pos(q_w, k_w, rel_pos_w)
    B, _, dim = q.shape
    r_q = q.reshape(B, q_h, q_w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
    # (B, q_h, q_w, k_h, 1) + (B, q_h, q_w, 1, k_w) -> (B, q_h * q_w, k_h * k_w)
    return (rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(B, q_h * q_w, k_h * k_w)


class SDPAttention(Attention):
    """detectron2's ViT ``Attention`` computed by ``F.scaled_dot_product_attention``, the
    relative-position bias as its ``attn_mask``; same parameters and outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        # qkv with shape (3, B, nHead, H * W, C)
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = None
        if self.use_rel_pos:
            # (B, nHead, HW, C) -> (B * nHead, HW, C), the layout upstream's bias is made in
            q_flat = q.reshape(B * self.num_heads, H * W, -1)
            bias = decomposed_rel_pos_bias(q_flat, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
            bias = bias.view(B, self.num_heads, H * W, H * W).to(q.dtype)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        # (B, nHead, HW, C) -> (B, H, W, nHead * C)
        x = x.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
        return self.proj(x)


# attn_impl name -> the class of every attention module of detectron2's ViT
ATTN_IMPLS: Dict[str, Type[Attention]] = {"eager": Attention, "sdpa": SDPAttention}


def set_attn_impl(module: nn.Module, attn_impl: str) -> nn.Module:
    """Switch every attention of detectron2's ViT inside ``module`` to ``attn_impl`` ("eager":
    upstream's, or "sdpa": :class:`SDPAttention`), in place; state-dict keys are untouched."""
    if attn_impl not in ATTN_IMPLS:
        raise NotImplementedError(
            f"attn_impl={attn_impl!r} is not supported; use one of {tuple(ATTN_IMPLS)}."
        )
    for m in module.modules():
        if type(m) in ATTN_IMPLS.values():
            m.__class__ = ATTN_IMPLS[attn_impl]
    return module


class AttnViT(ViT):
    """detectron2's :class:`ViT` with ``attn_impl`` ("eager" or "sdpa", :func:`set_attn_impl`);
    the same parameters and checkpoints."""

    def __init__(self, *, attn_impl: str = "eager", **vit_kwargs):
        super().__init__(**vit_kwargs)
        set_attn_impl(self, attn_impl)

    @property
    def attn_impl(self) -> str:
        """The implementation of the blocks' attention (:func:`set_attn_impl` may change it)."""
        kind = type(self.blocks[0].attn)
        return next(name for name, cls in ATTN_IMPLS.items() if cls is kind)


def keyword_signature(cls: type) -> inspect.Signature:
    """``cls``'s keyword arguments with those its ``**kwargs`` pass on up the MRO (to detectron2's
    ViT), as :func:`inspect.signature` then reports them (a config key no class takes is refused
    by the override check); ends in ``**kwargs`` if the last ``__init__`` still takes them."""
    params: Dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        own = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]
        for p in own:
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in params:
                params[p.name] = p.replace(kind=p.KEYWORD_ONLY)
        if not any(p.kind == p.VAR_KEYWORD for p in own):
            return inspect.Signature(list(params.values()))  # nothing is passed further up
    kwargs = inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)
    return inspect.Signature(list(params.values()) + [kwargs])


AttnViT.__signature__ = keyword_signature(AttnViT)
