"""Tests of k-means and the ODC memory bank against explicit reference computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from detach_pl.clustering import DissolveMode, OdcMemory, kmeans
from detach_pl.clustering.cluster_stats import per_cluster_quantile
from detach_pl.clustering.kmeans import _euclidean_lloyd, _euclidean_seeds, _lloyd_centroids


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
        for row, label in zip(features, labels.tolist(), strict=True):
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
    pairs = set(zip(labels.tolist(), truth.tolist(), strict=True))
    return len(pairs) == len(set(labels.tolist())) == len(set(truth.tolist()))


def test_cosine_kmeans_recovers_separated_blobs_and_is_deterministic() -> None:
    features, truth = _blobs([40, 25, 30, 15])
    centroids, labels = kmeans(features, 4, seed=1, metric="cosine", num_inits=1)
    assert _partitions_equal(labels, truth)
    assert torch.allclose(centroids.norm(dim=1), torch.ones(4))
    assert torch.equal(labels, _reference_nearest(F.normalize(features, dim=1), centroids))
    again_centroids, again_labels = kmeans(features, 4, seed=1, metric="cosine", num_inits=1)
    assert torch.equal(centroids, again_centroids) and torch.equal(labels, again_labels)


def test_cosine_kmeans_same_seed_same_result_on_random_data() -> None:
    features = torch.randn(150, 6, generator=torch.Generator().manual_seed(3))
    first = kmeans(features, 5, seed=7, num_iters=3, metric="cosine", num_inits=1)
    second = kmeans(features, 5, seed=7, num_iters=3, metric="cosine", num_inits=1)
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


def test_cosine_initialize_matches_kmeans_and_nearest_centroid() -> None:
    features = torch.randn(120, 10, generator=torch.Generator().manual_seed(1))
    memory = OdcMemory(120, 10, 4)
    memory.initialize(features, seed=5, metric="cosine", num_inits=1)
    bank = F.normalize(features, dim=1)
    centroids, labels = kmeans(bank, 4, seed=5, metric="cosine", num_inits=1)
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


@pytest.mark.parametrize("dissolve", ["cluster", "members"])
def test_small_cluster_dissolved_and_empty_clusters_split(dissolve: DissolveMode) -> None:
    features, truth = _blobs([40, 30, 3], dim=6, seed=3)
    num_clusters = 4
    centroids = torch.eye(6)[:num_clusters]
    memory = _memory_with_state(features, truth, centroids)
    bank = memory.features.clone()
    info = memory.update_centroids(min_cluster_size=5, dissolve=dissolve)

    # Reference, step by step with explicit loops.
    labels = truth.clone()
    means = _reference_member_means(bank, labels, 3)
    whole_target = int(_reference_nearest(means[2:3], means[:2])[0])
    for i in range(len(labels)):
        if labels[i] == 2:  # tiny cluster: into the kept clusters 0 and 1
            member_target = int(_reference_nearest(bank[i : i + 1], means[:2])[0])
            labels[i] = whole_target if dissolve == "cluster" else member_target
    for empty_cluster in (2, 3):
        sizes = [int((labels == k).sum()) for k in range(num_clusters)]
        largest = max(range(num_clusters), key=lambda k: (sizes[k], -k))
        centroid = _reference_member_means(bank, labels, num_clusters)[largest]
        members = [i for i in range(len(labels)) if labels[i] == largest]
        members.sort(key=lambda i: -(1.0 - float(torch.dot(bank[i], centroid))))
        for i in members[: math.ceil(len(members) / 2)]:
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
        member = sorted(d for d, y in zip(distances, memory.labels.tolist(), strict=True) if y == cluster)
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


def _reference_spherical_kmeans(
    features: torch.Tensor, num_clusters: int, num_iters: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The earlier spherical k-means as plain loops: k-means++ on unit vectors, Lloyd with re-seeding.

    Written from the implementation that preceded the Euclidean default (and checked against it
    before the change): same CPU generator draws, argmax-cosine labels (ties: lowest k), normalised
    member sums, each empty cluster re-seeded with the unused point farthest from its own centroid.
    """
    points = F.normalize(features, dim=1)
    n = points.shape[0]
    generator = torch.Generator().manual_seed(seed)
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    while len(chosen) < num_clusters:
        weights = torch.tensor(
            [max(0.0, min(2.0 - 2.0 * float(points[i] @ points[c]) for c in chosen)) for i in range(n)],
            dtype=torch.float64,
        )
        if float(weights.sum()) <= 0.0:
            weights = torch.ones(n, dtype=torch.float64)
        chosen.append(int(torch.multinomial(weights, 1, generator=generator)))
    centroids = [points[c].clone() for c in chosen]

    def nearest(cents: list[torch.Tensor]) -> list[int]:
        return [max(range(num_clusters), key=lambda k: (float(points[i] @ cents[k]), -k)) for i in range(n)]

    labels = nearest(centroids)
    for _ in range(num_iters):
        new_centroids: list[torch.Tensor | None] = []
        for k in range(num_clusters):
            members = [points[i] for i in range(n) if labels[i] == k]
            new_centroids.append(F.normalize(torch.stack(members).sum(0), dim=0) if members else None)
        used: set[int] = set()
        for k in range(num_clusters):
            if new_centroids[k] is None:
                far = max(
                    (i for i in range(n) if i not in used),
                    key=lambda i: (1.0 - float(points[i] @ new_centroids[labels[i]]), -i),  # type: ignore[operator]
                )
                used.add(far)
                new_centroids[k] = points[far].clone()
        centroids = [c for c in new_centroids if c is not None]
        new_labels = nearest(centroids)
        settled = new_labels == labels
        labels = new_labels
        if settled:
            break
    return torch.stack(centroids), torch.tensor(labels)


