"""Evaluation metrics: probe metrics (torchmetrics) and cluster quality against known places."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAveragePrecision,
    MulticlassF1Score,
)


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

    Args:
        assigned: (N,) cluster ids.
        truth: (N,) ground-truth ids (e.g. places).

    Returns:
        (accuracy under the best one-to-one cluster→truth mapping, NMI with arithmetic-mean
        normalisation).
    """
    a = assigned.detach().cpu().numpy().astype(np.int64)
    t = truth.detach().cpu().numpy().astype(np.int64)
    if a.size == 0:
        raise ValueError("cluster_quality needs at least one sample")
    _, a = np.unique(a, return_inverse=True)
    _, t = np.unique(t, return_inverse=True)
    table = np.zeros((a.max() + 1, t.max() + 1), dtype=np.float64)
    np.add.at(table, (a, t), 1.0)
    rows, cols = linear_sum_assignment(-table)
    accuracy = float(table[rows, cols].sum() / a.size)
    joint = table / a.size
    pa, pt = joint.sum(1), joint.sum(0)
    nonzero = joint > 0
    mutual = float((joint[nonzero] * np.log(joint[nonzero] / np.outer(pa, pt)[nonzero])).sum())
    entropy_a = float(-(pa[pa > 0] * np.log(pa[pa > 0])).sum())
    entropy_t = float(-(pt[pt > 0] * np.log(pt[pt > 0])).sum())
    denominator = 0.5 * (entropy_a + entropy_t)
    nmi = 1.0 if denominator == 0 else mutual / denominator
    return accuracy, nmi
