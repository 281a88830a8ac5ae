"""The paper's analyses and our cost measurements: linear CKA across input scales (Fig. 4),
self-similarity maps (Fig. 5), recursive LiFT (Table 8), parameters / FLOPs / time (§5, Tables 5-6).
"""

# linear CKA and scale invariance (Fig. 4)
from .cka import feature_map_cka, linear_cka, plot_scale_cka, resize_features, scale_cka_matrix

# dense features and self-similarity maps (Fig. 5, Table 8)
from .similarity import (
    FEATURE_METHODS,
    build_feature_model,
    dense_features,
    load_feature_weights,
    plot_self_similarity,
    prepare_image,
    self_similarity,
    self_similarity_maps,
)

# measured cost (Tables 5-6)
from .flops import (
    flop_count,
    format_markdown,
    parameter_count,
    run_benchmark,
    time_interleaved,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]
