"""Tests of the stage-1 cross-entropies and class-balanced weights against loop references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from detach_pl.losses import (
    check_counts,
    class_balanced_cross_entropy,
    class_balanced_denominator,
    class_balanced_weights,
    masked_cross_entropy,
)
from detach_pl.losses.classification import ClampMode, Reduction

NUM_SAMPLES = 8
NUM_CLASSES = 4


def reference_class_weights(counts: list[int], power: float, max_ratio: float) -> list[float]:
    """clamp="cap_large": w_k = 1/max(|C_k|, 1)^power, capped at max_ratio·min, rescaled to sum K (loops)."""
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
def test_class_balanced_weights_cap_large_match_reference(
    counts: list[int], power: float, max_ratio: float
) -> None:
    weights = class_balanced_weights(torch.tensor(counts), power=power, max_ratio=max_ratio, clamp="cap_large")
    expected = reference_class_weights(counts, power, max_ratio)
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx(expected, rel=1e-6)
    assert weights.sum().item() == pytest.approx(len(counts), rel=1e-6)
    assert (weights.max() / weights.min()).item() <= max_ratio * (1 + 1e-6)


def test_class_balanced_weights_cap_large_empty_equals_size_one_and_order() -> None:
    weights = class_balanced_weights(torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64), clamp="cap_large")
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
    loss = class_balanced_cross_entropy(logits, targets, class_weights, mask, reduction="mean")
    sample_weight = [float(class_weights[int(t)]) if m else 0.0 for t, m in zip(targets, mask_list, strict=True)]
    expected = reference_nll(logits, targets, sample_weight, [float(m) for m in mask_list])
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


def test_class_balanced_cross_entropy_mean_normalises_by_count_not_weight_sum() -> None:
    logits, targets = make_logits(seed=2)
    class_weights = torch.tensor([0.2, 1.0, 3.0, 0.7], dtype=torch.float64)
    loss = class_balanced_cross_entropy(logits, targets, class_weights, reduction="mean")
    nll = F.cross_entropy(logits, targets, reduction="none")
    torch.testing.assert_close(loss, (class_weights[targets] * nll).sum() / NUM_SAMPLES)
    # F.cross_entropy(weight=...) divides by Σ w_{y_i} instead: different unless Σ w_{y_i} = N.
    assert not math.isclose(
        loss.item(), F.cross_entropy(logits, targets, weight=class_weights).item(), rel_tol=1e-6
    )
    ones = torch.ones(NUM_CLASSES, dtype=torch.float64)
    for reduction in ("mean", "weighted_mean"):
        torch.testing.assert_close(
            class_balanced_cross_entropy(logits, targets, ones, reduction=reduction),
            F.cross_entropy(logits, targets),
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


def reference_raise_small_weights(counts: list[float], power: float, max_ratio: float) -> list[float]:
    """clamp="raise_small": w_k = 1/(|C_k| + 1e-8)^power, raised to ≥ max/max_ratio, sum K (loops)."""
    raw = [1.0 / (c + 1e-8) ** power for c in counts]
    floor = max(raw) / max_ratio
    raised = [max(w, floor) for w in raw]
    total = sum(raised)
    return [w * len(counts) / total for w in raised]


def test_class_balanced_weights_raise_small_hand_computed() -> None:
    # [1000, 10, 1, 0]: raw 1/sqrt(n + 1e-8) = [1/sqrt(1000), 1/sqrt(10), 1, 1e4]; the empty cluster
    # sets the maximum, every other weight is raised to 1e3; rescaled to sum 4.
    weights = class_balanced_weights(torch.tensor([1000, 10, 1, 0]))
    assert weights.tolist() == pytest.approx([4 / 13, 4 / 13, 4 / 13, 40 / 13], rel=1e-6)
    # Without the empty cluster: raw [1/sqrt(1000), 1/sqrt(10), 1]; only the first is raised, to 0.1.
    weights = class_balanced_weights(torch.tensor([1000, 10, 1]))
    raised = [0.1, 1 / math.sqrt(10), 1.0]
    assert weights.tolist() == pytest.approx([3 * w / sum(raised) for w in raised], rel=1e-6)
    assert (weights.max() / weights.min()).item() == pytest.approx(10.0, rel=1e-6)


def test_class_balanced_weights_cap_large_hand_computed() -> None:
    # Sizes clamped to >= 1: raw [1/sqrt(1000), 1/sqrt(10), 1, 1]; the large ones are capped at
    # 10/sqrt(1000) = 1/sqrt(10).
    weights = class_balanced_weights(torch.tensor([1000, 10, 1, 0]), clamp="cap_large")
    capped = [1 / math.sqrt(1000)] + [1 / math.sqrt(10)] * 3
    assert weights.tolist() == pytest.approx([4 * w / sum(capped) for w in capped], rel=1e-6)


@pytest.mark.parametrize(
    ("counts", "power", "max_ratio"),
    [
        ([1000.0, 10.0, 1.0, 0.0, 0.0, 5.0, 300.0], 0.5, 10.0),
        ([0.0, 1.0, 100.0, 10000.0], 0.5, 10.0),
        ([1.0, 4.0, 1000.0], 1.0, 3.0),
        ([0.0, 0.0, 0.0], 0.5, 10.0),  # all empty: uniform
        ([7.0, 7000.0], 0.0, 10.0),  # power 0: uniform
    ],
)
def test_class_balanced_weights_raise_small_match_reference(
    counts: list[float], power: float, max_ratio: float
) -> None:
    weights = class_balanced_weights(torch.tensor(counts, dtype=torch.float64), power=power, max_ratio=max_ratio)
    assert weights.dtype == torch.float64
    assert weights.tolist() == pytest.approx(reference_raise_small_weights(counts, power, max_ratio), rel=1e-12)
    assert weights.sum().item() == pytest.approx(len(counts), rel=1e-12)
    assert (weights.max() / weights.min()).item() <= max_ratio * (1 + 1e-12)


@pytest.mark.parametrize("clamp", ["raise_small", "cap_large"])
def test_class_balanced_weights_clamp_is_a_no_op_when_ratio_holds(clamp: ClampMode) -> None:
    counts = [10, 40, 90, 160]  # raw ratio sqrt(16) = 4 <= 10
    weights = class_balanced_weights(torch.tensor(counts), clamp=clamp)
    raw = [1 / math.sqrt(c) for c in counts]
    assert weights.tolist() == pytest.approx([4 * w / sum(raw) for w in raw], rel=1e-6)


def test_class_balanced_weights_modes_differ_on_a_skewed_split() -> None:
    counts = torch.tensor([400, 4, 100])  # raw ratio sqrt(400/4) = 10: at the bound, both modes agree
    skewed = torch.tensor([10000, 1, 100])  # raw ratio 100
    raise_small = class_balanced_weights(skewed)
    cap_large = class_balanced_weights(skewed, clamp="cap_large")
    assert not torch.allclose(raise_small, cap_large)
    # Raising the small weights and capping the large ones both reach the bound exactly.
    for weights in (raise_small, cap_large):
        assert (weights.max() / weights.min()).item() == pytest.approx(10.0, rel=1e-6)
    torch.testing.assert_close(class_balanced_weights(counts), class_balanced_weights(counts, clamp="cap_large"))


def test_class_balanced_weights_check_and_clamp_arguments() -> None:
    with pytest.raises(ValueError, match="clamp must be one of"):
        class_balanced_weights(torch.tensor([3, 1]), clamp="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        check_counts(torch.tensor([3, -1]))
    with pytest.raises(ValueError, match="non-empty"):
        check_counts(torch.tensor([]))
    check_counts(torch.tensor([0, 2]))
    counts = torch.tensor([5, 0, 80])
    torch.testing.assert_close(class_balanced_weights(counts, check=False), class_balanced_weights(counts))
    with pytest.raises(ValueError, match="counts"):  # shapes are still checked without the value check
        class_balanced_weights(torch.tensor([[1, 2]]), check=False)


@pytest.mark.parametrize("use_mask", [False, True])
def test_weighted_mean_equals_torch_weighted_cross_entropy(use_mask: bool) -> None:
    logits, targets = make_logits(seed=7)
    class_weights = torch.tensor([0.3, 1.7, 2.0, 0.6], dtype=torch.float64)
    mask = torch.tensor([1, 0, 1, 1, 0, 1, 1, 0], dtype=torch.bool) if use_mask else None
    inputs = targets if mask is None else torch.where(mask, targets, torch.full_like(targets, -1))
    loss = class_balanced_cross_entropy(logits, inputs, class_weights, mask)
    keep = torch.ones(NUM_SAMPLES, dtype=torch.bool) if mask is None else mask
    expected = F.cross_entropy(logits[keep], targets[keep], weight=class_weights)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)
    assert torch.all(grad[~keep] == 0)
    # Written out: Σ m w_y ℓ / Σ m w_y.
    nll = F.cross_entropy(logits, targets, reduction="none")
    weights = class_weights[targets] * keep
    torch.testing.assert_close(loss, (weights * nll).sum() / weights.sum(), rtol=0, atol=1e-12)


def test_weighted_mean_and_mean_differ_and_mean_divides_by_count() -> None:
    logits, targets = make_logits(seed=8)
    mask = torch.tensor([1, 1, 0, 1, 1, 1, 0, 1], dtype=torch.bool)
    class_weights = torch.tensor([0.2, 1.0, 3.0, 0.7], dtype=torch.float64)
    mean = class_balanced_cross_entropy(logits, targets, class_weights, mask, reduction="mean")
    weighted = class_balanced_cross_entropy(logits, targets, class_weights, mask)
    nll = F.cross_entropy(logits, targets, reduction="none")
    terms = (class_weights[targets] * nll)[mask]
    torch.testing.assert_close(mean, terms.sum() / int(mask.sum()), rtol=0, atol=1e-12)
    assert not math.isclose(mean.item(), weighted.item(), rel_tol=1e-6)


@pytest.mark.parametrize("reduction", ["weighted_mean", "mean"])
def test_denominator_gives_the_global_mean_over_simulated_ranks(reduction: Reduction) -> None:
    """loss_r · R·den_r/Σ den, averaged over R ranks (DDP), equals the loss on the whole batch."""
    logits, targets = make_logits(seed=9)
    class_weights = torch.tensor([0.5, 1.5, 2.5, 1.0], dtype=torch.float64)
    mask = torch.tensor([1, 1, 1, 0, 0, 1, 0, 0], dtype=torch.bool)  # unequal counts per rank
    whole = class_balanced_cross_entropy(logits, targets, class_weights, mask, reduction)
    ranks = [slice(0, 4), slice(4, 8)]
    denominators = [
        class_balanced_denominator(targets[r], class_weights, mask[r], reduction)
        for r in ranks
    ]
    if reduction == "weighted_mean":
        expected_den = [float(class_weights[targets[r]][mask[r]].sum()) for r in ranks]
    else:
        expected_den = [float(mask[r].sum()) for r in ranks]
    assert [d.item() for d in denominators] == pytest.approx(expected_den, rel=1e-12)
    assert not denominators[0].requires_grad
    total = sum(denominators)
    combined = sum(
        class_balanced_cross_entropy(logits[r], targets[r], class_weights, mask[r], reduction)
        * (len(ranks) * d / total)
        for r, d in zip(ranks, denominators, strict=True)
    ) / len(ranks)
    torch.testing.assert_close(combined, whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("reduction", ["weighted_mean", "mean"])
def test_class_balanced_empty_mask_and_zero_weights_give_connected_zero(reduction: Reduction) -> None:
    logits, targets = make_logits(seed=10)
    empty = torch.zeros(NUM_SAMPLES, dtype=torch.bool)
    no_targets = torch.full_like(targets, -1)
    loss = class_balanced_cross_entropy(logits, no_targets, torch.ones(NUM_CLASSES), empty, reduction)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.all(grad == 0)
    assert class_balanced_denominator(targets, torch.ones(NUM_CLASSES), empty, reduction).item() == 0.0
    # Every included sample of a zero-weight class: Σ m w = 0, still no NaN.
    zero_weights = torch.zeros(NUM_CLASSES, dtype=torch.float64)
    loss = class_balanced_cross_entropy(logits, targets, zero_weights, reduction=reduction)
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.all(grad == 0)


def test_check_false_skips_the_target_range_check() -> None:
    logits, targets = make_logits(seed=11)
    mask = torch.ones(NUM_SAMPLES, dtype=torch.bool)
    class_weights = torch.rand(NUM_CLASSES, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        class_balanced_cross_entropy(logits, targets, class_weights, mask, check=False),
        class_balanced_cross_entropy(logits, targets, class_weights, mask),
    )
    torch.testing.assert_close(
        masked_cross_entropy(logits, targets, mask, check=False), masked_cross_entropy(logits, targets, mask)
    )
    bad = targets.clone()
    bad[0] = NUM_CLASSES
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        class_balanced_cross_entropy(logits, bad, class_weights)
    assert torch.isfinite(class_balanced_cross_entropy(logits, bad, class_weights, check=False))
    with pytest.raises(ValueError, match="reduction must be one of"):
        class_balanced_cross_entropy(logits, targets, class_weights, reduction="sum")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logits_accumulate_in_float32(dtype: torch.dtype) -> None:
    logits, targets = make_logits(seed=12)
    class_weights = torch.tensor([0.5, 1.5, 2.5, 1.0])
    low = logits.detach().to(dtype)
    loss = class_balanced_cross_entropy(low, targets, class_weights)
    assert loss.dtype == torch.float32
    expected = F.cross_entropy(low.double(), targets, weight=class_weights.double())
    assert loss.item() == pytest.approx(expected.item(), rel=2e-2)
