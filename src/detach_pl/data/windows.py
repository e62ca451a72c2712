"""Windowing and sensor preprocessing shared by every dataset.

`method.md` ("Training settings"): channels more than half NaN → 0; linear interpolation of the
rest; per-channel standardisation with training-set statistics; zero-phase 4th-order Butterworth
low-pass (normalised cutoff 0.1); resampling to 128 samples; 2 s windows with 1 s overlap.

Standardisation is an affine map per channel, and both the zero-phase filter (unit DC gain, odd
padding) and linear resampling commute with affine maps. The cache therefore stores filtered,
resampled but *unstandardised* windows together with per-run channel sums, and standardisation is
applied at read time with statistics of whichever runs form the training split. A changed split
never forces a cache rebuild.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import signal

LabelRule = Literal["majority", "center"]


@dataclass(frozen=True)
class WindowSettings:
    """Everything that shapes the windows stored in a cache (part of the cache key).

    Attributes:
        window_seconds: Window length (method.md: 2 s).
        hop_seconds: Step between window starts (2 s windows with 1 s overlap → 1 s).
        sensor_length: Samples per window after resampling (128).
        lowpass_cutoff: Butterworth cutoff, normalised to Nyquist (0.1).
        lowpass_order: Butterworth order (4; applied forwards and backwards).
        nan_channel_fraction: A channel with more than this fraction of NaN inside a window is
            set to 0 after standardisation (0.5).
        label_rule: "majority": the non-null class covering most rows of the window, if it covers
            at least `min_label_fraction` of them; "center": the class at the window's centre row.
        min_label_fraction: Coverage needed by the "majority" rule.
        image_size: Side of the square frames stored in the cache.
    """

    window_seconds: float = 2.0
    hop_seconds: float = 1.0
    sensor_length: int = 128
    lowpass_cutoff: float = 0.1
    lowpass_order: int = 4
    nan_channel_fraction: float = 0.5
    label_rule: LabelRule = "majority"
    min_label_fraction: float = 0.5
    image_size: int = 224

    def __post_init__(self) -> None:
        checks = {
            "window_seconds": self.window_seconds > 0,
            "hop_seconds": self.hop_seconds > 0,
            "sensor_length": self.sensor_length >= 8,
            "lowpass_cutoff": 0 < self.lowpass_cutoff < 1,
            "lowpass_order": self.lowpass_order >= 1,
            "nan_channel_fraction": 0 <= self.nan_channel_fraction <= 1,
            "label_rule": self.label_rule in ("majority", "center"),
            "min_label_fraction": 0 < self.min_label_fraction <= 1,
            "image_size": self.image_size >= 8,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(
                f"invalid window settings: {values} (expected window/hop > 0, sensor_length >= 8, "
                "0 < lowpass_cutoff < 1, label_rule in {majority, center}, fractions in (0, 1], "
                "image_size >= 8)"
            )

    def to_dict(self) -> dict:
        """Plain dict, for the cache key and the cache's attributes."""
        return asdict(self)


def interpolate_nans(values: np.ndarray, time_ms: np.ndarray) -> np.ndarray:
    """Fill NaNs of each channel by linear interpolation over time (edges hold the nearest value).

    Args:
        values: (rows, C) raw samples, NaN where missing.
        time_ms: (rows,) sample times.

    Returns:
        (rows, C) float64 without NaN; an all-NaN channel becomes 0.
    """
    filled = np.array(values, dtype=np.float64, copy=True)
    missing = np.isnan(filled)
    for channel in np.flatnonzero(missing.any(axis=0)):
        known = ~missing[:, channel]
        if not known.any():
            filled[:, channel] = 0.0
            continue
        filled[~known, channel] = np.interp(
            time_ms[~known], time_ms[known], filled[known, channel]
        )
    return filled


def lowpass(values: np.ndarray, cutoff: float = 0.1, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth low-pass along axis 0 (`scipy.signal.filtfilt`, odd padding).

    Args:
        values: (rows, C) samples without NaN.
        cutoff: Cutoff normalised to Nyquist.
        order: Filter order (applied twice, so the magnitude response is squared).

    Returns:
        (rows, C) filtered samples; runs too short for the filter's padding are returned unchanged.
    """
    b, a = signal.butter(order, cutoff)
    padlen = 3 * max(len(a), len(b))
    if values.shape[0] <= padlen:
        return values
    return signal.filtfilt(b, a, values, axis=0)


def resample_linear(values: np.ndarray, length: int) -> np.ndarray:
    """Linearly resample a (rows, C) window to (C, length)."""
    rows = values.shape[0]
    if rows == 1:
        return np.repeat(values.T, length, axis=1)
    source = np.linspace(0.0, rows - 1.0, length)
    lower = np.floor(source).astype(np.int64)
    upper = np.minimum(lower + 1, rows - 1)
    frac = (source - lower)[:, None]
    resampled = values[lower] * (1.0 - frac) + values[upper] * frac
    return resampled.T


def window_starts(time_ms: np.ndarray, settings: WindowSettings) -> np.ndarray:
    """Start times (ms) of every full window that fits between the first and last sample."""
    window_ms = settings.window_seconds * 1000.0
    hop_ms = settings.hop_seconds * 1000.0
    first, last = float(time_ms[0]), float(time_ms[-1])
    count = int(np.floor((last - first - window_ms) / hop_ms)) + 1
    if count <= 0:
        return np.zeros(0, dtype=np.float64)
    return first + hop_ms * np.arange(count, dtype=np.float64)


def window_label(labels: np.ndarray, settings: WindowSettings) -> int:
    """Label of one window from the per-row labels it spans (−1 = null).

    "majority": the non-null class covering most rows, kept only if it covers at least
    `min_label_fraction` of the window; "center": the class of the centre row.
    """
    if labels.size == 0:
        return -1
    if settings.label_rule == "center":
        return int(labels[labels.size // 2])
    valid = labels[labels >= 0]
    if valid.size == 0:
        return -1
    classes, counts = np.unique(valid, return_counts=True)
    best = int(np.argmax(counts))
    if counts[best] < settings.min_label_fraction * labels.size:
        return -1
    return int(classes[best])


def sample_frame_indices(start: int, stop: int, num_frames: int) -> np.ndarray:
    """`num_frames` frame indices spread uniformly over [start, stop) (repeats if too few)."""
    if stop <= start:
        raise ValueError(f"empty frame range [{start}, {stop})")
    return np.round(np.linspace(start, stop - 1, num_frames)).astype(np.int64)
