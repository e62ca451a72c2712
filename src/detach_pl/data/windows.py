"""Windowing and sensor preprocessing shared by every dataset (docs/method.md, "Sensor preprocessing").

The released code treats every 2-s window on its own: (1) a channel more than half NaN in the
window has its NaNs set to 0 (its valid samples are kept), the other NaNs are interpolated;
(2) standardisation that keeps exact zeros at zero, x' = (x − μ)/σ for x ≠ 0 and 0 for x = 0 (an
idle reed switch stays at rest); (3) a zero-phase 4th-order Butterworth low-pass (cutoff 0.1) of
the window; (4) linear resampling to 128 samples on the half-pixel grid of
``torch.nn.functional.interpolate(mode="linear", align_corners=False)``. `preprocess_window` is
that pipeline for one window, as deployment needs it.

The cache must not depend on which runs form the training split, yet step (2) needs the training
statistics. Steps (3) and (4) are one linear map F per window that keeps constants constant, and
step (2) is x' = (x − μ)/σ + (μ/σ)·z with z the indicator of the exact zeros. Hence
F(x') = (F(x) − μ)/σ + (μ/σ)·F(z): the cache stores F(x) and F(z) of every window and
standardisation is applied at read time (`standardize_windows`) with whichever runs train.

Every reading other than the released one is a setting: `filter_scope: run` (interpolate and
filter each whole run once, which avoids the window edges), `nan_policy: zero_channel` (the
paper's "channels more than half NaN → 0": the whole channel), `resample_grid: endpoints`, and
the read-time `standardize: affine` (plain (x − μ)/σ) of the DataModule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Literal, get_args

import numpy as np
from scipy import signal

from detach_pl.settings import at_least, check_settings, fraction, one_of, positive

LabelRule = Literal["majority", "center"]
FilterScope = Literal["window", "run"]
NanPolicy = Literal["zero_nans", "zero_channel"]
ResampleGrid = Literal["half_pixel", "endpoints"]
Standardize = Literal["keep_zeros", "affine"]

#: Where the window settings live in a config.
SECTION = "data.init_args.windows"


@dataclass(frozen=True)
class WindowSettings:
    """Everything that shapes the windows stored in a cache (part of the cache key).

    Attributes:
        window_seconds: Window length (docs/method.md: 2 s).
        hop_seconds: Step between window starts (2 s windows with 1 s overlap → 1 s).
        sensor_length: Samples per window after resampling (128).
        lowpass_cutoff: Butterworth cutoff, normalised to Nyquist (0.1).
        lowpass_order: Butterworth order (4; applied forwards and backwards).
        nan_channel_fraction: A channel with more than this fraction of NaN inside a window is
            "mostly NaN" (0.5); `nan_policy` says what happens to it.
        nan_policy: "zero_nans" (released): a mostly-NaN channel has its NaNs set to 0 and keeps
            its valid samples; "zero_channel" (paper text): the whole channel is set to 0 after
            standardisation. Other NaNs are interpolated linearly in time in both cases.
        filter_scope: "window" (released): NaN handling and the low-pass run on each window on
            its own; "run": NaNs are interpolated and the low-pass applied once over the whole run
            (no filter edge effects inside windows; needs `nan_policy: zero_channel`).
        resample_grid: "half_pixel" (released, `F.interpolate(align_corners=False)`) or
            "endpoints" (first and last output sample on the first and last input row).
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
    nan_policy: NanPolicy = "zero_nans"
    filter_scope: FilterScope = "window"
    resample_grid: ResampleGrid = "half_pixel"
    label_rule: LabelRule = "majority"
    min_label_fraction: float = 0.5
    image_size: int = 224

    def __post_init__(self) -> None:
        check_settings(
            [
                positive("window_seconds", self.window_seconds),
                positive("hop_seconds", self.hop_seconds),
                at_least("sensor_length", self.sensor_length, 8),
                fraction("lowpass_cutoff", self.lowpass_cutoff, include_zero=False, include_one=False),
                at_least("lowpass_order", self.lowpass_order, 1),
                fraction("nan_channel_fraction", self.nan_channel_fraction),
                one_of("nan_policy", self.nan_policy, get_args(NanPolicy)),
                one_of("filter_scope", self.filter_scope, get_args(FilterScope)),
                one_of("resample_grid", self.resample_grid, get_args(ResampleGrid)),
                one_of("label_rule", self.label_rule, get_args(LabelRule)),
                fraction("min_label_fraction", self.min_label_fraction, include_zero=False),
                at_least("image_size", self.image_size, 8),
            ],
            section=SECTION,
        )
        if self.filter_scope == "run" and self.nan_policy == "zero_nans":
            raise ValueError(
                f"{SECTION}: filter_scope='run' filters each run once, before any "
                "window exists, so it cannot zero a window's NaNs (nan_policy='zero_nans'); use "
                "nan_policy='zero_channel' with it, or filter_scope='window'"
            )

    def to_dict(self) -> dict:
        """Plain dict, for the cache key and the cache's attributes."""
        return asdict(self)