def _reference_euclidean_nearest(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Nearest centroid by explicit squared Euclidean distances in float64 (lowest id on ties)."""
    x, c = features.double(), centroids.double()
    return torch.tensor(
        [min(range(c.shape[0]), key=lambda k: (float(((row - c[k]) ** 2).sum()), k)) for row in x]
    )


def _reference_inertia(features: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor) -> float:
    """Σ_i ||x_i − c_{y_i}||² by a loop in float64."""
    x, c = features.double(), centroids.double()
    return sum(float(((x[i] - c[y]) ** 2).sum()) for i, y in enumerate(labels.tolist()))


def _raw_member_means(features: torch.Tensor, labels: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Plain (unnormalised) mean of the members of each cluster, by a loop in float64."""
    means = torch.zeros(num_clusters, features.shape[1], dtype=torch.float64)
    for k in range(num_clusters):
        members = [features[i].double() for i in range(features.shape[0]) if int(labels[i]) == k]
        means[k] = torch.stack(members).mean(0)
    return means


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_iters", [1, 2, 50])
def test_cosine_kmeans_with_one_init_reproduces_the_earlier_spherical_kmeans(seed: int, num_iters: int) -> None:
    features = torch.randn(60, 5, generator=torch.Generator().manual_seed(seed))
    centroids, labels = kmeans(features, 4, seed=seed, num_iters=num_iters, metric="cosine", num_inits=1)
    expected_centroids, expected_labels = _reference_spherical_kmeans(features, 4, num_iters, seed)
    assert torch.equal(labels, expected_labels)
    torch.testing.assert_close(centroids, expected_centroids, rtol=0, atol=1e-6)


def test_cosine_kmeans_with_several_inits_keeps_the_lowest_cosine_cost() -> None:
    features = torch.randn(80, 4, generator=torch.Generator().manual_seed(21))
    centroids, labels = kmeans(features, 5, seed=3, metric="cosine", num_inits=4)
    points = F.normalize(features, dim=1)
    cost = float((1 - (points * centroids[labels]).sum(1)).double().sum())
    single = kmeans(features, 5, seed=3, metric="cosine", num_inits=1)
    assert cost <= float((1 - (points * single[0][single[1]]).sum(1)).double().sum()) + 1e-9
    assert torch.equal(labels, _reference_nearest(points, centroids))


def _shifted_blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Four Gaussian blobs far from the origin with different spreads and sizes; returns (x, truth)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[10.0, 0.0, 0.0], [14.0, 0.0, 0.0], [10.0, 5.0, 0.0], [10.0, 0.0, 6.0]])
    sizes, spreads = [50, 30, 40, 20], [0.3, 0.5, 0.4, 0.6]
    points = [c + s * torch.randn(n, 3, generator=generator) for c, n, s in zip(centres, sizes, spreads, strict=True)]
    truth = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    order = torch.randperm(sum(sizes), generator=generator)
    return torch.cat(points)[order], truth[order]


