"""Sensor preprocessing against references written from docs/method.md ("Sensor preprocessing")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import signal

from detach_pl.data.cache import RunRecording, WindowCache, build_cache
from detach_pl.data.dataset import WindowDataset
from detach_pl.data.windows import (
    WindowSettings,
    fill_window_nans,
    preprocess_window,
    resample_linear,
    sample_frame_indices,
    standardize_windows,
    window_starts,
)


def reference_window(raw: np.ndarray, time_ms: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The released per-window pipeline, written out step by step with plain loops."""
    x = raw.astype(np.float64).copy()
    rows, channels = x.shape
    for c in range(channels):
        nan = np.isnan(x[:, c])
        if nan.sum() > 0.5 * rows:  # (1) a mostly-NaN channel: its NaNs become 0
            x[nan, c] = 0.0
        elif nan.any():  # the others: linear interpolation in time, edges hold
            x[nan, c] = np.interp(time_ms[nan], time_ms[~nan], x[~nan, c])
    for c in range(channels):  # (2) exact zeros stay zero
        for r in range(rows):
            if x[r, c] != 0.0:
                x[r, c] = (x[r, c] - mean[c]) / std[c]
    b, a = signal.butter(4, 0.1)  # (3) zero-phase low-pass of the window
    x = signal.filtfilt(b, a, x, axis=0)
    resampled = F.interpolate(  # (4) the half-pixel grid of F.interpolate
        torch.from_numpy(np.ascontiguousarray(x.T[None])), size=128, mode="linear", align_corners=False
    )
    return resampled[0].numpy()


def test_half_pixel_resampling_equals_torch_interpolate() -> None:
    rng = np.random.default_rng(0)
    for rows in (1, 2, 59, 60, 61, 128, 300):
        values = rng.normal(size=(rows, 3))
        expected = F.interpolate(torch.from_numpy(values.T[None]), size=128, mode="linear", align_corners=False)[0]
        np.testing.assert_allclose(resample_linear(values, 128), expected.numpy(), rtol=1e-12, atol=1e-12)
    endpoints = resample_linear(np.arange(5.0)[:, None], 9, grid="endpoints")
    np.testing.assert_allclose(endpoints[0], np.linspace(0, 4, 9))


def test_nan_policy_keeps_valid_samples_of_a_mostly_nan_channel() -> None:
    time_ms = np.arange(10) * 33.0
    values = np.ones((10, 3))
    values[:6, 0] = np.nan  # 6 of 10: mostly NaN → NaNs to 0, valid samples kept
    values[[2, 3], 1] = np.nan  # interpolated
    values[:, 2] = np.nan  # all NaN → all 0
    values[7, 1] = 5.0
    filled, mostly = fill_window_nans(values, time_ms, WindowSettings())
    np.testing.assert_array_equal(mostly, [True, False, True])
    np.testing.assert_array_equal(filled[:, 0], [0] * 6 + [1] * 4)
    np.testing.assert_array_equal(filled[:, 1], [1, 1, 1, 1, 1, 1, 1, 5, 1, 1])
    np.testing.assert_array_equal(filled[:, 2], np.zeros(10))
    filled_old, _ = fill_window_nans(values, time_ms, WindowSettings(nan_policy="zero_channel", filter_scope="run"))
    np.testing.assert_array_equal(filled_old[:, 0], np.ones(10))  # interpolated; zeroed later


