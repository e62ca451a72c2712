"""Spatio-temporal weights of the stage-2 contrastive negatives (docs/method.md, Stage 2).

All functions run under `torch.no_grad()`: the weights W steer which negatives matter but carry no
gradient. Inputs are (N, d) features of the N pairs of the (global) batch; outputs are (N, N).

Cosines are clamped to [−1, 1] where they are built: two identical rows (idle windows with the same
sensor input, or repeated windows) give 1 + 1e-7 in float32, and S^sp·S^tm > 1 would make
W^tm = 1 − S^sp·S^tm negative. With S^sp, S^tm ∈ [0, 1] exactly, every W is finite and ≥ 0 for finite
features, so the loss needs no per-step check of W (which would cost a device synchronisation).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

TemporalMode = Literal["within", "cross"]
GramDtype = Literal["float32", "bfloat16"]

__all__ = [
    "GramDtype",
    "TemporalMode",
    "alignment_weights",
    "false_negative_weights",
    "hard_negative_weights",
    "pair_weights",
    "spatial_similarity",
    "temporal_similarity",
    "unit_gram",
]


def _check_pair_features(a: Tensor, b: Tensor, names: str) -> None:
    """Raise ValueError unless `a` and `b` are (N, ·) matrices with the same N."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{names} must be (N, d) matrices with the same N, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )


def _check_square(matrix: Tensor, name: str) -> None:
    """Raise ValueError unless `matrix` is (N, N)."""
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be an (N, N) matrix, got {tuple(matrix.shape)}")


_GRAM_BLOCK = 64
"""Strip height of the symmetric Gram products (`_symmetric_product`, `pair_weights`): on one CPU
thread strips of 64 rows cost ~0.8× the full products at N = 256 and ~0.7× at N = 512-1024
(smaller strips lose GEMM efficiency, larger ones save fewer flops)."""


