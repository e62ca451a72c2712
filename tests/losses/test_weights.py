"""Tests of the stage-2 similarity and weight matrices against explicit-loop references."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from detach_pl.losses import (
    alignment_weights,
    false_negative_weights,
    hard_negative_weights,
    spatial_similarity,
    temporal_similarity,
    weighted_info_nce,
)

N = 7


def cosine(a: Tensor, b: Tensor) -> float:
    """cos(a, b) of two vectors."""
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def features(seed: int, dim: int = 4) -> Tensor:
    """(N, dim) float64 features; row 1 duplicates row 0 so some similarities are exactly 1."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, dim, generator=gen, dtype=torch.float64)
    x[1] = 2.0 * x[0]
    return x


def test_spatial_similarity_matches_loops() -> None:
    z_v, z_s = features(0), features(1, dim=3)
    result = spatial_similarity(z_v, z_s)
    expected = torch.tensor(
        [
            [
                max(max(cosine(z_v[i], z_v[j]), 0.0), max(cosine(z_s[i], z_s[j]), 0.0))
                for j in range(N)
            ]
            for i in range(N)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-12)
    assert result.min() >= 0.0 and result.max() <= 1.0 + 1e-12


def test_temporal_similarity_within_matches_loops() -> None:
    h_v, h_s = features(2), features(3, dim=5)
    result = temporal_similarity(h_v, h_s)  # "within" is the default
    expected = torch.tensor(
        [
            [max(0.5 * (cosine(h_v[i], h_v[j]) + cosine(h_s[i], h_s[j])), 0.0) for j in range(N)]
            for i in range(N)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(result, result.T)


def test_temporal_similarity_cross_matches_loops() -> None:
    h_v, h_s = features(4), features(5)
    result = temporal_similarity(h_v, h_s, mode="cross")
    expected = torch.tensor(
        [[max(cosine(h_v[i], h_s[j]), 0.0) for j in range(N)] for i in range(N)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-12)
    assert not torch.allclose(result, result.T)  # cross-modal: not symmetric in general


def test_hard_and_false_negative_weights_match_formulas() -> None:
    s_sp = spatial_similarity(features(6), features(7))
    s_tm = temporal_similarity(features(8), features(9))
    hard = hard_negative_weights(s_sp, lambda_hard=3.0)
    false_neg = false_negative_weights(s_sp, s_tm)
    for i in range(N):
        for j in range(N):
            assert hard[i, j].item() == pytest.approx(1.0 + 2.0 * s_sp[i, j].item(), abs=1e-12)
            assert false_neg[i, j].item() == pytest.approx(
                1.0 - s_sp[i, j].item() * s_tm[i, j].item(), abs=1e-12
            )
    assert hard.min() >= 1.0 and hard.max() <= 3.0 + 1e-12
    assert false_neg.min() >= -1e-12 and false_neg.max() <= 1.0


def test_alignment_weights_product_zero_diagonal_and_switches() -> None:
    s_sp = spatial_similarity(features(10), features(11))
    s_tm = temporal_similarity(features(12), features(13))
    off_diagonal = ~torch.eye(N, dtype=torch.bool)
    cases = {
        (True, True): lambda i, j: (1 + 2.0 * s_sp[i, j]) * (1 - s_sp[i, j] * s_tm[i, j]),
        (False, True): lambda i, j: 1 - s_sp[i, j] * s_tm[i, j],
        (True, False): lambda i, j: 1 + 2.0 * s_sp[i, j],
        (False, False): lambda i, j: torch.tensor(1.0, dtype=torch.float64),
    }
    for (use_spatial, use_temporal), formula in cases.items():
        weights = alignment_weights(
            s_sp, s_tm, lambda_hard=3.0, use_spatial=use_spatial, use_temporal=use_temporal
        )
        expected = torch.tensor(
            [[float(formula(i, j)) if i != j else 0.0 for j in range(N)] for i in range(N)],
            dtype=torch.float64,
        )
        torch.testing.assert_close(weights, expected, rtol=0, atol=1e-12)
        assert torch.all(weights.diagonal() == 0)
    # Without the temporal factor the temporal similarity is not needed.
    torch.testing.assert_close(
        alignment_weights(s_sp, None, use_temporal=False)[off_diagonal],
        hard_negative_weights(s_sp)[off_diagonal],
    )


def test_duplicated_pair_is_suppressed_as_false_negative() -> None:
    z = features(14)
    h = features(15)
    weights = alignment_weights(spatial_similarity(z, z), temporal_similarity(h, h))
    # Rows 0 and 1 are the same place and motion (S^sp = S^tm = 1): W^tm = 0, so W = 0.
    assert weights[0, 1].item() == pytest.approx(0.0, abs=1e-12)
    assert weights[1, 0].item() == pytest.approx(0.0, abs=1e-12)


def test_weights_carry_no_gradient() -> None:
    z_v, z_s, h_v, h_s = (features(seed).requires_grad_() for seed in (16, 17, 18, 19))
    s_sp = spatial_similarity(z_v, z_s)
    s_tm = temporal_similarity(h_v, h_s, mode="cross")
    weights = alignment_weights(s_sp, s_tm)
    hard, false_neg = hard_negative_weights(s_sp), false_negative_weights(s_sp, s_tm)
    for matrix in (s_sp, s_tm, weights, hard, false_neg):
        assert not matrix.requires_grad and matrix.grad_fn is None


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="same N"):
        spatial_similarity(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="mode"):
        bad_mode: Any = "diagonal"
        temporal_similarity(torch.randn(3, 2), torch.randn(3, 2), mode=bad_mode)
    with pytest.raises(ValueError, match="same dim"):
        temporal_similarity(torch.randn(3, 2), torch.randn(3, 4), mode="cross")
    with pytest.raises(ValueError, match="s_tm"):
        alignment_weights(torch.rand(3, 3), None)
    with pytest.raises(ValueError, match="s_tm must have"):
        false_negative_weights(torch.rand(3, 3), torch.rand(2, 2))
    with pytest.raises(ValueError, match="lambda_hard"):
        hard_negative_weights(torch.rand(3, 3), lambda_hard=-1.0)
    with pytest.raises(ValueError, match=r"\(N, N\)"):
        hard_negative_weights(torch.rand(3, 2))


@pytest.mark.parametrize("mode", ["within", "cross"])
def test_duplicated_rows_keep_similarities_in_unit_range_and_weights_non_negative(mode: str) -> None:
    """Three copies of one window in a float32 batch of 19 (padding or identical idle windows).

    Unclamped, their cosines round to 1 + 1e-7 and W^tm = 1 − S^sp·S^tm to about −1e-6 in
    almost every batch; clamped where the cosines are built, S ∈ [0, 1] and W ≥ 0 in all 200.
    """
    for seed in range(200):
        gen = torch.Generator().manual_seed(seed)
        z_v, z_s, h_v, h_s = (torch.randn(19, dim, generator=gen) for dim in (16, 12, 16, 16))
        for x in (z_v, z_s, h_v, h_s):
            x[[5, 11, 17]] = x[2].clone()
        s_sp = spatial_similarity(z_v, z_s)
        s_tm = temporal_similarity(h_v, h_s, mode=mode)  # type: ignore[arg-type]
        for matrix in (s_sp, s_tm):
            assert bool(((matrix >= 0) & (matrix <= 1)).all()), seed
        false_negative = false_negative_weights(s_sp, s_tm)
        weights = alignment_weights(s_sp, s_tm)
        for matrix in (false_negative, weights):
            assert bool((torch.isfinite(matrix) & (matrix >= 0)).all()), seed
        weighted_info_nce(z_v, z_v, weights, 0.1)  # checks W by default: must not raise


def test_weighted_info_nce_checks_weights_only_when_asked() -> None:
    """`check=False` (per-step training, W from `alignment_weights`) skips the device sync."""
    video, sensor = torch.randn(4, 3), torch.randn(4, 3)
    bad = torch.ones(4, 4)
    bad[0, 1] = -1e-6
    with pytest.raises(ValueError, match="finite and non-negative"):
        weighted_info_nce(video, sensor, bad, 0.1)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        weighted_info_nce(video, sensor, torch.ones(4, 4), torch.tensor(-1.0))
    good = alignment_weights(spatial_similarity(video, sensor), temporal_similarity(video, sensor))
    torch.testing.assert_close(
        weighted_info_nce(video, sensor, good, 0.1, check=False), weighted_info_nce(video, sensor, good, 0.1)
    )
