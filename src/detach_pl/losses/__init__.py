"""DETACH losses: weighted contrastive loss and its weights (stage 2), cross-entropies (stage 1)."""

from detach_pl.losses.classification import (
    check_counts,
    class_balanced_cross_entropy,
    class_balanced_denominator,
    class_balanced_weights,
    masked_cross_entropy,
)
from detach_pl.losses.contrastive import info_nce, weighted_info_nce
from detach_pl.losses.weights import (
    GramDtype,
    TemporalMode,
    alignment_weights,
    false_negative_weights,
    hard_negative_weights,
    pair_weights,
    spatial_similarity,
    temporal_similarity,
    unit_gram,
)

__all__ = [
    "GramDtype",
    "TemporalMode",
    "alignment_weights",
    "check_counts",
    "class_balanced_cross_entropy",
    "class_balanced_denominator",
    "class_balanced_weights",
    "false_negative_weights",
    "hard_negative_weights",
    "info_nce",
    "masked_cross_entropy",
    "pair_weights",
    "spatial_similarity",
    "temporal_similarity",
    "unit_gram",
    "weighted_info_nce",
]
