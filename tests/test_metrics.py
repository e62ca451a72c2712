"""cluster_quality against straightforward references: brute-force matching, NMI from its definition."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch

from detach_pl.metrics import cluster_quality


def reference_accuracy(assigned: list[int], truth: list[int]) -> float:
    """Best one-to-one cluster → class mapping, tried exhaustively (small inputs only)."""
    clusters, classes = sorted(set(assigned)), sorted(set(truth))
    best = 0
    slots = classes + [None] * max(0, len(clusters) - len(classes))
    for image in itertools.permutations(slots, len(clusters)):
        mapping = dict(zip(clusters, image, strict=True))
        best = max(best, sum(mapping[a] == t for a, t in zip(assigned, truth, strict=True)))
    return best / len(assigned)


def reference_nmi(assigned: list[int], truth: list[int]) -> float:
    """I(A; T) / ((H(A) + H(T)) / 2) from counts; 1.0 when both partitions are a single group."""
    n = len(assigned)
    joint, pa, pt = Counter(zip(assigned, truth, strict=True)), Counter(assigned), Counter(truth)
    mutual = sum(c / n * math.log(c * n / (pa[a] * pt[t])) for (a, t), c in joint.items())
    entropy = lambda counts: -sum(c / n * math.log(c / n) for c in counts.values())  # noqa: E731
    denominator = (entropy(pa) + entropy(pt)) / 2
    return 1.0 if denominator == 0 else mutual / denominator


@pytest.mark.parametrize("seed", range(6))
def test_random_clusterings_match_the_references(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    n = int(torch.randint(5, 60, (1,), generator=generator))
    assigned = torch.randint(-1, 4, (n,), generator=generator) * 3  # non-contiguous, negative ids
    truth = torch.randint(0, 5, (n,), generator=generator) + 10
    accuracy, nmi = cluster_quality(assigned, truth)
    assert accuracy == pytest.approx(reference_accuracy(assigned.tolist(), truth.tolist()), abs=1e-12)
    assert nmi == pytest.approx(reference_nmi(assigned.tolist(), truth.tolist()), abs=1e-6)


def test_edge_cases_and_the_single_group_convention() -> None:
    relabelled = cluster_quality(torch.tensor([5, 5, 2, 2, 9]), torch.tensor([0, 0, 1, 1, 2]))
    assert relabelled == pytest.approx((1.0, 1.0), abs=1e-6)
    assert cluster_quality(torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)) == (1.0, 1.0)
    one_cluster = cluster_quality(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 2, 3]))
    assert one_cluster == pytest.approx((0.25, 0.0), abs=1e-12)
    with pytest.raises(ValueError, match="at least one sample"):
        cluster_quality(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
