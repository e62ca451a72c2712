"""Figures for TensorBoard and reports (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

ABSENT = "(absent from test set)"


def confusion_title(matrix: Tensor, title: str | None = None) -> str:
    """Heading of a confusion figure: the caller's title (run, stage) plus accuracy and support."""
    counts = matrix.double()
    total = int(counts.sum())
    accuracy = float(counts.trace() / total) if total else float("nan")
    summary = f"accuracy {accuracy:.3f} over {total} test samples"
    return f"{title}\n{summary}" if title else f"Confusion matrix: {summary}"


def confusion_figure(matrix: Tensor, class_names: Sequence[str], title: str | None = None) -> Figure:
    """Confusion matrix with rows (truth) normalised by their support and the counts written in.

    The colour bar gives the fraction of a true class predicted as each class. A class without
    test samples would be a blank row that reads like "never recognised"; its tick label says
    it is absent instead, and its row is hatched.

    Not torchmetrics' `MulticlassConfusionMatrix.plot()`: it colours and writes one matrix (counts,
    or rates if the metric normalises, losing the counts), has no colour bar, and labels both axes
    alike, so it cannot show row rates with counts, per-row support or absent classes.

    Args:
        matrix: (K, K) counts, rows = true class, columns = predicted class.
        class_names: The K class names.
        title: What the figure shows (e.g. run and stage); accuracy and support are appended.
    """
    counts = matrix.double()
    support = counts.sum(1, keepdim=True)
    rates = counts / support.clamp(min=1)
    absent = (support.squeeze(1) == 0).tolist()
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1.0, size))
    image = axis.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    colour_bar = figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    colour_bar.set_label("fraction of the true class (row)")
    ticks = range(len(class_names))
    row_labels = [f"{name} {ABSENT}" if missing else f"{name} (n={int(n)})"
                  for name, missing, n in zip(class_names, absent, support.squeeze(1).tolist(), strict=True)]
    axis.set_xticks(ticks, class_names, rotation=90)
    axis.set_yticks(ticks, row_labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(confusion_title(matrix, title), fontsize=9)
    for row in ticks:
        if absent[row]:
            axis.axhspan(row - 0.5, row + 0.5, facecolor="none", edgecolor="grey", hatch="//", linewidth=0)
            continue
        for col in ticks:
            if counts[row, col] > 0:
                colour = "white" if rates[row, col] > 0.5 else "black"
                axis.text(col, row, str(int(counts[row, col])), ha="center", va="center", color=colour, fontsize=7)
    figure.tight_layout()
    return figure
