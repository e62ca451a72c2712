"""Deterministic k-means for the initial ODC bank (docs/method.md, Stage 1, "Initialisation").

Hand-written, not scikit-learn's, because the bank must be deterministic and identical on every DDP
rank: the random draws come from a CPU ``torch.Generator(seed)`` (so they do not depend on the
device), and every floating-point reduction is a matrix product in a fixed order, never an atomic
add, so a rerun on the same kind of device gives the same bits. Stage 1 clusters on rank 0 and
broadcasts the bank; any rank that reran it would get the same one. It also runs on the features'
device (the accelerator when training on one) without a copy to NumPy, and adds no dependency.

Defaults (released code): Euclidean k-means on the raw features, k-means++ seeding, 10
initialisations, the lowest inertia kept. A run stops when its labels stop changing (a fixed point:
more iterations would change nothing) or after ``num_iters`` (50) Lloyd iterations.

Speed of the Euclidean default (100k × 256, 10 inits, one CPU thread: benchmarks/perf.md): the
runs still moving are iterated together; the distances are the Gram form
||x||² − 2x·c + ||c||² (``addmm`` in float32, on centred features, where it is accurate) in row
chunks that stay in cache; the member sums are kept in float64 and updated from the points that
changed cluster only, so an iteration costs one pass over the points instead of two. The mean,
the squared norms and each run's own distances (inertia, re-seeding) are taken block by block
without an (N, d) temporary: on a CPU the first write of fresh memory costs more than the
arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["KMeansMetric", "check_features_2d", "kmeans", "nearest_centroid", "normalised_member_means"]

KMeansMetric = Literal["euclidean", "cosine"]

_METRICS = ("euclidean", "cosine")
_ROW_CHUNK = 8192  # rows per distance/sum block: 8192 × 256 float32 = 8 MiB
_GATHER_SHARE = 0.5
"""Above this share of rows to rescore, a Lloyd step scores every row in place instead of gathering a
copy of those rows (a copy of most of the points costs more than the extra scores)."""


@contextmanager
def _full_float32_matmuls() -> Iterator[None]:
    """Float32 matmuls at full precision inside (no TF32 / bf16 passes), as the error bounds assume.

    ``torch.set_float32_matmul_precision("high")`` (which a user or a GPU recipe may set) lets
    float32 matmuls round like TF32; the skipped rows of `_DistanceBounds` rely on float32's.
    """
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def check_features_2d(features: Tensor, name: str, check_values: bool = True) -> None:
    """Raise ValueError unless ``features`` is a floating (N, d) tensor (finite when checked: a sync).

    Finite ⟺ min and max are finite (both propagate NaN): two reductions, ~30× faster on CPU than
    ``torch.isfinite(features).all()``, which writes a boolean copy.
    """
    if features.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D (N, d) tensor, got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {features.dtype}")
    if check_values and features.numel() and not bool(torch.isfinite(torch.stack(torch.aminmax(features))).all()):
        raise ValueError(f"{name}: contains NaN or Inf values")


def nearest_centroid(features: Tensor, centroids: Tensor) -> Tensor:
    """Label of the nearest centroid of each row: argmax_k cos(x_i, c_k) (ties: lowest k)."""
    return (features @ centroids.T).argmax(dim=1)


def normalised_member_means(features: Tensor, labels: Tensor, num_clusters: int) -> tuple[Tensor, Tensor]:
    """Normalised mean of the members of each cluster and the cluster sizes.

    c_k = normalize(Σ_{i: y_i = k} x_i). Computed as a one-hot matrix product rather than
    ``index_add_`` because the product is bit-reproducible on GPU (no floating-point atomics), which
    keeps the bank identical across DDP ranks. Empty clusters get a zero row; callers handle them.
    """
    one_hot = F.one_hot(labels, num_clusters).to(features.dtype)
    sums = one_hot.T @ features
    sizes = one_hot.sum(dim=0).to(torch.int64)
    return F.normalize(sums, dim=1), sizes


# ---- spherical k-means (metric="cosine", the earlier behaviour) ---------------------------------


def _kmeans_plus_plus(features: Tensor, num_clusters: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: first centre uniform, then each next one drawn with probability ∝ D(x)^2.

    D(x)^2 = ||x - nearest chosen centre||^2 = 2 (1 - max cos) for unit vectors. The random draws
    use ``generator`` on CPU so that the seeding does not depend on the device of ``features``. If
    every remaining point coincides with a chosen centre (all D = 0), the next centre is drawn
    uniformly.
    """
    num_samples = features.shape[0]
    first = int(torch.randint(num_samples, (1,), generator=generator))
    chosen = [first]
    min_sq_dist = (2.0 - 2.0 * (features @ features[first])).clamp_min(0.0)
    for _ in range(1, num_clusters):
        weights = min_sq_dist.double().cpu()
        if float(weights.sum()) <= 0.0:
            weights = torch.ones(num_samples, dtype=torch.float64)
        nxt = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(nxt)
        sq_dist = (2.0 - 2.0 * (features @ features[nxt])).clamp_min(0.0)
        min_sq_dist = torch.minimum(min_sq_dist, sq_dist)
    return features[chosen].clone()


