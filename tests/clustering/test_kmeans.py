"""The fast Euclidean k-means (pruned rescoring, incremental float64 sums) against a plain-loop reference."""

from __future__ import annotations

import importlib

import pytest
import torch

from detach_pl.clustering import kmeans
from detach_pl.clustering.kmeans import _euclidean_lloyd, _euclidean_seeds, check_features_2d

# The package's ``kmeans`` is the function; the module is reached through importlib.
kmeans_module = importlib.import_module("detach_pl.clustering.kmeans")


def _reference_lloyd(points: torch.Tensor, seeds: torch.Tensor, num_iters: int) -> tuple[torch.Tensor, list[int]]:
    """One Lloyd run, the straightforward way in float64: nearest centroid by explicit squared
    differences (lowest k on ties), member means cluster by cluster, each empty cluster (ascending)
    re-seeded with the unused point farthest from its own new centroid (lowest index on ties),
    stop when the labels settle or after ``num_iters`` iterations. No Gram form, no skipped rows, no
    running sums."""
    x = points.double()

    def nearest(cents: torch.Tensor) -> torch.Tensor:
        return ((x[:, None, :] - cents[None, :, :]) ** 2).sum(dim=2).argmin(dim=1)

    centroids = seeds.double().clone()
    labels = nearest(centroids)
    for _ in range(num_iters):
        new = torch.zeros_like(centroids)
        empty = []
        for cluster in range(centroids.shape[0]):
            members = labels == cluster
            if members.any():
                new[cluster] = x[members].mean(dim=0)
            else:
                empty.append(cluster)
        own_distance = ((x - new[labels]) ** 2).sum(dim=1)
        for cluster in empty:
            far = int(own_distance.argmax())
            new[cluster] = x[far]
            own_distance[far] = -float("inf")
        centroids = new
        new_labels = nearest(centroids)
        settled = torch.equal(new_labels, labels)
        labels = new_labels
        if settled:
            break
    return centroids, labels.tolist()


def _reference_inertia(points: torch.Tensor, centroids: torch.Tensor, labels: list[int]) -> float:
    """Σ_i ||x_i − c_{y_i}||² in float64."""
    return float(((points.double() - centroids[labels]) ** 2).sum())


def _unstructured(num: int, dim: int, seed: int) -> torch.Tensor:
    """Gaussian points without clusters: Lloyd needs many iterations, many rows sit near boundaries."""
    return 5.0 + torch.randn(num, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("gather_share", [0.0, 0.5, 1.0])  # always in place, the default, always gathered
@pytest.mark.parametrize(("num", "dim", "num_clusters", "seed"), [(400, 3, 6, 0), (600, 8, 9, 1), (300, 16, 12, 2)])
def test_batched_lloyd_equals_plain_loop_reference_per_run(
    num: int, dim: int, num_clusters: int, seed: int, gather_share: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kmeans_module, "_GATHER_SHARE", gather_share)
    points = _unstructured(num, dim, seed)
    points = points - points.double().mean(0).float()
    seeds = _euclidean_seeds(points, num_clusters, 4, torch.Generator().manual_seed(seed))
    centroids, labels = _euclidean_lloyd(points, seeds, 50)
    for run in range(4):
        expected_centroids, expected_labels = _reference_lloyd(points, seeds[run], 50)
        assert labels[run].tolist() == expected_labels
        torch.testing.assert_close(centroids[run].double(), expected_centroids, rtol=0, atol=1e-5)


def test_kmeans_equals_the_reference_and_skips_rows_that_cannot_change(monkeypatch: pytest.MonkeyPatch) -> None:
    points = _unstructured(800, 4, 3)
    rescored_rows: list[int] = []
    nearest_two = kmeans_module._nearest_two

    def counting(rows: torch.Tensor, centroids: torch.Tensor):  # noqa: ANN202
        rescored_rows.append(rows.shape[0])
        return nearest_two(rows, centroids)

    monkeypatch.setattr(kmeans_module, "_nearest_two", counting)
    centroids, labels = kmeans(points, 8, seed=5, num_inits=3, num_iters=50)
    monkeypatch.undo()

    mean = points.double().mean(0).float()
    centred = points - mean
    seeds = _euclidean_seeds(centred, 8, 3, torch.Generator().manual_seed(5))
    runs = [_reference_lloyd(centred, seeds[r], 50) for r in range(3)]
    inertias = [_reference_inertia(centred, c, y) for c, y in runs]
    best = min(range(3), key=lambda r: (inertias[r], r))
    assert labels.tolist() == runs[best][1]
    torch.testing.assert_close(centroids.double(), runs[best][0] + mean.double(), rtol=0, atol=1e-5)
    # The first scoring covers every row of every run; later ones only the rows that could change.
    first, later = rescored_rows[0], rescored_rows[1:]
    assert first == 800 and len(later) >= 10
    assert sum(later) < 0.5 * 800 * len(later)


def test_fast_kmeans_matches_reference_with_empty_clusters_and_duplicates() -> None:
    # Duplicated points and far outliers: empty clusters are re-seeded and the bounds must follow
    # centroids that jump.
    base = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [40.0, 0.0], [0.0, 40.0]])
    points = torch.cat([base, base, base + 0.01])
    seeds = torch.tensor([[[0.0, 0.0], [0.05, 0.0], [-90.0, -90.0], [90.0, 90.0]]])
    centroids, labels = _euclidean_lloyd(points, seeds, 20)
    expected_centroids, expected_labels = _reference_lloyd(points, seeds[0], 20)
    assert labels[0].tolist() == expected_labels
    torch.testing.assert_close(centroids[0].double(), expected_centroids, rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])  # rows per block: a block per row, ragged, even, all
