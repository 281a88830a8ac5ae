"""LiFT, its controls, the ViTDet+LiFT backbone (registered in BACKBONE_REGISTRY), stage one."""

from inspect import ismodule as _ismodule

# LiFT and the controls that take its place (the image-guided ones of FeatUp and JAFAR too)
from .lift import LIFT_PRESETS, ConvNormAct, LiFT
from .upsample import UPSAMPLER_NAMES, BilinearUpsampler, ResizeConvUpsampler, build_upsampler
from .learned_upsamplers import AttentionUpsampler, JBUUpsampler

# ViTDet's attention through scaled_dot_product_attention
from .attention import ATTN_IMPLS, AttnViT, SDPAttention, set_attn_impl

# stage two: ViT + LiFT backbone, its pyramid, yacs builder
from .backbone import ViTLiFT, vit_identity
from .pyramid import LastLevelsMaxPool, LiFTSimpleFeaturePyramid, build_vit_lift_backbone

# stage one: frozen feature sources and the self-supervised model
from .feature_source import D2ViTSource
from .timm_source import TimmViTSource
from .distill import LiFTDistiller

__all__ = [k for k, v in globals().items() if not k.startswith("_") and not _ismodule(v)]
