from .feature_quality import FeatureQualityEvaluator

__all__ = ["FeatureQualityEvaluator"]
