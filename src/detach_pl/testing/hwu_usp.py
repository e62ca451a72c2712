"""Generated stand-ins of the HWU-USP release, with their ground truth (tests and benchmarks).

The real release cannot be downloaded here, so the loader is tested on files written in the same
shapes. `write_standin(root, layout=...)` writes, per trial `<activity>_s<NN>`:

- the RGB video (`.mp4`, PyAV, mpeg4 or h264, `fps` frames/s, tiny frames for tests, textured
  640×480 ones for benchmarks): one square per place on a grey background, lit while that
  place's state is 1;
- the ambient CSV: header `timestamp, Ktch_B1_Drawer, …, Ktch_T4_Cupboard, TP_L_Power` (the
  header DETACH's copy of the release shows), 0/1 states at `sensor_rate_hz`, and a smart-plug
  power column in watts. Options: timestamps as relative seconds, Unix-epoch milliseconds or
  date-time strings; gaps (a stretch of missing rows and some empty cells); no header, with the
  names in a `column_names.txt`;
- a wrist-IMU CSV with the same trial id (the loader must ignore it) and, in the authors' tree,
  a depth `.npy` (ignored too).

Layouts: "authors" (the dataset authors' code): `rgb_blurred/<activity>/<trial>.mp4`,
`smart_home/<activity>/<trial>.csv`, `inertial/<activity>/<trial>.csv`,
`depth/<activity>/<trial>.npy`; "flat": `<root>/<trial>.mp4`, `<root>/<trial>.csv`,
`<root>/<trial>_imu.csv`.

Each trial toggles two places: place A opens at 15 % of the trial and closes at 35 %, place B
opens at 65 % and closes at 85 % (±0.1 s jitter), so the middle of the trial is quiet. Gaps are
cut only from that quiet middle, so a reader that holds the last state recovers the dense table.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np

from detach_pl.testing.video import write_video

AMBIENT_COLUMNS: tuple[str, ...] = (
    "Ktch_B1_Drawer",
    "Ktch_B2_Cupboard",
    "Ktch_B3_Cupboard",
    "Ktch_B4_Cupboard",
    "Ktch_Motion_1",
    "Ktch_Motion_2",
    "Ktch_T1_Cupboard",
    "Ktch_T2_Cupboard",
    "Ktch_T3_Cupboard",
    "Ktch_T4_Cupboard",
    "TP_L_Power",
)
"""Ambient columns after `timestamp`, as in DETACH's copy of the release."""

RELEASE_ACTIVITIES = (
    "cereals", "tidy", "laptop", "newspaper", "sandwich", "smartphone", "table", "tea", "dishes",
)
PLACE_COLUMNS = (
    "Ktch_B4_Cupboard", "Ktch_Motion_1", "Ktch_Motion_2",
    "Ktch_T1_Cupboard", "Ktch_T2_Cupboard", "Ktch_T3_Cupboard",
)
"""The six places DETACH uses; every generated event happens at one of them."""

_PLACE_PAIRS = ((0, 3), (4, 1), (5, 2), (3, 0), (1, 5), (2, 4), (0, 2), (4, 5), (1, 3))
_IMU_HEADER = ("timestamp", "acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")

Layout = Literal["authors", "flat"]
TimestampFormat = Literal["seconds", "epoch_ms", "datetime"]


@dataclass
class StandinTrial:
    """Ground truth of one generated trial.

    Attributes:
        name: Trial id (`tea_s01`).
        activity: Activity name.
        subject: Subject number.
        video: Path of the mp4.
        ambient: Path of the ambient CSV.
        time_ms: (rows,) the dense sensor clock, 0 at the first row.
        states: (rows, 11) the dense table in `AMBIENT_COLUMNS` order (before any gaps).
        events: (time_ms, column name) of every state change, in time order.
        fps: Video frame rate.
        num_frames: Frames written.
        sensor_rate_hz: Rate of the dense table.
        removed_rows: Indices of the rows cut out of the CSV (gaps).
        blank_cells: (row, column name) of the cells written empty.
    """

    name: str
    activity: str
    subject: int
    video: Path
    ambient: Path
    time_ms: np.ndarray
    states: np.ndarray
    events: list[tuple[float, str]]
    fps: float
    num_frames: int
    sensor_rate_hz: float
    removed_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    blank_cells: list[tuple[int, str]] = field(default_factory=list)

    def column(self, name: str) -> np.ndarray:
        """One column of the dense table."""
        return self.states[:, AMBIENT_COLUMNS.index(name)]


@dataclass
class StandinRelease:
    """A written stand-in: its root, layout and per-trial ground truth."""

    root: Path
    layout: Layout
    trials: dict[str, StandinTrial]


