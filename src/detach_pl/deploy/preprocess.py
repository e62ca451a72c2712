"""Raw sensor rows → the probe's input windows, as the contract says (the training path's maths).

The windows are cut exactly as the cache cuts them (`window_starts`, rows
[searchsorted(start), searchsorted(start + window))), F(x) and F(z) are computed by the cache's
own routine, and standardisation is `standardize_windows` with the contract's statistics: a
cached test run and the same run read from its files give the same model input.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from detach_pl.data.cache import RunRecording, _window_signals
from detach_pl.data.checks import timestamp_problem
from detach_pl.data.contract import PreprocessingContract
from detach_pl.data.windows import standardize_windows, window_label, window_starts

log = logging.getLogger(__name__)

RateMismatch = Literal["resample", "error"]


@dataclass
class RecordingWindows:
    """The preprocessed windows of one recording.

    Attributes:
        start_ms: (n,) window starts on the recording's clock.
        end_ms: (n,) window ends (start + window length).
        sensor: (n, C, L) float32 model input.
        label: (n,) ground-truth class of each window (−1: none or unknown).
        dead: (n, C) channels more than `nan_channel_fraction` NaN in the window.
    """

    start_ms: np.ndarray
    end_ms: np.ndarray
    sensor: np.ndarray
    label: np.ndarray
    dead: np.ndarray


def match_channels(
    names: Sequence[str], sensor: np.ndarray, contract: PreprocessingContract, where: str
) -> np.ndarray:
    """Reorder a recording's columns into the model's channel order.

    Raises:
        ValueError: A channel the model needs is absent (all missing names listed) or a name
            repeats. Extra channels are ignored and named once in a warning.
    """
    names = list(names)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{where}: channel name(s) {repeated} appear more than once")
    missing = [name for name in contract.channel_names if name not in names]
    if missing:
        raise ValueError(
            f"{where}: lacks {len(missing)} of the {len(contract.channel_names)} channels the model "
            f"needs: {missing} (it has {names})"
        )
    extra = [name for name in names if name not in contract.channel_names]
    if extra:
        log.warning("%s: ignoring %d channel(s) the model was not trained on: %s", where, len(extra), extra)
    order = [names.index(name) for name in contract.channel_names]
    return np.ascontiguousarray(sensor[:, order], dtype=np.float64)


def sensor_rate(time_ms: np.ndarray) -> float:
    """Rows per second from the median step between timestamps."""
    return 1000.0 / float(np.median(np.diff(time_ms)))


def resample_rows(time_ms: np.ndarray, sensor: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of every channel onto a uniform clock at `rate_hz` from the first row.

    A NaN sample makes the interpolated samples next to it NaN, so the NaN policy still sees it.
    """
    step = 1000.0 / rate_hz
    count = int(np.floor((time_ms[-1] - time_ms[0]) / step)) + 1
    grid = time_ms[0] + step * np.arange(count)
    right = np.clip(np.searchsorted(time_ms, grid, side="right"), 1, time_ms.size - 1)
    left = right - 1
    weight = ((grid - time_ms[left]) / (time_ms[right] - time_ms[left]))[:, None]
    weight = np.clip(weight, 0.0, 1.0)
    values = sensor[left] * (1.0 - weight) + sensor[right] * weight
    exact = weight[:, 0] == 0.0
    values[exact] = sensor[left[exact]]
    return grid, values