DEFAULT_WINDOWS = WindowSettings()
"""The released code's window shaping: the default of every setting that takes `WindowSettings` (frozen, shared)."""


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


@lru_cache(maxsize=16)
def butterworth(order: int, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """`scipy.signal.butter(order, cutoff)`, designed once per setting (a streaming push filters one window).

    The arrays are read-only: every caller shares them.
    """
    b, a = signal.butter(order, cutoff)
    b.setflags(write=False)
    a.setflags(write=False)
    return b, a


def lowpass(values: np.ndarray, cutoff: float = 0.1, order: int = 4, axis: int = 0) -> np.ndarray:
    """Zero-phase Butterworth low-pass along `axis` (`scipy.signal.filtfilt`, odd padding).

    Args:
        values: Samples without NaN, time along `axis` ((rows, C), or (n, rows, C) with axis 1
            for n windows of one length at once).
        cutoff: Cutoff normalised to Nyquist.
        order: Filter order (applied twice, so the magnitude response is squared).
        axis: The time axis.

    Returns:
        Filtered samples; signals too short for the filter's padding are returned unchanged.
    """
    b, a = butterworth(order, cutoff)
    padlen = 3 * max(len(a), len(b))
    if values.shape[axis] <= padlen:
        return values
    # filtfilt over contiguous 1-D signals is 2-4x faster than over a strided axis (same arithmetic).
    along_last = np.ascontiguousarray(np.moveaxis(values, axis, -1))
    signals = along_last.reshape(-1, along_last.shape[-1])
    # An all-zero signal filters to exact zeros; filtfilt works on each 1-D signal on its own, so
    # filtering only the others gives the same bits (zero indicators of analogue channels are all 0).
    nonzero = signals.any(axis=-1)
    if nonzero.all():
        filtered = signal.filtfilt(b, a, along_last, axis=-1)
    else:
        filtered = np.zeros(along_last.shape, dtype=np.result_type(along_last.dtype, np.float64))
        if nonzero.any():
            filtered.reshape(signals.shape)[nonzero] = signal.filtfilt(b, a, signals[nonzero], axis=-1)
    return np.ascontiguousarray(np.moveaxis(filtered, -1, axis))


def resample_linear(values: np.ndarray, length: int, grid: ResampleGrid = "half_pixel") -> np.ndarray:
    """Linearly resample a (rows, C) window to (C, length), or (n, rows, C) windows of one length to (n, C, length).

    "half_pixel" reads output sample i at input position max((i + ½)·rows/length − ½, 0), the
    grid of ``torch.nn.functional.interpolate(mode="linear", align_corners=False)`` (released
    code); "endpoints" at i·(rows − 1)/(length − 1), so both ends land on the first and last row.
    """
    rows = values.shape[-2]
    if rows == 1:
        return np.repeat(np.swapaxes(values, -1, -2), length, axis=-1)
    if grid == "half_pixel":
        source = np.maximum((np.arange(length) + 0.5) * (rows / length) - 0.5, 0.0)
    else:
        source = np.linspace(0.0, rows - 1.0, length)
    lower = np.minimum(np.floor(source).astype(np.int64), rows - 1)
    upper = np.minimum(lower + 1, rows - 1)
    frac = (source - lower)[:, None]
    resampled = values[..., lower, :] * (1.0 - frac) + values[..., upper, :] * frac
    return np.swapaxes(resampled, -1, -2)


def fill_window_nans(
    values: np.ndarray, time_ms: np.ndarray, settings: WindowSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Step (1) for one window: the NaN policy, then linear interpolation of the other NaNs.

    Args:
        values: (rows, C) raw samples of one window, NaN where missing.
        time_ms: (rows,) their times.
        settings: `nan_channel_fraction` and `nan_policy`.

    Returns:
        (rows, C) float64 samples without NaN, and the (C,) mask of mostly-NaN channels.
    """
    missing = np.isnan(values)
    mostly_nan = missing.mean(axis=0) > settings.nan_channel_fraction
    filled = np.array(values, dtype=np.float64, copy=True)
    if settings.nan_policy == "zero_nans":
        filled[:, mostly_nan] = np.where(missing[:, mostly_nan], 0.0, filled[:, mostly_nan])
    return interpolate_nans(filled, time_ms), mostly_nan


def standardize_windows(
    sensor: np.ndarray,
    zeros: np.ndarray | None,
    mean: np.ndarray,
    std: np.ndarray,
    mode: Standardize = "keep_zeros",
) -> np.ndarray:
    """Step (2) on filtered, resampled windows: F(x') from F(x) and F(z) (module docstring).

    "keep_zeros" (released): (F(x) − μ)/σ + (μ/σ)·F(z), which is F applied to x' = (x − μ)/σ with
    exact zeros kept at 0; "affine": (F(x) − μ)/σ.

    Args:
        sensor: (n, C, L) windows F(x).
        zeros: (n, C, L) F(z) of the zero indicators (needed for "keep_zeros").
        mean: (C,) training-set means μ.
        std: (C,) training-set standard deviations σ (> 0).
        mode: "keep_zeros" or "affine".

    Returns:
        (n, C, L) float32 standardised windows.
    """
    mu, sigma = mean[None, :, None], std[None, :, None]
    standardized = (sensor - mu) / sigma
    if mode == "keep_zeros":
        if zeros is None:
            raise ValueError("standardize='keep_zeros' needs the windows' zero indicators")
        standardized = standardized + (mu / sigma) * zeros
    elif mode != "affine":
        raise ValueError(f"standardize must be 'keep_zeros' or 'affine', got {mode!r}")
    return np.ascontiguousarray(standardized, dtype=np.float32)


def preprocess_window(
    values: np.ndarray,
    time_ms: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    settings: WindowSettings,
    standardize: Standardize = "keep_zeros",
) -> np.ndarray:
    """The released per-window pipeline, steps (1)–(4), on one raw window: (rows, C) → (C, L).

    Used where no cache exists (deployment on a live stream); the cache computes the same
    windows through `standardize_windows` (equal up to float rounding).

    Args:
        values: (rows, C) raw samples of one window, NaN where missing.
        time_ms: (rows,) their times.
        mean: (C,) training-set means.
        std: (C,) training-set standard deviations.
        settings: Window settings (`filter_scope` must be "window").
        standardize: "keep_zeros" (released) or "affine".
    """
    if settings.filter_scope != "window":
        raise ValueError("preprocess_window implements filter_scope='window' only")
    filled, mostly_nan = fill_window_nans(values, time_ms, settings)
    if standardize == "keep_zeros":
        standardized = np.where(filled == 0.0, 0.0, (filled - mean) / std)
    else:
        standardized = (filled - mean) / std
    filtered = lowpass(standardized, settings.lowpass_cutoff, settings.lowpass_order)
    window = resample_linear(filtered, settings.sensor_length, settings.resample_grid)
    if settings.nan_policy == "zero_channel":
        window[mostly_nan] = 0.0
    return window.astype(np.float32)


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
    """`num_frames` frame indices floor(linspace(start, stop − 1, T)) (released; repeats if too few)."""
    if stop <= start:
        raise ValueError(f"empty frame range [{start}, {stop})")
    return np.floor(np.linspace(start, stop - 1, num_frames)).astype(np.int64)
