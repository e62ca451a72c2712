"""Tests of weighted_info_nce / info_nce against an explicit-loop reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from detach_pl.losses import info_nce, weighted_info_nce

NUM_PAIRS = 6
DIM = 5
TAU = 0.1


def reference_anchor_terms(
    video_emb: Tensor, sensor_emb: Tensor, weights: Tensor, temperature: float
) -> tuple[list[Tensor], list[Tensor]]:
    """Per-anchor v2s and s2v terms of docs/method.md's L_v2s / L_s2v, written with loops over i, j."""
    n = video_emb.shape[0]
    u_v = [video_emb[i] / video_emb[i].norm() for i in range(n)]
    u_s = [sensor_emb[j] / sensor_emb[j].norm() for j in range(n)]
    sim = [[torch.dot(u_v[i], u_s[j]) / temperature for j in range(n)] for i in range(n)]
    sim_t = [[sim[i][j] for i in range(n)] for j in range(n)]
    return row_anchor_terms(sim, weights), row_anchor_terms(sim_t, weights.T)


def row_anchor_terms(sim: list[list[Tensor]], weights: Tensor) -> list[Tensor]:
    """−log(exp(S_aa) / (exp(S_aa) + Σ_{k≠a} W_ak exp(S_ak))) for each row anchor a, with loops.

    v2s anchors the rows of S and W; s2v is the same sum over the transposed S and W.
    """
    terms = []
    for a in range(len(sim)):
        denominator = torch.exp(sim[a][a])
        for k in range(len(sim)):
            if k != a:
                denominator = denominator + weights[a, k] * torch.exp(sim[a][k])
        terms.append(-torch.log(torch.exp(sim[a][a]) / denominator))
    return terms


def reference_loss(
    video_emb: Tensor,
    sensor_emb: Tensor,
    weights: Tensor,
    temperature: float,
    anchors: slice | None = None,
) -> Tensor:
    """½(mean v2s + mean s2v) over the anchors, from the loop reference."""
    v2s, s2v = reference_anchor_terms(video_emb, sensor_emb, weights, temperature)
    selected = list(range(video_emb.shape[0]))[anchors if anchors is not None else slice(None)]
    mean_v2s = sum(v2s[a] for a in selected) / len(selected)
    mean_s2v = sum(s2v[a] for a in selected) / len(selected)
    return 0.5 * (mean_v2s + mean_s2v)


