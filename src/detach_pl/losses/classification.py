"""Stage-1 classification losses: class-balanced and masked cross-entropy (docs/method.md, Stage 1).

Pure functions. When no sample is included they return an exact 0 that is still connected to the
logits (so `backward()` works and gives zero gradients), never NaN.

Defaults follow the authors' released code (docs/method.md, "ODC details"); the paper-text readings are
named options: ``clamp="cap_large"`` and ``reduction="mean"``.

Value checks that need the tensor's contents on the host (negative counts, out-of-range targets)
force a device synchronisation. They run when ``check=True`` (the default, for direct users); a
training step that has validated its inputs once passes ``check=False`` and stays sync-free. Shape
checks are always done (they cost nothing).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ClampMode",
    "Reduction",
    "check_counts",
    "class_balanced_cross_entropy",
    "class_balanced_denominator",
    "class_balanced_weights",
    "masked_cross_entropy",
]

ClampMode = Literal["raise_small", "cap_large"]
Reduction = Literal["weighted_mean", "mean"]

_CLAMP_MODES = ("raise_small", "cap_large")
_REDUCTIONS = ("weighted_mean", "mean")
_EPS = 1e-8


def check_counts(counts: Tensor) -> None:
    """Raise ValueError unless ``counts`` is a non-empty (K,) vector of values ≥ 0.

    The non-negativity test reads the values on the host (a device sync), so it belongs at API
    boundaries, not in a per-step path whose counts come from ``bincount`` (never negative).
    """
    _check_counts_shape(counts)
    if bool((counts < 0).any()):
        raise ValueError(f"counts must be >= 0, got {counts.tolist()}")


def _check_counts_shape(counts: Tensor) -> None:
    """Raise ValueError unless ``counts`` is a non-empty (K,) vector (no sync)."""
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(f"counts must be a non-empty (K,) vector, got shape {tuple(counts.shape)}")


def class_balanced_weights(
    counts: Tensor,
    power: float = 0.5,
    max_ratio: float = 10.0,
    clamp: ClampMode = "raise_small",
    *,
    check: bool = True,
) -> Tensor:
    """Per-class weights w_k ∝ 1/|C_k|^power with max/min ≤ max_ratio, rescaled to Σ_k w_k = K.

    ``clamp="raise_small"`` (released code, default): w_k = 1/(n_k + 1e-8)^power, then the small
    weights are raised, w_k ← max(w_k, max_j w_j / max_ratio), a no-op when the ratio already holds.
    An empty cluster is not treated as size 1: its weight is huge (1e4 for power 0.5), so it sets
    the maximum and every other weight is raised to a tenth of it, as released.

    ``clamp="cap_large"`` (paper-text reading "clamped so max/min ≤ 10"): sizes are clamped to ≥ 1
    and the large weights are capped, w_k ← min(w_k, max_ratio · min_j w_j).

    Both end with w ← w · K / Σ_j w_j (the ratio is unchanged by the rescale). Everything is tensor
    arithmetic (no host round trip), so it can run every step.

    Args:
        counts: (K,) cluster sizes |C_k| (integer or float, ≥ 0).
        power: exponent (0.5 in DETACH's ODC loss), ≥ 0.
        max_ratio: bound on max(w)/min(w), ≥ 1.
        clamp: "raise_small" or "cap_large", see above.
        check: verify counts ≥ 0 (a device sync, see `check_counts`); pass False in a per-step
            path whose counts are known to be valid.

    Returns:
        (K,) float weights on counts' device (counts' dtype if floating, else float32).

    Raises:
        ValueError: counts not a non-empty (K,) vector, negative counts (when checked), power < 0,
            max_ratio < 1, or an unknown clamp.
    """
    if check:
        check_counts(counts)
    else:
        _check_counts_shape(counts)
    if not power >= 0.0:
        raise ValueError(f"power must be >= 0, got {power}")
    if not max_ratio >= 1.0:
        raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
    if clamp not in _CLAMP_MODES:
        raise ValueError(f"clamp must be one of {_CLAMP_MODES}, got {clamp!r}")
    dtype = counts.dtype if counts.is_floating_point() else torch.float32
    sizes = counts.detach().to(dtype)
    if clamp == "raise_small":
        weights = (sizes + _EPS).pow(-power)
        weights = weights.clamp(min=weights.max() / max_ratio)
    else:
        weights = sizes.clamp(min=1.0).pow(-power)
        weights = weights.clamp(max=max_ratio * weights.min())
    return weights * (counts.numel() / weights.sum())


def _check_reduction(reduction: str) -> None:
    """Raise ValueError unless ``reduction`` is a known class-balanced reduction."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16 inputs, else the input's floating dtype: sums never run in 16 bits."""
    return torch.promote_types(dtype, torch.float32) if dtype.is_floating_point else torch.float32


