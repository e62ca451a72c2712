"""Figures for TensorBoard and reports (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402


def confusion_figure(matrix: Tensor, class_names: Sequence[str]) -> Figure:
    """Row-normalised confusion matrix (rows = truth) with the counts written in each cell."""
    counts = matrix.double()
    rates = counts / counts.sum(1, keepdim=True).clamp(min=1)
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=90)
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for row in ticks:
        for col in ticks:
            if counts[row, col] > 0:
                colour = "white" if rates[row, col] > 0.5 else "black"
                axis.text(col, row, int(counts[row, col]), ha="center", va="center", color=colour, fontsize=7)
    figure.tight_layout()
    return figure