def test_euclidean_kmeans_recovers_blobs_on_raw_features() -> None:
    features, truth = _shifted_blobs()
    centroids, labels = kmeans(features, 4, seed=42)
    assert _partitions_equal(labels, truth)
    # Converged: centroids are the plain member means (not normalised) and labels their nearest.
    torch.testing.assert_close(centroids.double(), _raw_member_means(features, labels, 4), rtol=0, atol=1e-4)
    assert torch.equal(labels, _reference_euclidean_nearest(features, centroids))
    # Blobs 0 and 1 lie along the same direction: cosine k-means (on normalised features) cannot
    # separate them, Euclidean k-means on the raw features does.
    _, cosine_labels = kmeans(features, 4, seed=42, metric="cosine")
    assert not _partitions_equal(cosine_labels, truth)


def test_euclidean_kmeans_is_deterministic_and_labels_are_nearest_centroids() -> None:
    features = 3.0 + torch.randn(200, 6, generator=torch.Generator().manual_seed(4))
    for num_iters in (1, 3, 50):
        first = kmeans(features, 5, seed=7, num_iters=num_iters)
        second = kmeans(features.clone(), 5, seed=7, num_iters=num_iters)
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
        assert torch.equal(first[1], _reference_euclidean_nearest(features, first[0]))
        assert first[0].dtype == features.dtype and first[1].dtype == torch.int64


def test_euclidean_kmeans_keeps_the_lowest_inertia_init() -> None:
    features = torch.randn(150, 4, generator=torch.Generator().manual_seed(5))  # no clear structure
    num_clusters, num_inits, seed = 6, 8, 11
    centroids, labels = kmeans(features, num_clusters, seed=seed, num_inits=num_inits)

    # Each init alone: the same k-means++ seeds (centred features, as kmeans does), its own Lloyd.
    mean = features.double().mean(0).float()
    centred = features - mean
    seeds = _euclidean_seeds(centred, num_clusters, num_inits, torch.Generator().manual_seed(seed))
    assert seeds.shape == (num_inits, num_clusters, 4)
    runs = [_euclidean_lloyd(centred, seeds[r : r + 1], 50) for r in range(num_inits)]
    inertias = [_reference_inertia(centred, c[0], y[0]) for c, y in runs]
    assert max(inertias) > min(inertias) * 1.01  # the choice matters on this input
    best = min(range(num_inits), key=lambda r: (inertias[r], r))
    assert torch.equal(labels, runs[best][1][0])
    torch.testing.assert_close(centroids, runs[best][0][0] + mean, rtol=0, atol=1e-5)
    assert _reference_inertia(features, centroids, labels) == pytest.approx(min(inertias), rel=1e-6)

    # All inits iterated together give what each gives alone.
    batched_centroids, batched_labels = _euclidean_lloyd(centred, seeds, 50)
    for r, (c, y) in enumerate(runs):
        assert torch.equal(batched_labels[r], y[0])
        torch.testing.assert_close(batched_centroids[r], c[0], rtol=0, atol=1e-5)

    # One init: its own k-means++ draws (the runs draw together, so they depend on num_inits).
    single_centroids, single_labels = kmeans(features, num_clusters, seed=seed, num_inits=1)
    single_seeds = _euclidean_seeds(centred, num_clusters, 1, torch.Generator().manual_seed(seed))
    assert torch.equal(single_labels, _euclidean_lloyd(centred, single_seeds, 50)[1][0])