def check_rate(
    time_ms: np.ndarray,
    sensor: np.ndarray,
    contract: PreprocessingContract,
    where: str,
    policy: RateMismatch = "resample",
    tolerance: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Bring a recording to the model's sensor rate (warning), or refuse it (`policy: error`).

    The low-pass cutoff is normalised to the sample rate, so another rate filters differently.
    """
    rate = sensor_rate(time_ms)
    expected = contract.sensor_rate_hz
    if abs(rate - expected) <= tolerance * expected:
        return time_ms, sensor
    if policy == "error":
        raise ValueError(
            f"{where}: sensor rate {rate:.2f} Hz, the model was trained at {expected:.2f} Hz "
            f"(data.init_args.rate_mismatch=error; set it to resample to interpolate onto the model's rate)"
        )
    log.warning(
        "%s: sensor rate %.2f Hz differs from the model's %.2f Hz by more than %.0f%%: resampled "
        "linearly to %.2f Hz",
        where, rate, expected, 100 * tolerance, expected,
    )
    return resample_rows(time_ms, sensor, expected)


def report_dead_channels(dead: np.ndarray, contract: PreprocessingContract, where: str) -> None:
    """Warn about channels that are mostly NaN in some windows (the training NaN policy applies)."""
    if not dead.any():
        return
    counts = dead.sum(axis=0)
    named = [f"{contract.channel_names[c]} ({int(counts[c])} windows)" for c in np.flatnonzero(counts)]
    policy = contract.settings.nan_policy
    what = "their NaNs set to 0, valid samples kept" if policy == "zero_nans" else "set to 0 after standardisation"
    log.warning(
        "%s: channel(s) more than %.0f%% NaN in a window, %s (nan_policy %s, as in training): %s",
        where, 100 * contract.settings.nan_channel_fraction, what, policy, ", ".join(named),
    )


def preprocess_spans(
    time_ms: np.ndarray, sensor: np.ndarray, spans: list[tuple[int, int]], contract: PreprocessingContract
) -> tuple[np.ndarray, np.ndarray]:
    """Model input (n, C, L) and dead masks (n, C) of the row ranges `spans` of one recording.

    `sensor` is (rows, C) in the contract's channel order. F(x), F(z) come from the cache's routine
    and are standardised by `standardize_windows`, as `WindowDataset` does at read time.
    """
    settings = contract.settings
    channels = len(contract.channel_names)
    if not spans:
        return np.zeros((0, channels, settings.sensor_length), np.float32), np.zeros((0, channels), bool)
    rows = time_ms.shape[0]
    run = RunRecording(
        name="deploy", time_ms=time_ms, sensor=sensor, row_label=np.full(rows, -1),
        row_place=np.full(rows, -1), frames=(), fps=1.0,
    )
    raw, zeros, dead = _window_signals(run, spans, settings)
    windows = standardize_windows(raw, zeros, contract.mean_array, contract.std_array, contract.standardize)
    if settings.nan_policy == "zero_channel":
        windows[dead] = 0.0
    return windows, dead


def window_spans(time_ms: np.ndarray, contract: PreprocessingContract) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Window starts (ms) and their row ranges, as the cache cuts them (empty windows dropped)."""
    settings = contract.settings
    window_ms = settings.window_seconds * 1000.0
    starts = window_starts(time_ms, settings)
    kept, spans = [], []
    for start in starts:
        first, last = np.searchsorted(time_ms, [start, start + window_ms])
        if last > first:
            kept.append(start)
            spans.append((int(first), int(last)))
    return np.asarray(kept, dtype=np.float64), spans


def recording_windows(
    time_ms: np.ndarray,
    sensor: np.ndarray,
    contract: PreprocessingContract,
    where: str,
    row_label: np.ndarray | None = None,
) -> RecordingWindows:
    """Every full window of one recording (rows already in the model's channel order and rate).

    Raises:
        ValueError: The recording is shorter than one window.
    """
    settings = contract.settings
    starts, spans = window_spans(time_ms, contract)
    if not spans:
        seconds = (time_ms[-1] - time_ms[0]) / 1000.0 if time_ms.size else 0.0
        raise ValueError(
            f"{where}: {seconds:.2f} s of sensor rows ({time_ms.size} rows) is shorter than one "
            f"{settings.window_seconds:g}-s window: nothing to predict"
        )
    windows, dead = preprocess_spans(time_ms, sensor, spans, contract)
    report_dead_channels(dead, contract, where)
    if row_label is None:
        labels = np.full(len(spans), -1, dtype=np.int64)
    else:
        labels = np.asarray([window_label(row_label[first:last], settings) for first, last in spans], np.int64)
    return RecordingWindows(starts, starts + settings.window_seconds * 1000.0, windows, labels, dead)


def check_rows(time_ms: np.ndarray, sensor: np.ndarray, where: str) -> None:
    """Raise unless the timestamps are finite and strictly increasing and the matrix fits them."""
    if sensor.ndim != 2 or sensor.shape[0] != time_ms.shape[0]:
        raise ValueError(f"{where}: {time_ms.shape[0]} timestamps but sensor rows of shape {sensor.shape}")
    if time_ms.size < 2:
        raise ValueError(f"{where}: {time_ms.size} sensor row(s); a window needs at least 2")
    problem = timestamp_problem(time_ms)
    if problem is not None:
        raise ValueError(f"{where}: row {problem[0] + 1}: the timestamp {problem[1]}")
