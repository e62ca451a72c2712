"""HWU-USP (Ranieri et al., Sensors 2021) read from the raw release into the shared window cache.

16 subjects × 9 activities = 144 trials named `<activity>_s<NN>` (`tea_s01`). Per trial DETACH
needs the RGB video (`.mp4`) and the ambient smart-home CSV (a `timestamp` column and 0/1
contact/motion states, plus a smart-plug power reading). Everything after reading the files
(windows, preprocessing, standardisation, cache, loaders) is the shared `WindowDataModule`.

Reading rules (the release's layout is unverified, so the reader is tolerant and says what it finds):

- **Discovery.** Every `.mp4` and `.csv` under `root` (globs `video_glob`, `csv_glob`) is assigned
  to the trial named by its file name (`tea_s01.mp4`, `tea_s01_ambient.csv`) or, failing that, by
  its nearest folder (`tea_s01/rgb.mp4`). The dataset authors' tree
  (`rgb_blurred/<activity>/<trial>.mp4`, `<ambient folder>/<activity>/<trial>.csv`,
  `inertial/<activity>/<trial>.csv`, `depth/…npy`) and a flat folder both work. A trial's ambient
  CSV is the one whose columns hold the requested channels; CSVs under an inertial-looking path
  (`inertial`, `imu`, `wrist`, …) are the wrist IMU and are ignored.
- **Columns** are selected by header name. A CSV without a header takes its names from the
  nearest `column_names.txt` in its folder or above (up to `root`).
- **Clock.** The timestamp column (`timestamp`, `time`, …) may hold seconds, milliseconds,
  micro/nanoseconds (relative or Unix epoch) or date-time strings; the unit is read from the
  column name, else from the epoch magnitude, else from the sampling step (the one unit that gives
  a plausible rate, 0.5–2000 Hz; ties and misses are decided by the video's duration). Times are
  made relative to the first row: **sensor and video both start at the trial start** (a frame at
  `video_offset_ms` + its presentation time). The sensor rate is the median step; the frame rate is
  measured from the video. A median step over 1 s suggests an event log: set `sensor_rate_hz`.
- **Gaps.** A dense 0/1 table is used as is. Empty cells and missing rows (steps longer than 1.5×
  the median) are filled by `gap_fill`: "hold" (default; a state persists until the next reading,
  and missing rows are re-sampled on a regular grid at the sensor rate) or "interpolate" (left NaN
  for the shared linear interpolation and dead-channel rule).
- **Labels.** Every row of a trial carries its activity. The cache stores the activity's index in
  the release vocabulary (`ACTIVITIES`); the configured class subset is applied when the cache is
  opened, so changing `classes` never rebuilds the cache. A trial outside the subset gets label
  −1: it is used for pre-training but not probed.
- **Places** (cluster diagnostics only; K = channels + "none" = 7 by default): a row belongs to
  the channel whose state changes nearest to it within half a window, else to "none" (id K−1); a
  window then takes the place covering most of its rows by the shared majority rule (−1 when no
  place covers half of it). So a window in which one channel changes state gets that channel,
  a quiet window gets "none".
- **Folds** (the authors' protocol): 8-fold leave-two-subjects-out; fold k tests subjects 2k−1
  and 2k. `val_rule` "next_fold" validates on the next fold's two subjects and trains on the rest
  (12 subjects); "test_fold" validates on the test subjects (monitoring only) and trains on 14.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time as time_of_day
from pathlib import Path
from typing import Any, Literal

import numpy as np

from detach_pl.data.cache import RunRecording, WindowCache
from detach_pl.data.checks import ensure_writable_folder
from detach_pl.data.datamodule import SequenceDataset, WindowDataModule
from detach_pl.data.info import DataInfo
from detach_pl.data.video import VideoInfo, iter_timed_frames, probe_video
from detach_pl.io import write_atomically

log = logging.getLogger(__name__)

ACTIVITIES: tuple[str, ...] = (
    "cereals",
    "tidy",
    "laptop",
    "newspaper",
    "sandwich",
    "smartphone",
    "table",
    "tea",
    "dishes",
)
"""The nine activities in the release's class-file order (1-based ids 1–9 there)."""

DEFAULT_CHANNELS: tuple[str, ...] = (
    "Ktch_B4_Cupboard",
    "Ktch_Motion_1",
    "Ktch_Motion_2",
    "Ktch_T1_Cupboard",
    "Ktch_T2_Cupboard",
    "Ktch_T3_Cupboard",
)
"""The six ambient channels DETACH uses (docs/datasets/hwu_usp.md); with "none" they give K = 7 places."""

NONE_PLACE = "none"

TimestampUnit = Literal["auto", "s", "ms", "us", "ns"]
GapFill = Literal["hold", "interpolate"]
ValRule = Literal["next_fold", "test_fold"]

UNIT_MS: dict[str, float] = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
_PLAUSIBLE_RATE_HZ = (0.5, 2000.0)
_EPOCH_FLOOR = {"s": 1e8, "ms": 1e11, "us": 1e14, "ns": 1e17}
_UNIT_HINTS: tuple[tuple[str, str], ...] = (
    ("ms", r"(ms|msec|millis|milliseconds?|millisec)"),
    ("us", r"(us|usec|micros|microseconds?)"),
    ("ns", r"(ns|nsec|nanos|nanoseconds?)"),
    ("s", r"(s|sec|secs|seconds?)"),
)
_TIME_NAMES = ("timestamp", "timestamps", "time", "datetime", "date_time", "millisec", "t")
_MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none"})
_INERTIAL_HINTS = ("inertial", "imu", "wrist", "accel", "gyro")
_TRIAL_STEM = re.compile(
    r"^(?P<activity>[a-z][a-z_]*?)_s(?P<subject>\d{1,3})(?:[_\-. ].*)?$", re.IGNORECASE
)
_TRIAL_FOLDER = re.compile(r"^(?P<activity>[a-z][a-z_]*?)_s(?P<subject>\d{1,3})$", re.IGNORECASE)
_NUMBERED_NAME = re.compile(r"^(?:column:?\s*)?\d+\s*[:.)\-]?\s+(?P<name>.+?)\s*$", re.IGNORECASE)


