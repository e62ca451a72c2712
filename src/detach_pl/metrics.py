"""Evaluation metrics: probe metrics (torchmetrics) and cluster quality against known places."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAveragePrecision,
    MulticlassF1Score,
)
from torchmetrics.functional.clustering import normalized_mutual_info_score
from torchmetrics.functional.clustering.utils import calculate_contingency_matrix


def probe_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """The paper's probe metrics: weighted F1 and macro mAP (softmax scores), plus accuracy, macro F1.

    Classes absent from an evaluation set are left out of the macro average precision (their AP is
    undefined) rather than counted as zero.
    """
    return MetricCollection(
        {
            "f1_weighted": MulticlassF1Score(num_classes, average="weighted"),
            "map": MulticlassAveragePrecision(num_classes, average="macro"),
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
    )


def cluster_quality(assigned: Tensor, truth: Tensor) -> tuple[float, float]:
    """Hungarian-matched accuracy and normalised mutual information of a clustering.

    The contingency table and NMI come from torchmetrics (`calculate_contingency_matrix`,
    `normalized_mutual_info_score`, arithmetic-mean normalisation, float32); the one-to-one
    matching from scipy's `linear_sum_assignment`. One convention is ours: one cluster against one
    class (both partitions trivial, hence identical) scores NMI 1.0, as in scikit-learn, where
    torchmetrics returns 0.0.

    Args:
        assigned: (N,) cluster ids.
        truth: (N,) ground-truth ids (e.g. places).

    Returns:
        (accuracy under the best one-to-one cluster→truth mapping, NMI with arithmetic-mean
        normalisation).
    """
    a = assigned.detach().cpu().long().flatten()
    t = truth.detach().cpu().long().flatten()
    if a.numel() == 0:
        raise ValueError("cluster_quality needs at least one sample")
    # An explicit opt-out of sparse checks: torchmetrics builds the table as a sparse tensor, and
    # torch warns when the setting is left implicit.
    with torch.sparse.check_sparse_tensor_invariants(False):
        table = calculate_contingency_matrix(a, t).double().numpy()  # (truth groups, clusters)
        nmi = float(normalized_mutual_info_score(a, t, "arithmetic"))
    rows, cols = linear_sum_assignment(-table)
    accuracy = float(table[rows, cols].sum() / a.numel())
    if table.shape == (1, 1):
        nmi = 1.0
    return accuracy, nmi