def iter_scene_frames(
    time_ms: np.ndarray,
    states: np.ndarray,
    fps: float,
    seconds: float,
    size: int | tuple[int, int],
    noise: int = 0,
    rng: np.random.Generator | None = None,
) -> Iterator[np.ndarray]:
    """Frames of the scene, one at a time: a lit square per place whose state is 1 at that time.

    Args:
        time_ms: The table's clock.
        states: The table (`AMBIENT_COLUMNS` order).
        fps: Frame rate.
        seconds: Video duration (may differ from the table's).
        size: Side of square frames, or (height, width).
        noise: Amplitude of per-pixel uniform noise (0: flat colours; > 0 gives the encoder a
            realistic bit rate and the decoder realistic work, for benchmarks).
        rng: Noise source.
    """
    height, width = (size, size) if isinstance(size, int) else size
    cell = min(height, width) // 3
    rng = rng or np.random.default_rng(0)
    for k in range(int(round(seconds * fps))):
        frame = np.full((height, width, 3), 90, dtype=np.uint8)
        row = min(np.searchsorted(time_ms, k * 1000.0 / fps, side="right") - 1, len(time_ms) - 1)
        for place, name in enumerate(PLACE_COLUMNS):
            if states[row, AMBIENT_COLUMNS.index(name)] > 0.5:
                y, x = divmod(place, 3)
                frame[y * cell : (y + 1) * cell - 1, x * cell : (x + 1) * cell - 1] = (230, 200, 40)
        if noise:
            grain = rng.integers(-noise, noise + 1, size=(height, width, 1), dtype=np.int16)
            frame = np.clip(frame.astype(np.int16) + grain, 0, 255).astype(np.uint8)
        yield frame


def _trial_paths(root: Path, layout: Layout, activity: str, name: str) -> dict[str, Path]:
    if layout == "authors":
        return {
            "video": root / "rgb_blurred" / activity / f"{name}.mp4",
            "ambient": root / "smart_home" / activity / f"{name}.csv",
            "imu": root / "inertial" / activity / f"{name}.csv",
            "depth": root / "depth" / activity / f"{name}.npy",
        }
    return {
        "video": root / f"{name}.mp4",
        "ambient": root / f"{name}.csv",
        "imu": root / f"{name}_imu.csv",
    }


def _format_time(t_ms: float, style: TimestampFormat, start: datetime, epoch_ms: int) -> str:
    if style == "seconds":
        return f"{12.5 + t_ms / 1000.0:.3f}"
    if style == "epoch_ms":
        return str(epoch_ms + int(round(t_ms)))
    return (start + timedelta(milliseconds=t_ms)).isoformat(sep=" ", timespec="milliseconds")