def _mask_values(mask: Tensor | None, num_samples: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The inclusion mask m as (N,) values of ``dtype`` on ``device`` (all ones when None)."""
    if mask is None:
        return torch.ones(num_samples, dtype=dtype, device=device)
    if mask.shape != (num_samples,):
        raise ValueError(f"mask must be ({num_samples},) to match the {num_samples} targets, got {tuple(mask.shape)}")
    return mask.to(device=device, dtype=dtype)


def _check_class_weights(class_weights: Tensor, num_classes: int) -> None:
    """Raise ValueError unless ``class_weights`` is a (K,) vector (no sync)."""
    if class_weights.shape != (num_classes,):
        raise ValueError(
            f"class_weights must be ({num_classes},) to match the logits' K, got {tuple(class_weights.shape)}"
        )


def _masked_nll(logits: Tensor, targets: Tensor, mask: Tensor | None, check: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample −m_i log softmax(logits_i)[y_i] (exactly 0 where excluded), m and safe targets.

    Excluded rows may hold any target (e.g. −1); their values never reach the result, and they are
    replaced by 0 in the returned safe targets.

    Returns:
        (terms, mask_values, safe_targets), each (N,).
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(logits.shape)}")
    num_samples, num_classes = logits.shape
    if targets.shape != (num_samples,):
        raise ValueError(
            f"targets must be ({num_samples},) to match logits {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    if mask is not None and mask.shape != (num_samples,):
        raise ValueError(
            f"mask must be ({num_samples},) to match logits {tuple(logits.shape)}, got {tuple(mask.shape)}"
        )
    mask_values = _mask_values(mask, num_samples, _accumulation_dtype(logits.dtype), logits.device)
    included = mask_values != 0
    long_targets = targets.long()
    safe_targets = torch.where(included, long_targets, torch.zeros_like(long_targets))
    if check and bool(((safe_targets < 0) | (safe_targets >= num_classes)).any()):
        raise ValueError(f"included targets must lie in [0, {num_classes}), got {targets[included].tolist()}")
    safe_targets = safe_targets.clamp(0, num_classes - 1)
    log_probs = F.log_softmax(logits, dim=1).gather(1, safe_targets[:, None])[:, 0]
    terms = -mask_values * log_probs
    terms = torch.where(included, terms, torch.zeros_like(terms))
    return terms, mask_values, safe_targets


def _safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """Numerator / denominator, or numerator / 1 (an exact connected 0) when denominator ≤ 0."""
    return numerator / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def class_balanced_denominator(
    targets: Tensor,
    class_weights: Tensor,
    mask: Tensor | None = None,
    reduction: Reduction = "weighted_mean",
) -> Tensor:
    """The denominator of `class_balanced_cross_entropy`: Σ_i m_i w_{y_i} or Σ_i m_i.

    Under DDP each rank divides by its own denominator; the caller rescales the loss by
    ``global_mean_factor(denominator)`` to obtain the global weighted (or plain) mean. Excluded
    rows may hold any target. Sync-free; the result is detached.

    Args:
        targets: (N,) class ids in [0, K) where included.
        class_weights: (K,) weights w_k.
        mask: optional (N,) bool (or 0/1) inclusion mask m; None includes all.
        reduction: "weighted_mean" → Σ m_i w_{y_i}; "mean" → Σ m_i.

    Returns:
        0-d detached tensor on class_weights' device, in its dtype promoted to at least float32.
    """
    _check_reduction(reduction)
    if targets.dim() != 1:
        raise ValueError(f"targets must be (N,), got shape {tuple(targets.shape)}")
    if class_weights.dim() != 1 or class_weights.numel() == 0:
        raise ValueError(f"class_weights must be a non-empty (K,) vector, got shape {tuple(class_weights.shape)}")
    weights = class_weights.detach()
    weights = weights.to(_accumulation_dtype(weights.dtype))
    mask_values = _mask_values(mask, targets.shape[0], weights.dtype, weights.device)
    if reduction == "mean":
        return mask_values.sum()
    safe_targets = targets.to(weights.device).long().clamp(0, weights.numel() - 1)
    sample_weights = torch.where(mask_values != 0, weights[safe_targets], torch.zeros_like(mask_values))
    return (mask_values * sample_weights).sum()


def class_balanced_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    class_weights: Tensor,
    mask: Tensor | None = None,
    reduction: Reduction = "weighted_mean",
    *,
    check: bool = True,
) -> Tensor:
    """L_cluster, the class-balanced cross-entropy over the included samples (docs/method.md, Stage 1).

    With ℓ_i = −log softmax(logits_i)[y_i] and inclusion mask m:

    - ``reduction="weighted_mean"`` (released code, default):
      L = Σ_i m_i w_{y_i} ℓ_i / Σ_i m_i w_{y_i}, which is ``F.cross_entropy(weight=w)`` on the
      included samples.
    - ``reduction="mean"`` (the paper's formula): L = Σ_i m_i w_{y_i} ℓ_i / Σ_i m_i.

    The denominator is `class_balanced_denominator` (for the DDP rescale). Class weights are used
    detached.

    Args:
        logits: (N, K) class logits.
        targets: (N,) class ids in [0, K) (anything, e.g. −1, where the mask excludes).
        class_weights: (K,) weights w_k ≥ 0, e.g. from `class_balanced_weights`.
        mask: optional (N,) bool (or 0/1) inclusion mask m; None includes all.
        reduction: "weighted_mean" or "mean", see above.
        check: verify that the included targets lie in [0, K) (a device sync); with False an
            out-of-range target is clamped silently.

    Returns:
        Scalar loss; an exact 0 connected to `logits` when no sample is included (or the
        denominator is 0).
    """
    _check_reduction(reduction)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(logits.shape)}")
    _check_class_weights(class_weights, logits.shape[1])
    if targets.dim() != 1:
        raise ValueError(f"targets must be (N,), got shape {tuple(targets.shape)}")
    terms, mask_values, safe_targets = _masked_nll(logits, targets, mask, check)
    sample_weights = class_weights.detach().to(device=logits.device, dtype=mask_values.dtype)[safe_targets]
    included = mask_values != 0
    sample_weights = torch.where(included, sample_weights, torch.zeros_like(sample_weights))
    numerator = (terms * sample_weights).sum()
    if reduction == "mean":
        denominator = mask_values.sum()
    else:
        denominator = (mask_values * sample_weights).sum()
    return _safe_divide(numerator, denominator)


def masked_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor, *, check: bool = True) -> Tensor:
    """L = −(1/Σ m_i) Σ_i m_i log p(y_i | ·) (L_video and L_refine of docs/method.md, Stage 1).

    Args:
        logits: (N, K) class logits.
        targets: (N,) class ids in [0, K) where m_i = 1 (anything, e.g. −1, elsewhere).
        mask: (N,) bool (or 0/1) mask m.
        check: verify that the included targets lie in [0, K) (a device sync).

    Returns:
        Scalar loss; an exact 0 connected to `logits` when Σ m = 0.
    """
    terms, mask_values, _ = _masked_nll(logits, targets, mask, check)
    return _safe_divide(terms.sum(), mask_values.sum())
