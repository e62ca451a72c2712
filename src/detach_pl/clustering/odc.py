"""Online Deep Clustering (ODC) memory bank for stage 1 of DETACH (docs/method.md, Stage 1).

The bank holds one L2-normalised sensor feature and one pseudo-label per training window, K cluster
centroids and per-cluster confidence thresholds. Every training step updates the bank rows of the
batch (momentum blend, then relabel to the nearest centroid); once per epoch the centroids are
recomputed from their members, small clusters are dissolved and empty clusters are refilled by
splitting the largest one (Zhan et al., "Online Deep Clustering for Unsupervised Representation
Learning", CVPR 2020). Defaults follow the authors' released code (docs/method.md, "ODC details" and
"Confident windows (1b), per step"); the previous readings stay available as named options.

Inside the bank all similarities are cosines of L2-normalised vectors; the distance of a window to a centroid
is ``1 - cos`` (in [0, 2]) or, for the released per-step confidence rule, the Euclidean distance ``||f - c||``
(in [0, 2]); both order points alike on the unit sphere (``||a - b||^2 = 2 (1 - cos)``).

The initial clustering is the project's deterministic k-means (`detach_pl.clustering.kmeans`, which
says why it is hand-written); it runs on rank 0 and is broadcast, so every rank holds the same bank.
The per-cluster statistics behind the thresholds are in `detach_pl.clustering.cluster_stats`.

Per-step methods (:meth:`OdcMemory.update`, :meth:`OdcMemory.batch_confident_mask`,
:meth:`OdcMemory.confident_mask`, :meth:`OdcMemory.class_weights`) take ``check``: with the
default True they validate index ranges and finiteness, which reads values on the host (a device
sync); a training step passes ``check=False`` and stays sync-free. Per-epoch and initialisation paths
may sync.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from detach_pl.clustering.cluster_stats import cluster_counts, per_cluster_quantile
from detach_pl.clustering.kmeans import (
    KMeansMetric,
    check_features_2d,
    kmeans,
    nearest_centroid,
    normalised_member_means,
)
from detach_pl.losses.classification import ClampMode, class_balanced_weights

__all__ = ["DissolveMode", "DistanceMetric", "OdcMemory"]

DissolveMode = Literal["cluster", "members"]
DistanceMetric = Literal["cosine", "euclidean"]

_DISSOLVE_MODES = ("cluster", "members")
_DISTANCE_METRICS = ("cosine", "euclidean")


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
        thresholds: (K,) per-cluster 1 − cos thresholds of the per-epoch confidence rule
            (:meth:`confident_mask`), refreshed by :meth:`refresh_thresholds`.
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
            memory_momentum: m in new = normalize(m·old + (1−m)·current); 0.1 by docs/method.md, Stage 1.
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

    def _check_indices(self, indices: Tensor, operation: str, check: bool = True) -> Tensor:
        """Validate window indices (1-D integer; in [0, N) when checked: a sync), move them to the bank."""
        if indices.dim() != 1 or indices.is_floating_point() or indices.dtype == torch.bool:
            raise ValueError(
                f"OdcMemory.{operation}: indices must be a 1-D integer tensor, got shape "
                f"{tuple(indices.shape)} and dtype {indices.dtype}"
            )
        indices = indices.to(device=self.device, dtype=torch.int64)
        if check and indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_samples):
            raise ValueError(
                f"OdcMemory.{operation}: indices must lie in [0, {self.num_samples}), got range "
                f"[{int(indices.min())}, {int(indices.max())}]"
            )
        return indices

    def _check_batch_features(self, features: Tensor, rows: int | None, operation: str, check: bool = True) -> Tensor:
        """Validate (rows, d) features (finite when checked: a sync); return them detached, float32, on the bank."""
        check_features_2d(features, f"OdcMemory.{operation} features", check_values=check)
        if features.shape[1] != self.dim or (rows is not None and features.shape[0] != rows):
            expected = f"({rows if rows is not None else 'B'}, {self.dim})"
            raise ValueError(
                f"OdcMemory.{operation}: features must have shape {expected}, got {tuple(features.shape)}"
            )
        return features.detach().to(device=self.device, dtype=torch.float32)

    def initialize(
        self,
        features: Tensor,
        seed: int = 0,
        *,
        num_iters: int = 50,
        metric: KMeansMetric = "euclidean",
        num_inits: int = 10,
    ) -> None:
        """Fill the bank from features of the whole training set and cluster them with k-means.

        Bank features are normalize(features). ``metric="euclidean"`` (released code, default):
        ``kmeans`` runs on the raw features; the bank centroids are the normalised k-means centroids
        and the k-means labels are kept as the initial pseudo-labels (they need not be the
        nearest-cosine labels of the normalised centroids). ``metric="cosine"`` (with
        ``num_inits=1``: the previous behaviour): spherical k-means on the normalised bank. The
        thresholds are then recomputed.

        Args:
            features: (N, d) sensor spatial features z_s of all training windows, row i = index i.
            seed: k-means seed (the released code uses 42).
            num_iters: maximum number of Lloyd iterations.
            metric: "euclidean" or "cosine", see `kmeans`.
            num_inits: number of k-means++ initialisations, the lowest-inertia run is kept.
        """
        raw = self._check_batch_features(features, self.num_samples, "initialize")
        bank = F.normalize(raw, dim=1)
        points = raw if metric == "euclidean" else bank
        centroids, labels = kmeans(
            points, self.num_clusters, num_iters=num_iters, seed=seed, metric=metric, num_inits=num_inits
        )
        self.features = bank
        self.centroids = F.normalize(centroids, dim=1) if metric == "euclidean" else centroids
        self.labels = labels
        self.initialized = True
        self.refresh_thresholds()

    def update(self, indices: Tensor, features: Tensor, *, check: bool = True) -> None:
        """Momentum-update the bank rows of a batch, then relabel those rows to the nearest centroid.

        new_i = normalize(m·old_i + (1−m)·normalize(x_i)), y_i = argmax_k cos(new_i, c_k), with
        m = ``memory_momentum`` (0.1: "new = 0.1·old + 0.9·current"). Only the given rows change.
        If an index occurs more than once (DistributedSampler pads with repeated indices), the last
        occurrence wins: every occurrence is computed from the last one's feature, so duplicate
        writes carry identical values and the result does not depend on scatter order. Sync-free
        with ``check=False`` (no ``unique``, whose output size would need the host). Under DDP call
        this with the features and indices gathered from all ranks, in rank order, on every rank.

        Args:
            indices: (B,) window indices in [0, N).
            features: (B, d) current features of those windows (detached here).
            check: validate the index range and finiteness (a device sync).
        """
        self._require_initialized("update")
        indices = self._check_indices(indices, "update", check)
        current = self._check_batch_features(features, indices.shape[0], "update", check)
        if indices.numel() == 0:
            return
        positions = torch.arange(indices.shape[0], device=self.device)
        last_position = torch.full((self.num_samples,), -1, dtype=torch.int64, device=self.device)
        last_position = last_position.scatter_reduce(0, indices, positions, reduce="amax")[indices]
        current = F.normalize(current[last_position], dim=1)
        momentum = self.memory_momentum
        blended = F.normalize(momentum * self.features[indices] + (1.0 - momentum) * current, dim=1)
        self.features[indices] = blended
        self.labels[indices] = nearest_centroid(blended, self.centroids)

    def update_centroids(self, min_cluster_size: int, dissolve: DissolveMode = "cluster") -> dict[str, int]:
        """Once-per-epoch centroid update with small-cluster dissolution and empty-cluster splits.

        1. c_k = normalize(mean of the bank features labelled k) for every non-empty k.
        2. Small clusters are those with |C_k| < ``min_cluster_size``, empty ones included (never
           targets); the targets are the other, non-empty clusters (if every cluster is small, the
           largest one is kept as the only target). Each non-empty small cluster is dissolved:

           - ``dissolve="cluster"`` (released code, default): the whole cluster moves to the target
             whose centroid is most similar (cosine) to its own centroid;
           - ``dissolve="members"`` (the previous behaviour): each member moves to its own nearest
             target centroid.

           Centroids are recomputed.
        3. Each empty cluster (ascending id) takes the farther ceil(n/2) members (by 1 − cos to the
           centroid, stable sort: ties keep the lower window index first) of the currently largest
           cluster (ties: lowest id); both centroids are recomputed.
        4. Thresholds are recomputed.

        Afterwards every window has a label and no cluster is empty (guaranteed because K ≤ N: while
        a cluster is empty the largest holds ≥ 2 windows, so it keeps ≥ 1 after giving ceil(n/2)).
        Labels are otherwise left as they are (ODC relabels only in :meth:`update`).

        Args:
            min_cluster_size: minimum cluster size (100 on Opportunity++, 30 on HWU-USP); ≤ 1
                disables dissolution.
            dissolve: "cluster" or "members", see above.

        Returns:
            ``{"dissolved_clusters", "dissolved_samples", "split_clusters", "min_size", "max_size"}``.
        """
        self._require_initialized("update_centroids")
        if min_cluster_size < 0:
            raise ValueError(f"OdcMemory.update_centroids: min_cluster_size must be >= 0, got {min_cluster_size}")
        if dissolve not in _DISSOLVE_MODES:
            raise ValueError(f"OdcMemory.update_centroids: dissolve must be one of {_DISSOLVE_MODES}, got {dissolve!r}")
        self._recompute_centroids()
        sizes = self.cluster_sizes()
        small = sizes < min_cluster_size
        targets = ~small & (sizes > 0)
        if not bool(targets.any()):
            largest = int(sizes.argmax())
            small[largest] = False
            targets[largest] = True
        dissolving = small & (sizes > 0)
        dissolved_clusters = int(dissolving.sum())
        dissolved_samples = 0
        if dissolved_clusters:
            target_ids = torch.nonzero(targets).flatten()
            if dissolve == "cluster":
                sources = torch.nonzero(dissolving).flatten()
                nearest = nearest_centroid(self.centroids[sources], self.centroids[target_ids])
                mapping = torch.arange(self.num_clusters, device=self.device)
                mapping[sources] = target_ids[nearest]
                self.labels = mapping[self.labels]
                dissolved_samples = int(sizes[sources].sum())
            else:
                members = torch.nonzero(dissolving[self.labels]).flatten()
                nearest = nearest_centroid(self.features[members], self.centroids[target_ids])
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
        means, sizes = normalised_member_means(self.features, self.labels, self.num_clusters)
        self.centroids = torch.where((sizes > 0).unsqueeze(1), means, self.centroids)

    def _split_largest_into(self, empty_cluster: int, sizes: Tensor) -> None:
        """Move the farther ceil(n/2) members of the largest cluster into ``empty_cluster``; updates ``sizes``."""
        largest = int(sizes.argmax())
        members = torch.nonzero(self.labels == largest).flatten()
        distance = 1.0 - self.features[members] @ self.centroids[largest]
        order = torch.sort(distance, descending=True, stable=True).indices
        moved = members[order[: (members.numel() + 1) // 2]]
        self.labels[moved] = empty_cluster
        self._recompute_centroids()
        sizes[largest] -= moved.numel()
        sizes[empty_cluster] = moved.numel()

    def distances(
        self, indices: Tensor | None = None, *, metric: DistanceMetric = "cosine", check: bool = True
    ) -> Tensor:
        """Distance of bank features to their own cluster's centroid.

        ``metric="cosine"``: d_i = 1 − cos(f_i, c_{y_i}); ``metric="euclidean"``:
        d_i = ||f_i − c_{y_i}||₂ (the released per-step confidence rule). Both lie in [0, 2].

        Args:
            indices: (B,) window indices, or None for all N windows.
            metric: "cosine" or "euclidean".
            check: validate the index range (a device sync).

        Returns:
            (B,) or (N,) distances.
        """
        self._require_initialized("distances")
        if metric not in _DISTANCE_METRICS:
            raise ValueError(f"OdcMemory.distances: metric must be one of {_DISTANCE_METRICS}, got {metric!r}")
        if indices is None:
            features, labels = self.features, self.labels
        else:
            indices = self._check_indices(indices, "distances", check)
            features, labels = self.features[indices], self.labels[indices]
        centroids = self.centroids[labels]
        if metric == "euclidean":
            return torch.linalg.vector_norm(features - centroids, dim=1)
        return 1.0 - (features * centroids).sum(dim=1)

    def bank_thresholds(self, metric: DistanceMetric = "euclidean") -> Tensor:
        """(K,) thresholds_k = quantile_q({d_j : y_j = k}) over the current bank, q = confidence_quantile.

        Linear interpolation, bit-identical to ``torch.quantile`` per cluster, but loop-free and
        sync-free (see `per_cluster_quantile`), so it can run every step. An empty cluster gets
        −inf: with no members there is no statistic and nothing in it counts as confident.

        Args:
            metric: distance of :meth:`distances` ("euclidean" for the released per-step rule).
        """
        self._require_initialized("bank_thresholds")
        return per_cluster_quantile(
            self.distances(metric=metric), self.labels, self.num_clusters, self.confidence_quantile
        )

    def refresh_thresholds(self) -> None:
        """thresholds_k = quantile_q({1 − cos(f_j, c_k) : y_j = k}), stored for :meth:`confident_mask`.

        An empty cluster gets −inf, so nothing later relabelled into it counts as confident until the
        next refresh.
        """
        self._require_initialized("refresh_thresholds")
        self.thresholds = self.bank_thresholds("cosine")

    def batch_confident_mask(self, indices: Tensor, features: Tensor, *, check: bool = True) -> Tensor:
        """Confident windows of a batch by the released per-step rule (docs/method.md, confident windows, default).

        m_i = [ ||normalize(x_i) − c_{y_i}||₂ < τ_{y_i} ] (strict), with x_i the window's *current*
        feature (call this before :meth:`update`), y_i the bank's stored label of window
        ``indices_i``, c the current centroids and τ_k the q-quantile (``confidence_quantile``,
        0.75) of the Euclidean distances of the bank rows labelled k to c_k, recomputed from the
        bank at every call (:meth:`bank_thresholds`). A cluster without members gives no confident
        window. Sync-free when ``check=False``.

        Args:
            indices: (B,) window indices.
            features: (B, d) current features z_s of those windows (detached here).
            check: validate the index range and finiteness (a device sync).

        Returns:
            (B,) bool mask on the bank's device.
        """
        self._require_initialized("batch_confident_mask")
        indices = self._check_indices(indices, "batch_confident_mask", check)
        current = F.normalize(
            self._check_batch_features(features, indices.shape[0], "batch_confident_mask", check), dim=1
        )
        labels = self.labels[indices]
        distance = torch.linalg.vector_norm(current - self.centroids[labels], dim=1)
        return distance < self.bank_thresholds("euclidean")[labels]

    def confident_mask(self, indices: Tensor, *, check: bool = True) -> Tensor:
        """Confident windows by the alternative, per-epoch rule: m_i = [d_i ≤ threshold_{y_i}].

        d_i = 1 − cos of the window's *bank* feature to its centroid, thresholds from the last
        :meth:`refresh_thresholds` (once per epoch, in :meth:`update_centroids`). The released code
        uses :meth:`batch_confident_mask` instead.

        Args:
            indices: (B,) window indices.
            check: validate the index range (a device sync).

        Returns:
            (B,) bool mask on the bank's device.
        """
        indices = self._check_indices(indices, "confident_mask", check)
        return self.distances(indices, check=False) <= self.thresholds[self.labels[indices]]

    def cluster_sizes(self) -> Tensor:
        """(K,) int64 number of bank windows per cluster, |C_k|."""
        self._require_initialized("cluster_sizes")
        return cluster_counts(self.labels, self.num_clusters)

    def class_weights(self, power: float = 0.5, max_ratio: float = 10.0, clamp: ClampMode = "raise_small") -> Tensor:
        """Class-balanced weights w_k ∝ 1/|C_k|^power, max/min ≤ max_ratio, Σ_k w_k = K (docs/method.md, Stage 1).

        See `class_balanced_weights` for ``clamp``. Sync-free: the sizes are counts of the labels, so
        they need no value check.
        """
        return class_balanced_weights(self.cluster_sizes(), power=power, max_ratio=max_ratio, clamp=clamp, check=False)

    def prototype_logits(self, z: Tensor, temperature: float = 0.1) -> Tensor:
        """Prototype-head logits cos(z_i, c_k) / T; softmax of these is p(k | z) of docs/method.md, Stage 1.

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