def _lloyd_centroids(features: Tensor, labels: Tensor, num_clusters: int) -> Tensor:
    """One spherical Lloyd centroid step with empty-cluster re-seeding.

    Non-empty clusters get the normalised mean of their members. Each empty cluster (in ascending
    order) is re-seeded with the point farthest (1 - cos) from its current cluster's centroid; a
    point used for one re-seed is not used again.
    """
    centroids, sizes = normalised_member_means(features, labels, num_clusters)
    empty = torch.nonzero(sizes == 0).flatten().tolist()
    if empty:
        own_distance = 1.0 - (features * centroids[labels]).sum(dim=1)
        for cluster in empty:
            farthest = int(own_distance.argmax())
            centroids[cluster] = features[farthest]
            own_distance[farthest] = -float("inf")
    return centroids


def _spherical_kmeans(
    points: Tensor, num_clusters: int, num_iters: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """One spherical k-means run on unit vectors: k-means++ seeds, then Lloyd until labels settle."""
    centroids = _kmeans_plus_plus(points, num_clusters, generator)
    labels = nearest_centroid(points, centroids)
    for _ in range(num_iters):
        centroids = _lloyd_centroids(points, labels, num_clusters)
        new_labels = nearest_centroid(points, centroids)
        converged = torch.equal(new_labels, labels)
        labels = new_labels
        if converged:
            break
    return centroids, labels


# ---- Euclidean k-means (metric="euclidean", the released default) -------------------------------


def _squared_distances(points: Tensor, point_sq_norms: Tensor, centroids: Tensor) -> Tensor:
    """(N, M) squared Euclidean distances ||x_i||² − 2 x_i·c_m + ||c_m||², computed with one matmul."""
    return point_sq_norms[:, None] - 2.0 * (points @ centroids.T) + centroids.pow(2).sum(dim=1)[None, :]


def _euclidean_seeds(points: Tensor, num_clusters: int, num_inits: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeds of ``num_inits`` independent runs at once, shape (R, K, d).

    Run r draws its first centre uniformly, then each next one with probability ∝ D_r(x)², the
    squared Euclidean distance to run r's nearest chosen centre. Step by step, all runs draw
    together (one ``torch.multinomial`` over R rows of the CPU ``generator``) and one matmul gives
    the distances of every point to the R new centres. A run whose D² is 0 everywhere (every point
    coincides with a chosen centre) draws uniformly.
    """
    num_samples = points.shape[0]
    point_sq_norms = torch.cat([block.pow(2).sum(dim=1) for block in points.split(_ROW_CHUNK)])
    chosen = torch.randint(num_samples, (num_inits,), generator=generator)
    centres = [points[chosen.to(points.device)]]
    min_sq_dist = _squared_distances(points, point_sq_norms, centres[0]).T.clamp_min(0.0)
    rows = torch.arange(num_inits, device=points.device)
    min_sq_dist[rows, chosen.to(points.device)] = 0.0
    for _ in range(1, num_clusters):
        weights = min_sq_dist.double().cpu()
        totals = weights.sum(dim=1, keepdim=True)
        if not bool((totals > 0).all()):  # on the CPU already: no device synchronisation
            weights = torch.where(totals > 0, weights, torch.ones_like(weights))
        chosen = torch.multinomial(weights, 1, generator=generator)[:, 0]
        new_centres = points[chosen.to(points.device)]
        centres.append(new_centres)
        sq_dist = _squared_distances(points, point_sq_norms, new_centres).T.clamp_min(0.0)
        min_sq_dist = torch.minimum(min_sq_dist, sq_dist)
        min_sq_dist[rows, chosen.to(points.device)] = 0.0
    return torch.stack(centres, dim=1).clone()


def _nearest_two(points: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Nearest centroid of every row in every run, with the best and second-best scores.

    argmin_k ||x − c_k||² = argmin_k s_k with the score s_k = ||c_k||² − 2 x·c_k (||x||² is common
    to all k), so the scores of all runs are one fused ``addmm`` of a block of rows with the
    (R·K, d) centroids; the blocks keep the (rows, R·K) scores small.

    Args:
        points: (M, d) rows.
        centroids: (R, K, d) centroids of R runs.

    Returns:
        (R, M) int64 labels (ties: lowest k), and (R, M) float64 best and second-best scores as
        computed (second +inf when K = 1).
    """
    num_runs, num_clusters, dim = centroids.shape
    flat = centroids.reshape(num_runs * num_clusters, dim)
    flat_t = flat.T
    sq_norms = flat.pow(2).sum(dim=1)[None, :]
    labels = torch.empty(num_runs, points.shape[0], dtype=torch.int64, device=points.device)
    best = torch.empty(num_runs, points.shape[0], dtype=torch.float64, device=points.device)
    second = torch.full_like(best, float("inf"))
    for start in range(0, points.shape[0], _ROW_CHUNK):
        stop = start + _ROW_CHUNK
        scores = torch.addmm(sq_norms, points[start:stop], flat_t, alpha=-2.0).view(-1, num_runs, num_clusters)
        labels[:, start:stop] = scores.argmin(dim=2).T
        two = scores.topk(min(2, num_clusters), dim=2, largest=False).values.double()
        best[:, start:stop] = two[:, :, 0].T
        if num_clusters > 1:
            second[:, start:stop] = two[:, :, 1].T
    return labels, best, second


class _DistanceBounds:
    """Hamerly's bounds that let a Lloyd iteration skip the rows whose label cannot change.

    Per run and row: u ≥ ||x − c_y|| (own centroid) and l ≤ min_{k≠y} ||x − c_k||, both true
    for the exact distances. A scoring sets them from the computed scores ŝ, whose rounding error
    is at most E (`error`), so D = ||x||² + s ∈ [||x||² + ŝ − E, ||x||² + ŝ + E]. When centroid k
    moves by δ_k, u grows by δ_y and l shrinks by max_{k≠y} δ_k (triangle inequality). While
    l² − u² > 2E, every computed ŝ_k − ŝ_y ≥ D_k − D_y − 2E > 0: rescoring the row would give
    the same label, so it is skipped and the result equals that of scoring every row.

    E: a float32 dot product of length d errs by at most γ_d ||x|| ||c|| (γ_d ≈ d·2^-24), ||c||²
    and the float32 ||x||² likewise; every centroid is a mean of points or a point, so
    ||c|| ≤ X = max_i ||x_i||: E_i = 2·(d + 3)·2^-24·(X + ||x_i||)², with a factor 2 of safety
    (`kmeans` keeps float32 matmuls at full precision meanwhile: `_full_float32_matmuls`).
    """

    def __init__(self, points: Tensor) -> None:
        """Row norms and error bounds of the (N, d) ``points``."""
        norms = torch.linalg.vector_norm(points, dim=1).double()
        self.sq_norms = norms * norms
        largest = norms.max() * (1.0 + 1e-5)
        self.error = 2.0 * (points.shape[1] + 3) * 2.0**-24 * (largest + norms).pow(2)

    def from_scores(self, best: Tensor, second: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(upper, lower) bounds from (R, M) computed best and second-best scores of ``rows``."""
        sq_norms = self.sq_norms if rows is None else self.sq_norms[rows]
        error = self.error if rows is None else self.error[rows]
        upper = (sq_norms + best + error).clamp_min(0.0).sqrt()
        lower = (sq_norms + second - error).clamp_min(0.0).sqrt()
        return upper, lower

    def stale(self, upper: Tensor, lower: Tensor) -> Tensor:
        """(M,) bool: rows whose label might change (l² − u² ≤ 2E)."""
        return lower * lower - upper * upper <= 2.0 * self.error

    @staticmethod
    def moved(upper: Tensor, lower: Tensor, labels: Tensor, old: Tensor, new: Tensor) -> tuple[Tensor, Tensor]:
        """Bounds of one run's rows after its (K, d) centroids move from ``old`` to ``new``."""
        shift = torch.linalg.vector_norm(new.double() - old.double(), dim=1) * (1.0 + 1e-12)
        if shift.numel() == 1:
            return upper + shift[labels], lower
        top = shift.topk(2).values
        others = torch.where(shift[labels] == top[0], top[1], top[0])
        return upper + shift[labels], (lower - others).clamp_min(0.0)


def _coded_sums(points: Tensor, rows: Tensor | None, plus: Tensor, minus: Tensor | None, num_codes: int) -> Tensor:
    """(num_codes, d) float64 Σ_j (onehot(plus_j) − onehot(minus_j)) ⊗ x_{rows_j}.

    One float32 product of a signed one-hot block with a block of rows at a time (in cache; no
    floating-point atomics, so bit-reproducible on GPU), accumulated in float64.

    Args:
        points: (N, d) points.
        rows: (M,) row of each entry, or None for all N rows in order.
        plus: (M, J) codes that receive +x (J codes per row, all distinct within a row).
        minus: (M, J) codes that receive −x, distinct from ``plus`` in each row, or None.
        num_codes: number of codes (R·K).
    """
    total = torch.zeros(num_codes, points.shape[1], dtype=torch.float64, device=points.device)
    for start in range(0, plus.shape[0], _ROW_CHUNK):
        stop = start + _ROW_CHUNK
        block_rows = points[start:stop] if rows is None else points.index_select(0, rows[start:stop])
        block = torch.zeros(block_rows.shape[0], num_codes, dtype=points.dtype, device=points.device)
        block.scatter_(1, plus[start:stop], 1.0)
        if minus is not None:
            block.scatter_(1, minus[start:stop], -1.0)
        total += (block.T @ block_rows).double()
    return total


def _run_codes(labels: Tensor, num_clusters: int) -> Tensor:
    """(R, N) code r·K + y_{r,i}: run r's cluster k as one column of R·K."""
    return labels + num_clusters * torch.arange(labels.shape[0], device=labels.device)[:, None]


def _member_sums(points: Tensor, labels: Tensor, num_clusters: int) -> Tensor:
    """(R, K, d) float64 Σ_{i: y_{r,i} = k} x_i of every run, one pass over the points."""
    num_runs = labels.shape[0]
    sums = _coded_sums(points, None, _run_codes(labels, num_clusters).T, None, num_runs * num_clusters)
    return sums.view(num_runs, num_clusters, -1)


def _moved_members(points: Tensor, old: Tensor, new: Tensor, num_clusters: int) -> tuple[Tensor, Tensor, Tensor]:
    """Change of the member sums and sizes when labels go from ``old`` to ``new``; which runs moved.

    Only the (run, point) pairs whose label changed contribute: +x and +1 to the new cluster, −x
    and −1 to the old one.

    Returns:
        ((R, K, d) float64 change of the sums, (R, K) int64 change of the sizes, (R,) bool: whether
        any label of the run changed).
    """
    num_runs = old.shape[0]
    num_codes = num_runs * num_clusters
    changed = old != new
    runs, rows = torch.nonzero(changed, as_tuple=True)
    offsets = num_clusters * runs
    plus = offsets + new[runs, rows]
    minus = offsets + old[runs, rows]
    sums = _coded_sums(points, rows, plus[:, None], minus[:, None], num_codes).view(num_runs, num_clusters, -1)
    sizes = torch.bincount(plus, minlength=num_codes) - torch.bincount(minus, minlength=num_codes)
    return sums, sizes.view(num_runs, num_clusters), changed.any(dim=1)


def _run_sizes(labels: Tensor, num_clusters: int) -> Tensor:
    """(R, K) int64 cluster sizes of every run (integer counts: exact, so deterministic)."""
    num_runs = labels.shape[0]
    codes = _run_codes(labels, num_clusters).flatten()
    return torch.bincount(codes, minlength=num_runs * num_clusters).view(num_runs, num_clusters)


def _own_sq_distances(points: Tensor, centroids: Tensor, labels: Tensor, chunk: int = 1024) -> Tensor:
    """(N,) ||x_i − c_{y_i}||² from direct differences (not the matmul expansion).

    Direct differences so that the same centroids and labels always give the same bits, in row
    chunks written into one reused block that stays in cache (no (N, d) temporaries).

    Args:
        points: (N, d) points.
        centroids: (K, d) centroids of one run.
        labels: (N,) label of each point.
        chunk: rows per block.
    """
    distances = torch.empty(points.shape[0], dtype=points.dtype, device=points.device)
    block = torch.empty(min(chunk, points.shape[0]), points.shape[1], dtype=points.dtype, device=points.device)
    for start in range(0, points.shape[0], chunk):
        rows = points[start : start + chunk]
        diff = block[: rows.shape[0]]
        torch.index_select(centroids, 0, labels[start : start + chunk], out=diff)
        torch.sub(rows, diff, out=diff)
        diff.mul_(diff)
        torch.sum(diff, dim=1, out=distances[start : start + chunk])
    return distances


def _centroids_from_sums(points: Tensor, sums: Tensor, sizes: Tensor, labels: Tensor) -> Tensor:
    """Member means c_{r,k} = sums_{r,k} / n_{r,k} of R runs; empty clusters re-seeded.

    Each empty cluster of a run (in ascending order) is re-seeded with the point farthest (squared
    Euclidean) from its own cluster's new centroid in that run; a point used for one re-seed is not
    used again.

    Args:
        points: (N, d) features.
        sums: (R, K, d) float64 member sums of ``labels``.
        sizes: (R, K) int64 member counts of ``labels``.
        labels: (R, N) labels of each run.

    Returns:
        (R, K, d) centroids in the points' dtype.
    """
    centroids = (sums / sizes.clamp(min=1)[:, :, None]).to(points.dtype)
    empty_runs, empty_clusters = torch.nonzero(sizes == 0, as_tuple=True)
    for run in sorted(set(empty_runs.tolist())):
        own_distance = _own_sq_distances(points, centroids[run], labels[run])
        for cluster in empty_clusters[empty_runs == run].tolist():
            farthest = int(own_distance.argmax())
            centroids[run, cluster] = points[farthest]
            own_distance[farthest] = -float("inf")
    return centroids


def _euclidean_lloyd(points: Tensor, seeds: Tensor, num_iters: int) -> tuple[Tensor, Tensor]:
    """Batched Lloyd iterations of R Euclidean k-means runs from (R, K, d) seeds.

    Each run alternates c_k = mean_{y_i = k} x_i (empty clusters re-seeded) and
    y_i = argmin_k ||x_i − c_k||² until its labels stop changing or ``num_iters`` iterations have
    run. A run whose labels settled is a fixed point and is not iterated further, so every run gives
    what it would give alone (up to the rounding of differently shaped matmuls). The returned labels
    are the nearest-centroid labels of the returned centroids.

    Two things make an iteration cheap without changing its result: the member sums are kept in
    float64 and updated from the points that changed cluster only, and only the rows whose label
    could change are rescored (`_DistanceBounds`): gathered, or, when they are most of the rows
    (`_GATHER_SHARE`), scored in place with the rest, whose scores are dropped.

    Returns:
        ((R, K, d) centroids, (R, N) labels).
    """
    num_clusters = seeds.shape[1]
    bounds = _DistanceBounds(points)
    centroids = seeds.clone()
    labels, best, second = _nearest_two(points, centroids)
    upper, lower = bounds.from_scores(best, second)
    sums = _member_sums(points, labels, num_clusters)
    sizes = _run_sizes(labels, num_clusters)
    active = torch.arange(seeds.shape[0], device=points.device)
    for _ in range(num_iters):
        run_labels = labels[active]
        new_centroids = _centroids_from_sums(points, sums[active], sizes[active], run_labels)
        new_labels = run_labels.clone()
        for position, run in enumerate(active.tolist()):
            run_upper, run_lower = bounds.moved(
                upper[run], lower[run], run_labels[position], centroids[run], new_centroids[position]
            )
            stale = torch.nonzero(bounds.stale(run_upper, run_lower)).flatten()
            if stale.numel():
                run_centroids = new_centroids[position : position + 1]
                if stale.numel() > _GATHER_SHARE * points.shape[0]:
                    rescored, best, second = (scores[:, stale] for scores in _nearest_two(points, run_centroids))
                else:
                    rescored, best, second = _nearest_two(points.index_select(0, stale), run_centroids)
                new_labels[position, stale] = rescored[0]
                run_upper[stale], run_lower[stale] = bounds.from_scores(best[0], second[0], stale)
            upper[run], lower[run] = run_upper, run_lower
        sums_change, sizes_change, moved = _moved_members(points, run_labels, new_labels, num_clusters)
        sums[active] += sums_change
        sizes[active] += sizes_change
        centroids[active] = new_centroids
        labels[active] = new_labels
        active = active[moved]
        if active.numel() == 0:
            break
    return centroids, labels


def _euclidean_inertia(points: Tensor, centroids: Tensor, labels: Tensor) -> Tensor:
    """(R,) float64 inertia Σ_i ||x_i − c_{y_i}||² of each run (`_own_sq_distances`, summed in float64).

    Every run is computed the same way, so two runs with the same centroids and labels get exactly
    the same inertia and the tie goes to the lower init index.
    """
    return torch.stack([_own_sq_distances(points, run_centroids, run_labels).double().sum()
                        for run_centroids, run_labels in zip(centroids, labels, strict=True)])


def kmeans(
    features: Tensor,
    num_clusters: int,
    *,
    num_iters: int = 50,
    seed: int = 0,
    metric: KMeansMetric = "euclidean",
    num_inits: int = 10,
) -> tuple[Tensor, Tensor]:
    """k-means with k-means++ seeding and several initialisations, deterministic given ``seed``.

    ``metric="euclidean"`` (released code, default): on the raw features, minimising the inertia
    Σ_i ||x_i − c_{y_i}||². ``num_inits`` runs are seeded by k-means++ and iterated together
    (batched Lloyd: y_i = argmin_k ||x_i − c_k||², c_k = mean_{y_i = k} x_i); the run with the lowest
    inertia is kept (ties: the lowest init index). The runs draw their seeds together, step by step,
    so a run's seeds depend on ``num_inits`` as well as on ``seed``. The features are centred first
    (k-means is translation invariant; it keeps ||x||² − 2x·c + ||c||² accurate) and the mean is
    added back.

    ``metric="cosine"`` (the previous behaviour): spherical k-means on the L2-normalised features,
    y_i = argmax_k cos(x_i, c_k) and c_k = normalize(Σ_{y_i = k} x_i); with several inits the run
    with the lowest Σ_i (1 − cos(x_i, c_{y_i})) is kept. ``num_inits=1`` reproduces the earlier
    single-run results exactly.

    Both stop a run when its labels stop changing or after ``num_iters`` Lloyd iterations, and
    re-seed an empty cluster with the point farthest from its own centroid. The random draws come
    from a CPU ``torch.Generator(seed)``, so the seeding does not depend on the device. The returned
    labels are always the nearest-centroid labels of the returned centroids; the centroids are the
    member means of the labels before the last assignment (the same labels once converged).

    Args:
        features: (N, d) features (raw for "euclidean"; normalised here for "cosine").
        num_clusters: K, 1 ≤ K ≤ N.
        num_iters: maximum number of Lloyd iterations (≥ 1).
        seed: seed of the k-means++ draws.
        metric: "euclidean" or "cosine", see above.
        num_inits: number of k-means++ initialisations (≥ 1).

    Returns:
        (centroids, labels): (K, d) centroids (member means in feature space for "euclidean",
        L2-normalised for "cosine") in the features' dtype, and (N,) int64 labels in [0, K).

    Raises:
        ValueError: features not a finite (N, d) float tensor, K < 1, N < K, num_iters < 1,
            num_inits < 1, or an unknown metric.
    """
    check_features_2d(features, "kmeans features")
    num_samples = features.shape[0]
    if num_clusters < 1:
        raise ValueError(f"kmeans: num_clusters must be >= 1, got {num_clusters}")
    if num_samples < num_clusters:
        raise ValueError(f"kmeans: need at least num_clusters={num_clusters} samples, got N={num_samples}")
    if num_iters < 1:
        raise ValueError(f"kmeans: num_iters must be >= 1, got {num_iters}")
    if num_inits < 1:
        raise ValueError(f"kmeans: num_inits must be >= 1, got {num_inits}")
    if metric not in _METRICS:
        raise ValueError(f"kmeans: metric must be one of {_METRICS}, got {metric!r}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if metric == "cosine":
        points = F.normalize(features.detach(), dim=1)
        runs = [_spherical_kmeans(points, num_clusters, num_iters, generator) for _ in range(num_inits)]
        costs = torch.stack([(1.0 - (points * c[y]).sum(dim=1)).double().sum() for c, y in runs])
        return runs[int(torch.argmin(costs))]
    blocks = features.detach().split(_ROW_CHUNK)  # float64 sums block by block: no float64 copy
    mean = torch.stack([block.sum(dim=0, dtype=torch.float64) for block in blocks]).sum(dim=0) / num_samples
    points = features.detach() - mean.to(features.dtype)
    with _full_float32_matmuls():
        seeds = _euclidean_seeds(points, num_clusters, num_inits, generator)
        centroids, labels = _euclidean_lloyd(points, seeds, num_iters)
    best_run = int(torch.argmin(_euclidean_inertia(points, centroids, labels)))
    return centroids[best_run] + mean.to(features.dtype), labels[best_run].clone()
