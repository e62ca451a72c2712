"""The prepared window cache: one HDF5 file per dataset and set of shaping settings.

Layout (all datasets share it; `WindowCache` reads it):

```
/                       attrs: format_version, settings (JSON), meta (JSON: channel/class/place names…)
/runs/<run>/frames      uint8 (F, H, W, 3), one chunk per frame: each run's video stored once,
                        never once per (overlapping) window
/runs/<run>/channel_sums float64 (3, C): count, sum, sum of squares of the raw non-NaN samples,
                        so any choice of training runs yields its standardisation statistics
/runs/<run>             attrs: fps, subject, sequence_label, sensor_seconds, video_seconds
/windows/sensor         float32 (N, C, L) filtered + resampled, unstandardised; chunk = one window
/windows/zeros          float32 (N, C, L) the same filter + resampling of each window's exact-zero
                        indicator (read-time standardisation keeps zeros at 0; windows.py)
/windows/dead           bool (N, C) channel more than half NaN inside the window
/windows/{run, frame_start, frame_stop, label, place, start_ms}   (N,) per-window table
```

The file is written under a temporary name and renamed when complete, so an interrupted build
never leaves a file that a later run would read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

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

CACHE_FORMAT_VERSION = 2
_FRAME_BLOCK = 64


@dataclass
class RunRecording:
    """One recording as a dataset parser hands it to the cache writer.

    Attributes:
        name: Run or trial name (unique within the dataset).
        time_ms: (rows,) sensor sample times on the run's clock; frame k is at
            `video_offset_ms + k * 1000 / fps` on the same clock.
        sensor: (rows, C) raw ambient channels, NaN where missing.
        row_label: (rows,) class id per row, −1 for null.
        row_place: (rows,) place id per row, −1 for none (diagnostics only).
        frames: The video, frame by frame, as (H, W, 3) uint8 arrays already at the cache's
            image size. An iterator is consumed once, so a long video never sits in memory.
        fps: Measured frame rate of the video.
        subject: Subject id, −1 if unknown.
        sequence_label: Class of the whole recording (HWU-USP activity), −1 if none.
        num_frames: Expected frame count, if known (progress display only).
        video_offset_ms: Time of frame 0 on the sensor clock.
        source: Free-form description of the files it came from (for messages).
    """

    name: str
    time_ms: np.ndarray
    sensor: np.ndarray
    row_label: np.ndarray
    row_place: np.ndarray
    frames: Iterable[np.ndarray]
    fps: float
    subject: int = -1
    sequence_label: int = -1
    num_frames: int | None = None
    video_offset_ms: float = 0.0
    source: str = ""


@dataclass
class RunReport:
    """What the writer found while storing one run (durations, dropped windows)."""

    name: str
    sensor_seconds: float
    video_seconds: float
    num_frames: int
    windows: int
    windows_without_video: int
    notes: list[str] = field(default_factory=list)


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
    run: RunRecording, settings: WindowSettings, num_frames: int
) -> tuple[dict[str, np.ndarray], int]:
    """Cut, NaN-handle, filter and resample the windows of one run; keep those the video covers."""
    starts = window_starts(run.time_ms, settings)
    window_ms = settings.window_seconds * 1000.0
    frames_per_ms = run.fps / 1000.0
    rows: dict[str, list] = {key: [] for key in ("span", "frame_start", "frame_stop", "label", "place", "start_ms")}
    dropped = 0
    for start_ms in starts:
        first, last = np.searchsorted(run.time_ms, [start_ms, start_ms + window_ms])
        frame_start = int(np.ceil((start_ms - run.video_offset_ms) * frames_per_ms))
        frame_stop = int(np.ceil((start_ms + window_ms - run.video_offset_ms) * frames_per_ms))
        if frame_start < 0 or frame_stop > num_frames or frame_stop <= frame_start or last <= first:
            dropped += 1
            continue
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
    return arrays, dropped


def _channel_sums(sensor: np.ndarray) -> np.ndarray:
    known = ~np.isnan(sensor)
    values = np.where(known, sensor, 0.0).astype(np.float64)
    return np.stack([known.sum(axis=0), values.sum(axis=0), (values**2).sum(axis=0)])


def _write_frames(group: h5py.Group, run: RunRecording, image_size: int, progress: bool) -> int:
    frames_ds = group.create_dataset(
        "frames",
        shape=(0, image_size, image_size, 3),
        maxshape=(None, image_size, image_size, 3),
        dtype=np.uint8,
        chunks=(1, image_size, image_size, 3),
    )
    block: list[np.ndarray] = []
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

    for index, frame in enumerate(run.frames):
        if frame.shape != (image_size, image_size, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"run {run.name!r}: frame {index} has shape {frame.shape} and dtype {frame.dtype}, "
                f"expected ({image_size}, {image_size}, 3) uint8"
            )
        block.append(frame)
        if len(block) == _FRAME_BLOCK:
            flush()
    flush()
    bar.close()
    return count


def build_cache(
    path: str | Path,
    runs: Iterable[RunRecording],
    settings: WindowSettings,
    meta: dict[str, Any],
    *,
    num_runs: int | None = None,
    progress: bool = True,
) -> list[RunReport]:
    """Write a complete window cache at `path`, atomically.

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
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for key in ("channel_names", "class_names", "place_names"):
        if key not in meta:
            raise ValueError(f"cache meta lacks {key!r}")
    num_channels = len(meta["channel_names"])
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    reports: list[RunReport] = []
    try:
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
            for run in tqdm(runs, total=num_runs, desc=f"preparing {path.name}", unit="run", disable=not progress):
                _validate_recording(run, num_channels)
                if run.name in run_names:
                    raise ValueError(f"run name {run.name!r} appears twice")
                group = h5.create_group(f"runs/{run.name}")
                num_frames = _write_frames(group, run, settings.image_size, progress)
                if num_frames == 0:
                    raise ValueError(f"run {run.name!r} ({run.source}): the video has no frames")
                arrays, dropped = _prepare_run_windows(run, settings, num_frames)
                arrays["run"] = np.full(arrays["label"].shape, len(run_names), dtype=np.int32)
                count = arrays["label"].shape[0]
                for name, values in arrays.items():
                    windows[name].resize(total + count, axis=0)
                    windows[name][total : total + count] = values
                total += count
                group.create_dataset("channel_sums", data=_channel_sums(run.sensor))
                sensor_seconds = float(run.time_ms[-1] - run.time_ms[0]) / 1000.0
                video_seconds = num_frames / run.fps
                group.attrs.update(
                    fps=run.fps,
                    subject=run.subject,
                    sequence_label=run.sequence_label,
                    sensor_seconds=sensor_seconds,
                    video_seconds=video_seconds,
                    video_offset_ms=run.video_offset_ms,
                )
                report = RunReport(run.name, sensor_seconds, video_seconds, num_frames, count, dropped)
                if abs(sensor_seconds - video_seconds) > max(1.0, 2.0 / run.fps):
                    report.notes.append(
                        f"video lasts {video_seconds:.1f} s but the sensor timeline "
                        f"{sensor_seconds:.1f} s: only the overlap is used"
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
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
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

    def iter_run_frames(self, run: str) -> Iterator[np.ndarray]:
        """Every stored frame of one run (for figures and checks)."""
        frames = self._file()[f"runs/{run}/frames"]
        for start in range(0, frames.shape[0], _FRAME_BLOCK):
            yield from frames[start : start + _FRAME_BLOCK]
