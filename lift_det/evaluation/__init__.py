"""Evaluators of lift_det."""

from .feature_quality import FeatureQualityEvaluator

__all__ = ["FeatureQualityEvaluator"]
