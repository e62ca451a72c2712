"""The prepared window cache: one HDF5 file per dataset and set of shaping settings.

Layout (all datasets share it; `WindowCache` reads it):

```
/                       attrs: format_version, settings (JSON), meta (JSON: channel/class/place names…),
                        run_names (JSON), reports (JSON: one RunReport per run)
/runs/<run>/frames      uint8 (F, H, W, 3), one chunk per frame: each run's video stored once,
                        never once per (overlapping) window
/runs/<run>/frame_time_ms float64 (F,) when each frame is shown, on the sensor clock:
                        video_offset_ms + pts × time base · 1000 (the stream's start time
                        included); NaN where a frame had no timestamp
/runs/<run>/channel_sums float64 (3, C): count, sum, sum of squares of the raw non-NaN samples,
                        so any choice of training runs yields its standardisation statistics
/runs/<run>             attrs: fps, subject, sequence_label, sensor_seconds, video_seconds
/windows/sensor         float32 (N, C, L) filtered + resampled, unstandardised; chunk = one window
/windows/zeros          float32 (N, C, L) the same filter + resampling of each window's exact-zero
                        indicator (read-time standardisation keeps zeros at 0; windows.py)
/windows/dead           bool (N, C) channel more than half NaN inside the window
/windows/{run, frame_start, frame_stop, label, place, start_ms}   (N,) per-window table
```

A window's frames [frame_start, frame_stop) are those whose `frame_time_ms` falls inside its time
span, so a variable frame rate or a late stream start stays aligned with the sensors. When frame
times break (a jump of more than `GAP_INTERVALS` frame intervals, a step back, a frame without a
timestamp), the frames from there on cannot be placed: the windows that reach them are dropped
and the run's report says so.

The file is written under a temporary name (`.<name>.tmp-<host>-<pid>`) and renamed when
complete, so an interrupted build never leaves a file that a later run would read. Builders take
an exclusive lock on `<name>.lock` beside the cache: a second process waits and then reuses the
finished cache; the first thing a builder does under the lock is to remove temporaries left by
builders on this host that have died (kill -9). SIGTERM during a build is handled like Ctrl-C:
the temporary is removed and the process stops with a message.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from detach_pl.data.video import TimedFrame
from detach_pl.data.windows import (
    WindowSettings,
    fill_window_nans,
    interpolate_nans,
    lowpass,
    resample_linear,
    sample_frame_indices,
    window_label,
    window_starts,
)

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 3
_FRAME_BLOCK = 64
GAP_INTERVALS = 3.0
"""A step between frame times longer than this many (median) frame intervals is a gap."""
_TIME_TOLERANCE_MS = 1e-3
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-(?:(?P<host>.+)-)?(?P<pid>\d+)$")


@dataclass
class RunRecording:
    """One recording as a dataset parser hands it to the cache writer.

    Attributes:
        name: Run or trial name (unique within the dataset).
        time_ms: (rows,) sensor sample times on the run's clock; a frame is at
            `video_offset_ms + its time · 1000` on the same clock.
        sensor: (rows, C) raw ambient channels, NaN where missing.
        row_label: (rows,) class id per row, −1 for null.
        row_place: (rows,) place id per row, −1 for none (diagnostics only).
        frames: The video, frame by frame, already at the cache's image size: `TimedFrame`s
            (presentation time in seconds on the file's clock, (H, W, 3) uint8 image), or bare
            arrays, which are taken as frame k at k / fps (generated video). An iterator is
            consumed once, so a long video never sits in memory.
        fps: Measured frame rate of the video.
        subject: Subject id, −1 if unknown.
        sequence_label: Class of the whole recording (HWU-USP activity), −1 if none.
        num_frames: Expected frame count, if known (progress display only).
        video_offset_ms: Where time 0 of the video's clock lies on the sensor clock.
        source: Free-form description of the files it came from (for messages).
    """

    name: str
    time_ms: np.ndarray
    sensor: np.ndarray
    row_label: np.ndarray
    row_place: np.ndarray
    frames: Iterable[TimedFrame | np.ndarray]
    fps: float
    subject: int = -1
    sequence_label: int = -1
    num_frames: int | None = None
    video_offset_ms: float = 0.0
    source: str = ""


@dataclass
class RunReport:
    """What the writer found while storing one run (durations, dropped windows).

    `windows_unplaced` counts the windows dropped because their frames cannot be placed in time
    (after a gap or a break in the frame timestamps); `notes` says where.
    """

    name: str
    sensor_seconds: float
    video_seconds: float
    num_frames: int
    windows: int
    windows_without_video: int
    notes: list[str] = field(default_factory=list)
    windows_unplaced: int = 0


class CacheBuildInterrupted(KeyboardInterrupt):
    """SIGTERM arrived while a cache was being built (handled like Ctrl-C: nothing half-written stays)."""


@dataclass(frozen=True)
class FramePlacement:
    """Where a run's frames lie on the sensor clock, and up to where they can be trusted.

    Attributes:
        times_ms: (G,) times of the frames that can be placed (the first G stored frames),
            strictly increasing.
        end_ms: End of the placed video: the last placed frame's time + the step before it.
        video_end_ms: The same for every decoded frame (the video as a whole).
        interval_ms: Median step between frame times (one frame interval).
        problem: Why frames from G on cannot be placed, or None.
    """

    times_ms: np.ndarray
    end_ms: float
    video_end_ms: float
    interval_ms: float
    problem: str | None = None

    @property
    def start_ms(self) -> float:
        """Time of the first placed frame (inf when none can be placed)."""
        return float(self.times_ms[0]) if self.times_ms.size else float("inf")

    def frame_range(self, start_ms: float, stop_ms: float) -> tuple[int, int] | None:
        """The frames [first, stop) shown in [start_ms, stop_ms), or None if the span is not covered."""
        if start_ms < self.start_ms - _TIME_TOLERANCE_MS or stop_ms > self.end_ms + _TIME_TOLERANCE_MS:
            return None
        first, stop = np.searchsorted(self.times_ms, [start_ms - _TIME_TOLERANCE_MS, stop_ms - _TIME_TOLERANCE_MS])
        return (int(first), int(stop)) if stop > first else None

    def unplaced(self, start_ms: float, stop_ms: float) -> bool:
        """Whether [start_ms, stop_ms) reaches decoded frames that cannot be placed."""
        return self.problem is not None and stop_ms > self.end_ms + _TIME_TOLERANCE_MS and start_ms < self.video_end_ms


def place_frames(times_ms: np.ndarray, fps: float, video_offset_ms: float = 0.0) -> FramePlacement:
    """Check a run's frame times and keep the prefix that can be placed on the sensor clock.

    Frames stop being placeable at the first one without a timestamp, the first step back (or a
    repeated time) and the first jump longer than `GAP_INTERVALS` median intervals: what follows
    a damaged stretch is out of sync by an unknown amount. A video without any timestamp is placed
    by index at `fps` (frame k at video_offset_ms + k · 1000 / fps).
    """
    times = np.asarray(times_ms, dtype=np.float64)
    if times.size and np.isnan(times).all():
        times = video_offset_ms + np.arange(times.size) * (1000.0 / fps)
    steps = np.diff(times)
    positive = steps[np.isfinite(steps) & (steps > 0)]
    interval = float(np.median(positive)) if positive.size else 1000.0 / fps
    finite = times[np.isfinite(times)]
    video_end = float(finite.max()) + _last_step(finite, interval) if finite.size else float("-inf")
    problem: str | None = None
    good = times.size
    if times.size and np.isnan(times[0]):
        good, problem = 0, "frame 0 has no timestamp"
    else:
        broken = np.flatnonzero(~np.isfinite(steps) | (steps <= 0) | (steps > GAP_INTERVALS * interval))
        if broken.size:
            good = int(broken[0]) + 1
            before, after = times[good - 1] / 1000.0, times[good] / 1000.0
            if np.isnan(after):
                problem = f"frame {good} has no timestamp"
            elif after <= before:
                problem = f"frame {good}'s time goes back from {before:.3f} s to {after:.3f} s"
            else:
                problem = (
                    f"frames jump from {before:.3f} s to {after:.3f} s (more than {GAP_INTERVALS:g} "
                    f"frame intervals of {interval:.0f} ms: missing or damaged frames)"
                )
    placed = times[:good]
    end = float(placed[-1]) + _last_step(placed, interval) if good else float("-inf")
    return FramePlacement(placed, end, video_end, interval, problem)


def _last_step(times: np.ndarray, interval: float) -> float:
    """How long the last of `times` is shown: the step before it (the local rate), else `interval`."""
    step = float(times[-1] - times[-2]) if times.size >= 2 else 0.0
    return step if 0.0 < step <= GAP_INTERVALS * interval else interval


def cache_key(parts: dict[str, Any]) -> str:
    """Short stable hash of everything that shapes a cache (settings, channels, source)."""
    text = json.dumps({"format_version": CACHE_FORMAT_VERSION, **parts}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _validate_recording(run: RunRecording, num_channels: int) -> None:
    rows = run.time_ms.shape[0]
    where = f"run {run.name!r}" + (f" ({run.source})" if run.source else "")
    if run.sensor.ndim != 2 or run.sensor.shape != (rows, num_channels):
        raise ValueError(
            f"{where}: sensor matrix has shape {run.sensor.shape}, expected ({rows}, {num_channels})"
        )
    if run.row_label.shape != (rows,) or run.row_place.shape != (rows,):
        raise ValueError(f"{where}: per-row labels/places must have shape ({rows},)")
    if rows < 2 or np.any(np.diff(run.time_ms) <= 0):
        raise ValueError(f"{where}: sensor timestamps must be strictly increasing (>= 2 rows)")
    if not run.fps > 0:
        raise ValueError(f"{where}: frame rate must be positive, got {run.fps}")


def _filter_and_resample(segments: list[np.ndarray], channels: int, settings: WindowSettings) -> np.ndarray:
    """Low-pass each (rows_i, C) segment on its own, then resample it: (n, C, L) float32.

    Segments of equal length are filtered together (one `filtfilt` call per length).
    """
    out = np.zeros((len(segments), channels, settings.sensor_length), dtype=np.float32)
    by_length: dict[int, list[int]] = {}
    for position, segment in enumerate(segments):
        by_length.setdefault(segment.shape[0], []).append(position)
    for positions in by_length.values():
        stacked = np.stack([segments[position] for position in positions])
        filtered = lowpass(stacked, settings.lowpass_cutoff, settings.lowpass_order, axis=1)
        for position, window in zip(positions, filtered):
            out[position] = resample_linear(window, settings.sensor_length, settings.resample_grid)
    return out


def _window_signals(
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
        sensor = [resample_linear(filtered[first:last], length, grid) for first, last in spans]
        zero = [resample_linear(zeros[first:last], length, grid) for first, last in spans]
        shape = (len(spans), run.sensor.shape[1], length)
        return (
            np.asarray(sensor, dtype=np.float32).reshape(shape),
            np.asarray(zero, dtype=np.float32).reshape(shape),
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


def _prepare_run_windows(
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
    sensor, zeros, dead = _window_signals(run, rows.pop("span"), settings)
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


def _channel_sums(sensor: np.ndarray) -> np.ndarray:
    known = ~np.isnan(sensor)
    values = np.where(known, sensor, 0.0).astype(np.float64)
    return np.stack([known.sum(axis=0), values.sum(axis=0), (values**2).sum(axis=0)])


def _write_frames(group: h5py.Group, run: RunRecording, image_size: int, progress: bool) -> np.ndarray:
    """Store a run's frames as they stream in, and `frame_time_ms`; returns the frame times (ms)."""
    frames_ds = group.create_dataset(
        "frames",
        shape=(0, image_size, image_size, 3),
        maxshape=(None, image_size, image_size, 3),
        dtype=np.uint8,
        chunks=(1, image_size, image_size, 3),
    )
    block: list[np.ndarray] = []
    times: list[float] = []
    count = 0
    bar = tqdm(
        total=run.num_frames, desc=f"  frames {run.name}", unit="fr", leave=False, disable=not progress
    )

    def flush() -> None:
        nonlocal count
        if not block:
            return
        frames_ds.resize(count + len(block), axis=0)
        frames_ds[count : count + len(block)] = np.stack(block)
        count += len(block)
        bar.update(len(block))
        block.clear()

    for index, item in enumerate(run.frames):
        if isinstance(item, np.ndarray):
            seconds, frame = index / run.fps, item
        else:
            seconds, frame = item
        if frame.shape != (image_size, image_size, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"run {run.name!r}: frame {index} has shape {frame.shape} and dtype {frame.dtype}, "
                f"expected ({image_size}, {image_size}, 3) uint8"
            )
        times.append(float("nan") if seconds is None else run.video_offset_ms + 1000.0 * seconds)
        block.append(frame)
        if len(block) == _FRAME_BLOCK:
            flush()
    flush()
    bar.close()
    frame_time_ms = np.asarray(times, dtype=np.float64)
    group.create_dataset("frame_time_ms", data=frame_time_ms)
    return frame_time_ms


def _process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporaries of `path` left by builders on this host that no longer run.

    A temporary is `.<name>.tmp-<host>-<pid>` (or `.<name>.tmp-<pid>`, written before the host
    was part of the name: taken as this host's). Temporaries of other hosts (a shared folder)
    and of live processes are left alone. Returns what was removed.
    """
    host, removed = socket.gethostname(), []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        match = _TEMPORARY.match(candidate.name)
        if match is None or match["name"] != path.name or match["host"] not in (None, host):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _process_alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            size = candidate.stat().st_size
            candidate.unlink()
            removed.append(candidate)
            log.warning(
                "removed %s (%.1f MB), left by an interrupted build of process %d, which has ended",
                candidate, size / 1e6, pid,
            )
    return removed


@contextlib.contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` (flock) while the cache at `path` is built.

    A second builder logs that it waits for the first (and which process that is), then blocks.
    The holder deletes the lock file before releasing it, so a finished build leaves only the
    cache; a waiter that then holds a deleted file's lock notices (inode check) and locks anew.

    Raises:
        OSError: The lock file cannot be created; the message names it.
    """
    lock_path = path.with_name(f"{path.name}.lock")
    while True:
        try:
            handle = open(lock_path, "a+")
        except OSError as error:
            raise OSError(
                error.errno, f"cannot create the lock file {lock_path} beside the window cache ({error.strerror})"
            ) from error
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            log.warning("waiting for the other builder of %s (%s) to finish (lock %s)", path, holder, lock_path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    with handle:
        try:
            handle.truncate(0)
            handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def sigterm_as_interrupt(what: str) -> Iterator[None]:
    """Turn SIGTERM into `CacheBuildInterrupted` (a KeyboardInterrupt) while `what` runs.

    SLURM and other schedulers send SIGTERM at a time limit; by default it kills Python without
    running `finally` blocks. Installed only in the main thread (signals are delivered there),
    and the previous handler is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise CacheBuildInterrupted(f"SIGTERM received while {what}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stored_reports(path: Path) -> list[RunReport]:
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
) -> list[RunReport]:
    """Write a complete window cache at `path`, atomically and once.

    Under the lock beside the cache (see the module docstring): stale temporaries of dead
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
            return _stored_reports(path)
        tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        try:
            with sigterm_as_interrupt(f"building the window cache {path}"):
                reports = _write_cache(tmp, path.name, runs, settings, meta, num_runs, progress)
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
    num_runs: int | None,
    progress: bool,
) -> list[RunReport]:
    """Write every run into the HDF5 file `tmp` (the body of `build_cache`)."""
    num_channels = len(meta["channel_names"])
    reports: list[RunReport] = []
    with h5py.File(tmp, "w") as h5:
        h5.attrs["format_version"] = CACHE_FORMAT_VERSION
        h5.attrs["settings"] = json.dumps(settings.to_dict())
        h5.attrs["meta"] = json.dumps(meta)
        windows = h5.create_group("windows")
        length = settings.sensor_length
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
        run_names: list[str] = []
        total = 0
        for run in tqdm(runs, total=num_runs, desc=f"preparing {title}", unit="run", disable=not progress):
            _validate_recording(run, num_channels)
            if run.name in run_names:
                raise ValueError(f"run name {run.name!r} appears twice")
            group = h5.create_group(f"runs/{run.name}")
            frame_time_ms = _write_frames(group, run, settings.image_size, progress)
            num_frames = frame_time_ms.shape[0]
            if num_frames == 0:
                raise ValueError(f"run {run.name!r} ({run.source}): the video has no frames")
            placement = place_frames(frame_time_ms, run.fps, run.video_offset_ms)
            arrays, dropped, unplaced = _prepare_run_windows(run, settings, placement)
            arrays["run"] = np.full(arrays["label"].shape, len(run_names), dtype=np.int32)
            count = arrays["label"].shape[0]
            for name, values in arrays.items():
                windows[name].resize(total + count, axis=0)
                windows[name][total : total + count] = values
            total += count
            group.create_dataset("channel_sums", data=_channel_sums(run.sensor))
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
                run.name, sensor_seconds, video_seconds, num_frames, count, dropped, windows_unplaced=unplaced
            )
            if abs(sensor_seconds - video_seconds) > max(1.0, 2.0 / run.fps):
                report.notes.append(
                    f"video lasts {video_seconds:.1f} s but the sensor timeline "
                    f"{sensor_seconds:.1f} s: only the overlap is used"
                )
            if placement.problem is not None:
                report.notes.append(
                    f"video frames from {placement.end_ms / 1000.0:.3f} s on (frame "
                    f"{placement.times_ms.size} of {num_frames}) cannot be placed in time: "
                    f"{placement.problem}; {unplaced} window(s) reaching them were dropped"
                )
            if dropped:
                report.notes.append(f"{dropped} window(s) outside the video were dropped")
            for note in report.notes:
                log.warning("run %s: %s", run.name, note)
            reports.append(report)
            run_names.append(run.name)
        if not run_names:
            raise ValueError("no runs were given to the cache writer")
        h5.attrs["run_names"] = json.dumps(run_names)
        h5.attrs["reports"] = json.dumps([asdict(report) for report in reports])
    return reports


class WindowCache:
    """Read access to a prepared cache; safe to pickle into DataLoader workers.

    The small per-window table is loaded once; sensor windows and frames are read on demand.
    The HDF5 handle is opened lazily in each process (h5py handles must not cross a fork).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"window cache {self.path} does not exist")
        self._h5: h5py.File | None = None
        h5 = self._file()
        version = int(h5.attrs.get("format_version", -1))
        if version != CACHE_FORMAT_VERSION:
            raise ValueError(
                f"window cache {self.path} has format version {version}, expected "
                f"{CACHE_FORMAT_VERSION}: delete it and it will be rebuilt"
            )
        self.settings = WindowSettings(**json.loads(h5.attrs["settings"]))
        self.meta: dict[str, Any] = json.loads(h5.attrs["meta"])
        self.run_names: list[str] = json.loads(h5.attrs["run_names"])
        table = h5["windows"]
        self.window_run = table["run"][:].astype(np.int64)
        self.frame_start = table["frame_start"][:].astype(np.int64)
        self.frame_stop = table["frame_stop"][:].astype(np.int64)
        self.label = table["label"][:]
        self.place = table["place"][:]
        self.start_ms = table["start_ms"][:]
        self.run_attrs = {name: dict(h5[f"runs/{name}"].attrs) for name in self.run_names}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"] = None
        return state

    def _file(self) -> h5py.File:
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        return self._h5

    def close(self) -> None:
        """Close the HDF5 handle (it reopens on the next read)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    @property
    def channel_names(self) -> list[str]:
        """Names of the stored sensor channels, in order."""
        return list(self.meta["channel_names"])

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def run_indices(self, run_names: Iterable[str], *, setting: str = "runs") -> np.ndarray:
        """Indices of the runs named, with an error listing the known runs for unknown names."""
        lookup = {name: i for i, name in enumerate(self.run_names)}
        unknown = [name for name in run_names if name not in lookup]
        if unknown:
            raise ValueError(
                f"{setting}: unknown run(s) {unknown} in cache {self.path.name}; "
                f"available: {self.run_names}"
            )
        return np.array([lookup[name] for name in run_names], dtype=np.int64)

    def windows_of_runs(self, run_names: Iterable[str], *, setting: str = "runs") -> np.ndarray:
        """Window indices belonging to the given runs, in cache order."""
        runs = self.run_indices(list(run_names), setting=setting)
        return np.flatnonzero(np.isin(self.window_run, runs))

    def channel_statistics(self, run_names: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation over the raw samples of the given runs.

        Channels without any valid sample, or constant ones, get std 1 so that standardisation
        never divides by zero.
        """
        h5 = self._file()
        sums = sum(h5[f"runs/{name}/channel_sums"][:] for name in run_names)
        count = np.maximum(sums[0], 1.0)
        mean = sums[1] / count
        var = np.maximum(sums[2] / count - mean**2, 0.0)
        std = np.sqrt(var)
        std[std < 1e-6] = 1.0
        return mean.astype(np.float32), std.astype(np.float32)

    def read_sensor(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unstandardised windows F(x) (n, C, L), zero indicators F(z) (n, C, L), dead masks (n, C)."""
        indices = np.asarray(indices, dtype=np.int64)
        channels, length = len(self.channel_names), self.settings.sensor_length
        if indices.size == 0:
            empty = np.zeros((0, channels, length), np.float32)
            return empty, empty.copy(), np.zeros((0, channels), bool)
        order = np.argsort(indices)
        unique, inverse = np.unique(indices[order], return_inverse=True)
        restore = np.empty_like(order)
        restore[order] = np.arange(order.size)
        table = self._file()["windows"]
        whole = unique.size > 0.25 * len(self)
        arrays = [
            table[name][:][unique] if whole else table[name][unique] for name in ("sensor", "zeros", "dead")
        ]
        sensor, zeros, dead = (array[inverse][restore] for array in arrays)
        return sensor, zeros, dead

    def read_frames(self, window: int, num_frames: int) -> np.ndarray:
        """`num_frames` frames sampled uniformly over one window: (T, H, W, 3) uint8.

        Frames are stored uncompressed, one chunk each, so a frame is read as its raw chunk bytes
        (no HDF5 selection machinery): a window read touches exactly its T frames.
        """
        picks = sample_frame_indices(
            int(self.frame_start[window]), int(self.frame_stop[window]), num_frames
        )
        frames = self._file()[f"runs/{self.run_names[self.window_run[window]]}/frames"]
        shape = frames.shape[1:]
        if frames.compression is None and frames.chunks == (1, *shape):
            out = np.empty((picks.size, *shape), dtype=np.uint8)
            for row, index in enumerate(picks):
                _, raw = frames.id.read_direct_chunk((int(index), 0, 0, 0))
                out[row] = np.frombuffer(raw, dtype=np.uint8).reshape(shape)
            return out
        unique, inverse = np.unique(picks, return_inverse=True)
        return frames[unique][inverse]

    def frame_times(self, run: str) -> np.ndarray:
        """(F,) when each stored frame of one run is shown, in ms on the sensor clock."""
        return self._file()[f"runs/{run}/frame_time_ms"][:]

    def iter_run_frames(self, run: str) -> Iterator[np.ndarray]:
        """Every stored frame of one run (for figures and checks)."""
        frames = self._file()[f"runs/{run}/frames"]
        for start in range(0, frames.shape[0], _FRAME_BLOCK):
            yield from frames[start : start + _FRAME_BLOCK]