def test_own_distances_and_inertia_equal_plain_differences(chunk: int) -> None:
    points = _unstructured(250, 5, 6)
    centroids = points[:4].clone().repeat(3, 1, 1)  # runs 0, 1, 2 with the same centroids
    labels = torch.randint(4, (250,), generator=torch.Generator().manual_seed(6)).repeat(3, 1)
    labels[2, :10] = (labels[2, :10] + 1) % 4  # run 2 differs
    own = kmeans_module._own_sq_distances(points, centroids[0], labels[0], chunk=chunk)
    assert torch.equal(own, (points - centroids[0][labels[0]]).pow(2).sum(dim=1))  # same bits
    inertia = kmeans_module._euclidean_inertia(points, centroids, labels)
    assert inertia.dtype == torch.float64 and inertia[0] == inertia[1]  # same inputs, same bits: a tie
    for run in range(3):
        expected = _reference_inertia(points, centroids[run].double(), labels[run].tolist())
        assert float(inertia[run]) == pytest.approx(expected, rel=1e-6)
    assert float(inertia[2]) != pytest.approx(float(inertia[0]), rel=1e-6)


def test_seeding_draws_uniformly_once_every_point_is_a_chosen_centre() -> None:
    # Two distinct points, K = 3: after both are chosen D² = 0 everywhere, and torch.multinomial
    # would refuse the all-zero weights; the run draws its third seed uniformly instead.
    points = torch.tensor([[0.0, 0.0], [4.0, 4.0]]).repeat(5, 1)
    seeds = _euclidean_seeds(points, 3, 4, torch.Generator().manual_seed(0))
    assert seeds.shape == (4, 3, 2)
    for run in seeds:
        assert {tuple(row) for row in run[:2].tolist()} == {(0.0, 0.0), (4.0, 4.0)}
    centroids, labels = kmeans(points, 3, seed=0, num_inits=4)
    assert torch.isfinite(centroids).all() and set(labels.tolist()) <= {0, 1, 2}


def test_kmeans_with_one_cluster_is_the_mean() -> None:
    points = _unstructured(50, 3, 4)
    centroids, labels = kmeans(points, 1, seed=0)
    assert labels.tolist() == [0] * 50
    torch.testing.assert_close(centroids[0].double(), points.double().mean(0), rtol=0, atol=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_feature_check_finds_every_non_finite_value(bad: float) -> None:
    features = torch.randn(20, 3)
    features[7, 2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        check_features_2d(features, "features")
    check_features_2d(torch.randn(20, 3), "features")
    check_features_2d(torch.empty(0, 3), "features")
