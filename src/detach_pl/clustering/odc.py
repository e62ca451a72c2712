"""Online Deep Clustering (ODC) memory bank for stage 1 of DETACH (method.md §1a/1b).

The bank holds one L2-normalised sensor feature and one pseudo-label per training window, K cluster
centroids and per-cluster confidence thresholds. Every training step updates the bank rows of the
batch (momentum blend, then relabel to the nearest centroid); once per epoch the centroids are
recomputed from their members, small clusters are dissolved and empty clusters are refilled by
splitting the largest one (Zhan et al., "Online Deep Clustering for Unsupervised Representation
Learning", CVPR 2020).

All similarities are cosines of L2-normalised vectors; the distance of a window to a centroid is
``1 - cos`` (in [0, 2]), which orders points exactly like the Euclidean distance on the unit sphere
(``||a - b||^2 = 2 (1 - cos)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from detach_pl.losses.classification import class_balanced_weights

__all__ = ["OdcMemory", "kmeans"]


def _check_features_2d(features: Tensor, name: str) -> None:
    """Raise ValueError unless ``features`` is a finite floating (N, d) tensor."""
    if features.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D (N, d) tensor, got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {features.dtype}")
    if not bool(torch.isfinite(features).all()):
        raise ValueError(f"{name}: contains NaN or Inf values")


def _nearest_centroid(features: Tensor, centroids: Tensor) -> Tensor:
    """Label of the nearest centroid of each row: argmax_k cos(x_i, c_k) (ties: lowest k)."""
    return (features @ centroids.T).argmax(dim=1)


def _normalised_member_means(features: Tensor, labels: Tensor, num_clusters: int) -> tuple[Tensor, Tensor]:
    """Normalised mean of the members of each cluster and the cluster sizes.

    c_k = normalize(Σ_{i: y_i = k} x_i). Computed as a one-hot matrix product rather than
    ``index_add_`` because the product is bit-reproducible on GPU (no floating-point atomics), which
    keeps the bank identical across DDP ranks. Empty clusters get a zero row; callers handle them.
    """
    one_hot = F.one_hot(labels, num_clusters).to(features.dtype)
    sums = one_hot.T @ features
    sizes = one_hot.sum(dim=0).to(torch.int64)
    return F.normalize(sums, dim=1), sizes


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
    """One Lloyd centroid step with empty-cluster re-seeding.

    Non-empty clusters get the normalised mean of their members. Each empty cluster (in ascending
    order) is re-seeded with the point farthest (1 - cos) from its current cluster's centroid; a
    point used for one re-seed is not used again.
    """
    centroids, sizes = _normalised_member_means(features, labels, num_clusters)
    empty = torch.nonzero(sizes == 0).flatten().tolist()
    if empty:
        own_distance = 1.0 - (features * centroids[labels]).sum(dim=1)
        for cluster in empty:
            farthest = int(own_distance.argmax())
            centroids[cluster] = features[farthest]
            own_distance[farthest] = -float("inf")
    return centroids


def kmeans(features: Tensor, num_clusters: int, *, num_iters: int = 50, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Spherical k-means on L2-normalised features, deterministic given ``seed``.

    Seeding is k-means++ (random draws from a CPU ``torch.Generator(seed)``), then Lloyd iterations
    alternate y_i = argmax_k cos(x_i, c_k) and c_k = normalize(mean_{y_i = k} x_i) until the labels
    stop changing or ``num_iters`` iterations have run. An empty cluster is re-seeded with the point
    farthest from its centroid. The returned labels are always the nearest-centroid labels of the
    returned centroids.

    Args:
        features: (N, d) features; they are L2-normalised here (a no-op if they already are).
        num_clusters: K, 1 ≤ K ≤ N.
        num_iters: maximum number of Lloyd iterations (≥ 1).
        seed: seed of the k-means++ draws.

    Returns:
        (centroids, labels): (K, d) L2-normalised centroids and (N,) int64 labels in [0, K).

    Raises:
        ValueError: features not a finite (N, d) float tensor, K < 1, N < K, or num_iters < 1.
    """
    _check_features_2d(features, "kmeans features")
    num_samples = features.shape[0]
    if num_clusters < 1:
        raise ValueError(f"kmeans: num_clusters must be >= 1, got {num_clusters}")
    if num_samples < num_clusters:
        raise ValueError(f"kmeans: need at least num_clusters={num_clusters} samples, got N={num_samples}")
    if num_iters < 1:
        raise ValueError(f"kmeans: num_iters must be >= 1, got {num_iters}")
    points = F.normalize(features.detach(), dim=1)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    centroids = _kmeans_plus_plus(points, num_clusters, generator)
    labels = _nearest_centroid(points, centroids)
    for _ in range(num_iters):
        centroids = _lloyd_centroids(points, labels, num_clusters)
        new_labels = _nearest_centroid(points, centroids)
        converged = torch.equal(new_labels, labels)
        labels = new_labels
        if converged:
            break
    return centroids, labels