def test_euclidean_seeds_are_distinct_data_points_and_reproducible() -> None:
    points = torch.randn(40, 3, generator=torch.Generator().manual_seed(6))
    seeds = _euclidean_seeds(points, 5, 3, torch.Generator().manual_seed(1))
    again = _euclidean_seeds(points, 5, 3, torch.Generator().manual_seed(1))
    assert torch.equal(seeds, again)
    for run in seeds:
        rows = [int(torch.nonzero((points == centre).all(dim=1))[0]) for centre in run]
        assert len(set(rows)) == 5  # D² of a chosen point is 0: never drawn twice


def test_euclidean_lloyd_reseeds_empty_cluster_with_farthest_point() -> None:
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 0.0], [11.0, 0.0], [30.0, 0.0]])
    # Seeds with a third centre far from everything: cluster 2 gets no point in the first step.
    seeds = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [-100.0, -100.0]]])
    centroids, labels = _euclidean_lloyd(points, seeds, 1)
    # Step: means of {0,1,2} and {3,4,5}; the farthest point from its own mean (x=30 from 17) seeds 2.
    assert torch.equal(centroids[0, 2], torch.tensor([30.0, 0.0]))
    assert labels[0].tolist() == [0, 0, 0, 1, 1, 2]


def test_kmeans_rejects_bad_metric_and_inits() -> None:
    with pytest.raises(ValueError, match="metric must be one of"):
        kmeans(torch.randn(10, 3), 2, metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_inits must be >= 1"):
        kmeans(torch.randn(10, 3), 2, num_inits=0)


def test_euclidean_initialize_keeps_kmeans_labels_and_normalised_centroids() -> None:
    features, _ = _shifted_blobs(seed=1)
    memory = OdcMemory(features.shape[0], 3, 4)
    memory.initialize(features, seed=42)
    centroids, labels = kmeans(features, 4, seed=42)
    assert torch.equal(memory.features, F.normalize(features, dim=1))
    assert torch.equal(memory.centroids, F.normalize(centroids, dim=1))
    assert torch.equal(memory.labels, labels)
    # Blobs 0 and 1 share a direction, so the k-means labels are not the nearest-cosine labels of
    # the normalised centroids: the bank keeps the k-means ones.
    assert not torch.equal(memory.labels, _reference_nearest(memory.features, memory.centroids))
    assert torch.isfinite(memory.thresholds).all()


def test_per_cluster_quantile_equals_torch_quantile_per_cluster() -> None:
    generator = torch.Generator().manual_seed(7)
    sizes = [1, 2, 0, 5, 17, 4, 0, 100]
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    labels = labels[torch.randperm(labels.numel(), generator=generator)]
    distances = 2.0 * torch.rand(labels.numel(), generator=generator)
    distances[:6] = distances[6]  # some exact ties
    for quantile in (0.0, 0.1, 0.33, 0.5, 0.75, 0.9, 1.0):
        thresholds = per_cluster_quantile(distances, labels, len(sizes), quantile)
        for k, n in enumerate(sizes):
            if n:
                assert torch.equal(thresholds[k], torch.quantile(distances[labels == k], quantile)), (k, quantile)
            else:
                assert thresholds[k].item() == -math.inf


def _tiny_bank() -> OdcMemory:
    """2-D unit vectors: cluster 0 (5 rows) around c0 = (1, 0), cluster 1 (4 rows) around c1 = (0, 1),
    cluster 2 (centroid (−1, 0)) empty. All components are exact enough that normalize() keeps them."""
    features = torch.tensor(
        [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8],  # cluster 0
         [0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.0, -1.0]]  # cluster 1
    )
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1])
    centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    memory = OdcMemory(9, 2, 3, confidence_quantile=0.75)
    memory.load_state_dict(
        {"features": features, "labels": labels, "centroids": centroids,
         "thresholds": torch.zeros(3), "initialized": torch.tensor(True)}
    )
    assert torch.equal(F.normalize(features, dim=1), features)  # the hand-computed values hold
    return memory


