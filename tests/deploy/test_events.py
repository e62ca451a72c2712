"""Window predictions → events: merging, the confidence and duration floors."""

from __future__ import annotations

import numpy as np
import pytest

from detach_pl.deploy.events import label_segments, merge_events, window_spans_s


def probs_of(labels: list[int], confidence: list[float], classes: int = 3) -> np.ndarray:
    """Rows whose top class is `labels[i]` with probability `confidence[i]` (rest spread evenly)."""
    probs = np.zeros((len(labels), classes))
    for row, (label, top) in enumerate(zip(labels, confidence, strict=True)):
        probs[row] = (1.0 - top) / (classes - 1)
        probs[row, label] = top
    return probs


def test_consecutive_windows_merge_without_overlapping_events() -> None:
    start = np.arange(6.0)  # 2-s windows every 1 s
    probs = probs_of([0, 0, 1, 1, 1, 2], [0.9, 0.7, 0.6, 0.8, 0.7, 0.5])
    events = merge_events(start, start + 2.0, probs)
    assert [(e.start_s, e.end_s, e.label, e.windows) for e in events] == [
        (0.0, 2.5, 0, 2), (2.5, 5.5, 1, 3), (5.5, 7.0, 2, 1)]
    assert events[0].confidence == pytest.approx(0.8) and events[1].confidence == pytest.approx(0.7)
    begin, end = window_spans_s(start, start + 2.0)
    np.testing.assert_allclose(begin[1:], end[:-1])  # the windows' spans tile the recording


def test_confidence_and_duration_floors() -> None:
    start = np.arange(7.0)
    probs = probs_of([0, 0, 0, 1, 2, 2, 2], [0.9, 0.4, 0.9, 0.9, 0.8, 0.8, 0.8])
    confident = merge_events(start, start + 2.0, probs, min_confidence=0.5)
    # the unsure window 1 splits class 0 into two events and belongs to none
    assert [(e.label, e.start_s, e.end_s) for e in confident] == [
        (0, 0.0, 1.5), (0, 2.5, 3.5), (1, 3.5, 4.5), (2, 4.5, 8.0)]
    long = merge_events(start, start + 2.0, probs, min_confidence=0.5, min_duration_s=1.5)
    assert [(e.label, e.start_s) for e in long] == [(0, 0.0), (2, 4.5)]
    assert merge_events(start[:0], start[:0], probs[:0]) == []


def test_label_segments_leave_out_null_rows() -> None:
    time_s = np.arange(8) * 0.5
    assert label_segments(time_s, np.array([-1, 2, 2, -1, -1, 0, 0, 0])) == [(0.5, 1.5, 2), (2.5, 3.5, 0)]
