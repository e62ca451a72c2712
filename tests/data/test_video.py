"""Frames are placed by their presentation times (issue 12, item 6)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from detach_pl.data.cache import RunRecording, WindowCache, build_cache, place_frames
from detach_pl.data.decoding import iter_timed_frames, probe_video
from detach_pl.data.windows import WindowSettings
from detach_pl.testing.video import write_timed_video, write_video

SETTINGS = WindowSettings(image_size=16, sensor_length=16)
META = {"channel_names": ["a", "b"], "class_names": ["x"], "place_names": ["p"]}
VFR_TIMES = [k / 10 for k in range(200)] + [20 + k / 5 for k in range(50)]  # 10 fps, then 5 fps after 20 s


def recording(video: Path, seconds: float, video_offset_ms: float = 0.0) -> RunRecording:
    """A run with 30-Hz sensors over `seconds` and the frames of `video`."""
    rows = int(seconds * 30)
    time_ms = np.arange(rows) * (1000.0 / 30.0)
    sensor = np.random.default_rng(0).normal(size=(rows, 2))
    return RunRecording(
        "run", time_ms, sensor, np.full(rows, -1), np.full(rows, -1),
        iter_timed_frames(video, SETTINGS.image_size), probe_video(video).fps,
        video_offset_ms=video_offset_ms, source=str(video),
    )


def build(tmp_path: Path, run: RunRecording) -> tuple[WindowCache, list]:
    reports = build_cache(tmp_path / "cache.h5", [run], SETTINGS, META, progress=False)
    return WindowCache(tmp_path / "cache.h5"), reports


def assert_windows_aligned(cache: WindowCache, interval_ms: float) -> None:
    """Every window's first and last frames lie within one frame interval of its time span."""
    times = cache.frame_times("run")
    window_ms = SETTINGS.window_seconds * 1000.0
    for start, first, stop in zip(cache.start_ms, cache.frame_start, cache.frame_stop, strict=True):
        assert start - 1e-6 <= times[first] < start + interval_ms
        assert start + window_ms - interval_ms <= times[stop - 1] < start + window_ms


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_variable_frame_rate_frames_follow_their_times(tmp_path: Path, suffix: str) -> None:
    video = tmp_path / f"vfr.{suffix}"
    write_timed_video(video, VFR_TIMES)
    cache, reports = build(tmp_path, recording(video, 30.0))
    np.testing.assert_allclose(cache.frame_times("run"), 1000.0 * np.asarray(VFR_TIMES), atol=1e-6)
    assert_windows_aligned(cache, interval_ms=200.0)
    assert len(cache) == 28  # 1-s hops over 30 s, every window inside the 30-s video
    assert reports[0].video_seconds == pytest.approx(30.0)
    assert not any("cannot be placed" in note for note in reports[0].notes)
    last = len(cache) - 1  # a window in the 5-fps part shows the frames written for its span
    images = cache._file()["runs/run/frames"][cache.frame_start[last] : cache.frame_stop[last]]
    start = cache.start_ms[last]
    expected = [k % 256 for k, t in enumerate(VFR_TIMES) if start <= 1000 * t < start + 2000]
    np.testing.assert_allclose(images.reshape(len(images), -1).mean(axis=1), expected, atol=3)


def test_a_late_stream_start_shifts_the_frames_by_it(tmp_path: Path) -> None:
    video = tmp_path / "late.mp4"
    write_timed_video(video, [1.5 + k / 10 for k in range(120)])
    assert [frame.time_seconds for frame in iter_timed_frames(video, 8)][:3] == pytest.approx([1.5, 1.6, 1.7])
    cache, _ = build(tmp_path, recording(video, 15.0, video_offset_ms=500.0))
    np.testing.assert_allclose(cache.frame_times("run"), 2000.0 + 100.0 * np.arange(120), atol=1e-6)
    assert_windows_aligned(cache, interval_ms=100.0)
    assert cache.start_ms.min() >= 2000.0 - 1e-6


def test_constant_rate_video_keeps_index_times(tmp_path: Path) -> None:
    video = tmp_path / "cfr.avi"
    write_video(video, (np.zeros((16, 16, 3), np.uint8) for _ in range(40)), 10.0)
    times = [frame.time_seconds for frame in iter_timed_frames(video, 8)]
    np.testing.assert_allclose(times, np.arange(40) / 10, atol=1e-9)


def test_frames_after_a_timestamp_gap_are_dropped_and_reported(tmp_path: Path, caplog) -> None:
    video = tmp_path / "gap.mp4"
    write_timed_video(video, [k / 10 for k in range(150)] + [20 + k / 10 for k in range(100)])
    with caplog.at_level(logging.WARNING, logger="detach_pl.data.cache"):
        cache, reports = build(tmp_path, recording(video, 30.0))
    assert cache.start_ms.max() + 2000.0 <= 15000.0 + 1e-6
    assert_windows_aligned(cache, interval_ms=100.0)
    report = reports[0]
    assert report.windows == len(cache) == 14
    assert report.windows_unplaced == 14
    note = next(note for note in report.notes if "cannot be placed" in note)
    assert "jump from 14.900 s to 20.000 s" in note and "14 window(s)" in note
    assert any("cannot be placed" in record.getMessage() for record in caplog.records)


def test_place_frames_stops_at_a_step_back_or_a_missing_timestamp() -> None:
    back = place_frames(np.array([0.0, 100.0, 200.0, 150.0, 300.0]), 10.0)
    assert back.times_ms.tolist() == [0.0, 100.0, 200.0] and "goes back" in back.problem
    assert back.end_ms == pytest.approx(300.0)
    missing = place_frames(np.array([0.0, 100.0, np.nan, 300.0]), 10.0)
    assert missing.times_ms.tolist() == [0.0, 100.0] and "frame 2 has no timestamp" in missing.problem
    untimed = place_frames(np.full(4, np.nan), 10.0, video_offset_ms=50.0)
    assert untimed.problem is None and untimed.times_ms.tolist() == [50.0, 150.0, 250.0, 350.0]
    vfr = place_frames(1000.0 * np.asarray(VFR_TIMES), 8.4)
    assert vfr.problem is None and vfr.times_ms.size == len(VFR_TIMES)