def test_batch_confident_mask_hand_computed_thresholds_and_strict_tie() -> None:
    memory = _tiny_bank()
    # Cluster 0 distances to (1, 0): 0, sqrt(0.4), sqrt(0.8), sqrt(2), sqrt(3.2); 0.75·(5−1) = 3 →
    # the 4th smallest, sqrt(2). Cluster 1 to (0, 1): 0, sqrt(0.4), sqrt(2), 2; 0.75·3 = 2.25 →
    # sqrt(2) + 0.25·(2 − sqrt(2)). Cluster 2 is empty: −inf.
    thresholds = memory.bank_thresholds("euclidean")
    expected = [math.sqrt(2.0), math.sqrt(2.0) + 0.25 * (2.0 - math.sqrt(2.0))]
    assert thresholds[:2].tolist() == pytest.approx(expected, abs=1e-6)
    assert thresholds[2].item() == -math.inf
    for k in range(2):  # the same as a per-cluster loop with torch.quantile
        member = torch.linalg.vector_norm(memory.features[memory.labels == k] - memory.centroids[k], dim=1)
        assert torch.equal(thresholds[k], torch.quantile(member, 0.75))

    # Batch: the current features (not the bank's) against the centroid of the stored label.
    indices = torch.tensor([0, 3, 3, 2, 5, 8, 7])
    current = torch.tensor([[0.0, 3.0], [0.0, 1.0], [0.6, 0.8], [2.0, 0.0], [-0.6, 0.8], [0.8, 0.6], [1.0, 0.0]])
    mask = memory.batch_confident_mask(indices, current)
    # Row 0: (0, 1) vs c0 → sqrt(2), exactly the threshold: not confident (strict <).
    # Row 1: same feature, the tie again; row 2: (0.6, 0.8) vs c0 → sqrt(0.8) < sqrt(2).
    # Row 3: (1, 0) vs c0 → 0. Row 4: (−0.6, 0.8) vs c1 → sqrt(0.4). Row 5: (0.8, 0.6) vs c1 →
    # sqrt(0.8). Row 6: (1, 0) vs c1 → sqrt(2) < 1.5607 (cluster 1's interpolated threshold).
    assert mask.tolist() == [False, False, True, True, True, True, True]
    distance = torch.linalg.vector_norm(F.normalize(current, dim=1)[:2] - memory.centroids[0], dim=1)
    assert torch.equal(distance, thresholds[torch.zeros(2, dtype=torch.long)])  # the tie is exact


def test_batch_confident_mask_matches_loop_and_follows_the_bank_every_call() -> None:
    features = torch.randn(120, 5, generator=torch.Generator().manual_seed(30))
    memory = OdcMemory(120, 5, 4)
    memory.initialize(features, seed=1)
    generator = torch.Generator().manual_seed(31)
    for _ in range(3):
        indices = torch.randint(120, (32,), generator=generator)
        current = torch.randn(32, 5, generator=generator)
        mask = memory.batch_confident_mask(indices, current, check=False)
        expected = []
        for row, index in enumerate(indices.tolist()):
            k = int(memory.labels[index])
            bank = memory.features[memory.labels == k]
            threshold = torch.quantile(torch.linalg.vector_norm(bank - memory.centroids[k], dim=1), 0.75)
            d = torch.linalg.vector_norm(current[row] / current[row].norm() - memory.centroids[k])
            expected.append(bool(d < threshold))
        assert mask.tolist() == expected
        assert torch.equal(mask, memory.batch_confident_mask(indices, current))
        memory.update(indices, current, check=False)  # the next call sees the updated bank
    with pytest.raises(ValueError, match=r"\[0, 120\)"):
        memory.batch_confident_mask(torch.tensor([120]), torch.randn(1, 5))
    with pytest.raises(ValueError, match="shape"):
        memory.batch_confident_mask(torch.tensor([1, 2]), torch.randn(1, 5))


