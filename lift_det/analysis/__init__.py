"""Feature analyses of the paper's §6 (linear CKA, self-similarity); the scenarios that use them
are tools/scale_invariance.py and tools/visualize_features.py, the cost is tools/benchmark.py."""

from .features import FEATURE_METHODS, dense_features, feature_map_cka, linear_cka, method_label
from .features import query_to_grid, resize_features, self_similarity

__all__ = [k for k in globals().keys() if not k.startswith("_")]