def make_inputs(seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Random float64 embeddings (requiring grad) and non-negative weights with some zeros."""
    gen = torch.Generator().manual_seed(seed)
    video = torch.randn(NUM_PAIRS, DIM, generator=gen, dtype=torch.float64).requires_grad_()
    sensor = torch.randn(NUM_PAIRS, DIM, generator=gen, dtype=torch.float64).requires_grad_()
    weights = 3.0 * torch.rand(NUM_PAIRS, NUM_PAIRS, generator=gen, dtype=torch.float64)
    weights[weights < 0.6] = 0.0
    return video, sensor, weights


@pytest.mark.parametrize("anchors", [None, slice(2, 5), slice(0, None, 2), slice(5, 6)])
def test_matches_loop_reference_value_and_gradients(anchors: slice | None) -> None:
    video, sensor, weights = make_inputs()
    loss = weighted_info_nce(video, sensor, weights, TAU, anchors=anchors)
    expected = reference_loss(video, sensor, weights, TAU, anchors)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(loss, (video, sensor))
    expected_grads = torch.autograd.grad(expected, (video, sensor))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


def test_gradcheck_float64() -> None:
    video, sensor, weights = make_inputs(seed=1)
    assert torch.autograd.gradcheck(
        lambda v, s: weighted_info_nce(v, s, weights, TAU, anchors=slice(1, 4)), (video, sensor)
    )


def test_unit_weights_reduce_to_symmetric_info_nce() -> None:
    video, sensor, _ = make_inputs(seed=2)
    logits = F.normalize(video, dim=1) @ F.normalize(sensor, dim=1).T / TAU
    targets = torch.arange(NUM_PAIRS)
    standard = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
    ones = torch.ones(NUM_PAIRS, NUM_PAIRS, dtype=torch.float64)
    torch.testing.assert_close(weighted_info_nce(video, sensor, ones, TAU), standard)
    torch.testing.assert_close(info_nce(video, sensor, TAU), standard)
    torch.testing.assert_close(
        info_nce(video, sensor, TAU, anchors=slice(0, 3)),
        reference_loss(video, sensor, ones, TAU, slice(0, 3)),
    )


def test_diagonal_of_weights_is_ignored() -> None:
    video, sensor, weights = make_inputs(seed=3)
    changed = weights.clone()
    changed.fill_diagonal_(0.0)
    other = weights.clone()
    other.fill_diagonal_(123.0)
    base = weighted_info_nce(video, sensor, weights, TAU)
    for variant in (changed, other):
        torch.testing.assert_close(
            weighted_info_nce(video, sensor, variant, TAU), base, rtol=0, atol=1e-12
        )


def test_weights_carry_no_gradient() -> None:
    video, sensor, weights = make_inputs(seed=4)
    weights.requires_grad_()
    loss = weighted_info_nce(video, sensor, weights, TAU)
    assert torch.autograd.grad(loss, weights, allow_unused=True, retain_graph=True)[0] is None
    loss.backward()
    assert weights.grad is None
    assert video.grad is not None and sensor.grad is not None


def test_off_diagonal_weights_change_the_loss() -> None:
    video, sensor, weights = make_inputs(seed=5)
    heavier = weights.clone()
    heavier[0, 1] += 5.0
    assert weighted_info_nce(video, sensor, heavier, TAU) > weighted_info_nce(
        video, sensor, weights, TAU
    )


def test_anchor_slices_average_to_the_full_loss() -> None:
    video, sensor, weights = make_inputs(seed=6)
    full = weighted_info_nce(video, sensor, weights, TAU)
    halves = [
        weighted_info_nce(video, sensor, weights, TAU, anchors=slice(k, k + 3)) for k in (0, 3)
    ]
    torch.testing.assert_close(sum(halves) / 2, full, rtol=0, atol=1e-12)
    v2s, s2v = reference_anchor_terms(video, sensor, weights, TAU)
    single = weighted_info_nce(video, sensor, weights, TAU, anchors=slice(4, 5))
    torch.testing.assert_close(single, 0.5 * (v2s[4] + s2v[4]), rtol=0, atol=1e-12)


def test_stable_with_small_temperature_and_zero_weights() -> None:
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(NUM_PAIRS, DIM, generator=gen)
    video = (100.0 * base).requires_grad_()
    sensor = (-100.0 * base + 0.01 * torch.randn(NUM_PAIRS, DIM, generator=gen)).requires_grad_()
    weights = torch.zeros(NUM_PAIRS, NUM_PAIRS)
    weights[0, 1] = 1.0
    weights[3, 2] = 2.0
    loss = weighted_info_nce(video, sensor, weights, 0.01)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(video.grad).all() and torch.isfinite(sensor.grad).all()
    # Anti-aligned positives (S_ii ≈ −100) make exp() of the float32 logits span e^±100; the
    # loop reference in float64 still represents them.
    expected = reference_loss(
        video.detach().double(), sensor.detach().double(), weights.double(), 0.01
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert loss.item() > 10.0


def test_all_zero_weights_give_exact_zero_loss() -> None:
    video, sensor, _ = make_inputs(seed=8)
    loss = weighted_info_nce(video, sensor, torch.zeros(NUM_PAIRS, NUM_PAIRS), 0.01)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(video.grad).all()


def test_float32_close_to_float64() -> None:
    video, sensor, weights = make_inputs(seed=9)
    loss64 = weighted_info_nce(video, sensor, weights, 0.05)
    loss32 = weighted_info_nce(video.float(), sensor.float(), weights.float(), 0.05)
    assert math.isclose(loss32.item(), loss64.item(), rel_tol=1e-5)


@pytest.mark.parametrize(
    ("video_shape", "sensor_shape", "weights_shape", "temperature", "anchors", "message"),
    [
        ((6, 5), (6, 4), (6, 6), 0.1, None, "same shape"),
        ((6,), (6,), (6, 6), 0.1, None, r"\(N, d\)"),
        ((6, 5), (6, 5), (5, 5), 0.1, None, "weights must be"),
        ((6, 5), (6, 5), (6, 6), 0.0, None, "temperature"),
        ((6, 5), (6, 5), (6, 6), 0.1, slice(6, 8), "selects no pair"),
    ],
)
def test_bad_input_raises(
    video_shape: tuple[int, ...],
    sensor_shape: tuple[int, ...],
    weights_shape: tuple[int, ...],
    temperature: float,
    anchors: slice | None,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        weighted_info_nce(
            torch.randn(video_shape),
            torch.randn(sensor_shape),
            torch.ones(weights_shape),
            temperature,
            anchors=anchors,
        )


def test_negative_weights_raise() -> None:
    weights = torch.ones(3, 3)
    weights[0, 2] = -0.5
    with pytest.raises(ValueError, match="non-negative"):
        weighted_info_nce(torch.randn(3, 2), torch.randn(3, 2), weights, 0.1)