# ---- trial discovery -----------------------------------------------------------------------


def trial_name(activity: str, subject: int) -> str:
    """Canonical trial id, e.g. `tea_s01`."""
    return f"{activity.lower()}_s{subject:02d}"


def parse_trial_name(name: str) -> tuple[str, int]:
    """(activity, subject) of a trial id such as `tea_s01`.

    Raises:
        ValueError: The name is not `<activity>_s<NN>`.
    """
    match = _TRIAL_FOLDER.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a trial id of the form <activity>_s<NN>")
    return match["activity"].lower(), int(match["subject"])


def trial_of_path(relative: Path) -> tuple[str, int] | None:
    """The trial a file belongs to: from its name (`tea_s01_x.csv`), else its nearest folder."""
    match = _TRIAL_STEM.match(relative.stem)
    if match is None:
        for folder in reversed(relative.parts[:-1]):
            match = _TRIAL_FOLDER.match(folder)
            if match is not None:
                break
    if match is None:
        return None
    return match["activity"].lower(), int(match["subject"])


def read_column_names(path: Path) -> list[str]:
    """Column names from a `column_names.txt`: one per line (optionally numbered) or comma-separated.

    Accepted line forms: `timestamp`, `1 timestamp`, `1: timestamp`, `Column: 1 timestamp`, and a
    single line `timestamp, Ktch_B1_Drawer, …`.
    """
    names: list[str] = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.strip()
        if not line:
            continue
        numbered = _NUMBERED_NAME.match(line)
        if numbered is not None:
            names.append(numbered["name"])
        else:
            names.extend(part.strip() for part in line.split(",") if part.strip())
    if not names:
        raise ValueError(f"{path}: no column names found")
    return names


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _sniff_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _nearest_column_names_file(folder: Path, root: Path) -> Path | None:
    """The `column_names.txt` in `folder` or the closest folder above it, not above `root`."""
    for candidate in (folder, *folder.parents):
        path = candidate / "column_names.txt"
        if path.is_file():
            return path
        if candidate == root:
            break
    return None


@dataclass(frozen=True)
class CsvColumns:
    """What a CSV's first row says about its columns.

    Attributes:
        path: The CSV file.
        names: Column names (from the header or from `column_names.txt`); empty if unknown.
        has_header: Whether the first row is a header.
        names_file: The `column_names.txt` the names came from, if any.
    """

    path: Path
    names: list[str]
    has_header: bool
    names_file: Path | None


