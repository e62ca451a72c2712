"""Reading a prepared cache: the per-window table in memory, sensor windows and frames on demand."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from detach_pl.data.cache.build import CACHE_FORMAT_VERSION
from detach_pl.data.cache.frames import FrameStorage, StoredFrames
from detach_pl.data.windows import WindowSettings, sample_frame_indices

if TYPE_CHECKING:
    import torch


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
        self._frames: dict[str, StoredFrames] = {}
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
        storage = h5.attrs.get("frame_storage")  # absent in raw caches
        self.frame_storage = FrameStorage(**json.loads(storage)) if storage is not None else FrameStorage()
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
        state["_frames"] = {}
        return state

    def _file(self) -> h5py.File:
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        return self._h5

    def close(self) -> None:
        """Close the HDF5 handle (it reopens on the next read)."""
        if self._h5 is not None:
            self._frames.clear()
            self._h5.close()
            self._h5 = None

    @property
    def channel_names(self) -> list[str]:
        """Names of the stored sensor channels, in order."""
        return list(self.meta["channel_names"])

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of every stored frame (the cache writer checks each against the settings)."""
        return (self.settings.image_size, self.settings.image_size, 3)

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

    def sensor_rate_hz(self, run_names: Iterable[str]) -> float:
        """Valid sensor rows per second of run duration over the given runs (their sample rate)."""
        h5 = self._file()
        names = list(run_names)
        rows = sum(float(h5[f"runs/{name}/channel_sums"][0].max()) - 1.0 for name in names)
        seconds = sum(float(self.run_attrs[name]["sensor_seconds"]) for name in names)
        return rows / seconds

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

    def frame_picks(self, window: int, num_frames: int) -> np.ndarray:
        """The `num_frames` frame indices sampled uniformly over one window (repeats when it has fewer)."""
        return sample_frame_indices(int(self.frame_start[window]), int(self.frame_stop[window]), num_frames)

    def _stored_frames(self, window: int) -> StoredFrames:
        return self._run_frames(self.run_names[self.window_run[window]])

    def _run_frames(self, run: str) -> StoredFrames:
        """One run's `StoredFrames`, made once per process (raw frames: its chunk offsets read once)."""
        frames = self._frames.get(run)
        if frames is None:
            frames = self._frames[run] = StoredFrames(self._file()[f"runs/{run}"])
        return frames

    def read_frames(self, window: int, num_frames: int) -> np.ndarray:
        """`num_frames` frames sampled uniformly over one window: (T, H, W, 3) uint8.

        Raw frames are read as their chunk bytes; JPEG frames are decoded in one batched call on
        this process's CPU (`frames.StoredFrames.read`).
        """
        return self._stored_frames(window).read(self.frame_picks(window, num_frames))

    def read_clips(self, windows: np.ndarray, num_frames: int, out: np.ndarray) -> None:
        """`read_frames` of each of `windows` into `out` (B, T, H, W, 3) uint8, row by row, in file order.

        Windows are visited by run and start frame, so that a batch reads each run's frames in
        ascending order; `out[row]` receives the clip of `windows[row]` whatever the visiting order.
        """
        windows = np.asarray(windows, dtype=np.int64)
        for row in np.lexsort((self.frame_start[windows], self.window_run[windows])):
            window = int(windows[row])
            self._stored_frames(window).read_into(self.frame_picks(window, num_frames), out[row])

    def read_encoded_frames(self, window: int, num_frames: int) -> list[torch.Tensor]:
        """The JPEG bytes of the frames `read_frames` would decode (a JPEG cache only), for decoding elsewhere."""
        return self._stored_frames(window).encoded(self.frame_picks(window, num_frames))

    def frame_times(self, run: str) -> np.ndarray:
        """(F,) when each stored frame of one run is shown, in ms on the sensor clock."""
        return self._file()[f"runs/{run}/frame_time_ms"][:]

    def iter_run_frames(self, run: str) -> Iterator[np.ndarray]:
        """Every stored frame of one run, (H, W, 3) uint8, decoded if need be (for figures and checks)."""
        for block in self._run_frames(run).blocks():
            yield from block