def test_refresh_thresholds_equals_torch_quantile_exactly_with_empty_cluster() -> None:
    features = torch.randn(90, 6, generator=torch.Generator().manual_seed(32))
    memory = OdcMemory(90, 6, 4)
    memory.initialize(features, seed=2)
    state = memory.state_dict()
    state["labels"][state["labels"] == 3] = 0  # cluster 3 now empty
    memory.load_state_dict(state)
    memory.refresh_thresholds()
    distances = memory.distances()
    for k in range(3):
        assert torch.equal(memory.thresholds[k], torch.quantile(distances[memory.labels == k], 0.75))
    assert memory.thresholds[3].item() == -math.inf
    assert torch.equal(memory.thresholds, memory.bank_thresholds("cosine"))


def test_dissolve_cluster_moves_the_whole_cluster_to_the_most_similar_centroid() -> None:
    # Targets: A around e0 (20 rows) and B around e1 (20 rows). Small cluster S (3 rows): two rows
    # near e0 and one, (0.6, 0.8, 0), nearer to B; S's centroid is nearer to A.
    generator = torch.Generator().manual_seed(33)
    a = torch.tensor([1.0, 0.0, 0.0]) + 0.05 * torch.randn(20, 3, generator=generator)
    b = torch.tensor([0.0, 1.0, 0.0]) + 0.05 * torch.randn(20, 3, generator=generator)
    s = torch.tensor([[0.9, 0.1, 0.4], [0.9, 0.0, 0.4], [0.6, 0.8, 0.0]])
    features = torch.cat([a, b, s])
    truth = torch.tensor([0] * 20 + [1] * 20 + [2] * 3)
    results = {}
    for dissolve in ("cluster", "members"):
        memory = _memory_with_state(features, truth, torch.eye(3))
        bank = memory.features.clone()
        info = memory.update_centroids(min_cluster_size=5, dissolve=dissolve)  # type: ignore[arg-type]
        results[dissolve] = (memory.labels.clone(), info)
    means = _reference_member_means(bank, truth, 3)
    assert int(_reference_nearest(means[2:3], means[:2])[0]) == 0  # S's centroid is nearest A
    member_targets = _reference_nearest(bank[40:], means[:2])
    assert member_targets.tolist() == [0, 0, 1]  # but its last row is nearest B

    # "cluster": S's rows all went to A, then the empty cluster 2 took the farther ceil(23/2) = 12
    # rows of A (the largest, 23 rows), by 1 − cos to A's new centroid.
    labels, info = results["cluster"]
    moved = torch.nonzero(labels == 2).flatten().tolist()
    after_dissolve = truth.clone()
    after_dissolve[40:] = 0
    centroid_a = _reference_member_means(bank, after_dissolve, 3)[0]
    members = [i for i in range(43) if after_dissolve[i] == 0]
    members.sort(key=lambda i: -(1.0 - float(torch.dot(bank[i], centroid_a))))
    assert sorted(moved) == sorted(members[:12])
    assert info["dissolved_clusters"] == 1 and info["dissolved_samples"] == 3 and info["split_clusters"] == 1
    assert (labels[20:40] == 1).all()

    # "members": the last row of S went to B instead, so A has 22 rows and gives 11.
    labels, _ = results["members"]
    assert int((labels == 2).sum()) == 11 and int((labels == 1).sum()) == 21


