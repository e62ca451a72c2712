"""Stage-1 classification losses: class-balanced and masked cross-entropy (method.md, Stage 1).

Pure functions. When no sample is included they return an exact 0 that is still connected to the
logits (so `backward()` works and gives zero gradients), never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_balanced_weights(counts: Tensor, power: float = 0.5, max_ratio: float = 10.0) -> Tensor:
    """Per-class weights w_k ∝ 1/|C_k|^power, with max/min ≤ max_ratio and Σ_k w_k = K.

    Empty clusters count as size 1. The largest weights are capped at max_ratio × (smallest
    weight), then all weights are rescaled to sum to K (the ratio is unchanged by the rescale).

    Args:
        counts: (K,) cluster sizes |C_k| (integer or float, ≥ 0).
        power: exponent (0.5 in DETACH's ODC loss).
        max_ratio: bound on max(w)/min(w), ≥ 1.

    Returns:
        (K,) float weights on counts' device (counts' dtype if floating, else float32).
    """
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(f"counts must be a non-empty (K,) vector, got shape {tuple(counts.shape)}")
    if bool((counts < 0).any()):
        raise ValueError(f"counts must be >= 0, got {counts.tolist()}")
    if not power >= 0.0:
        raise ValueError(f"power must be >= 0, got {power}")
    if not max_ratio >= 1.0:
        raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
    dtype = counts.dtype if counts.is_floating_point() else torch.float32
    sizes = counts.detach().to(dtype).clamp(min=1.0)
    weights = sizes.pow(-power)
    weights = weights.clamp(max=max_ratio * weights.min())
    return weights * (counts.numel() / weights.sum())


def _weighted_masked_nll(
    logits: Tensor, targets: Tensor, sample_weights: Tensor | None, mask: Tensor | None
) -> Tensor:
    """−(1/Σ m_i) Σ_i m_i · ω_i · log softmax(logits_i)[y_i]; exact connected 0 when Σ m = 0.

    Excluded rows may hold any target (e.g. −1); their values never reach the result.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(logits.shape)}")
    num_samples, num_classes = logits.shape
    if targets.shape != (num_samples,):
        raise ValueError(
            f"targets must be ({num_samples},) to match logits {tuple(logits.shape)}, "
            f"got {tuple(targets.shape)}"
        )
    if mask is None:
        mask = torch.ones(num_samples, dtype=torch.bool, device=logits.device)
    elif mask.shape != (num_samples,):
        raise ValueError(
            f"mask must be ({num_samples},) to match logits {tuple(logits.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    mask_values = mask.to(logits.dtype)
    included = mask_values != 0
    safe_targets = torch.where(included, targets.long(), torch.zeros_like(targets.long()))
    if bool(((safe_targets < 0) | (safe_targets >= num_classes)).any()):
        raise ValueError(
            f"included targets must lie in [0, {num_classes}), got {targets[included].tolist()}"
        )
    log_probs = F.log_softmax(logits, dim=1).gather(1, safe_targets[:, None])[:, 0]
    terms = mask_values * log_probs
    if sample_weights is not None:
        terms = terms * sample_weights.to(logits.dtype)
    terms = torch.where(included, terms, torch.zeros_like(terms))
    total = mask_values.sum()
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    return -terms.sum() / safe_total


def class_balanced_cross_entropy(
    logits: Tensor, targets: Tensor, class_weights: Tensor, mask: Tensor | None = None
) -> Tensor:
    """L_cluster = −(1/N) Σ_i w_{ŷ_i} log p(ŷ_i | ·), over the included samples only.

    N is the number of included samples (Σ m_i), not Σ w_{ŷ_i} (unlike F.cross_entropy's
    `weight=` reduction).

    Args:
        logits: (N, K) class logits.
        targets: (N,) class ids in [0, K) (anything, e.g. −1, where the mask excludes).
        class_weights: (K,) weights w_k, e.g. from `class_balanced_weights`; used detached.
        mask: optional (N,) bool (or 0/1) inclusion mask m; None includes all.

    Returns:
        Scalar loss; an exact 0 connected to `logits` when no sample is included.
    """
    num_classes = logits.shape[-1]
    if class_weights.shape != (num_classes,):
        raise ValueError(
            f"class_weights must be ({num_classes},) to match the logits' K, "
            f"got {tuple(class_weights.shape)}"
        )
    if targets.dim() != 1:
        raise ValueError(f"targets must be (N,), got shape {tuple(targets.shape)}")
    safe_targets = targets.long().clamp(0, num_classes - 1)
    sample_weights = class_weights.detach()[safe_targets]
    return _weighted_masked_nll(logits, targets, sample_weights, mask)


def masked_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """L = −(1/Σ m_i) Σ_i m_i log p(y_i | ·) (L_video and L_refine of method.md, Stage 1).

    Args:
        logits: (N, K) class logits.
        targets: (N,) class ids in [0, K) where m_i = 1 (anything, e.g. −1, elsewhere).
        mask: (N,) bool (or 0/1) mask m.

    Returns:
        Scalar loss; an exact 0 connected to `logits` when Σ m = 0.
    """
    return _weighted_masked_nll(logits, targets, None, mask)
