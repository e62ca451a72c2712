"""Speed changes of the shared window preprocessing give the same bits as the plain computation."""

from __future__ import annotations

import numpy as np
from scipy import signal

from detach_pl.data.cache import signals
from detach_pl.data.windows import DEFAULT_WINDOWS, lowpass, resample_linear


def test_lowpass_skips_all_zero_signals_with_the_same_bits_as_filtering_each_signal() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((5, 40, 6))
    values[1, :, 2] = 0.0
    values[3, :, :] = 0.0
    values[4, :, 0] = np.where(np.arange(40) == 7, 1.0, 0.0)  # one non-zero sample: filtered
    b, a = signal.butter(4, 0.1)
    expected = np.stack([
        np.stack([signal.filtfilt(b, a, values[n, :, c]) for c in range(6)], axis=-1) for n in range(5)
    ])
    got = lowpass(values, 0.1, 4, axis=1)
    assert got.dtype == np.float64 and got.shape == values.shape
    assert got.tobytes() == expected.tobytes()
    assert not np.signbit(got[3]).any()
    assert lowpass(np.zeros((40, 3)), 0.1, 4).tobytes() == np.zeros((40, 3)).tobytes()


def test_filter_and_resample_in_chunks_equals_each_window_on_its_own() -> None:
    rng = np.random.default_rng(1)
    count = signals.FILTER_CHUNK + 7  # more windows than one chunk, two lengths interleaved
    segments = [rng.standard_normal((60 if k % 3 else 61, 4)) for k in range(count)]
    settings = DEFAULT_WINDOWS
    got = signals._filter_and_resample(segments, 4, settings)
    for k, segment in enumerate(segments):
        alone = lowpass(segment, settings.lowpass_cutoff, settings.lowpass_order)
        expected = resample_linear(alone, settings.sensor_length, settings.resample_grid).astype(np.float32)
        assert got[k].tobytes() == expected.tobytes(), k


def test_resample_linear_of_stacked_windows_equals_each_window_on_its_own() -> None:
    rng = np.random.default_rng(2)
    for rows in (1, 5, 60, 200):
        stacked = rng.standard_normal((3, rows, 4))
        for grid in ("half_pixel", "endpoints"):
            got = resample_linear(stacked, 128, grid)
            assert got.shape == (3, 4, 128)
            for n in range(3):
                assert np.ascontiguousarray(got[n]).tobytes() == resample_linear(stacked[n], 128, grid).tobytes()
