"""Per-cluster statistics of labelled rows for the ODC bank, loop-free and sync-free.

Both run every training step (`detach_pl.clustering.odc.OdcMemory.batch_confident_mask`), so
neither reads a value on the host: no ``bincount`` (which sizes its output from the labels'
maximum), no Python loop over clusters.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cluster_counts", "per_cluster_quantile"]


def cluster_counts(labels: Tensor, num_clusters: int) -> Tensor:
    """(K,) int64 n_k = #{i : y_i = k}, by an integer ``scatter_add_``.

    Not ``torch.bincount``: on CUDA it reads the labels' maximum on the host to size its output (a
    device sync), and this runs every step. Integer atomics are exact, so it stays deterministic.
    """
    counts = torch.zeros(num_clusters, dtype=torch.int64, device=labels.device)
    return counts.scatter_add_(0, labels, torch.ones_like(labels, dtype=torch.int64))


def per_cluster_quantile(distances: Tensor, labels: Tensor, num_clusters: int, quantile: float) -> Tensor:
    """thresholds_k = quantile_q({d_i : y_i = k}) for every k at once; −inf for an empty cluster.

    Loop-free and sync-free: the rows are ordered by (label, distance) with two stable sorts, so
    cluster k's sorted distances occupy positions [s_k, s_k + n_k) with n_k the cluster sizes and
    s_k = Σ_{j<k} n_j. Linear interpolation as ``torch.quantile`` (bit-identical to it): rank
    r_k = q·(n_k − 1) in float64 with q rounded to the distances' dtype, then
    lerp(d_(s_k + ⌊r_k⌋), d_(s_k + ⌈r_k⌉), r_k − ⌊r_k⌋).
    """
    num_rows = distances.shape[0]
    by_distance = torch.sort(distances, stable=True).indices
    order = by_distance[torch.sort(labels[by_distance], stable=True).indices]
    sorted_distances = distances[order]
    counts = cluster_counts(labels, num_clusters)
    starts = torch.cumsum(counts, dim=0) - counts
    q = torch.tensor(quantile, dtype=distances.dtype).double()  # rounded as torch.quantile does; a CPU scalar
    ranks = (counts - 1).clamp(min=0).double() * q
    below = ranks.long()
    above = ranks.ceil().long()
    last_row = max(num_rows - 1, 0)
    low = sorted_distances[(starts + below).clamp(max=last_row)]
    high = sorted_distances[(starts + above).clamp(max=last_row)]
    values = torch.lerp(low, high, (ranks - below).to(distances.dtype))
    return torch.where(counts > 0, values, torch.full_like(values, -float("inf")))
