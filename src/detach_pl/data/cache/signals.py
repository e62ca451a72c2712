"""The sensor side of a run's windows: cut, NaN-handled, low-passed and resampled (windows.py holds the steps)."""

from __future__ import annotations

import numpy as np

from detach_pl.data.cache.placement import FramePlacement
from detach_pl.data.cache.recording import RunRecording
from detach_pl.data.windows import (
    WindowSettings,
    fill_window_nans,
    interpolate_nans,
    lowpass,
    resample_linear,
    window_label,
    window_starts,
)

#: Segments filtered per `filtfilt` call: the temporaries stay a few MB (reused memory) instead of
#: hundreds of MB of fresh pages; each segment is filtered on its own either way (same bits).
FILTER_CHUNK = 256


def _filter_and_resample(segments: list[np.ndarray], channels: int, settings: WindowSettings) -> np.ndarray:
    """Low-pass each (rows_i, C) segment on its own, then resample it: (n, C, L) float32.

    Segments of equal length are filtered and resampled together, `FILTER_CHUNK` per call (the
    same arithmetic per sample as one segment at a time).
    """
    out = np.zeros((len(segments), channels, settings.sensor_length), dtype=np.float32)
    by_length: dict[int, list[int]] = {}
    for position, segment in enumerate(segments):
        by_length.setdefault(segment.shape[0], []).append(position)
    for same_length in by_length.values():
        for first in range(0, len(same_length), FILTER_CHUNK):
            positions = same_length[first : first + FILTER_CHUNK]
            stacked = np.stack([segments[position] for position in positions])
            filtered = lowpass(stacked, settings.lowpass_cutoff, settings.lowpass_order, axis=1)
            out[positions] = resample_linear(filtered, settings.sensor_length, settings.resample_grid)
    return out


def window_signals(
    run: RunRecording, spans: list[tuple[int, int]], settings: WindowSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F(x), F(z) and the mostly-NaN masks of the windows `spans` (row ranges) of one run.

    F is the low-pass + resampling, x the NaN-handled samples, z the indicator of their exact
    zeros (windows.py explains why both are stored). With `filter_scope: window` each window is
    NaN-handled and filtered on its own (released); with "run" the whole run once.
    """
    missing = np.isnan(run.sensor)
    mostly_nan = np.array(
        [missing[first:last].mean(axis=0) > settings.nan_channel_fraction for first, last in spans],
        dtype=bool,
    ).reshape(len(spans), run.sensor.shape[1])
    if settings.filter_scope == "run":
        filled = interpolate_nans(run.sensor, run.time_ms)
        filtered = lowpass(filled, settings.lowpass_cutoff, settings.lowpass_order)
        zeros = lowpass((filled == 0.0).astype(np.float64), settings.lowpass_cutoff, settings.lowpass_order)
        length, grid = settings.sensor_length, settings.resample_grid
        sensor_rows = [resample_linear(filtered[first:last], length, grid) for first, last in spans]
        zero_rows = [resample_linear(zeros[first:last], length, grid) for first, last in spans]
        shape = (len(spans), run.sensor.shape[1], length)
        return (
            np.asarray(sensor_rows, dtype=np.float32).reshape(shape),
            np.asarray(zero_rows, dtype=np.float32).reshape(shape),
            mostly_nan,
        )
    windows = [
        fill_window_nans(run.sensor[first:last], run.time_ms[first:last], settings)[0]
        for first, last in spans
    ]
    channels = run.sensor.shape[1]
    sensor = _filter_and_resample(windows, channels, settings)
    zero = _filter_and_resample([(window == 0.0).astype(np.float64) for window in windows], channels, settings)
    return sensor, zero, mostly_nan


def prepare_run_windows(
    run: RunRecording, settings: WindowSettings, placement: FramePlacement
) -> tuple[dict[str, np.ndarray], int, int]:
    """Cut, NaN-handle, filter and resample the windows of one run; keep those the video covers.

    A window's frames are the placed frames shown during its time span. Returns the arrays, the
    number of windows outside the video and the number whose frames cannot be placed.
    """
    starts = window_starts(run.time_ms, settings)
    window_ms = settings.window_seconds * 1000.0
    rows: dict[str, list] = {key: [] for key in ("span", "frame_start", "frame_stop", "label", "place", "start_ms")}
    dropped = unplaced = 0
    for start_ms in starts:
        first, last = np.searchsorted(run.time_ms, [start_ms, start_ms + window_ms])
        frames = placement.frame_range(start_ms, start_ms + window_ms)
        if frames is None or last <= first:
            if placement.unplaced(start_ms, start_ms + window_ms):
                unplaced += 1
            else:
                dropped += 1
            continue
        frame_start, frame_stop = frames
        rows["span"].append((int(first), int(last)))
        rows["frame_start"].append(frame_start)
        rows["frame_stop"].append(frame_stop)
        rows["label"].append(window_label(run.row_label[first:last], settings))
        rows["place"].append(window_label(run.row_place[first:last], settings))
        rows["start_ms"].append(start_ms)
    sensor, zeros, dead = window_signals(run, rows.pop("span"), settings)
    arrays = {
        "sensor": sensor,
        "zeros": zeros,
        "dead": dead,
        "frame_start": np.asarray(rows["frame_start"], dtype=np.int32),
        "frame_stop": np.asarray(rows["frame_stop"], dtype=np.int32),
        "label": np.asarray(rows["label"], dtype=np.int64),
        "place": np.asarray(rows["place"], dtype=np.int64),
        "start_ms": np.asarray(rows["start_ms"], dtype=np.float64),
    }
    return arrays, dropped, unplaced


def channel_sums(sensor: np.ndarray) -> np.ndarray:
    """(3, C) count, sum and sum of squares of the non-NaN samples of each channel (float64)."""
    known = ~np.isnan(sensor)
    values = np.where(known, sensor, 0.0).astype(np.float64)
    return np.stack([known.sum(axis=0), values.sum(axis=0), (values**2).sum(axis=0)])
