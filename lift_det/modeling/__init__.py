"""LiFT, its controls, and the ViTDet+LiFT backbone (registered in BACKBONE_REGISTRY)."""
from .backbone import LiFTSimpleFeaturePyramid, ViTLiFT, build_vit_lift_backbone
from .lift import LIFT_PRESETS, ConvNormAct, LiFT
from .upsample import BilinearUpsampler, ResizeConvUpsampler

__all__ = [k for k in globals().keys() if not k.startswith("_")]
