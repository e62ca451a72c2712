"""The probe's test metrics by name, their mean ± std over runs, and Markdown tables of them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

TEST_METRICS: tuple[str, ...] = ("f1_weighted", "map", "accuracy", "f1_macro")
"""The probe's test metrics, logged as `test/<name>` and written to `test_metrics.json`."""

METRIC_LABELS: dict[str, str] = {
    "f1_weighted": "weighted F1",
    "map": "mAP",
    "accuracy": "accuracy",
    "f1_macro": "macro F1",
}
"""How a report heads each metric's column."""


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1) of `values`.

    The sample std is what the paper's "mean ± std over seeds / folds" means. A single value has
    none; 0.0 is returned for it (callers that must show "no spread measured" check the count).

    Raises:
        ValueError: `values` is empty.
    """
    if not values:
        raise ValueError("mean_std of no values")
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """`mean ± std` with `digits` decimals, e.g. `0.612 ± 0.031`."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (no trailing newline).

    Raises:
        ValueError: A row has another number of cells than the header.
    """
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table row {list(row)} has {len(row)} cells, the header {len(header)}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
