"""Tests of the stage-1 cross-entropies and class-balanced weights against loop references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from detach_pl.losses import (
    class_balanced_cross_entropy,
    class_balanced_weights,
    masked_cross_entropy,
)

NUM_SAMPLES = 8
NUM_CLASSES = 4


def reference_class_weights(counts: list[int], power: float, max_ratio: float) -> list[float]:
    """w_k = 1/max(|C_k|, 1)^power, capped at max_ratio·min, rescaled to sum K (loops)."""
    raw = [1.0 / max(c, 1) ** power for c in counts]
    smallest = min(raw)
    capped = [min(w, max_ratio * smallest) for w in raw]
    total = sum(capped)
    return [w * len(counts) / total for w in capped]


def reference_nll(
    logits: Tensor, targets: Tensor, sample_weight: list[float], mask: list[float]
) -> Tensor:
    """−(1/Σ m_i) Σ_i m_i ω_i log softmax(logits_i)[y_i], summed with an explicit loop."""
    total = logits.new_zeros(())
    for i in range(logits.shape[0]):
        if mask[i]:
            log_norm = torch.log(sum(torch.exp(logits[i, k]) for k in range(logits.shape[1])))
            total = total - mask[i] * sample_weight[i] * (logits[i, int(targets[i])] - log_norm)
    return total / sum(mask)


def make_logits(seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random float64 logits requiring grad and targets in [0, K)."""
    gen = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(NUM_SAMPLES, NUM_CLASSES, generator=gen, dtype=torch.float64)
    logits.requires_grad_()
    targets = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=gen)
    return logits, targets


@pytest.mark.parametrize(
    ("counts", "power", "max_ratio"),
    [
        ([10, 40, 90, 160], 0.5, 10.0),  # ratio 4: no cap
        ([0, 1, 100, 10000], 0.5, 10.0),  # empty cluster as size 1; raw ratio 100 capped at 10
        ([5, 5, 5], 0.5, 10.0),  # uniform
        ([1, 4, 1000], 1.0, 3.0),
    ],
)
def test_class_balanced_weights_match_reference(
    counts: list[int], power: float, max_ratio: float
) -> None:
    weights = class_balanced_weights(torch.tensor(counts), power=power, max_ratio=max_ratio)
    expected = reference_class_weights(counts, power, max_ratio)
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx(expected, rel=1e-6)
    assert weights.sum().item() == pytest.approx(len(counts), rel=1e-6)
    assert (weights.max() / weights.min()).item() <= max_ratio * (1 + 1e-6)


def test_class_balanced_weights_empty_equals_size_one_and_order() -> None:
    weights = class_balanced_weights(torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64))
    assert weights.dtype == torch.float64
    assert weights[0].item() == pytest.approx(weights[1].item())
    assert weights[1].item() == pytest.approx(2.0 * weights[2].item())  # 1/sqrt(1) vs 1/sqrt(4)


def test_class_balanced_weights_bad_input() -> None:
    with pytest.raises(ValueError, match="counts"):
        class_balanced_weights(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match=">= 0"):
        class_balanced_weights(torch.tensor([3, -1]))
    with pytest.raises(ValueError, match="max_ratio"):
        class_balanced_weights(torch.tensor([3, 1]), max_ratio=0.5)


@pytest.mark.parametrize("use_mask", [False, True])
def test_class_balanced_cross_entropy_matches_reference(use_mask: bool) -> None:
    logits, targets = make_logits(seed=1)
    class_weights = torch.tensor([0.5, 1.0, 2.0, 0.5], dtype=torch.float64)
    mask_list = [1, 0, 1, 1, 0, 1, 1, 0] if use_mask else [1] * NUM_SAMPLES
    mask = torch.tensor(mask_list, dtype=torch.bool) if use_mask else None
    if use_mask:
        targets = torch.where(mask, targets, torch.full_like(targets, -1))  # excluded: -1 allowed
    loss = class_balanced_cross_entropy(logits, targets, class_weights, mask)
    sample_weight = [float(class_weights[int(t)]) if m else 0.0 for t, m in zip(targets, mask_list)]
    expected = reference_nll(logits, targets, sample_weight, [float(m) for m in mask_list])
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


def test_class_balanced_cross_entropy_normalises_by_count_not_weight_sum() -> None:
    logits, targets = make_logits(seed=2)
    class_weights = torch.tensor([0.2, 1.0, 3.0, 0.7], dtype=torch.float64)
    loss = class_balanced_cross_entropy(logits, targets, class_weights)
    nll = F.cross_entropy(logits, targets, reduction="none")
    torch.testing.assert_close(loss, (class_weights[targets] * nll).sum() / NUM_SAMPLES)
    # F.cross_entropy(weight=...) divides by Σ w_{y_i} instead: different unless Σ w_{y_i} = N.
    assert not math.isclose(
        loss.item(), F.cross_entropy(logits, targets, weight=class_weights).item(), rel_tol=1e-6
    )
    ones = torch.ones(NUM_CLASSES, dtype=torch.float64)
    torch.testing.assert_close(
        class_balanced_cross_entropy(logits, targets, ones), F.cross_entropy(logits, targets)
    )


def test_class_weights_get_no_gradient() -> None:
    logits, targets = make_logits(seed=3)
    class_weights = torch.rand(NUM_CLASSES, dtype=torch.float64, requires_grad=True)
    loss = class_balanced_cross_entropy(logits, targets, class_weights)
    assert torch.autograd.grad(loss, class_weights, allow_unused=True)[0] is None


def test_masked_cross_entropy_matches_reference() -> None:
    logits, targets = make_logits(seed=4)
    mask_list = [0, 1, 1, 0, 0, 1, 0, 1]
    targets = torch.where(torch.tensor(mask_list, dtype=torch.bool), targets, -1)
    loss = masked_cross_entropy(logits, targets, torch.tensor(mask_list, dtype=torch.bool))
    expected = reference_nll(logits, targets, [1.0] * NUM_SAMPLES, [float(m) for m in mask_list])
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)
    assert torch.all(grad[torch.tensor(mask_list) == 0] == 0)
    # A 0/1 float mask gives the same as the bool mask.
    float_mask = torch.tensor(mask_list, dtype=torch.float64)
    torch.testing.assert_close(masked_cross_entropy(logits, targets, float_mask), expected)


@pytest.mark.parametrize("which", ["masked", "class_balanced"])
def test_empty_mask_gives_connected_exact_zero(which: str) -> None:
    logits, _ = make_logits(seed=5)
    targets = torch.full((NUM_SAMPLES,), -1)
    mask = torch.zeros(NUM_SAMPLES, dtype=torch.bool)
    if which == "masked":
        loss = masked_cross_entropy(logits, targets, mask)
    else:
        loss = class_balanced_cross_entropy(logits, targets, torch.ones(NUM_CLASSES), mask)
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_bad_targets_and_shapes_raise() -> None:
    logits, targets = make_logits(seed=6)
    bad = targets.clone()
    bad[2] = NUM_CLASSES
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        masked_cross_entropy(logits, bad, torch.ones(NUM_SAMPLES, dtype=torch.bool))
    with pytest.raises(ValueError, match="targets must be"):
        masked_cross_entropy(logits, targets[:3], torch.ones(NUM_SAMPLES, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be"):
        masked_cross_entropy(logits, targets, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="class_weights"):
        class_balanced_cross_entropy(logits, targets, torch.ones(NUM_CLASSES + 1))
