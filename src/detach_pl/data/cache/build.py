"""Writing a cache: once, atomically, under a lock, run by run (the layout is in the package docstring)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from detach_pl.data.cache.frames import DEFAULT_FRAME_STORAGE, FrameStorage, write_frames
from detach_pl.data.cache.locking import build_lock, remove_stale_temporaries, sigterm_as_interrupt, temporary_path
from detach_pl.data.cache.placement import FramePlacement, place_frames
from detach_pl.data.cache.recording import RunRecording, RunReport, validate_recording
from detach_pl.data.cache.signals import channel_sums, prepare_run_windows
from detach_pl.data.windows import WindowSettings

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 3


def cache_key(parts: dict[str, Any]) -> str:
    """Short stable hash of everything that shapes a cache (settings, channels, source)."""
    text = json.dumps({"format_version": CACHE_FORMAT_VERSION, **parts}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def stored_reports(path: Path) -> list[RunReport]:
    """The run reports saved in a finished cache (empty for a file without them)."""
    with h5py.File(path, "r") as h5:
        text = h5.attrs.get("reports")
    return [RunReport(**report) for report in json.loads(text)] if text is not None else []


def build_cache(
    path: str | Path,
    runs: Iterable[RunRecording],
    settings: WindowSettings,
    meta: dict[str, Any],
    *,
    num_runs: int | None = None,
    progress: bool = True,
    frame_storage: FrameStorage = DEFAULT_FRAME_STORAGE,
) -> list[RunReport]:
    """Write a complete window cache at `path`, atomically and once.

    Under the lock beside the cache (see the package docstring): stale temporaries of dead
    builders are removed first; if another process finished the cache meanwhile, it is reused
    and `runs` is not read.

    Args:
        path: Final location of the cache.
        runs: Recordings, produced lazily (one run in memory at a time).
        settings: Window settings (stored in the file).
        meta: Must hold `channel_names`, `class_names`, `place_names`; anything else JSON-able is
            stored too (dataset name, sequence class names, …).
        num_runs: Number of runs, for the progress bar.
        progress: Show progress bars.
        frame_storage: How frames are stored (raw uint8 or JPEG; `frames.FrameStorage`).

    Returns:
        One report per run (durations, windows kept and dropped).

    Raises:
        CacheBuildInterrupted: SIGTERM arrived during the build (the temporary is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for key in ("channel_names", "class_names", "place_names"):
        if key not in meta:
            raise ValueError(f"cache meta lacks {key!r}")
    with build_lock(path):
        remove_stale_temporaries(path)
        if path.is_file():
            log.info("window cache %s was built by another process: reusing it", path)
            return stored_reports(path)
        tmp = temporary_path(path)
        try:
            with sigterm_as_interrupt(f"building the window cache {path}") as raise_if_interrupted:
                reports = _write_cache(
                    tmp, path.name, runs, settings, meta, frame_storage, num_runs, progress, raise_if_interrupted
                )
                raise_if_interrupted()
                os.replace(tmp, path)
        except KeyboardInterrupt as interrupt:
            log.error("%s: the partial cache %s was removed; run again to build it", interrupt, tmp.name)
            raise
        finally:
            if tmp.exists():
                tmp.unlink()
    return reports


def _write_cache(
    tmp: Path,
    title: str,
    runs: Iterable[RunRecording],
    settings: WindowSettings,
    meta: dict[str, Any],
    frame_storage: FrameStorage,
    num_runs: int | None,
    progress: bool,
    raise_if_interrupted: Callable[[], None],
) -> list[RunReport]:
    """Write every run into the HDF5 file `tmp` (the body of `build_cache`).

    `raise_if_interrupted` is called before each run is read (see `sigterm_as_interrupt`).
    """
    num_channels = len(meta["channel_names"])
    reports: list[RunReport] = []
    with h5py.File(tmp, "w") as h5:
        h5.attrs["format_version"] = CACHE_FORMAT_VERSION
        h5.attrs["settings"] = json.dumps(settings.to_dict())
        h5.attrs["meta"] = json.dumps(meta)
        if frame_storage.codec != "raw":  # raw caches stay byte-for-byte what they were
            h5.attrs["frame_storage"] = json.dumps(frame_storage.to_dict())
        table = _create_window_table(h5, num_channels, settings.sensor_length)
        raise_if_interrupted()
        for run in tqdm(runs, total=num_runs, desc=f"preparing {title}", unit="run", disable=not progress):
            validate_recording(run, num_channels)
            if any(report.name == run.name for report in reports):
                raise ValueError(f"run name {run.name!r} appears twice")
            reports.append(_write_run(h5, table, run, len(reports), settings, frame_storage, progress))
            raise_if_interrupted()
        if not reports:
            raise ValueError("no runs were given to the cache writer")
        h5.attrs["run_names"] = json.dumps([report.name for report in reports])
        h5.attrs["reports"] = json.dumps([asdict(report) for report in reports])
    return reports


def _create_window_table(h5: h5py.File, num_channels: int, length: int) -> h5py.Group:
    """The empty, growable per-window datasets under /windows."""
    windows = h5.create_group("windows")
    specs = {
        "sensor": ((num_channels, length), np.float32, (1, num_channels, length)),
        "zeros": ((num_channels, length), np.float32, (64, num_channels, length)),
        "dead": ((num_channels,), bool, None),
        "run": ((), np.int32, None),
        "frame_start": ((), np.int32, None),
        "frame_stop": ((), np.int32, None),
        "label": ((), np.int64, None),
        "place": ((), np.int64, None),
        "start_ms": ((), np.float64, None),
    }
    for name, (tail, dtype, chunks) in specs.items():
        windows.create_dataset(
            name,
            shape=(0, *tail),
            maxshape=(None, *tail),
            dtype=dtype,
            chunks=chunks or (4096, *tail),
            compression="lzf" if name == "zeros" else None,  # mostly exact 0s and 1s
        )
    return windows


def _write_run(
    h5: h5py.File,
    table: h5py.Group,
    run: RunRecording,
    run_index: int,
    settings: WindowSettings,
    frame_storage: FrameStorage,
    progress: bool,
) -> RunReport:
    """Store one run: its frames, its windows appended to the table, its statistics and attributes."""
    group = h5.create_group(f"runs/{run.name}")
    frame_time_ms = write_frames(group, run, settings.image_size, frame_storage, progress)
    if frame_time_ms.shape[0] == 0:
        raise ValueError(f"run {run.name!r} ({run.source}): the video has no frames")
    placement = place_frames(frame_time_ms, run.fps, run.video_offset_ms)
    arrays, dropped, unplaced = prepare_run_windows(run, settings, placement)
    arrays["run"] = np.full(arrays["label"].shape, run_index, dtype=np.int32)
    total, count = table["label"].shape[0], arrays["label"].shape[0]
    for name, values in arrays.items():
        table[name].resize(total + count, axis=0)
        table[name][total : total + count] = values
    group.create_dataset("channel_sums", data=channel_sums(run.sensor))
    sensor_seconds = float(run.time_ms[-1] - run.time_ms[0]) / 1000.0
    first_frame_ms = float(np.nanmin(frame_time_ms)) if np.isfinite(frame_time_ms).any() else 0.0
    video_seconds = max(placement.video_end_ms - first_frame_ms, 0.0) / 1000.0
    group.attrs.update(
        fps=run.fps,
        subject=run.subject,
        sequence_label=run.sequence_label,
        sensor_seconds=sensor_seconds,
        video_seconds=video_seconds,
        video_offset_ms=run.video_offset_ms,
    )
    report = RunReport(
        run.name, sensor_seconds, video_seconds, frame_time_ms.shape[0], count, dropped, windows_unplaced=unplaced
    )
    report.notes.extend(_run_notes(run, report, placement))
    for note in report.notes:
        log.warning("run %s: %s", run.name, note)
    return report


def _run_notes(run: RunRecording, report: RunReport, placement: FramePlacement) -> list[str]:
    """What a user should know about a stored run: durations that differ, frames or windows dropped."""
    notes = []
    if abs(report.sensor_seconds - report.video_seconds) > max(1.0, 2.0 / run.fps):
        notes.append(
            f"video lasts {report.video_seconds:.1f} s but the sensor timeline "
            f"{report.sensor_seconds:.1f} s: only the overlap is used"
        )
    if placement.problem is not None:
        notes.append(
            f"video frames from {placement.end_ms / 1000.0:.3f} s on (frame "
            f"{placement.times_ms.size} of {report.num_frames}) cannot be placed in time: "
            f"{placement.problem}; {report.windows_unplaced} window(s) reaching them were dropped"
        )
    if report.windows_without_video:
        notes.append(f"{report.windows_without_video} window(s) outside the video were dropped")
    return notes