def csv_columns(path: Path, root: Path) -> CsvColumns:
    """Column names of a CSV: its header row, or the nearest `column_names.txt` if it has none.

    A first row is a header when none of its cells is a number.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(8192)
    first_line = next((line for line in sample.splitlines() if line.strip()), "")
    if not first_line:
        return CsvColumns(path, [], False, None)
    first_row = [cell.strip() for cell in next(csv.reader([first_line], _sniff_dialect(sample)))]
    if not any(_is_number(cell) for cell in first_row):
        return CsvColumns(path, first_row, True, None)
    names_file = _nearest_column_names_file(path.parent, root)
    names = read_column_names(names_file) if names_file is not None else []
    return CsvColumns(path, names, False, names_file)


@dataclass(frozen=True)
class Trial:
    """The files of one complete trial.

    Attributes:
        name: Trial id (`tea_s01`).
        activity: Activity name as found in the file names (lower case).
        subject: Subject number (1-based).
        video: The RGB `.mp4` (None only when discovered with `require_video=False`).
        ambient: The ambient CSV.
        columns: Its column names and where they came from.
    """

    name: str
    activity: str
    subject: int
    video: Path | None
    ambient: Path
    columns: CsvColumns


@dataclass
class Discovery:
    """Every trial found under a root, complete or not.

    Attributes:
        root: The folder searched.
        trials: Complete trials by name.
        incomplete: Trials lacking a video or an ambient CSV: name → what is missing (and what
            was found).
    """

    root: Path
    trials: dict[str, Trial] = field(default_factory=dict)
    incomplete: dict[str, str] = field(default_factory=dict)


def _looks_inertial(relative: Path) -> bool:
    parts = [part.lower() for part in (*relative.parts[:-1], relative.stem)]
    return any(hint in part for part in parts for hint in _INERTIAL_HINTS)


def _choose_ambient(
    name: str, csvs: Sequence[Path], root: Path, channels: Sequence[str]
) -> tuple[CsvColumns | None, str]:
    """Pick the ambient CSV of a trial among its CSV files (None + reason when there is none).

    Raises:
        ValueError: Several CSVs hold the channels, or the only candidates lack some of them.
    """
    columns = [csv_columns(path, root) for path in csvs]
    complete = [c for c in columns if all(ch in c.names for ch in channels)]
    if len(complete) > 1:
        raise ValueError(
            f"trial {name}: several CSVs hold the requested channels: "
            f"{[str(c.path) for c in complete]}; narrow data.init_args.csv_glob"
        )
    if complete:
        return complete[0], ""
    partial = [c for c in columns if any(ch in c.names for ch in channels)]
    candidates = partial or [c for c in columns if not _looks_inertial(c.path.relative_to(root))]
    if not candidates:
        found = [str(path) for path in csvs]
        wanted = f"no ambient CSV ({name}*.csv or {name}/*.csv with the columns {list(channels)})"
        return None, wanted + (f"; only inertial CSVs: {found}" if found else "")
    problems = []
    for c in candidates:
        if not c.names:
            source = "it has no header and no column_names.txt was found in its folder or above"
            problems.append(f"{c.path}: {source}")
        else:
            missing = [ch for ch in channels if ch not in c.names]
            origin = f" (names from {c.names_file})" if c.names_file else ""
            problems.append(f"{c.path} lacks column(s) {missing}; it has {c.names}{origin}")
    raise ValueError(f"trial {name}: ambient CSV without the requested channels: " + "; ".join(problems))


def discover_trials(
    root: str | Path,
    channels: Sequence[str],
    *,
    video_glob: str = "**/*.mp4",
    csv_glob: str = "**/*.csv",
    require_video: bool = True,
) -> Discovery:
    """Find every trial under `root` by trial id, whatever the folder tree.

    Args:
        root: Folder holding the release (any depth).
        channels: Ambient channels that identify the ambient CSV.
        video_glob: Pattern (relative to root) of the video files.
        csv_glob: Pattern of the CSV files.
        require_video: Count a trial without video as incomplete (false: sensor-only
            prediction, which never opens a video).

    Returns:
        Complete trials and, separately, the incomplete ones with what they lack.

    Raises:
        FileNotFoundError: `root` does not exist or holds no trial files.
        ValueError: Ambiguous files, or an ambient CSV without the requested channels.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"data.init_args.root: HWU-USP folder {root} does not exist")
    videos: dict[str, list[Path]] = {}
    csvs: dict[str, list[Path]] = {}
    for pattern, bucket in ((video_glob, videos), (csv_glob, csvs)):
        for path in sorted(root.glob(pattern)):
            if not path.is_file():
                continue
            trial = trial_of_path(path.relative_to(root))
            if trial is not None:
                bucket.setdefault(trial_name(*trial), []).append(path)
    names = sorted(set(videos) | set(csvs))
    if not names:
        raise FileNotFoundError(
            f"no HWU-USP trial files (<activity>_s<NN>, globs {video_glob!r} and {csv_glob!r}) "
            f"under {root}"
        )
    discovery = Discovery(root)
    for name in names:
        activity, subject = parse_trial_name(name)
        trial_videos = videos.get(name, [])
        if len(trial_videos) > 1:
            raise ValueError(
                f"trial {name}: several videos {[str(p) for p in trial_videos]}; narrow "
                "data.init_args.video_glob (e.g. 'rgb_blurred/**/*.mp4')"
            )
        ambient, reason = _choose_ambient(name, csvs.get(name, []), root, channels)
        missing = []
        if not trial_videos and require_video:
            missing.append(f"no video ({name}*.mp4 or {name}/*.mp4 matching {video_glob!r})")
        if ambient is None:
            missing.append(reason)
        if missing:
            found = [str(p) for p in trial_videos] + ([str(ambient.path)] if ambient else [])
            discovery.incomplete[name] = "; ".join(missing) + (f"; found {found}" if found else "")
            continue
        assert ambient is not None
        video = trial_videos[0] if trial_videos else None
        discovery.trials[name] = Trial(name, activity, subject, video, ambient.path, ambient)
    return discovery


# ---- the ambient CSV -----------------------------------------------------------------------


