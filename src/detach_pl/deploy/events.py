"""Window predictions → events, and the timeline figure of one recording."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Event:
    """Consecutive windows of one predicted class.

    Attributes:
        start_s: Start of the event (s, recording clock).
        end_s: End of the event (s).
        label: Class id.
        confidence: Mean probability of `label` over the event's windows.
        windows: How many windows it merges.
    """

    start_s: float
    end_s: float
    label: int
    confidence: float
    windows: int


def window_spans_s(start_s: np.ndarray, end_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-overlapping time each window stands for.

    From the midpoint with the previous window's centre to the midpoint with the next one's (the
    first and last reach their edges).

    Overlapping windows (2 s every 1 s) would otherwise give overlapping events.
    """
    centre = 0.5 * (start_s + end_s)
    middle = 0.5 * (centre[1:] + centre[:-1])
    return np.concatenate([start_s[:1], middle]), np.concatenate([middle, end_s[-1:]])


def merge_events(
    start_s: np.ndarray,
    end_s: np.ndarray,
    probs: np.ndarray,
    min_confidence: float = 0.0,
    min_duration_s: float = 0.0,
) -> list[Event]:
    """Merge consecutive windows of the same predicted class into events.

    A window whose top probability is below `min_confidence` belongs to no event (it splits
    events); events shorter than `min_duration_s` are dropped.

    Args:
        start_s: (n,) window starts, increasing.
        end_s: (n,) window ends.
        probs: (n, K) class probabilities.
        min_confidence: Smallest top probability a window needs.
        min_duration_s: Shortest event kept.
    """
    if probs.shape[0] == 0:
        return []
    label = probs.argmax(1)
    confident = probs.max(1) >= min_confidence
    begin, finish = window_spans_s(np.asarray(start_s, float), np.asarray(end_s, float))
    events: list[Event] = []
    run_start = None
    for i in range(label.size + 1):
        continues = (
            run_start is not None and i < label.size and confident[i] and label[i] == label[run_start]
        )
        if continues:
            continue
        if run_start is not None:
            members = slice(run_start, i)
            event = Event(
                float(begin[run_start]), float(finish[i - 1]), int(label[run_start]),
                float(probs[members, label[run_start]].mean()), i - run_start,
            )
            if event.end_s - event.start_s >= min_duration_s:
                events.append(event)
        run_start = i if i < label.size and confident[i] else None
    return events


def label_segments(time_s: np.ndarray, row_label: np.ndarray) -> list[tuple[float, float, int]]:
    """Ground-truth segments (start s, end s, class) of per-row labels (−1 rows left out)."""
    if row_label.size == 0:
        return []
    changes = np.flatnonzero(np.diff(row_label)) + 1
    starts = np.concatenate([[0], changes])
    stops = np.concatenate([changes, [row_label.size]])
    return [
        (float(time_s[a]), float(time_s[min(b, time_s.size - 1)]), int(row_label[a]))
        for a, b in zip(starts, stops, strict=True)
        if row_label[a] >= 0
    ]


def timeline_figure(
    events: Sequence[Event],
    class_names: Sequence[str],
    truth: Sequence[tuple[float, float, int]] | None,
    title: str,
) -> Figure:
    """Predicted events over time (top row) with the ground-truth labels beneath, coloured by class.

    A bare `Figure` (no pyplot): nothing stays registered after it is saved, and `savefig` renders
    with Agg whatever the session's backend. matplotlib is imported here, when a timeline is drawn.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    colours = colormaps["tab20"](np.linspace(0, 1, max(len(class_names), 1)))
    rows = [("predicted", [(e.start_s, e.end_s, e.label) for e in events])]
    if truth is not None:
        rows.append(("ground truth", list(truth)))
    figure = Figure(figsize=(12, 1.2 + 0.6 * len(rows)))
    axis = figure.subplots()
    for row, (_, segments) in enumerate(rows):
        by_label: dict[int, list[tuple[float, float]]] = {}
        for start, end, label in segments:
            by_label.setdefault(label, []).append((start, max(end - start, 1e-3)))
        for label, spans in by_label.items():  # one call per class: hours of events draw quickly
            axis.broken_barh(spans, (len(rows) - 1 - row, 0.8), facecolors=colours[label])
    axis.set_yticks([len(rows) - 1 - row + 0.4 for row in range(len(rows))], [name for name, _ in rows])
    axis.set_xlabel("time (s)")
    axis.set_title(title)
    shown = sorted({label for _, segments in rows for _, _, label in segments})
    handles = [Rectangle((0, 0), 1, 1, color=colours[label]) for label in shown]
    if handles:
        axis.legend(handles, [class_names[label] for label in shown], loc="upper left",
                    bbox_to_anchor=(1.0, 1.0), fontsize=7)
    figure.tight_layout()
    return figure
