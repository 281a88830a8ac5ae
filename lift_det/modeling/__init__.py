"""LiFT, its controls, the ViTDet+LiFT backbone (registered in BACKBONE_REGISTRY), stage one."""

# LiFT and the controls that take its place
from .lift import LIFT_PRESETS, ConvNormAct, LiFT
from .upsample import BilinearUpsampler, ResizeConvUpsampler, build_upsampler

# stage two: ViT + LiFT backbone, stride-8 pyramid, yacs builder
from .backbone import LiFTSimpleFeaturePyramid, ViTLiFT, build_vit_lift_backbone, vit_identity

# stage one: frozen feature sources and the self-supervised model
from .feature_source import D2ViTSource, TimmViTSource
from .distill import ExportLiFTFile, LiFTDistiller

__all__ = [
    "LIFT_PRESETS",
    "ConvNormAct",
    "LiFT",
    "BilinearUpsampler",
    "ResizeConvUpsampler",
    "build_upsampler",
    "LiFTSimpleFeaturePyramid",
    "ViTLiFT",
    "build_vit_lift_backbone",
    "vit_identity",
    "D2ViTSource",
    "TimmViTSource",
    "ExportLiFTFile",
    "LiFTDistiller",
]