def hand_made_window(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """60 rows × 4 channels: a reed switch at exact 0 with a pulse, a NaN run, a mostly-NaN channel."""
    time_ms = np.cumsum(rng.uniform(30, 36, size=60))
    values = rng.normal(2.0, 1.5, size=(60, 4))
    values[:, 0] = 0.0
    values[20:30, 0] = 1.0  # reed switch: idle at exactly 0, one opening
    values[10:18, 1] = np.nan
    values[:40, 2] = np.nan  # mostly NaN
    values[[0, 59], 3] = np.nan  # edges
    return values, time_ms


def test_preprocess_window_matches_the_reference_and_keeps_idle_switches_at_zero() -> None:
    rng = np.random.default_rng(1)
    mean, std = np.array([0.3, 2.0, 1.0, -1.0]), np.array([0.5, 1.5, 2.0, 3.0])
    for _ in range(5):
        values, time_ms = hand_made_window(rng)
        window = preprocess_window(values, time_ms, mean, std, WindowSettings())
        np.testing.assert_allclose(window, reference_window(values, time_ms, mean, std), rtol=1e-5, atol=1e-5)
    idle = np.zeros((60, 1))
    out = preprocess_window(idle, np.arange(60) * 33.0, np.array([0.3]), np.array([0.5]), WindowSettings())
    np.testing.assert_array_equal(out, np.zeros((1, 128)))
    plain = preprocess_window(idle, np.arange(60) * 33.0, np.array([0.3]), np.array([0.5]), WindowSettings(), "affine")
    np.testing.assert_allclose(plain, np.full((1, 128), -0.6), rtol=1e-6)


def test_standardize_windows_modes() -> None:
    sensor = np.array([[[0.0, 1.0, 2.0]]])
    zeros = np.array([[[1.0, 0.0, 0.0]]])
    mean, std = np.array([1.0]), np.array([2.0])
    np.testing.assert_allclose(standardize_windows(sensor, zeros, mean, std, "keep_zeros"), [[[0.0, 0.0, 0.5]]])
    np.testing.assert_allclose(standardize_windows(sensor, zeros, mean, std, "affine"), [[[-0.5, 0.0, 0.5]]])
    with pytest.raises(ValueError, match="zero indicators"):
        standardize_windows(sensor, None, mean, std, "keep_zeros")


def test_settings_refuse_run_filtering_with_per_window_nan_zeroing() -> None:
    with pytest.raises(ValueError, match="nan_policy='zero_channel'"):
        WindowSettings(filter_scope="run")
    with pytest.raises(ValueError, match="resample_grid"):
        WindowSettings(resample_grid="cubic")


def test_frame_indices_are_floored() -> None:
    np.testing.assert_array_equal(sample_frame_indices(10, 30, 20), np.floor(np.linspace(10, 29, 20)))
    np.testing.assert_array_equal(sample_frame_indices(0, 7, 4), [0, 2, 4, 6])


def run_with_quirks(rng: np.random.Generator, name: str) -> RunRecording:
    """A 20-s recording at ~30 Hz with idle reed switches, NaN gaps and a dead stretch."""
    rows = 600
    time_ms = np.cumsum(rng.uniform(31, 35, size=rows))
    sensor = rng.normal(1.0, 2.0, size=(rows, 3))
    sensor[:, 0] = 0.0
    sensor[100:160, 0] = 3.0
    sensor[300:400, 1] = np.nan  # mostly-NaN windows
    sensor[50:55, 2] = np.nan
    fps = 10.0
    count = int(time_ms[-1] / 1000 * fps) + 1
    frames = (np.full((8, 8, 3), k % 255, dtype=np.uint8) for k in range(count))
    return RunRecording(
        name, time_ms, sensor, np.full(rows, -1), np.full(rows, -1), frames, fps, num_frames=count
    )


@pytest.mark.parametrize("standardize", ["keep_zeros", "affine"])
def test_cache_windows_equal_the_per_window_pipeline(tmp_path: Path, standardize: str) -> None:
    """The cache's F(x), F(z) decomposition gives the per-window pipeline with training statistics."""
    settings = WindowSettings(image_size=8)
    rng = np.random.default_rng(2)
    runs = [run_with_quirks(rng, "a"), run_with_quirks(rng, "b")]
    originals = {run.name: (run.time_ms, run.sensor.copy()) for run in runs}
    meta = {"channel_names": ["reed", "acc", "acc2"], "class_names": ["x"], "place_names": ["p"]}
    build_cache(tmp_path / "c.h5", iter(runs), settings, meta, progress=False)
    cache = WindowCache(tmp_path / "c.h5")
    mean, std = cache.channel_statistics(["a"])
    dataset = WindowDataset(cache, np.arange(len(cache)), mean, std, num_frames=3, load_video=False,
                            standardize=standardize)
    for position in range(len(cache)):
        time_ms, sensor = originals[cache.run_names[cache.window_run[position]]]
        start = cache.start_ms[position]
        first, last = np.searchsorted(time_ms, [start, start + 2000.0])
        expected = preprocess_window(sensor[first:last], time_ms[first:last], mean, std, settings, standardize)
        np.testing.assert_allclose(dataset.sensor[position].numpy(), expected, rtol=1e-4, atol=1e-4)
    assert len(cache) >= 2 * (len(window_starts(originals['a'][0], settings)) - 1)


def test_butterworth_is_designed_once_and_equals_scipy() -> None:
    """The cached design is scipy's, shared read-only (a caller cannot alter the next caller's filter)."""
    from detach_pl.data.windows import butterworth

    b, a = butterworth(4, 0.1)
    expected_b, expected_a = signal.butter(4, 0.1)
    assert np.array_equal(b, expected_b) and np.array_equal(a, expected_a)
    assert butterworth(4, 0.1)[0] is b
    with pytest.raises(ValueError, match="read-only"):
        b[0] = 0.0
