"""Tests of k-means and the ODC memory bank against explicit reference computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from detach_pl.clustering import OdcMemory, kmeans
from detach_pl.clustering.odc import _lloyd_centroids


def _blobs(sizes: list[int], dim: int = 8, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points around mutually orthogonal unit directions (one per blob), shuffled; returns (x, truth)."""
    generator = torch.Generator().manual_seed(seed)
    points, truth = [], []
    for blob, size in enumerate(sizes):
        direction = torch.zeros(dim)
        direction[blob] = 1.0
        points.append(direction + noise * torch.randn(size, dim, generator=generator))
        truth.append(torch.full((size,), blob, dtype=torch.int64))
    order = torch.randperm(sum(sizes), generator=generator)
    return torch.cat(points)[order], torch.cat(truth)[order]


def _reference_nearest(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Nearest centroid by an explicit loop over rows and clusters (max cosine, lowest id on ties)."""
    labels = []
    for row in features:
        best, best_cos = 0, -math.inf
        for cluster, centroid in enumerate(centroids):
            cos = float(torch.dot(row, centroid))
            if cos > best_cos:
                best, best_cos = cluster, cos
        labels.append(best)
    return torch.tensor(labels)


def _reference_member_means(features: torch.Tensor, labels: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Normalised mean of members of each cluster by an explicit loop."""
    centroids = torch.zeros(num_clusters, features.shape[1])
    for cluster in range(num_clusters):
        total = torch.zeros(features.shape[1], dtype=torch.float64)
        for row, label in zip(features, labels.tolist()):
            if label == cluster:
                total += row.double()
        centroids[cluster] = (total / total.norm()).float()
    return centroids


def _memory_with_state(features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> OdcMemory:
    """A memory whose bank is set directly (normalised features, given labels and centroids)."""
    num_clusters = centroids.shape[0]
    memory = OdcMemory(features.shape[0], features.shape[1], num_clusters)
    memory.load_state_dict(
        {
            "features": F.normalize(features, dim=1),
            "labels": labels,
            "centroids": F.normalize(centroids, dim=1),
            "thresholds": torch.zeros(num_clusters),
            "initialized": torch.tensor(True),
        }
    )
    return memory


def _partitions_equal(labels: torch.Tensor, truth: torch.Tensor) -> bool:
    """Whether two labelings define the same partition (equal up to a permutation of ids)."""
    pairs = set(zip(labels.tolist(), truth.tolist()))
    return len(pairs) == len(set(labels.tolist())) == len(set(truth.tolist()))


def test_kmeans_recovers_separated_blobs_and_is_deterministic() -> None:
    features, truth = _blobs([40, 25, 30, 15])
    centroids, labels = kmeans(features, 4, seed=1)
    assert _partitions_equal(labels, truth)
    assert torch.allclose(centroids.norm(dim=1), torch.ones(4))
    assert torch.equal(labels, _reference_nearest(F.normalize(features, dim=1), centroids))
    again_centroids, again_labels = kmeans(features, 4, seed=1)
    assert torch.equal(centroids, again_centroids) and torch.equal(labels, again_labels)


def test_kmeans_same_seed_same_result_on_random_data() -> None:
    features = torch.randn(150, 6, generator=torch.Generator().manual_seed(3))
    first = kmeans(features, 5, seed=7, num_iters=3)
    second = kmeans(features, 5, seed=7, num_iters=3)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.equal(first[1], _reference_nearest(F.normalize(features, dim=1), first[0]))


def test_lloyd_step_reseeds_empty_cluster_with_farthest_point() -> None:
    features = F.normalize(torch.randn(20, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = torch.tensor([0] * 12 + [1] * 8)
    centroids = _lloyd_centroids(features, labels, 3)
    means = _reference_member_means(features, labels, 2)
    assert torch.allclose(centroids[:2], means, atol=1e-6)
    distances = [1.0 - float(torch.dot(features[i], means[labels[i]])) for i in range(20)]
    farthest = max(range(20), key=lambda i: distances[i])
    assert torch.equal(centroids[2], features[farthest])


@pytest.mark.parametrize(
    ("features", "num_clusters", "message"),
    [
        (torch.randn(3, 4), 5, "at least num_clusters"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 1, "NaN or Inf"),
        (torch.randn(10), 2, "2-D"),
        (torch.randn(10, 3), 0, "num_clusters must be"),
    ],
)
def test_kmeans_rejects_bad_input(features: torch.Tensor, num_clusters: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kmeans(features, num_clusters)


def test_initialize_matches_kmeans_and_nearest_centroid() -> None:
    features = torch.randn(120, 10, generator=torch.Generator().manual_seed(1))
    memory = OdcMemory(120, 10, 4)
    memory.initialize(features, seed=5)
    bank = F.normalize(features, dim=1)
    centroids, labels = kmeans(bank, 4, seed=5)
    assert memory.initialized
    assert torch.equal(memory.features, bank)
    assert torch.equal(memory.centroids, centroids)
    assert torch.equal(memory.labels, labels)
    assert torch.equal(memory.labels, _reference_nearest(memory.features, memory.centroids))


def test_update_touches_only_batch_rows_and_follows_momentum_formula() -> None:
    features, _ = _blobs([30, 30, 30], dim=6)
    memory = OdcMemory(90, 6, 3, memory_momentum=0.1)
    memory.initialize(features)
    before_features, before_labels = memory.features.clone(), memory.labels.clone()
    indices = torch.tensor([4, 17, 60, 61])
    current = 3.0 * torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    memory.update(indices, current)
    untouched = torch.ones(90, dtype=torch.bool)
    untouched[indices] = False
    assert torch.equal(memory.features[untouched], before_features[untouched])
    assert torch.equal(memory.labels[untouched], before_labels[untouched])
    for row, index in enumerate(indices.tolist()):
        current_unit = current[row] / current[row].norm()
        blended = 0.1 * before_features[index] + 0.9 * current_unit
        expected = blended / blended.norm()
        assert torch.allclose(memory.features[index], expected, atol=1e-6)
    expected_labels = _reference_nearest(memory.features[indices], memory.centroids)
    assert torch.equal(memory.labels[indices], expected_labels)


def test_update_relabels_to_nearest_centroid() -> None:
    features, _ = _blobs([20, 20, 20], dim=5)
    memory = OdcMemory(60, 5, 3, memory_momentum=0.0)
    memory.initialize(features)
    indices = torch.arange(6)
    current = memory.centroids[torch.tensor([0, 1, 2, 2, 1, 0])] + 0.01
    memory.update(indices, current)
    assert torch.equal(memory.labels[indices], torch.tensor([0, 1, 2, 2, 1, 0]))


def test_update_duplicate_indices_last_occurrence_wins() -> None:
    features = torch.randn(30, 4, generator=torch.Generator().manual_seed(4))
    updates = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))
    with_duplicates = OdcMemory(30, 4, 3)
    with_duplicates.initialize(features)
    deduplicated = OdcMemory(30, 4, 3)
    deduplicated.initialize(features)
    with_duplicates.update(torch.tensor([5, 2, 5]), updates)
    deduplicated.update(torch.tensor([2, 5]), updates[1:])
    for key, value in with_duplicates.state_dict().items():
        assert torch.equal(value, deduplicated.state_dict()[key]), key


def test_update_rejects_bad_input() -> None:
    memory = OdcMemory(10, 3, 2)
    with pytest.raises(RuntimeError, match="initialize"):
        memory.update(torch.tensor([0]), torch.randn(1, 3))
    memory.initialize(torch.randn(10, 3))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        memory.update(torch.tensor([10]), torch.randn(1, 3))
    with pytest.raises(ValueError, match="shape"):
        memory.update(torch.tensor([0, 1]), torch.randn(1, 3))
    with pytest.raises(ValueError, match="integer"):
        memory.update(torch.tensor([0.0]), torch.randn(1, 3))


def test_update_centroids_equal_normalised_member_means() -> None:
    features, _ = _blobs([25, 20, 30], dim=6)
    memory = OdcMemory(75, 6, 3)
    memory.initialize(features)
    memory.update(torch.arange(0, 75, 3), torch.randn(25, 6, generator=torch.Generator().manual_seed(6)))
    labels_before = memory.labels.clone()
    info = memory.update_centroids(min_cluster_size=1)
    assert info["dissolved_clusters"] == 0 and info["split_clusters"] == 0
    assert torch.equal(memory.labels, labels_before)
    assert torch.allclose(memory.centroids, _reference_member_means(memory.features, memory.labels, 3), atol=1e-6)


def test_small_cluster_dissolved_and_empty_clusters_split() -> None:
    features, truth = _blobs([40, 30, 3], dim=6, seed=3)
    num_clusters = 4
    centroids = torch.eye(6)[:num_clusters]
    memory = _memory_with_state(features, truth, centroids)
    bank = memory.features.clone()
    info = memory.update_centroids(min_cluster_size=5)

    # Reference, step by step with explicit loops.
    labels = truth.clone()
    means = _reference_member_means(bank, labels, 3)
    for i in range(len(labels)):
        if labels[i] == 2:  # tiny cluster: nearest of the kept clusters 0 and 1
            labels[i] = int(_reference_nearest(bank[i : i + 1], means[:2])[0])
    for empty_cluster in (2, 3):
        sizes = [int((labels == k).sum()) for k in range(num_clusters)]
        largest = max(range(num_clusters), key=lambda k: (sizes[k], -k))
        centroid = _reference_member_means(bank, labels, num_clusters)[largest]
        members = [i for i in range(len(labels)) if labels[i] == largest]
        members.sort(key=lambda i: -(1.0 - float(torch.dot(bank[i], centroid))))
        for i in members[: len(members) // 2]:
            labels[i] = empty_cluster

    assert torch.equal(memory.labels, labels)
    assert info["dissolved_clusters"] == 1 and info["dissolved_samples"] == 3 and info["split_clusters"] == 2
    sizes = memory.cluster_sizes()
    assert bool((sizes > 0).all()) and int(sizes.sum()) == 73
    assert torch.allclose(memory.centroids, _reference_member_means(bank, labels, num_clusters), atol=1e-6)
    assert bool(torch.isfinite(memory.thresholds).all())


def test_update_centroids_keeps_every_cluster_when_all_are_small() -> None:
    features = torch.randn(12, 4, generator=torch.Generator().manual_seed(8))
    memory = OdcMemory(12, 4, 3)
    memory.initialize(features)
    info = memory.update_centroids(min_cluster_size=100)
    sizes = memory.cluster_sizes()
    assert bool((sizes > 0).all()) and int(sizes.sum()) == 12
    assert info["dissolved_clusters"] == 2 and info["split_clusters"] == 2


def test_constructor_rejects_more_clusters_than_samples() -> None:
    with pytest.raises(ValueError, match="exceeds num_samples"):
        OdcMemory(3, 4, 5)
    with pytest.raises(ValueError, match="memory_momentum"):
        OdcMemory(10, 4, 2, memory_momentum=1.0)


def test_class_weights_follow_inverse_sqrt_size_and_clamp() -> None:
    features, truth = _blobs([64, 16, 36], dim=5)
    memory = _memory_with_state(features, truth, torch.eye(5)[:3])
    weights = memory.class_weights()
    assert torch.allclose(weights[1] / weights[0], torch.tensor(math.sqrt(64 / 16)))
    assert torch.allclose(weights[2] / weights[0], torch.tensor(math.sqrt(64 / 36)))
    assert torch.allclose(weights.sum(), torch.tensor(3.0))

    features, truth = _blobs([400, 1, 100], dim=5)
    memory = _memory_with_state(features, truth, torch.eye(5)[:3])
    weights = memory.class_weights(power=0.5, max_ratio=10.0)
    assert torch.allclose(weights.max() / weights.min(), torch.tensor(10.0), rtol=1e-5)
    assert torch.allclose(weights.sum(), torch.tensor(3.0))
    assert int(weights.argmax()) == 1 and int(weights.argmin()) == 0


def test_distances_and_confident_mask_match_per_cluster_percentile_loop() -> None:
    features = torch.randn(101, 6, generator=torch.Generator().manual_seed(9))
    memory = OdcMemory(101, 6, 4, confidence_quantile=0.75)
    memory.initialize(features, seed=2)
    distances = [1.0 - float(torch.dot(memory.features[i], memory.centroids[memory.labels[i]])) for i in range(101)]
    assert torch.allclose(memory.distances(), torch.tensor(distances), atol=1e-6)

    thresholds = []
    for cluster in range(4):
        member = sorted(d for d, y in zip(distances, memory.labels.tolist()) if y == cluster)
        position = 0.75 * (len(member) - 1)
        low, high = math.floor(position), math.ceil(position)
        thresholds.append(member[low] + (position - low) * (member[high] - member[low]))
    assert torch.allclose(memory.thresholds, torch.tensor(thresholds), atol=1e-6)

    indices = torch.arange(100, -1, -1)
    expected = torch.tensor([distances[i] <= thresholds[memory.labels[i]] for i in indices.tolist()])
    mask = memory.confident_mask(indices)
    assert mask.dtype == torch.bool and torch.equal(mask, expected)
    assert 0.6 < float(mask.float().mean()) < 0.9


def test_refresh_thresholds_follows_updates() -> None:
    features = torch.randn(40, 4, generator=torch.Generator().manual_seed(10))
    memory = OdcMemory(40, 4, 2)
    memory.initialize(features)
    memory.update(torch.arange(10), torch.randn(10, 4, generator=torch.Generator().manual_seed(11)))
    memory.refresh_thresholds()
    for cluster in range(2):
        member = memory.distances()[memory.labels == cluster]
        assert torch.allclose(memory.thresholds[cluster], torch.quantile(member, 0.75))


def test_prototype_logits_equal_cosine_over_temperature_with_gradient() -> None:
    memory = OdcMemory(30, 5, 3)
    memory.initialize(torch.randn(30, 5, generator=torch.Generator().manual_seed(12)))
    z = torch.randn(4, 5, generator=torch.Generator().manual_seed(13), requires_grad=True)
    logits = memory.prototype_logits(z, temperature=0.1)
    reference = torch.stack(
        [torch.stack([F.cosine_similarity(row, c, dim=0) / 0.1 for c in memory.centroids]) for row in z]
    )
    assert torch.allclose(logits, reference, atol=1e-5)
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), z)
    (reference_grad,) = torch.autograd.grad(reference[:, 1].sum(), z)
    assert torch.allclose(grad, reference_grad, atol=1e-5)
    assert not memory.centroids.requires_grad


def test_state_dict_round_trip_and_shape_errors() -> None:
    features, _ = _blobs([20, 20, 20], dim=6)
    memory = OdcMemory(60, 6, 3)
    memory.initialize(features)
    memory.update(torch.tensor([1, 2, 3]), torch.randn(3, 6))
    memory.update_centroids(min_cluster_size=2)
    state = memory.state_dict()
    restored = OdcMemory(60, 6, 3)
    restored.load_state_dict(state)
    assert restored.initialized
    for key, value in restored.state_dict().items():
        assert torch.equal(value, state[key]), key
    state["features"][0, 0] = 5.0
    assert memory.features[0, 0] != 5.0  # state_dict returns copies

    with pytest.raises(ValueError, match="'centroids' has shape"):
        OdcMemory(60, 6, 4).load_state_dict(memory.state_dict())
    with pytest.raises(ValueError, match="'features' has shape"):
        OdcMemory(61, 6, 3).load_state_dict(memory.state_dict())
    incomplete = memory.state_dict()
    del incomplete["thresholds"]
    with pytest.raises(ValueError, match="missing keys \\['thresholds'\\]"):
        restored.load_state_dict(incomplete)


def test_two_memories_fed_the_same_updates_are_bit_identical() -> None:
    features = torch.randn(80, 8, generator=torch.Generator().manual_seed(14))
    first, second = OdcMemory(80, 8, 5), OdcMemory(80, 8, 5)
    first.initialize(features, seed=3)
    second.initialize(features.clone(), seed=3)
    generator = torch.Generator().manual_seed(15)
    for _ in range(3):
        for _ in range(4):
            indices = torch.randint(80, (16,), generator=generator)
            batch = torch.randn(16, 8, generator=generator)
            first.update(indices, batch)
            second.update(indices.clone(), batch.clone())
        assert first.update_centroids(10) == second.update_centroids(10)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key


def test_to_returns_self_with_tensors_on_device() -> None:
    memory = OdcMemory(10, 3, 2)
    assert memory.to("cpu") is memory
    assert memory.device == torch.device("cpu")