def _strip_rows(num_rows: int, device: torch.device) -> int:
    """Rows per strip of the symmetric products: `_GRAM_BLOCK` on the CPU, at least ⌊N/4⌋ elsewhere.

    On a GPU the products are cheap and each strip costs ~15 kernel launches, so it runs 4 or 5.
    """
    if device.type == "cpu":
        return _GRAM_BLOCK
    return max(_GRAM_BLOCK, num_rows // 4)


def _pairwise_cosine(a: Tensor, b: Tensor) -> Tensor:
    """(N, M) matrix of cos(a_i, b_j), clamped to [−1, 1] (rounding can exceed 1 by ~1e-7)."""
    if a is b:
        return unit_gram(a)
    return (F.normalize(a, dim=1) @ F.normalize(b, dim=1).T).clamp_(-1.0, 1.0)


def _symmetric_product(u: Tensor, block: int | None = None) -> Tensor:
    """The product u uᵀ from the blocks on and above the diagonal only, mirrored below it.

    Row strip i·b…(i+1)·b is multiplied with the columns from i·b on; its transpose fills the
    matching column strip. For N ≥ 4 blocks this costs (B + 1)/(2B) of the full product (5/8 at
    N = 256 with b = 64): the Gram matrices of the weights are a large part of stage 2's step.
    Entries equal the full product's up to float rounding (a different summation blocking); the
    diagonal blocks are mirrored too, so the result is exactly symmetric.
    """
    num_rows = u.shape[0]
    block = _strip_rows(num_rows, u.device) if block is None else block
    if num_rows < 4 * block:
        return u @ u.T
    out = u.new_empty(num_rows, num_rows)
    for start in range(0, num_rows, block):
        stop = min(start + block, num_rows)
        strip = u[start:stop] @ u[start:].T
        diagonal = strip[:, : stop - start]  # a GEMM need not give a_i·a_j and a_j·a_i the same bits
        diagonal.copy_(diagonal.triu() + diagonal.triu(1).T)
        out[start:stop, start:] = strip
        out[stop:, start:stop] = strip[:, stop - start :].T
    return out


_GRAM_DTYPES = ("float32", "bfloat16")


@torch.no_grad()
def unit_gram(x: Tensor, gram_dtype: GramDtype = "float32") -> Tensor:
    """(N, N) cos(x_i, x_j) = normalize(x) normalize(x)ᵀ, clamped to [−1, 1], symmetric by construction.

    ``gram_dtype="bfloat16"`` multiplies the normalised rows in bfloat16 (about 3× faster on a
    CPU with bf16 units, faster on GPU tensor cores) and returns the cosines in x's dtype; they are
    then off by up to ~2e-3 (bf16 rounding of the inputs and of the product). ``"float32"``
    multiplies in x's own dtype (float64 stays float64).
    """
    if gram_dtype not in _GRAM_DTYPES:
        raise ValueError(f"gram_dtype must be one of {_GRAM_DTYPES}, got {gram_dtype!r}")
    unit = F.normalize(x, dim=1)
    if gram_dtype == "float32":
        return _symmetric_product(unit).clamp_(-1.0, 1.0)
    return _symmetric_product(unit.to(torch.bfloat16)).clamp_(-1.0, 1.0).to(x.dtype)


@torch.no_grad()
def spatial_similarity(z_v: Tensor, z_s: Tensor) -> Tensor:
    """S^sp_ij = max(ReLU(cos(z_v_i, z_v_j)), ReLU(cos(z_s_i, z_s_j))), in [0, 1].

    Args:
        z_v: (N, d) video spatial features.
        z_s: (N, d') sensor spatial features.

    Returns:
        (N, N) detached spatial similarity (the stronger of the two modalities), in [0, 1] exactly.
    """
    _check_pair_features(z_v, z_s, "z_v and z_s")
    return torch.maximum(_pairwise_cosine(z_v, z_v).relu(), _pairwise_cosine(z_s, z_s).relu())


@torch.no_grad()
def temporal_similarity(h_v: Tensor, h_s: Tensor, mode: TemporalMode = "within") -> Tensor:
    """Temporal similarity S^tm from the (EMA) temporal features, in [0, 1].

    - "within" (released code, default): S^tm_ij = ReLU(½[cos(h_v_i, h_v_j) + cos(h_s_i, h_s_j)]).
    - "cross" (paper text): S^tm_ij = ReLU(cos(h_v_i, h_s_j)).

    Args:
        h_v: (N, d) video temporal features.
        h_s: (N, d) sensor temporal features (same d as h_v for "cross").
        mode: "within" or "cross".

    Returns:
        (N, N) detached temporal similarity, in [0, 1] exactly.
    """
    _check_pair_features(h_v, h_s, "h_v and h_s")
    if mode == "within":
        return (0.5 * (_pairwise_cosine(h_v, h_v) + _pairwise_cosine(h_s, h_s))).relu()
    if mode == "cross":
        if h_v.shape[1] != h_s.shape[1]:
            raise ValueError(
                "temporal_similarity mode 'cross' needs h_v and h_s of the same dim, got "
                f"{tuple(h_v.shape)} and {tuple(h_s.shape)}"
            )
        return _pairwise_cosine(h_v, h_s).relu()
    raise ValueError(f"temporal_similarity: mode must be 'within' or 'cross', got {mode!r}")


@torch.no_grad()
def hard_negative_weights(s_sp: Tensor, lambda_hard: float = 3.0) -> Tensor:
    """W^sp_ij = 1 + (λ_hard − 1)·S^sp_ij: negatives at the same place count more.

    Args:
        s_sp: (N, N) spatial similarity in [0, 1].
        lambda_hard: λ_hard ≥ 0, the weight of a negative at the very same place.

    Returns:
        (N, N) detached weights in [min(1, λ), max(1, λ)].
    """
    _check_square(s_sp, "s_sp")
    if not lambda_hard >= 0.0:
        raise ValueError(f"lambda_hard must be >= 0 (weights stay non-negative), got {lambda_hard}")
    return 1.0 + (lambda_hard - 1.0) * s_sp


@torch.no_grad()
def false_negative_weights(s_sp: Tensor, s_tm: Tensor) -> Tensor:
    """W^tm_ij = 1 − S^sp_ij·S^tm_ij: same place and same motion ⇒ probably a false negative.

    Args:
        s_sp: (N, N) spatial similarity in [0, 1].
        s_tm: (N, N) temporal similarity in [0, 1].

    Returns:
        (N, N) detached weights in [0, 1].
    """
    _check_square(s_sp, "s_sp")
    if s_tm.shape != s_sp.shape:
        raise ValueError(
            f"s_tm must have the shape of s_sp {tuple(s_sp.shape)}, got {tuple(s_tm.shape)}"
        )
    return 1.0 - s_sp * s_tm


@torch.no_grad()
def alignment_weights(
    s_sp: Tensor,
    s_tm: Tensor | None,
    lambda_hard: float = 3.0,
    use_spatial: bool = True,
    use_temporal: bool = True,
) -> Tensor:
    """W_ij = W^sp_ij · W^tm_ij with W_ii = 0, no gradient (docs/method.md, Stage 2).

    Switching a factor off replaces it by 1 (the "w/o W_spatial" / "w/o W_temporal" ablations);
    both off gives plain InfoNCE weights (1 off the diagonal).

    Args:
        s_sp: (N, N) spatial similarity (also used by W^tm).
        s_tm: (N, N) temporal similarity; may be None only when `use_temporal` is False.
        lambda_hard: λ_hard of `hard_negative_weights`.
        use_spatial: include W^sp.
        use_temporal: include W^tm.

    Returns:
        (N, N) detached weights with a zero diagonal.
    """
    _check_square(s_sp, "s_sp")
    weights = torch.ones_like(s_sp)
    if use_spatial:
        weights = weights * hard_negative_weights(s_sp, lambda_hard)
    if use_temporal:
        if s_tm is None:
            raise ValueError("alignment_weights: s_tm is required when use_temporal=True")
        weights = weights * false_negative_weights(s_sp, s_tm)
    weights.fill_diagonal_(0.0)
    return weights


@torch.no_grad()
def pair_weights(
    z_v: Tensor,
    z_s: Tensor,
    h_v: Tensor,
    h_s: Tensor,
    lambda_hard: float = 3.0,
    mode: TemporalMode = "within",
    use_spatial: bool = True,
    use_temporal: bool = True,
    gram_dtype: GramDtype = "float32",
) -> Tensor:
    """W of the training step straight from the features: `alignment_weights` of S^sp and S^tm.

    The same W_ij = (1 + (λ_hard − 1)·S^sp_ij)·(1 − S^sp_ij·S^tm_ij), W_ii = 0, computed in place
    strip by strip (`_symmetric_pair_weights`: no (N, N) S^sp, S^tm, W^sp, W^tm or Gram matrices)
    with the symmetric Gram products of `unit_gram`. Equal to the composition of `spatial_similarity`,
    `temporal_similarity` and `alignment_weights` (each product is commutative in IEEE
    arithmetic, so only the Gram rounding can differ).

    Args:
        z_v: (N, d) video spatial features.
        z_s: (N, d') sensor spatial features.
        h_v: (N, d) video (EMA) temporal features.
        h_s: (N, d) sensor (EMA) temporal features.
        lambda_hard: λ_hard ≥ 0.
        mode: temporal similarity "within" or "cross" (see `temporal_similarity`).
        use_spatial: include W^sp (see `alignment_weights`).
        use_temporal: include W^tm.
        gram_dtype: dtype of the four within-modality Gram products (see `unit_gram`):
            "float32" (released) or "bfloat16" (a throughput option; W then differs by up to
            ~1e-2, the loss by ~1e-3 relative: tests/losses/test_fast_paths.py).

    Returns:
        (N, N) detached weights with a zero diagonal.
    """
    _check_pair_features(z_v, z_s, "z_v and z_s")
    _check_pair_features(h_v, h_s, "h_v and h_s")
    if not lambda_hard >= 0.0:
        raise ValueError(f"lambda_hard must be >= 0 (weights stay non-negative), got {lambda_hard}")
    if not (use_spatial or use_temporal):
        return torch.ones(z_v.shape[0], z_v.shape[0], dtype=z_v.dtype, device=z_v.device).fill_diagonal_(0.0)
    if gram_dtype not in _GRAM_DTYPES:
        raise ValueError(f"gram_dtype must be one of {_GRAM_DTYPES}, got {gram_dtype!r}")
    temporal: tuple[Tensor, Tensor] | Tensor | None = (h_v, h_s) if use_temporal else None
    if mode == "cross" and temporal is not None:
        temporal = temporal_similarity(h_v, h_s, mode)
    elif mode not in ("within", "cross"):
        raise ValueError(f"temporal_similarity: mode must be 'within' or 'cross', got {mode!r}")
    return _symmetric_pair_weights((z_v, z_s), temporal, lambda_hard, use_spatial, gram_dtype).fill_diagonal_(0.0)


def _gram_strip(unit: Tensor, start: int, stop: int, dtype: torch.dtype) -> Tensor:
    """Rows start…stop of the clamped Gram matrix unit unitᵀ, columns from `start` on, in `dtype`."""
    return (unit[start:stop] @ unit[start:].T).clamp_(-1.0, 1.0).to(dtype)


def _symmetric_pair_weights(
    spatial: tuple[Tensor, Tensor],
    temporal: tuple[Tensor, Tensor] | Tensor | None,
    lambda_hard: float,
    use_spatial: bool,
    gram_dtype: GramDtype,
) -> Tensor:
    """W of `pair_weights` (diagonal not yet zeroed), one row strip at a time, mirrored once.

    For each strip of `_strip_rows` rows the four Gram strips of `_symmetric_product` (columns from the
    strip on) are combined into W's strip while they are in cache, and only W is mirrored below
    the diagonal: one transposed copy instead of one per Gram matrix, no (N, N) Gram temporaries.
    The Gram strips and every elementwise step are those of `unit_gram` and the composed
    functions, so W is bit-identical to composing them with the same blocking. Below 4 blocks the
    whole matrix is one strip (the full products, as `_symmetric_product`), and so is it for a
    precomputed (N, N) S^tm (`temporal` of the "cross" mode: not symmetric); `temporal` is the
    pair (h_v, h_s) in the "within" mode and None without W^tm.
    """
    z_v, z_s = spatial
    num_rows = z_v.shape[0]
    block = _strip_rows(num_rows, z_v.device)
    mirrored = num_rows >= 4 * block and not isinstance(temporal, Tensor)  # cross S^tm is not symmetric
    block = block if mirrored else num_rows
    mm_dtype = torch.bfloat16 if gram_dtype == "bfloat16" else z_v.dtype
    units = [F.normalize(x, dim=1).to(mm_dtype) for x in (z_v, z_s)]
    if isinstance(temporal, tuple):
        units += [F.normalize(x, dim=1).to(mm_dtype) for x in temporal]
    out = z_v.new_empty(num_rows, num_rows)
    for start in range(0, num_rows, block):
        stop = min(start + block, num_rows)
        cosines = [_gram_strip(unit, start, stop, z_v.dtype) for unit in units]
        s_sp = torch.maximum(cosines[0], cosines[1], out=cosines[0]).clamp_(min=0.0)
        strip = None
        if isinstance(temporal, tuple):
            strip = cosines[2].add_(cosines[3]).mul_(0.5).clamp_(min=0.0)
        elif temporal is not None:
            strip = temporal[start:stop, start:]  # a fresh matrix of pair_weights: updated in place
        if strip is not None:
            strip.mul_(s_sp).neg_().add_(1.0)
        if use_spatial:
            hard = s_sp.mul_(lambda_hard - 1.0).add_(1.0)
            strip = hard if strip is None else strip.mul_(hard)
        assert strip is not None  # use_spatial or a temporal factor: pair_weights returned early otherwise
        if mirrored:  # a GEMM need not give a_i·a_j and a_j·a_i the same bits: W takes the upper ones
            diagonal = strip[:, : stop - start]
            diagonal.copy_(diagonal.triu() + diagonal.triu(1).T)
            out[stop:, start:stop] = strip[:, stop - start :].T
        out[start:stop, start:] = strip
    return out