def write_ambient_csv(
    path: Path,
    time_ms: np.ndarray,
    states: np.ndarray,
    *,
    timestamp_format: TimestampFormat = "seconds",
    header: bool = True,
    skip_rows: np.ndarray | None = None,
    blank_cells: list[tuple[int, str]] | None = None,
    trial_index: int = 0,
) -> None:
    """Write an ambient CSV (`timestamp` + `AMBIENT_COLUMNS`), with optional gaps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    skipped = set() if skip_rows is None else set(int(r) for r in skip_rows)
    blanks = set(blank_cells or [])
    start = datetime(2019, 7, 12, 14, 33, 21) + timedelta(minutes=7 * trial_index)
    epoch_ms = 1_562_942_001_000 + 420_000 * trial_index
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(["timestamp", *AMBIENT_COLUMNS])
        for row, t_ms in enumerate(time_ms):
            if row in skipped:
                continue
            cells = [_format_time(float(t_ms), timestamp_format, start, epoch_ms)]
            for column, name in enumerate(AMBIENT_COLUMNS):
                value = states[row, column]
                if (row, name) in blanks:
                    cells.append("")
                elif name == "TP_L_Power":
                    cells.append(f"{value:.1f}")
                else:
                    cells.append(str(int(value)))
            writer.writerow(cells)


def generate_trial_table(
    activity_index: int, seconds: float, sensor_rate_hz: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, str]]]:
    """Dense time grid, state table and events of one trial (see the module docstring)."""
    rows = int(round(seconds * sensor_rate_hz))
    time_ms = np.arange(rows, dtype=np.float64) * 1000.0 / sensor_rate_hz
    states = np.zeros((rows, len(AMBIENT_COLUMNS)), dtype=np.float64)
    power = AMBIENT_COLUMNS.index("TP_L_Power")
    states[:, power] = np.round(2.0 + 0.1 * rng.standard_normal(rows), 1)
    place_a, place_b = (PLACE_COLUMNS[i] for i in _PLACE_PAIRS[activity_index % len(_PLACE_PAIRS)])
    events: list[tuple[float, str]] = []
    for name, (opens, closes) in ((place_a, (0.15, 0.35)), (place_b, (0.65, 0.85))):
        jitter = rng.uniform(-100.0, 100.0, size=2)
        on_ms = opens * seconds * 1000.0 + jitter[0]
        off_ms = closes * seconds * 1000.0 + jitter[1]
        first = int(np.searchsorted(time_ms, on_ms))
        last = int(np.searchsorted(time_ms, off_ms))
        states[first:last, AMBIENT_COLUMNS.index(name)] = 1.0
        events += [(float(time_ms[first]), name), (float(time_ms[last]), name)]
        if name == "Ktch_T2_Cupboard":
            states[first:last, power] = 1850.0
    return time_ms, states, sorted(events)


def write_standin(
    root: str | Path,
    *,
    layout: Layout = "authors",
    subjects: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
    activities: tuple[str, ...] = ("cereals", "tea", "dishes"),
    seconds: float = 16.0,
    sensor_rate_hz: float = 50.0,
    fps: float = 25.0,
    frame_size: int | tuple[int, int] = 32,
    noise: int = 0,
    codec: str = "mpeg4",
    timestamp_format: TimestampFormat = "seconds",
    gaps: bool = False,
    header: bool = True,
    seed: int = 0,
) -> StandinRelease:
    """Write a stand-in release under `root` and return its ground truth.

    Args:
        root: Output folder (created).
        layout: "authors" or "flat" (see the module docstring).
        subjects: Subject numbers.
        activities: Activity names (release names; others work too).
        seconds: Duration of every trial (video and table alike).
        sensor_rate_hz: Rate of the ambient table.
        fps: Video frame rate.
        frame_size: Side of the square frames, or (height, width); even, for yuv420p.
        noise: Per-pixel noise amplitude of the frames (see `iter_scene_frames`); with noise the
            video is encoded at 2 Mbit/s, a realistic rate.
        codec: "mpeg4" or "h264".
        timestamp_format: "seconds" (relative, starting at 12.5 s), "epoch_ms" or "datetime".
        gaps: Cut rows from 40 % to 50 % of each trial and blank 3 % of the state cells where the
            state does not change.
        header: Write the header; without it, a `column_names.txt` goes next to the CSVs.
        seed: Random seed.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    trials: dict[str, StandinTrial] = {}
    index = 0
    for subject in subjects:
        for activity in activities:
            name = f"{activity}_s{subject:02d}"
            paths = _trial_paths(root, layout, activity, name)
            activity_index = (
                RELEASE_ACTIVITIES.index(activity) if activity in RELEASE_ACTIVITIES else index
            )
            time_ms, states, events = generate_trial_table(activity_index, seconds, sensor_rate_hz, rng)
            removed = np.zeros(0, dtype=np.int64)
            blanks: list[tuple[int, str]] = []
            if gaps:
                middle = (time_ms >= 0.40 * seconds * 1000) & (time_ms < 0.50 * seconds * 1000)
                removed = np.flatnonzero(middle)
                cut = set(removed.tolist())
                for name_column in AMBIENT_COLUMNS[:-1]:
                    column = states[:, AMBIENT_COLUMNS.index(name_column)]
                    steady = np.flatnonzero(column[1:] == column[:-1]) + 1
                    picks = rng.choice(steady, size=max(1, int(0.03 * steady.size)), replace=False)
                    blanks += [(int(row), name_column) for row in picks if int(row) not in cut]
            write_ambient_csv(
                paths["ambient"], time_ms, states, timestamp_format=timestamp_format, header=header,
                skip_rows=removed, blank_cells=blanks, trial_index=index,
            )
            if not header:
                (paths["ambient"].parent / "column_names.txt").write_text(
                    "\n".join(["timestamp", *AMBIENT_COLUMNS]) + "\n"
                )
            frames = iter_scene_frames(time_ms, states, fps, seconds, frame_size, noise, rng)
            num_frames = write_video(paths["video"], frames, fps, codec, 2_000_000 if noise else None)
            imu_time = time_ms[::10] / 1000.0
            imu_rows = np.column_stack([imu_time, rng.standard_normal((imu_time.size, 6))])
            paths["imu"].parent.mkdir(parents=True, exist_ok=True)
            with paths["imu"].open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(_IMU_HEADER)
                writer.writerows(np.round(imu_rows, 4).tolist())
            if "depth" in paths:
                paths["depth"].parent.mkdir(parents=True, exist_ok=True)
                np.save(paths["depth"], np.zeros((2, 4, 4), dtype=np.uint16))
            trials[name] = StandinTrial(
                name=name, activity=activity, subject=subject, video=paths["video"],
                ambient=paths["ambient"], time_ms=time_ms, states=states, events=events, fps=fps,
                num_frames=num_frames, sensor_rate_hz=sensor_rate_hz, removed_rows=removed,
                blank_cells=blanks,
            )
            index += 1
    return StandinRelease(root, layout, trials)