class OdcMemory:
    """ODC memory bank: per-window features and pseudo-labels, centroids, confidence thresholds.

    This is deliberately a plain Python class, not an ``nn.Module``: DDP broadcasts module buffers
    from rank 0 before each forward, which would overwrite the bank. Instead every rank applies the
    *same* updates (features and indices gathered from all ranks, in the same order), and every
    operation here is deterministic, so the bank stays bit-identical on all ranks. It is saved in
    checkpoints through :meth:`state_dict` / :meth:`load_state_dict` (the LightningModule stores it
    in ``on_save_checkpoint`` / restores it in ``on_load_checkpoint``).

    Attributes:
        features: (N, d) float32 L2-normalised bank features.
        labels: (N,) int64 pseudo-labels in [0, K).
        centroids: (K, d) float32 L2-normalised centroids.
        thresholds: (K,) per-cluster distance thresholds of the confident windows (method.md §1b).
        initialized: whether :meth:`initialize` (or loading an initialised state) has happened.
    """

    def __init__(
        self,
        num_samples: int,
        dim: int,
        num_clusters: int,
        *,
        memory_momentum: float = 0.1,
        confidence_quantile: float = 0.75,
        device: torch.device | str | None = None,
    ) -> None:
        """Allocate an empty (uninitialised) bank.

        Args:
            num_samples: N, number of training windows (the dataset's ``index`` range).
            dim: d, feature size.
            num_clusters: K, number of clusters (places); K ≤ N.
            memory_momentum: m in new = normalize(m·old + (1−m)·current); 0.1 by method.md §1a.
            confidence_quantile: per-cluster distance quantile that marks confident windows (0.75).
            device: device of the bank tensors (CPU by default).
        """
        if num_samples < 1 or dim < 1 or num_clusters < 1:
            raise ValueError(
                f"OdcMemory: num_samples, dim and num_clusters must be >= 1, got "
                f"num_samples={num_samples}, dim={dim}, num_clusters={num_clusters}"
            )
        if num_clusters > num_samples:
            raise ValueError(
                f"OdcMemory: num_clusters={num_clusters} exceeds num_samples={num_samples}; "
                "clusters could not all be non-empty"
            )
        if not 0.0 <= memory_momentum < 1.0:
            raise ValueError(f"OdcMemory: memory_momentum must be in [0, 1), got {memory_momentum}")
        if not 0.0 <= confidence_quantile <= 1.0:
            raise ValueError(f"OdcMemory: confidence_quantile must be in [0, 1], got {confidence_quantile}")
        self.num_samples = num_samples
        self.dim = dim
        self.num_clusters = num_clusters
        self.memory_momentum = memory_momentum
        self.confidence_quantile = confidence_quantile
        device = torch.device("cpu") if device is None else torch.device(device)
        self.features = torch.zeros(num_samples, dim, device=device)
        self.labels = torch.zeros(num_samples, dtype=torch.int64, device=device)
        self.centroids = torch.zeros(num_clusters, dim, device=device)
        self.thresholds = torch.zeros(num_clusters, device=device)
        self.initialized = False

    @property
    def device(self) -> torch.device:
        """Device of the bank tensors."""
        return self.features.device

    def _require_initialized(self, operation: str) -> None:
        if not self.initialized:
            raise RuntimeError(f"OdcMemory.{operation}: the memory is not initialised; call initialize() first")

    def _check_indices(self, indices: Tensor, operation: str) -> Tensor:
        """Validate window indices (1-D integer, in [0, N)) and move them to the bank's device."""
        if indices.dim() != 1 or indices.is_floating_point() or indices.dtype == torch.bool:
            raise ValueError(
                f"OdcMemory.{operation}: indices must be a 1-D integer tensor, got shape "
                f"{tuple(indices.shape)} and dtype {indices.dtype}"
            )
        indices = indices.to(device=self.device, dtype=torch.int64)
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_samples):
            raise ValueError(
                f"OdcMemory.{operation}: indices must lie in [0, {self.num_samples}), got range "
                f"[{int(indices.min())}, {int(indices.max())}]"
            )
        return indices

    def _check_batch_features(self, features: Tensor, rows: int | None, operation: str) -> Tensor:
        """Validate (rows, d) features and return them detached, float32, on the bank's device."""
        _check_features_2d(features, f"OdcMemory.{operation} features")
        if features.shape[1] != self.dim or (rows is not None and features.shape[0] != rows):
            expected = f"({rows if rows is not None else 'B'}, {self.dim})"
            raise ValueError(
                f"OdcMemory.{operation}: features must have shape {expected}, got {tuple(features.shape)}"
            )
        return features.detach().to(device=self.device, dtype=torch.float32)

    def initialize(self, features: Tensor, seed: int = 0, *, num_iters: int = 50) -> None:
        """Fill the bank from features of the whole training set and cluster them with k-means.

        Bank features are normalize(features); centroids and labels come from
        ``kmeans(bank, K, num_iters=num_iters, seed=seed)``; thresholds are then recomputed.

        Args:
            features: (N, d) sensor spatial features z_s of all training windows, row i = index i.
            seed: k-means seed (use the same on every rank).
            num_iters: maximum number of Lloyd iterations.
        """
        bank = F.normalize(self._check_batch_features(features, self.num_samples, "initialize"), dim=1)
        centroids, labels = kmeans(bank, self.num_clusters, num_iters=num_iters, seed=seed)
        self.features = bank
        self.centroids = centroids
        self.labels = labels
        self.initialized = True
        self.refresh_thresholds()

    def update(self, indices: Tensor, features: Tensor) -> None:
        """Momentum-update the bank rows of a batch, then relabel those rows to the nearest centroid.

        new_i = normalize(m·old_i + (1−m)·normalize(x_i)), y_i = argmax_k cos(new_i, c_k), with
        m = ``memory_momentum`` (0.1: "new = 0.1·old + 0.9·current"). Only the given rows change.
        If an index occurs more than once (DistributedSampler pads with repeated indices), the last
        occurrence wins, so the result does not depend on scatter order. Under DDP call this with the
        features and indices gathered from all ranks, in rank order, on every rank.

        Args:
            indices: (B,) window indices in [0, N).
            features: (B, d) current features of those windows (detached here).
        """
        self._require_initialized("update")
        indices = self._check_indices(indices, "update")
        current = self._check_batch_features(features, indices.shape[0], "update")
        if indices.numel() == 0:
            return
        unique_indices, inverse = torch.unique(indices, sorted=True, return_inverse=True)
        positions = torch.arange(indices.shape[0], device=self.device)
        last_position = torch.zeros(unique_indices.shape[0], dtype=torch.int64, device=self.device)
        last_position = last_position.scatter_reduce(0, inverse, positions, reduce="amax", include_self=False)
        current = F.normalize(current[last_position], dim=1)
        momentum = self.memory_momentum
        blended = F.normalize(momentum * self.features[unique_indices] + (1.0 - momentum) * current, dim=1)
        self.features[unique_indices] = blended
        self.labels[unique_indices] = _nearest_centroid(blended, self.centroids)

    def update_centroids(self, min_cluster_size: int) -> dict[str, int]:
        """Once-per-epoch centroid update with small-cluster dissolution and empty-cluster splits.

        1. c_k = normalize(mean of the bank features labelled k) for every non-empty k.
        2. Clusters with 0 < |C_k| < ``min_cluster_size`` are dissolved: their members are relabelled
           to the nearest centroid among the clusters that are neither dissolved nor empty (if every
           non-empty cluster is small, the largest one is kept). Centroids are recomputed.
        3. Each empty cluster (ascending id) takes the farther half, floor(n/2) members by 1 − cos to
           the centroid, of the currently largest cluster (ties: lowest id); both centroids are
           recomputed.
        4. Thresholds are recomputed.

        Afterwards every window has a label and no cluster is empty (guaranteed because K ≤ N).
        Labels are otherwise left as they are (ODC relabels only in :meth:`update`).

        Args:
            min_cluster_size: minimum cluster size (100 on Opportunity++, 30 on HWU-USP); ≤ 1
                disables dissolution.

        Returns:
            ``{"dissolved_clusters", "dissolved_samples", "split_clusters", "min_size", "max_size"}``.
        """
        self._require_initialized("update_centroids")
        if min_cluster_size < 0:
            raise ValueError(f"OdcMemory.update_centroids: min_cluster_size must be >= 0, got {min_cluster_size}")
        self._recompute_centroids()
        sizes = self.cluster_sizes()
        small = (sizes > 0) & (sizes < min_cluster_size)
        targets = (sizes > 0) & ~small
        if bool(small.any()) and not bool(targets.any()):
            largest = int(sizes.argmax())
            small[largest] = False
            targets[largest] = True
        dissolved_clusters = int(small.sum())
        dissolved_samples = 0
        if dissolved_clusters:
            members = torch.nonzero(small[self.labels]).flatten()
            target_ids = torch.nonzero(targets).flatten()
            nearest = _nearest_centroid(self.features[members], self.centroids[target_ids])
            self.labels[members] = target_ids[nearest]
            dissolved_samples = int(members.numel())
            self._recompute_centroids()
            sizes = self.cluster_sizes()
        empty = torch.nonzero(sizes == 0).flatten().tolist()
        for cluster in empty:
            self._split_largest_into(cluster, sizes)
        self.refresh_thresholds()
        sizes = self.cluster_sizes()
        return {
            "dissolved_clusters": dissolved_clusters,
            "dissolved_samples": dissolved_samples,
            "split_clusters": len(empty),
            "min_size": int(sizes.min()),
            "max_size": int(sizes.max()),
        }

    def _recompute_centroids(self) -> None:
        """c_k = normalize(mean of members) for non-empty clusters; empty ones keep their centroid."""
        means, sizes = _normalised_member_means(self.features, self.labels, self.num_clusters)
        self.centroids = torch.where((sizes > 0).unsqueeze(1), means, self.centroids)

    def _split_largest_into(self, empty_cluster: int, sizes: Tensor) -> None:
        """Move the farther half of the largest cluster into ``empty_cluster``; updates ``sizes``."""
        largest = int(sizes.argmax())
        members = torch.nonzero(self.labels == largest).flatten()
        distance = 1.0 - self.features[members] @ self.centroids[largest]
        order = torch.sort(distance, descending=True, stable=True).indices
        moved = members[order[: members.numel() // 2]]
        self.labels[moved] = empty_cluster
        self._recompute_centroids()
        sizes[largest] -= moved.numel()
        sizes[empty_cluster] = moved.numel()

    def distances(self, indices: Tensor | None = None) -> Tensor:
        """Distance of bank features to their own cluster's centroid: d_i = 1 − cos(f_i, c_{y_i}).

        Args:
            indices: (B,) window indices, or None for all N windows.

        Returns:
            (B,) or (N,) distances in [0, 2].
        """
        self._require_initialized("distances")
        if indices is None:
            features, labels = self.features, self.labels
        else:
            indices = self._check_indices(indices, "distances")
            features, labels = self.features[indices], self.labels[indices]
        return 1.0 - (features * self.centroids[labels]).sum(dim=1)

    def refresh_thresholds(self) -> None:
        """thresholds_k = quantile_q({d_i : y_i = k}) (linear interpolation), q = confidence_quantile.

        An empty cluster gets −inf: with no members there is no statistic, so nothing later
        relabelled into it counts as confident until the next refresh.
        """
        self._require_initialized("refresh_thresholds")
        distances = self.distances()
        thresholds = torch.full((self.num_clusters,), -float("inf"), device=self.device)
        for cluster in range(self.num_clusters):
            member_distances = distances[self.labels == cluster]
            if member_distances.numel():
                thresholds[cluster] = torch.quantile(member_distances, self.confidence_quantile)
        self.thresholds = thresholds

    def confident_mask(self, indices: Tensor) -> Tensor:
        """m_i = [d_i ≤ threshold_{y_i}]: the confident windows of method.md §1b.

        Args:
            indices: (B,) window indices.

        Returns:
            (B,) bool mask on the bank's device.
        """
        indices = self._check_indices(indices, "confident_mask")
        return self.distances(indices) <= self.thresholds[self.labels[indices]]

    def cluster_sizes(self) -> Tensor:
        """(K,) int64 number of bank windows per cluster, |C_k|."""
        self._require_initialized("cluster_sizes")
        return torch.bincount(self.labels, minlength=self.num_clusters)

    def class_weights(self, power: float = 0.5, max_ratio: float = 10.0) -> Tensor:
        """Class-balanced weights w_k ∝ 1/|C_k|^power, max/min ≤ max_ratio, Σ_k w_k = K (method.md §1a)."""
        return class_balanced_weights(self.cluster_sizes(), power=power, max_ratio=max_ratio)

    def prototype_logits(self, z: Tensor, temperature: float = 0.1) -> Tensor:
        """Prototype-head logits cos(z_i, c_k) / T; softmax of these is p(k | z) of method.md §1a.

        Gradients flow into ``z``; the centroids are constants.

        Args:
            z: (B, d) features (any float dtype/device; centroids are cast to match).
            temperature: T > 0 (0.1).

        Returns:
            (B, K) logits.
        """
        self._require_initialized("prototype_logits")
        if temperature <= 0:
            raise ValueError(f"OdcMemory.prototype_logits: temperature must be > 0, got {temperature}")
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"OdcMemory.prototype_logits: z must have shape (B, {self.dim}), got {tuple(z.shape)}")
        centroids = self.centroids.detach().to(device=z.device, dtype=z.dtype)
        return F.normalize(z, dim=1) @ centroids.T / temperature

    def state_dict(self) -> dict[str, Tensor]:
        """Copies of the bank tensors plus ``initialized`` as a 0-d bool tensor."""
        return {
            "features": self.features.clone(),
            "labels": self.labels.clone(),
            "centroids": self.centroids.clone(),
            "thresholds": self.thresholds.clone(),
            "initialized": torch.tensor(self.initialized),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore a state from :meth:`state_dict`, validating keys, shapes and label range.

        Raises:
            ValueError: missing/unexpected keys, a tensor of the wrong shape or dtype kind, or labels
                outside [0, K).
        """
        expected_shapes = {
            "features": (self.num_samples, self.dim),
            "labels": (self.num_samples,),
            "centroids": (self.num_clusters, self.dim),
            "thresholds": (self.num_clusters,),
            "initialized": (),
        }
        missing = sorted(set(expected_shapes) - set(state))
        unexpected = sorted(set(state) - set(expected_shapes))
        if missing or unexpected:
            raise ValueError(f"OdcMemory.load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for key, shape in expected_shapes.items():
            if tuple(state[key].shape) != shape:
                raise ValueError(
                    f"OdcMemory.load_state_dict: '{key}' has shape {tuple(state[key].shape)}, expected {shape} "
                    f"(num_samples={self.num_samples}, dim={self.dim}, num_clusters={self.num_clusters})"
                )
        for key in ("features", "centroids", "thresholds"):
            if not state[key].is_floating_point():
                raise ValueError(f"OdcMemory.load_state_dict: '{key}' must be floating point, got {state[key].dtype}")
        labels = state["labels"]
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"OdcMemory.load_state_dict: 'labels' must be an integer tensor, got {labels.dtype}")
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_clusters:
            raise ValueError(
                f"OdcMemory.load_state_dict: 'labels' must lie in [0, {self.num_clusters}), got range "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        device = self.device
        self.features = state["features"].detach().to(device=device, dtype=torch.float32).clone()
        self.labels = labels.detach().to(device=device, dtype=torch.int64).clone()
        self.centroids = state["centroids"].detach().to(device=device, dtype=torch.float32).clone()
        self.thresholds = state["thresholds"].detach().to(device=device, dtype=torch.float32).clone()
        self.initialized = bool(state["initialized"])

    def to(self, device: torch.device | str) -> OdcMemory:
        """Move all bank tensors to ``device`` (in place) and return self."""
        self.features = self.features.to(device)
        self.labels = self.labels.to(device)
        self.centroids = self.centroids.to(device)
        self.thresholds = self.thresholds.to(device)
        return self
