"""The confusion-matrix figure: title, colour bar, per-row normalisation, absent classes named."""

from __future__ import annotations

import torch

from detach_pl.plots import ABSENT, confusion_figure


def test_confusion_figure_has_title_colour_bar_and_names_absent_classes() -> None:
    matrix = torch.tensor([[8, 2, 0], [0, 0, 0], [1, 0, 3]])
    figure = confusion_figure(matrix, ["open", "close", "idle"], title="runs/demo/probe")
    axis, colour_bar = figure.axes
    assert "runs/demo/probe" in axis.get_title() and "accuracy 0.786 over 14" in axis.get_title()
    assert colour_bar.get_ylabel() == "fraction of the true class (row)"
    rows = [label.get_text() for label in axis.get_yticklabels()]
    assert rows == ["open (n=10)", f"close {ABSENT}", "idle (n=4)"]
    shown = axis.images[0].get_array()
    assert abs(float(shown[0, 0]) - 0.8) < 1e-9 and abs(float(shown[2, 2]) - 0.75) < 1e-9
    assert {text.get_text() for text in axis.texts} == {"8", "2", "1", "3"}


def test_confusion_figure_without_a_title_still_says_what_it_shows() -> None:
    axis = confusion_figure(torch.eye(2, dtype=torch.int64) * 5, ["a", "b"]).axes[0]
    assert axis.get_title() == "Confusion matrix: accuracy 1.000 over 10 test samples"