@dataclass
class AmbientTable:
    """The requested channels of one ambient CSV on a relative millisecond clock.

    Attributes:
        time_ms: (rows,) strictly increasing, 0 at the first row.
        values: (rows, C) float64 in channel order, NaN where still unknown.
        rate_hz: Sampling rate measured from the timestamps (median step).
        notes: What the reader found (unit, gaps, filled cells), for logs and reports.
    """

    time_ms: np.ndarray
    values: np.ndarray
    rate_hz: float
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Duration covered by the table."""
        return float(self.time_ms[-1] - self.time_ms[0]) / 1000.0


def find_time_column(names: Sequence[str]) -> int | None:
    """Index of the timestamp column (`timestamp`, `time`, `time_ms`, …), None if there is none."""
    lowered = [name.strip().lower() for name in names]
    for index, name in enumerate(lowered):
        if name in _TIME_NAMES:
            return index
    for index, name in enumerate(lowered):
        if name.startswith(("timestamp", "time_", "time(", "time [")):
            return index
    return None


def _unit_from_name(name: str) -> str | None:
    tail = re.sub(r"^(timestamps?|time)", "", name.strip().lower()).strip(" _-()[]")
    for unit, pattern in _UNIT_HINTS:
        if tail and re.fullmatch(pattern, tail):
            return unit
    return None


def choose_timestamp_unit(
    name: str, raw: np.ndarray, reference_seconds: float | None, where: str
) -> tuple[str, str]:
    """Unit of numeric timestamps: from the column name, the epoch magnitude, or the sampling step.

    Args:
        name: Column name (`time_ms` says ms).
        raw: The timestamps as read.
        reference_seconds: The video's duration, to break a tie between plausible units.
        where: File name for messages.

    Returns:
        (unit, how it was decided).

    Raises:
        ValueError: No unit, or several, fit and nothing breaks the tie.
    """
    hinted = _unit_from_name(name)
    if hinted is not None:
        return hinted, f"from the column name {name!r}"
    first = abs(float(raw[0]))
    for unit in ("ns", "us", "ms", "s"):
        if first >= _EPOCH_FLOOR[unit]:
            return unit, f"Unix epoch in {unit} (first value {raw[0]:.0f})"
    steps = np.diff(raw)
    positive = steps[steps > 0]
    if positive.size == 0:
        raise ValueError(f"{where}: column {name!r} does not increase; cannot measure the clock")
    step = float(np.median(positive))
    low, high = _PLAUSIBLE_RATE_HZ
    candidates = [u for u in UNIT_MS if low <= 1000.0 / (step * UNIT_MS[u]) <= high]
    span = float(raw[-1] - raw[0])
    if len(candidates) != 1 and reference_seconds:
        pool = candidates or list(UNIT_MS)
        best = min(
            pool,
            key=lambda u: abs(math.log(max(span * UNIT_MS[u] / 1000.0, 1e-9) / reference_seconds)),
        )
        return best, (
            f"median step {step:g} fits {candidates or 'no unit at 0.5-2000 Hz'}; {best} matches "
            f"the video's {reference_seconds:.1f} s"
        )
    if len(candidates) == 1:
        return candidates[0], f"median step {step:g} gives a plausible rate only in {candidates[0]}"
    raise ValueError(
        f"{where}: cannot tell the unit of column {name!r} (values {raw[0]:g} … {raw[-1]:g}, "
        f"median step {step:g}; plausible units {candidates or 'none'}); set "
        "data.init_args.timestamp_unit to s, ms, us or ns"
    )


def _parse_time_cells(
    cells: Sequence[str], lines: Sequence[int], column: str, where: str
) -> tuple[np.ndarray, bool]:
    """Timestamps as floats; date-time strings become seconds since the first one.

    Returns:
        (values, whether they were date-times, i.e. already in seconds).
    """
    try:
        return np.array([float(cell) for cell in cells], dtype=np.float64), False
    except ValueError:
        pass
    parsers = (datetime.fromisoformat, time_of_day.fromisoformat)
    for parse in parsers:
        try:
            parse(cells[0])
        except ValueError:
            continue
        seconds = np.empty(len(cells), dtype=np.float64)
        start = parse(cells[0])
        for row, (cell, line) in enumerate(zip(cells, lines)):
            try:
                value = parse(cell)
            except ValueError:
                raise ValueError(
                    f"{where}: line {line}, column {column!r}: cannot read {cell!r} as a time "
                    f"like the first row's {cells[0]!r}"
                ) from None
            if isinstance(value, datetime):
                seconds[row] = (value - start).total_seconds()
            else:
                seconds[row] = (
                    (value.hour - start.hour) * 3600 + (value.minute - start.minute) * 60
                    + (value.second - start.second) + (value.microsecond - start.microsecond) / 1e6
                )
        return seconds, True
    bad = next(i for i, cell in enumerate(cells) if not _is_number(cell))
    raise ValueError(
        f"{where}: line {lines[bad]}, column {column!r}: timestamp {cells[bad]!r} is neither a "
        "number nor an ISO date/time"
    )


def forward_fill(values: np.ndarray) -> np.ndarray:
    """Replace each NaN by the last known value above it in its column (leading NaNs stay)."""
    rows = np.arange(values.shape[0])[:, None]
    last_known = np.where(np.isnan(values), 0, rows)
    np.maximum.accumulate(last_known, axis=0, out=last_known)
    filled = values[last_known, np.arange(values.shape[1])[None, :]]
    return filled


def fill_gaps(
    time_ms: np.ndarray, values: np.ndarray, step_ms: float, mode: GapFill
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Handle empty cells and missing rows of a state table.

    "hold": empty cells take the channel's last reading; missing rows (a step longer than 1.5×
    `step_ms`) are re-sampled on the grid t_0 + k·step_ms by holding the last row at or before
    each grid time. "interpolate": empty cells stay NaN and grid times without a row within half a
    step are NaN, for the shared linear interpolation.

    Returns:
        (time_ms, values, notes); unchanged when the table is dense.
    """
    notes = []
    empty = int(np.isnan(values).sum())
    if empty and mode == "hold":
        values = forward_fill(values)
    if empty:
        notes.append(f"{empty} empty cell(s) ({'held' if mode == 'hold' else 'interpolated'})")
    gaps = np.diff(time_ms) > 1.5 * step_ms
    if not gaps.any():
        return time_ms, values, notes
    count = int(np.floor((time_ms[-1] - time_ms[0]) / step_ms + 1e-6)) + 1
    grid = time_ms[0] + step_ms * np.arange(count, dtype=np.float64)
    if mode == "hold":
        source = np.searchsorted(time_ms, grid + 1e-3 * step_ms, side="right") - 1
        regular = values[source]
    else:
        nearest = np.clip(np.searchsorted(time_ms, grid), 1, time_ms.size - 1)
        nearest = np.where(
            np.abs(time_ms[nearest - 1] - grid) <= np.abs(time_ms[nearest] - grid), nearest - 1, nearest
        )
        regular = values[nearest].copy()
        regular[np.abs(time_ms[nearest] - grid) > 0.5 * step_ms] = np.nan
    notes.append(
        f"{int(gaps.sum())} gap(s) in the rows ({count - time_ms.size} row(s) short of a regular "
        f"{1000.0 / step_ms:.2f} Hz grid) re-sampled by {mode}"
    )
    return grid, regular, notes