def test_empty_cluster_split_takes_ceil_half_of_the_largest() -> None:
    features, truth = _blobs([21, 8], dim=4, seed=34)
    memory = _memory_with_state(features, truth, torch.eye(4)[:3])  # cluster 2 empty
    bank = memory.features.clone()
    info = memory.update_centroids(min_cluster_size=1)
    centroid = _reference_member_means(bank, truth, 2)[0]
    members = [i for i in range(29) if truth[i] == 0]
    members.sort(key=lambda i: -(1.0 - float(torch.dot(bank[i], centroid))))
    assert sorted(torch.nonzero(memory.labels == 2).flatten().tolist()) == sorted(members[:11])  # ceil(21/2)
    assert info["split_clusters"] == 1 and info["dissolved_clusters"] == 0
    assert memory.cluster_sizes().tolist() == [10, 8, 11]


def test_update_centroids_rejects_unknown_dissolve_mode() -> None:
    memory = OdcMemory(10, 3, 2)
    memory.initialize(torch.randn(10, 3, generator=torch.Generator().manual_seed(35)))
    with pytest.raises(ValueError, match="dissolve must be one of"):
        memory.update_centroids(2, dissolve="nearest")  # type: ignore[arg-type]


def test_update_without_checks_equals_checked_update() -> None:
    features = torch.randn(50, 4, generator=torch.Generator().manual_seed(36))
    checked, unchecked = OdcMemory(50, 4, 3), OdcMemory(50, 4, 3)
    checked.initialize(features)
    unchecked.initialize(features)
    indices = torch.tensor([3, 9, 9, 40])
    batch = torch.randn(4, 4, generator=torch.Generator().manual_seed(37))
    checked.update(indices, batch)
    unchecked.update(indices, batch, check=False)
    for key, value in checked.state_dict().items():
        assert torch.equal(value, unchecked.state_dict()[key]), key
    assert torch.equal(checked.confident_mask(indices), unchecked.confident_mask(indices, check=False))


def test_memory_class_weights_pass_the_clamp_mode() -> None:
    features, truth = _blobs([400, 1, 100], dim=5)
    memory = _memory_with_state(features, truth, torch.eye(5)[:3])
    sizes = torch.tensor([400, 1, 100])
    from detach_pl.losses import class_balanced_weights

    for clamp in ("raise_small", "cap_large"):
        torch.testing.assert_close(
            memory.class_weights(clamp=clamp),  # type: ignore[arg-type]
            class_balanced_weights(sizes, clamp=clamp),  # type: ignore[arg-type]
        )
    assert not torch.allclose(memory.class_weights(), memory.class_weights(clamp="cap_large"))


def test_per_step_paths_read_no_tensor_value_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """With check=False, the per-step calls never turn a tensor into a Python value (a GPU sync)."""
    from detach_pl.losses import class_balanced_cross_entropy, class_balanced_denominator, masked_cross_entropy

    memory = OdcMemory(64, 5, 3)
    memory.initialize(torch.randn(64, 5, generator=torch.Generator().manual_seed(40)))
    indices = torch.tensor([1, 7, 7, 30, 63])
    z = torch.randn(5, 5, generator=torch.Generator().manual_seed(41), requires_grad=True)

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a tensor value was read on the host")

    for name in ("__bool__", "__int__", "__float__", "__index__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    logits = memory.prototype_logits(z)
    pseudo = memory.labels[indices]
    confident = memory.batch_confident_mask(indices, z.detach(), check=False)
    weights = memory.class_weights()
    loss = class_balanced_cross_entropy(logits, pseudo, weights, confident, check=False)
    denominator = class_balanced_denominator(pseudo, weights, confident)
    video = masked_cross_entropy(logits, pseudo, confident, check=False)
    memory.update(indices, z.detach(), check=False)
    old_rule = memory.confident_mask(indices, check=False)
    monkeypatch.undo()
    assert torch.isfinite(loss) and torch.isfinite(video) and float(denominator) >= 0
    assert confident.dtype == torch.bool and old_rule.dtype == torch.bool