def read_ambient_csv(
    path: str | Path,
    channels: Sequence[str],
    *,
    column_names: Sequence[str] | None = None,
    timestamp_unit: TimestampUnit = "auto",
    sensor_rate_hz: float | None = None,
    gap_fill: GapFill = "hold",
    reference_seconds: float | None = None,
) -> AmbientTable:
    """Read the requested channels of an ambient CSV onto a relative ms clock.

    Args:
        path: The CSV.
        channels: Column names to read, in output order.
        column_names: Names of a header-less CSV's columns (from `column_names.txt`).
        timestamp_unit: Unit of a numeric timestamp column ("auto": see `choose_timestamp_unit`).
        sensor_rate_hz: Rate of the grid for tables with gaps, and the clock of a table without a
            timestamp column (None: measured / required).
        gap_fill: "hold" or "interpolate" (see `fill_gaps`).
        reference_seconds: The video's duration (breaks ties between plausible timestamp units).

    Raises:
        ValueError: Missing columns (listing those present), non-numeric cells (file, line,
            column), or timestamps that go backwards or cannot be read.
    """
    path = Path(path)
    where = str(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(8192)
        handle.seek(0)
        reader = csv.reader(handle, _sniff_dialect(sample))
        rows = [
            (reader.line_num, [cell.strip() for cell in row])
            for row in reader
            if any(cell.strip() for cell in row)
        ]
    if not rows:
        raise ValueError(f"{where}: the file is empty")
    if not any(_is_number(cell) for cell in rows[0][1]):
        names = rows[0][1]
        rows = rows[1:]
    elif column_names is not None:
        names = list(column_names)
    else:
        raise ValueError(f"{where}: no header row and no column names given (column_names.txt)")
    if len(rows) < 2:
        raise ValueError(f"{where}: fewer than 2 data rows")
    missing = [channel for channel in channels if channel not in names]
    if missing:
        raise ValueError(f"{where}: lacks column(s) {missing}; it has {names}")
    repeated = [channel for channel in channels if names.count(channel) > 1]
    if repeated:
        raise ValueError(f"{where}: column(s) {repeated} appear more than once in {names}")
    lines = [line for line, _ in rows]
    values = np.empty((len(rows), len(channels)), dtype=np.float64)
    for column, channel in enumerate(channels):
        index = names.index(channel)
        for row, (line, cells) in enumerate(rows):
            cell = cells[index] if index < len(cells) else ""
            if cell.lower() in _MISSING_TOKENS:
                values[row, column] = np.nan
                continue
            try:
                values[row, column] = float(cell)
            except ValueError:
                raise ValueError(
                    f"{where}: line {line}, column {channel!r}: {cell!r} is not a number"
                ) from None
    notes: list[str] = []
    time_index = find_time_column(names)
    if time_index is None:
        if sensor_rate_hz is None:
            raise ValueError(
                f"{where}: no timestamp column among {names}; set data.init_args.sensor_rate_hz to "
                "give the rows a clock"
            )
        time_ms = np.arange(len(rows), dtype=np.float64) * 1000.0 / sensor_rate_hz
        notes.append(f"no timestamp column: rows at the configured {sensor_rate_hz:g} Hz")
    else:
        time_name = names[time_index]
        cells = [row[time_index] if time_index < len(row) else "" for _, row in rows]
        raw, in_seconds = _parse_time_cells(cells, lines, time_name, where)
        if in_seconds:
            unit, how = "s", "date-time strings"
        elif timestamp_unit != "auto":
            unit, how = timestamp_unit, "configured"
        else:
            unit, how = choose_timestamp_unit(time_name, raw, reference_seconds, where)
        time_ms = (raw - raw[0]) * UNIT_MS[unit]
        notes.append(f"timestamps in {unit} ({how})")
        backwards = np.flatnonzero(np.diff(time_ms) < 0)
        if backwards.size:
            line = lines[backwards[0] + 1]
            raise ValueError(f"{where}: line {line}: column {time_name!r} goes back in time")
        repeated_rows = np.flatnonzero(np.diff(time_ms) == 0)
        if repeated_rows.size:
            keep = np.ones(time_ms.size, dtype=bool)
            keep[repeated_rows] = False
            time_ms, values = time_ms[keep], values[keep]
            notes.append(f"{repeated_rows.size} repeated timestamp(s): the last row of each kept")
        if time_ms.size < 2:
            raise ValueError(f"{where}: fewer than 2 distinct timestamps")
    measured_step = float(np.median(np.diff(time_ms)))
    rate_hz = 1000.0 / measured_step
    notes.append(f"{rate_hz:.2f} Hz measured")
    if rate_hz < 1.0 and sensor_rate_hz is None:
        notes.append(
            f"a median step of {measured_step / 1000.0:.1f} s looks like an event log: set "
            "data.init_args.sensor_rate_hz for a finer grid"
        )
        log.warning("%s: %s", where, notes[-1])
    step_ms = 1000.0 / sensor_rate_hz if sensor_rate_hz else measured_step
    time_ms, values, gap_notes = fill_gaps(time_ms, values, step_ms, gap_fill)
    return AmbientTable(time_ms, values, rate_hz, notes + gap_notes)


def state_change_times(time_ms: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Times of the rows whose value differs from the previous known value of the channel."""
    known = ~np.isnan(values)
    times, states = time_ms[known], values[known]
    changed = states[1:] != states[:-1]
    return times[1:][changed]


def place_per_row(time_ms: np.ndarray, values: np.ndarray, radius_ms: float) -> np.ndarray:
    """Place id of every row: the channel with a state change nearest to it within `radius_ms`.

    Rows with no change within the radius get C (the "none" place, id K − 1).
    """
    rows, channels = values.shape
    distance = np.full((channels, rows), np.inf)
    for channel in range(channels):
        events = state_change_times(time_ms, values[:, channel])
        if events.size == 0:
            continue
        after = np.clip(np.searchsorted(events, time_ms), 0, events.size - 1)
        before = np.clip(after - 1, 0, events.size - 1)
        distance[channel] = np.minimum(np.abs(events[after] - time_ms), np.abs(time_ms - events[before]))
    nearest = distance.argmin(axis=0)
    return np.where(distance.min(axis=0) <= radius_ms, nearest, channels).astype(np.int64)


# ---- folds ---------------------------------------------------------------------------------


def fold_subjects(fold: int, num_folds: int) -> tuple[int, int]:
    """Test subjects of a leave-two-subjects-out fold: fold k tests subjects 2k − 1 and 2k."""
    if not 1 <= fold <= num_folds:
        raise ValueError(f"data.init_args.fold={fold} must lie in [1, num_folds={num_folds}]")
    return 2 * fold - 1, 2 * fold


# ---- the DataModule ------------------------------------------------------------------------


class HwuUspDataModule(WindowDataModule):
    """HWU-USP from the raw release: trials, folds, window or sequence (per-trial) probing.

    Args:
        root: Folder holding the release (any tree; trials are found by id).
        channels: Ambient CSV columns to use (None: the six of DETACH, `DEFAULT_CHANNELS`).
        classes: Activities probed, in class-id order (None: all nine, `ACTIVITIES`). DETACH
            probed five unpublished ones.
        fold: Leave-two-subjects-out fold (1-based): tests subjects 2·fold − 1 and 2·fold.
        num_folds: Number of folds (8 for the 16 subjects; fewer for small stand-ins).
        val_rule: "next_fold": validate on the next fold's subjects, train on the rest;
            "test_fold": validate on the test subjects (monitoring only), train on all others.
        skip_incomplete_trials: Skip (and count) trials lacking a video or an ambient CSV instead
            of failing.
        video_glob: Glob (relative to root) of the video files.
        csv_glob: Glob of the CSV files.
        timestamp_unit: Unit of numeric timestamps ("auto": decided per file, and logged).
        sensor_rate_hz: Grid rate for tables with gaps / clock of tables without timestamps
            (None: measured).
        gap_fill: "hold" (states persist; default) or "interpolate" for empty cells and missing rows.
        video_offset_ms: Where time 0 of the video's clock lies on the sensor clock (0: both start at
            the trial start; a stream's own start time is part of its frames' times).
        max_video_shortfall: Largest fraction of the sensor duration a video may lack before the
            trial is rejected (0.2); shorter gaps only drop the windows the video does not cover.
        trials_per_batch: Batch size of the sequence probe, in trials (`batch_size` counts
            windows, for pre-training and window probing).
        **kwargs: Shared settings of `WindowDataModule` (cache_dir, windows, batch_size, …).
    """

    dataset_name = "hwu_usp"

    def __init__(
        self,
        root: str,
        channels: list[str] | None = None,
        classes: list[str] | None = None,
        fold: int = 1,
        num_folds: int = 8,
        val_rule: ValRule = "next_fold",
        skip_incomplete_trials: bool = False,
        video_glob: str = "**/*.mp4",
        csv_glob: str = "**/*.csv",
        timestamp_unit: TimestampUnit = "auto",
        sensor_rate_hz: float | None = None,
        gap_fill: GapFill = "hold",
        video_offset_ms: float = 0.0,
        max_video_shortfall: float = 0.2,
        trials_per_batch: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.channels = list(channels) if channels is not None else list(DEFAULT_CHANNELS)
        self.classes = list(classes) if classes is not None else list(ACTIVITIES)
        for setting, names in (("channels", self.channels), ("classes", self.classes)):
            if not names or len(set(names)) != len(names):
                raise ValueError(f"data.init_args.{setting}={names}: need at least one name, no repeats")
        fold_subjects(fold, num_folds)
        if val_rule == "next_fold" and num_folds < 2:
            raise ValueError("data.init_args.val_rule='next_fold' needs num_folds >= 2")
        if sensor_rate_hz is not None and not sensor_rate_hz > 0:
            raise ValueError(f"data.init_args.sensor_rate_hz={sensor_rate_hz} must be > 0")
        if trials_per_batch < 1:
            raise ValueError(f"data.init_args.trials_per_batch={trials_per_batch} must be >= 1")
        if not 0.0 <= max_video_shortfall < 1.0:
            raise ValueError(
                f"data.init_args.max_video_shortfall={max_video_shortfall} must lie in [0, 1)"
            )
        self.fold = fold
        self.num_folds = num_folds
        self.val_rule = val_rule
        self.skip_incomplete_trials = skip_incomplete_trials
        self.video_glob = video_glob
        self.csv_glob = csv_glob
        self.timestamp_unit = timestamp_unit
        self.sensor_rate_hz = sensor_rate_hz
        self.gap_fill = gap_fill
        self.video_offset_ms = video_offset_ms
        self.max_video_shortfall = max_video_shortfall
        self.trials_per_batch = trials_per_batch
        self.window_batch_size = self.batch_size
        self._discovery: Discovery | None = None
        self.trial_notes: dict[str, list[str]] = {}

    # ---- the release --------------------------------------------------------------------

    @property
    def discovery(self) -> Discovery:
        """The trials under `root` (searched once), after the incomplete-trial rule and class check.

        Raises:
            FileNotFoundError: Incomplete trials while `skip_incomplete_trials` is off (each named
                with what it lacks).
            ValueError: A configured class that no trial has.
        """
        if self._discovery is None:
            found = discover_trials(
                self.root, self.channels, video_glob=self.video_glob, csv_glob=self.csv_glob
            )
            if found.incomplete:
                listing = "; ".join(f"{name}: {why}" for name, why in found.incomplete.items())
                if not self.skip_incomplete_trials:
                    raise FileNotFoundError(
                        f"{len(found.incomplete)} incomplete HWU-USP trial(s) under {found.root}: "
                        f"{listing} (set data.init_args.skip_incomplete_trials=true to skip them)"
                    )
                log.warning("skipping %d incomplete trial(s): %s", len(found.incomplete), listing)
            if not found.trials:
                raise FileNotFoundError(f"no complete HWU-USP trial under {found.root}")
            present = sorted({trial.activity for trial in found.trials.values()})
            absent = [name for name in self.classes if name not in present]
            if absent:
                raise ValueError(
                    f"data.init_args.classes: {absent} has no trial under {found.root}; "
                    f"activities found: {present}"
                )
            self._discovery = found
        return self._discovery

    @property
    def skipped_trials(self) -> dict[str, str]:
        """Trials left out for lack of a file: name → what is missing."""
        return dict(self.discovery.incomplete)

    def trials(self) -> list[Trial]:
        """Complete trials, ordered by subject, then activity (release order)."""
        vocabulary = self.activities()
        return sorted(
            self.discovery.trials.values(), key=lambda t: (t.subject, vocabulary.index(t.activity))
        )

    def activities(self) -> list[str]:
        """Activity vocabulary of the cache: the release's nine, then any other name found."""
        found = {trial.activity for trial in self.discovery.trials.values()}
        return list(ACTIVITIES) + sorted(found - set(ACTIVITIES))

    def subjects(self) -> list[int]:
        """Subjects with at least one complete trial."""
        return sorted({trial.subject for trial in self.discovery.trials.values()})

    def check_trial(self, trial: Trial) -> tuple[VideoInfo, AmbientTable]:
        """Measure one trial's video and read its ambient CSV, without decoding a frame.

        Raises:
            ValueError: The video is more than `max_video_shortfall` shorter than the sensor table
                (both durations given), or a file is malformed.
        """
        info = probe_video(trial.video)
        video_seconds = info.num_frames / info.fps if info.num_frames else info.duration_seconds
        table = read_ambient_csv(
            trial.ambient,
            self.channels,
            column_names=None if trial.columns.has_header else trial.columns.names,
            timestamp_unit=self.timestamp_unit,
            sensor_rate_hz=self.sensor_rate_hz,
            gap_fill=self.gap_fill,
            reference_seconds=video_seconds,
        )
        if video_seconds is not None:
            covered = video_seconds + self.video_offset_ms / 1000.0
            if covered < (1.0 - self.max_video_shortfall) * table.seconds:
                raise ValueError(
                    f"trial {trial.name}: the video {trial.video} lasts {video_seconds:.2f} s but the "
                    f"ambient table {trial.ambient} {table.seconds:.2f} s (more than "
                    f"{self.max_video_shortfall:.0%} shorter; data.init_args.max_video_shortfall)"
                )
        return info, table

    def check_trials(self, trials: Sequence[Trial]) -> dict[str, tuple[VideoInfo, AmbientTable]]:
        """Check every trial's files before any frame is decoded, listing every problem at once.

        Without this a bad cell of a late trial is found only after the trials before it were
        decoded. The tables read here are kept for the build (they are small).

        Raises:
            ValueError: One or more trials have a file that cannot be read (each named).
        """
        checked: dict[str, tuple[VideoInfo, AmbientTable]] = {}
        problems = []
        for trial in trials:
            try:
                checked[trial.name] = self.check_trial(trial)
            except (OSError, ValueError) as error:
                problems.append(f"{trial.name}: {error}")
        if problems:
            raise ValueError(
                f"HWU-USP under {self.discovery.root}: {len(problems)} of {len(trials)} trial(s) "
                "cannot be read, found before building the cache:\n  " + "\n  ".join(problems)
            )
        return checked

    def read_trial(self, trial: Trial, checked: tuple[VideoInfo, AmbientTable] | None = None) -> RunRecording:
        """One trial as a recording (frames stream later, once).

        Args:
            trial: The trial.
            checked: Its `check_trial` result when already known (else measured here).

        Raises:
            ValueError: See `check_trial`.
        """
        info, table = checked if checked is not None else self.check_trial(trial)
        video_seconds = info.num_frames / info.fps if info.num_frames else info.duration_seconds
        notes = [*table.notes, f"video {info.fps:.3f} fps, {video_seconds or float('nan'):.2f} s"]
        self.trial_notes[trial.name] = notes
        log.info("trial %s: %s", trial.name, "; ".join(notes))
        radius_ms = 500.0 * self.windows.window_seconds
        rows = table.time_ms.shape[0]
        return RunRecording(
            name=trial.name,
            time_ms=table.time_ms,
            sensor=table.values,
            row_label=np.full(rows, self.activities().index(trial.activity), dtype=np.int64),
            row_place=place_per_row(table.time_ms, table.values, radius_ms),
            frames=iter_timed_frames(trial.video, self.windows.image_size),
            fps=info.fps,
            subject=trial.subject,
            sequence_label=self.activities().index(trial.activity),
            num_frames=info.num_frames,
            video_offset_ms=self.video_offset_ms,
            source=f"{trial.video} + {trial.ambient}",
        )

    # ---- WindowDataModule hooks ------------------------------------------------------------

    def source_settings(self) -> dict[str, Any]:
        return {
            "root": str(self.discovery.root),
            "trials": [trial.name for trial in self.trials()],
            "channels": self.channels,
            "video_glob": self.video_glob,
            "csv_glob": self.csv_glob,
            "timestamp_unit": self.timestamp_unit,
            "sensor_rate_hz": self.sensor_rate_hz,
            "gap_fill": self.gap_fill,
            "video_offset_ms": self.video_offset_ms,
        }

    def recordings(self) -> Iterator[RunRecording]:
        """The trials in release order; every trial's files are checked first (`check_trials`)."""
        trials = self.trials()
        checked = self.check_trials(trials)
        for trial in trials:
            yield self.read_trial(trial, checked.pop(trial.name))

    @property
    def report_path(self) -> Path:
        """`<cache>.report.json`: what preparing found in each trial's files."""
        return self.cache_path.with_suffix(".report.json")

    def prepare_data(self) -> None:
        """Build the cache if it is missing, and write its report next to it.

        The report holds, per trial, the clock unit and rates found, the gaps filled, the
        durations and windows kept or dropped; and the trials skipped for a missing file.
        """
        if self.cache_path.is_file():
            return
        ensure_writable_folder(self.cache_dir, "data.init_args.cache_dir")
        super().prepare_data()
        report = {
            "root": str(self.discovery.root),
            "skipped_trials": self.skipped_trials,
            "trials": {
                run.name: {
                    "found": self.trial_notes.get(run.name, []),
                    "sensor_seconds": run.sensor_seconds,
                    "video_seconds": run.video_seconds,
                    "frames": run.num_frames,
                    "windows": run.windows,
                    "windows_without_video": run.windows_without_video,
                    "notes": run.notes,
                }
                for run in self.reports
            },
        }
        write_atomically(self.report_path, json.dumps(report, indent=2))
        log.info("HWU-USP cache %s prepared; report in %s", self.cache_path, self.report_path)

    def num_recordings(self) -> int:
        return len(self.discovery.trials)

    @property
    def data_info(self) -> DataInfo:
        places = [*self.channels, NONE_PLACE]
        return DataInfo(
            num_channels=len(self.channels),
            num_classes=len(self.classes),
            num_places=len(places),
            class_names=list(self.classes),
            place_names=places,
            channel_names=list(self.channels),
        )

    def cache_meta(self) -> dict[str, Any]:
        """The cache's labels index the activity vocabulary, not the configured class subset."""
        return {
            **super().cache_meta(),
            "class_names": self.activities(),
            "activities": self.activities(),
            "skipped_trials": self.skipped_trials,
            "label_note": "window label and run sequence_label = index into 'activities'",
        }

    def split_subjects(self) -> dict[str, list[int]]:
        """Subjects of the default train / val / test split of the configured fold."""
        test = list(fold_subjects(self.fold, self.num_folds))
        if self.val_rule == "next_fold":
            val = list(fold_subjects(self.fold % self.num_folds + 1, self.num_folds))
        else:
            val = test
        train = [s for s in self.subjects() if s not in test and s not in val]
        return {"train_runs": train, "val_runs": val, "test_runs": test}

    def default_splits(self) -> dict[str, list[str]]:
        """Trials of the fold's subjects (leave two subjects out; see `split_subjects`)."""
        splits = {}
        for split, subjects in self.split_subjects().items():
            names = [trial.name for trial in self.trials() if trial.subject in subjects]
            if not names:
                raise ValueError(
                    f"fold {self.fold} of {self.num_folds}: no trial of subject(s) {subjects} for "
                    f"data.{split} (subjects found: {self.subjects()})"
                )
            splits[split] = names
        return splits

    def _class_of_activity(self, vocabulary: Sequence[str]) -> np.ndarray:
        """Map vocabulary index → configured class id (−1 outside the subset)."""
        return np.array(
            [self.classes.index(name) if name in self.classes else -1 for name in vocabulary],
            dtype=np.int64,
        )

    def sequence_labels(self, cache: WindowCache) -> dict[int, int]:
        """Class id of each trial within the configured subset; trials outside it are omitted."""
        to_class = self._class_of_activity(cache.meta["activities"])
        labels = {}
        for index, name in enumerate(cache.run_names):
            label = int(to_class[int(cache.run_attrs[name]["sequence_label"])])
            if label >= 0:
                labels[index] = label
        return labels

    def setup(self, stage: str | None = None) -> None:
        """Open the cache with window labels mapped to the class subset, then the shared setup.

        For the sequence probe the loaders batch `trials_per_batch` trials.
        """
        if self.cache is None:
            if not self.cache_path.is_file():
                self.prepare_data()
            cache = WindowCache(self.cache_path)
            to_class = self._class_of_activity(cache.meta["activities"])
            cache.label = np.where(cache.label >= 0, to_class[np.maximum(cache.label, 0)], -1)
            self.cache = cache
        super().setup(stage)
        sequences = self.resolved_purpose() == "probe" and self.probe_unit == "sequence"
        if sequences:
            self.batch_size = self.trials_per_batch
        for split, dataset in self.datasets.items():
            if isinstance(dataset, SequenceDataset) and len(dataset) == 0:
                raise ValueError(
                    f"data.{split}_runs {self.split(f'{split}_runs')}: no trial of the classes "
                    f"{self.classes}"
                )
