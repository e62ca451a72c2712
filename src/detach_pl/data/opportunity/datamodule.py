"""Opportunity++ read from the raw release: run discovery, parsing and the DataModule.

The release (Ciliberto et al. 2021; layout in `docs/datasets/opportunity.md`) holds 24 runs,
`S1-ADL1` … `S4-Drill`, each a folder with the OPPORTUNITY sensor matrix
(`<run>_sensors_data.txt`: 250 whitespace-separated columns, `NaN` tokens, column 1 = ms), a side
camera video (`<run>_side.avi`) and SubRip label tracks (`*.srt`). `column_names.txt` and
`label_legend.txt` describe the columns and label ids.

What this module adds to the shared window cache (`detach_pl.data.cache`):

* channels are chosen **by name** from `column_names.txt` (default: the 37 ambient channels,
  columns 195–231: 13 reed switches and 8 three-axis accelerometers on doors, drawers and
  appliances);
* window labels come from the matrix's `ML_Both_Arms` column, mapped to DETACH's 14 open/close
  classes (the other gestures of the track become null); the SRT tracks are checked against it
  and used only when the column is empty;
* each window's place (door 1 … drawer 3) is kept for cluster diagnostics;
* the frame rate is measured from each video, never assumed; durations are compared with the
  sensor timeline and a mismatch is reported (only the overlap is used).

`python -m detach_pl.data.opportunity prepare --config configs/opp/stage1.yaml
--data.init_args.root /data/Opportunity++` builds the cache ahead of training.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detach_pl.data.cache import RunRecording, RunReport
from detach_pl.data.checks import ensure_writable_folder
from detach_pl.data.datamodule import WindowDataModule
from detach_pl.data.info import DataInfo
from detach_pl.data.video import TimedFrame, VideoInfo, iter_timed_frames, probe_video
from detach_pl.deploy.preprocess import timestamp_problem
from detach_pl.io import write_atomically

log = logging.getLogger(__name__)

#: Bump when parsing changes what ends up in a cache (part of the cache key).
PARSER_VERSION = 1

#: The 24 runs of the release: 4 subjects × (5 ADL runs + 1 Drill run).
RUN_NAMES: tuple[str, ...] = tuple(
    f"S{subject}-{kind}"
    for subject in range(1, 5)
    for kind in ("ADL1", "ADL2", "ADL3", "ADL4", "ADL5", "Drill")
)

_REED_SWITCHES: tuple[str, ...] = (
    "DISHWASHER S1", "FRIDGE S3", "FRIDGE S2", "FRIDGE S1", "MIDDLEDRAWER S1", "MIDDLEDRAWER S2",
    "MIDDLEDRAWER S3", "LOWERDRAWER S3", "LOWERDRAWER S2", "UPPERDRAWER", "DISHWASHER S3",
    "LOWERDRAWER S1", "DISHWASHER S2",
)
_AMBIENT_ACCELEROMETERS: tuple[str, ...] = (
    "DOOR1", "LAZYCHAIR", "DOOR2", "DISHWASHER", "UPPERDRAWER", "LOWERDRAWER", "MIDDLEDRAWER",
    "FRIDGE",
)

#: DETACH's ambient input: the names of columns 195–231 of `column_names.txt`, in file order.
AMBIENT_CHANNELS: tuple[str, ...] = tuple(f"REED SWITCH {name}" for name in _REED_SWITCHES) + tuple(
    f"Accelerometer {name} acc{axis}" for name in _AMBIENT_ACCELEROMETERS for axis in "XYZ"
)

#: The places of the kitchen (K = 7 clusters of stage 1), in place-id order.
PLACE_NAMES: tuple[str, ...] = (
    "door 1", "door 2", "fridge", "dishwasher", "drawer 1", "drawer 2", "drawer 3",
)

#: DETACH's 14 probe classes (names of the `ML_Both_Arms` track in `label_legend.txt`), in class
#: order, with the place each one happens at.
DETACH_CLASSES: tuple[tuple[str, str], ...] = (
    ("Open Door 1", "door 1"),
    ("Open Door 2", "door 2"),
    ("Close Door 1", "door 1"),
    ("Close Door 2", "door 2"),
    ("Open Fridge", "fridge"),
    ("Close Fridge", "fridge"),
    ("Open Dishwasher", "dishwasher"),
    ("Close Dishwasher", "dishwasher"),
    ("Open Drawer 1", "drawer 1"),
    ("Close Drawer 1", "drawer 1"),
    ("Open Drawer 2", "drawer 2"),
    ("Close Drawer 2", "drawer 2"),
    ("Open Drawer 3", "drawer 3"),
    ("Close Drawer 3", "drawer 3"),
)

PLACE_TRACK = "ML_Both_Arms"
TIME_COLUMN = "MILLISEC"
_COLUMN_PATTERN = re.compile(r"Column:\s*(\d+)\s+(.*?)(;|$)")
_LEGEND_PATTERN = re.compile(r"^\s*(\d+)\s+-\s+(\S+)\s+-\s+(.*?)\s*$")
_SRT_TIME = re.compile(
    r"^\s*(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})\s*-->\s*(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
)
_VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")
#: Rows whose SRT label differs from the matrix above this fraction trigger a warning.
SRT_DISAGREEMENT_WARNING = 0.05


# ---- the two description files ---------------------------------------------------------------


@dataclass(frozen=True)
class LegendEntry:
    """One line of `label_legend.txt`: `<id>   -   <track>   -   <name>`."""

    label_id: int
    track: str
    name: str


def find_release_file(root: Path, name: str) -> Path:
    """Locate `column_names.txt` / `label_legend.txt` in the root or in `data/`.

    Raises:
        FileNotFoundError: Neither place holds the file (both are named).
    """
    candidates = [root / name, root / "data" / name]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"Opportunity++: {name} not found; looked for {candidates[0]} and {candidates[1]} "
        "(data.init_args.root must be the unpacked release)"
    )


def parse_column_names(path: str | Path) -> list[str]:
    """Column names of the sensor matrix, in column order (index 0 = column 1 = MILLISEC).

    Lines look like `Column: 2 Accelerometer RKN^ accX; value = …`; the name is the text up to
    the first `;`. Names are not unique in the release (object sensors name three axes `accX`).

    Raises:
        ValueError: No column lines, or column numbers that are not 1, 2, …, N in order.
    """
    path = Path(path)
    names: list[str] = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        match = _COLUMN_PATTERN.search(line)
        if match is None:
            continue
        number = int(match.group(1))
        if number != len(names) + 1:
            raise ValueError(
                f"{path}:{line_number}: column {number} follows column {len(names)} "
                "(expected consecutive column numbers from 1)"
            )
        names.append(match.group(2).strip())
    if not names:
        raise ValueError(f"{path}: no 'Column: <n> <name>' lines found")
    return names


def parse_label_legend(path: str | Path) -> list[LegendEntry]:
    """Entries of `label_legend.txt` (the header and blank lines are skipped).

    Raises:
        ValueError: The file holds no entry, or one id appears twice.
    """
    path = Path(path)
    entries: list[LegendEntry] = []
    seen: dict[int, int] = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        match = _LEGEND_PATTERN.match(line)
        if match is None:
            continue
        label_id = int(match.group(1))
        if label_id in seen:
            raise ValueError(
                f"{path}:{line_number}: label id {label_id} already defined on line {seen[label_id]}"
            )
        seen[label_id] = line_number
        entries.append(LegendEntry(label_id, match.group(2), match.group(3)))
    if not entries:
        raise ValueError(f"{path}: no '<id> - <track> - <name>' lines found")
    return entries


def resolve_channels(column_names: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """0-based matrix columns of the wanted channels, in the order given.

    A channel is a column name of `column_names.txt` (it must name exactly one column) or
    `column:<n>` for the 1-based column n (for the release's duplicated names).

    Raises:
        ValueError: An unknown or ambiguous name, a column out of range, or a repeated channel.
    """
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(column_names):
        positions.setdefault(name, []).append(index)
    columns: list[int] = []
    for channel in wanted:
        text = channel.strip()
        if text.lower().startswith("column:"):
            number = text.split(":", 1)[1].strip()
            if not number.isdigit() or not 1 <= int(number) <= len(column_names):
                raise ValueError(
                    f"data.channels: {channel!r} is not a column between 1 and {len(column_names)}"
                )
            columns.append(int(number) - 1)
            continue
        found = positions.get(text, [])
        if not found:
            close = [name for name in positions if text.lower() in name.lower()][:8]
            raise ValueError(
                f"data.channels: no column named {channel!r} in column_names.txt"
                + (f"; similar names: {close}" if close else "")
            )
        if len(found) > 1:
            numbers = [index + 1 for index in found]
            raise ValueError(
                f"data.channels: {channel!r} names columns {numbers}; choose one as "
                f"'column:<n>', e.g. 'column:{numbers[0]}'"
            )
        columns.append(found[0])
    repeated = [column_names[c] for c, n in Counter(columns).items() if n > 1]
    if repeated:
        raise ValueError(f"data.channels: channel(s) {repeated} selected more than once")
    return columns


# ---- the sensor matrix and the SRT tracks ----------------------------------------------------


def _column_count_error(path: Path, line_number: int, count: int, expected: int) -> ValueError:
    """The error for a sensor-matrix line with the wrong number of columns."""
    return ValueError(
        f"{path}:{line_number}: {count} columns, expected {expected} (as listed in column_names.txt)"
    )


def _raise_first_bad_line(path: Path, num_columns: int) -> None:
    """Find the first malformed line of a sensor matrix and raise a ValueError naming it."""
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != num_columns:
                raise _column_count_error(path, line_number, len(tokens), num_columns)
            for column, token in enumerate(tokens, start=1):
                try:
                    float(token)
                except ValueError:
                    raise ValueError(
                        f"{path}:{line_number}: column {column} holds {token!r}, which is not a "
                        "number (expected an integer, a decimal or NaN)"
                    ) from None


def parse_sensor_matrix(path: str | Path, num_columns: int) -> np.ndarray:
    """Read a `*_sensors_data.txt` matrix: (rows, num_columns) float64, NaN where missing.

    Parsed with `numpy.loadtxt` (about 3 s for 60k rows × 250 columns); on failure the file is
    scanned once more to name the first bad line.

    Raises:
        ValueError: A row with another column count or a token that is not a number (file:line),
            or an empty file.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            matrix = np.loadtxt(path, dtype=np.float64, ndmin=2, comments=None)
    except ValueError as error:
        _raise_first_bad_line(path, num_columns)
        raise ValueError(f"{path}: cannot be parsed as a sensor matrix ({error})") from error
    if matrix.shape[0] == 0:
        raise ValueError(f"{path}: the sensor matrix has no rows")
    if matrix.shape[1] != num_columns:
        _raise_first_bad_line(path, num_columns)
        raise ValueError(f"{path}: {matrix.shape[1]} columns, expected {num_columns}")
    return matrix


#: Bytes a sensor matrix line may hold: digits, signs, decimal point, exponent, NaN, whitespace.
_MATRIX_BYTES = b"0123456789+-.eENaAn \t\r\n"


def check_sensor_matrix(path: str | Path, num_columns: int, time_column: int = 0) -> int:
    """Check a sensor matrix's shape and clock in one fast pass, without parsing it.

    Every line must hold `num_columns` tokens made of number characters, and the time column must
    be finite and strictly increasing: the cheap checks that find a truncated, garbled or
    misplaced file before a cache build spends minutes on the runs before it.

    Returns:
        The number of data lines.

    Raises:
        ValueError: The file is empty, or a line has another column count, a token that is not a
            number, or a time that is not finite or does not increase (file:line).
    """
    path = Path(path)
    rows, previous = 0, -np.inf
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != num_columns:
                raise _column_count_error(path, line_number, len(tokens), num_columns)
            if line.translate(None, _MATRIX_BYTES):
                bad = [c for c, token in enumerate(tokens) if token.translate(None, _MATRIX_BYTES)]
                raise ValueError(
                    f"{path}:{line_number}: column {bad[0] + 1} holds "
                    f"{tokens[bad[0]].decode(errors='replace')!r}, which is not a number "
                    "(expected an integer, a decimal or NaN)"
                )
            try:
                time = float(tokens[time_column])
            except ValueError:
                raise ValueError(
                    f"{path}:{line_number}: column {time_column + 1} holds "
                    f"{tokens[time_column].decode(errors='replace')!r}, which is not a number"
                ) from None
            if not np.isfinite(time):
                raise ValueError(f"{path}:{line_number}: {TIME_COLUMN} (column {time_column + 1}) is {time}")
            if time <= previous:
                raise ValueError(
                    f"{path}:{line_number}: {TIME_COLUMN} goes from {previous:.0f} to {time:.0f} ms "
                    "(expected strictly increasing times)"
                )
            previous = time
            rows += 1
    if rows == 0:
        raise ValueError(f"{path}: the sensor matrix has no rows")
    return rows


@dataclass(frozen=True)
class Subtitle:
    """One SRT block: [start_ms, stop_ms) carries label `label_id`."""

    start_ms: float
    stop_ms: float
    label_id: int


def _srt_ms(parts: Sequence[str]) -> int:
    """Milliseconds of an SRT time given as (hours, minutes, seconds, fraction digits)."""
    hours, minutes, seconds, fraction = parts
    return ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(fraction.ljust(3, "0"))


def parse_srt(path: str | Path) -> list[Subtitle]:
    """Read a SubRip label track whose texts are `<id> - <name>`.

    Raises:
        ValueError: A block without a `HH:MM:SS,mmm --> HH:MM:SS,mmm` line or whose text does not
            start with an integer label id (file:line).
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    subtitles: list[Subtitle] = []
    index = 0
    while index < len(lines):
        if not lines[index].strip():
            index += 1
            continue
        block_start = index
        block: list[str] = []
        while index < len(lines) and lines[index].strip():
            block.append(lines[index].strip())
            index += 1
        time_line = 1 if len(block) > 1 and _SRT_TIME.match(block[1]) else 0
        match = _SRT_TIME.match(block[time_line])
        if match is None:
            raise ValueError(
                f"{path}:{block_start + 1}: expected a subtitle counter and a "
                "'HH:MM:SS,mmm --> HH:MM:SS,mmm' line"
            )
        groups = match.groups()
        start, stop = _srt_ms(groups[:4]), _srt_ms(groups[4:])
        text = " ".join(block[time_line + 1 :])
        label = re.match(r"\s*(\d+)", text)
        if label is None:
            raise ValueError(
                f"{path}:{block_start + time_line + 2}: subtitle text {text!r} does not start "
                "with a label id ('<id> - <name>')"
            )
        subtitles.append(Subtitle(float(start), float(stop), int(label.group(1))))
    return subtitles


def subtitle_rows(subtitles: Sequence[Subtitle], time_ms: np.ndarray) -> np.ndarray:
    """Per-row label ids from subtitles (rows at `time_ms` inside [start, stop)); 0 elsewhere."""
    rows = np.zeros(time_ms.shape[0], dtype=np.int64)
    for subtitle in subtitles:
        first, last = np.searchsorted(time_ms, [subtitle.start_ms, subtitle.stop_ms])
        rows[first:last] = subtitle.label_id
    return rows


# ---- runs on disk ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFiles:
    """The files of one run; `missing` lists what was looked for and not found."""

    name: str
    folder: Path | None
    sensor: Path | None
    video: Path | None
    subtitles: tuple[Path, ...]
    missing: tuple[str, ...]


def _first_existing(folder: Path, names: Sequence[str], suffixes: Sequence[str]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    found = sorted(path for path in folder.iterdir() if path.suffix.lower() in suffixes)
    return found[0] if len(found) == 1 else None


def locate_run(root: Path, run: str, require_video: bool = True) -> RunFiles:
    """Find a run's folder (`<root>/data/<run>/` or `<root>/<run>/`) and its files.

    The sensor matrix is `<run>_sensors_data.txt` (or the UCI name `<run>.dat`), the video
    `<run>_side.avi` (or the folder's only video file), the label tracks every `*.srt`. Without
    `require_video` (sensor-only prediction) a missing video does not make the run incomplete.
    """
    candidates = [root / "data" / run, root / run]
    folder = next((path for path in candidates if path.is_dir()), None)
    if folder is None:
        return RunFiles(
            run, None, None, None, (),
            (f"run folder {candidates[0]} (or {candidates[1]})",),
        )
    sensor = _first_existing(folder, [f"{run}_sensors_data.txt", f"{run}.dat"], ())
    video = _first_existing(folder, [f"{run}_side.avi"], _VIDEO_SUFFIXES)
    missing = []
    if sensor is None:
        missing.append(f"sensor matrix {folder / f'{run}_sensors_data.txt'}")
    if video is None and require_video:
        missing.append(f"video {folder / f'{run}_side.avi'}")
    subtitles = tuple(sorted(folder.glob("*.srt")))
    return RunFiles(run, folder, sensor, video, subtitles, tuple(missing))


def subject_of(run: str) -> int:
    """Subject number of a run name like `S3-ADL2` (−1 when the name has another form)."""
    match = re.match(r"S(\d+)-", run)
    return int(match.group(1)) if match else -1


def run_sort_key(run: str) -> tuple[int, str]:
    """Release order for the 24 standard runs, then other names alphabetically."""
    return (RUN_NAMES.index(run), "") if run in RUN_NAMES else (len(RUN_NAMES), run)


# ---- the vocabulary: classes, places and how label ids map to them ------------------------------


@dataclass(frozen=True)
class LabelVocabulary:
    """How the label ids of the release map to probe classes and places.

    Attributes:
        track: Label column used for classes (`ML_Both_Arms` by default).
        class_names: Probe classes, in class-id order.
        class_of_id: Legend id → class id, for the classes chosen.
        track_ids: Every id the legend defines for `track` (others are *unknown*).
        place_of_id: `ML_Both_Arms` id → place id (the 14 open/close gestures).
    """

    track: str
    class_names: tuple[str, ...]
    class_of_id: dict[int, int]
    track_ids: frozenset[int]
    place_of_id: dict[int, int]

    @classmethod
    def from_legend(
        cls, legend: Sequence[LegendEntry], track: str, classes: Sequence[str] | None
    ) -> LabelVocabulary:
        """Build the vocabulary; classes default to DETACH's 14 (ML_Both_Arms) or the whole track.

        Raises:
            ValueError: The track or a class name is not in the legend (the choices are listed).
        """
        by_track: dict[str, list[LegendEntry]] = {}
        for entry in legend:
            by_track.setdefault(entry.track, []).append(entry)
        if track not in by_track:
            raise ValueError(f"data.label_track={track!r} is not a track of label_legend.txt: {sorted(by_track)}")
        if classes is None:
            classes = (
                [name for name, _ in DETACH_CLASSES]
                if track == PLACE_TRACK
                else [entry.name for entry in by_track[track]]
            )
        id_of_name = {entry.name: entry.label_id for entry in by_track[track]}
        unknown = [name for name in classes if name not in id_of_name]
        if unknown:
            raise ValueError(
                f"data.classes: {unknown} are not labels of track {track!r} in label_legend.txt; "
                f"its labels: {list(id_of_name)}"
            )
        if len(set(classes)) != len(classes):
            raise ValueError(f"data.classes lists a class twice: {list(classes)}")
        place_ids = {name: index for index, name in enumerate(PLACE_NAMES)}
        ml_ids = {entry.name: entry.label_id for entry in by_track.get(PLACE_TRACK, [])}
        place_of_id = {
            ml_ids[name]: place_ids[place] for name, place in DETACH_CLASSES if name in ml_ids
        }
        return cls(
            track=track,
            class_names=tuple(classes),
            class_of_id={id_of_name[name]: index for index, name in enumerate(classes)},
            track_ids=frozenset(id_of_name.values()),
            place_of_id=place_of_id,
        )


def map_label_ids(ids: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map per-row label ids through `mapping` (ids not in it → −1)."""
    values, inverse = np.unique(ids, return_inverse=True)
    mapped = np.array([mapping.get(int(value), -1) for value in values], dtype=np.int64)
    return mapped[inverse.reshape(-1)]


def _label_ids(column: np.ndarray) -> np.ndarray:
    """A label column of the matrix as integer ids (NaN → 0 = null)."""
    return np.nan_to_num(column, nan=0.0).astype(np.int64)


# ---- what preparing found ----------------------------------------------------------------------


@dataclass
class LabelReport:
    """What parsing the release found about its labels (and runs), stored next to the cache.

    Attributes:
        unknown_ids: Label id not defined by the legend for the label track → rows carrying it.
        excluded_ids: Legend id of the track that is not a probe class (e.g. Clean Table) → rows;
            these rows are null.
        class_rows: Rows per probe class.
        srt_agreement: Run → fraction of rows where the SRT of the label track agrees with the
            matrix's label column.
        runs_without_srt: Runs without an SRT of the label track.
        srt_fallback_runs: Runs whose label column was empty, labelled from the SRT.
        skipped_runs: Runs left out (missing files, `skip_incomplete_runs`) → what was missing.
        video: Run → measured fps, frame counts and durations.
    """

    unknown_ids: dict[int, int] = field(default_factory=dict)
    excluded_ids: dict[int, int] = field(default_factory=dict)
    class_rows: dict[str, int] = field(default_factory=dict)
    srt_agreement: dict[str, float] = field(default_factory=dict)
    runs_without_srt: list[str] = field(default_factory=list)
    srt_fallback_runs: list[str] = field(default_factory=list)
    skipped_runs: dict[str, str] = field(default_factory=dict)
    video: dict[str, dict[str, float | int | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict (integer keys become strings)."""
        data = asdict(self)
        for key in ("unknown_ids", "excluded_ids"):
            data[key] = {str(k): v for k, v in data[key].items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabelReport:
        """Inverse of `to_json`."""
        data = dict(data)
        for key in ("unknown_ids", "excluded_ids"):
            data[key] = {int(k): int(v) for k, v in data.get(key, {}).items()}
        return cls(**data)


# ---- the DataModule ----------------------------------------------------------------------------


class OpportunityDataModule(WindowDataModule):
    """Opportunity++ from the unpacked release, through the shared window cache.

    Default split (the classic OPPORTUNITY challenge split, with a validation set carved out of
    its training part): train = S1-ADL1…5, S1-Drill, S2-ADL1/2, S2-Drill, S3-ADL1/2, S3-Drill;
    val = S2-ADL3, S3-ADL3; test = S2-ADL4/5, S3-ADL4/5; S4 unused. The probe uses the same runs
    (labelled windows only).

    Args:
        root: The unpacked release (holds `data/<run>/` or `<run>/` folders, `column_names.txt`
            and `label_legend.txt` in the root or in `data/`).
        channels: Sensor channels by `column_names.txt` name (or `column:<n>`), in input order;
            None = the 37 ambient channels (columns 195–231).
        label_track: Label column giving the probe classes.
        classes: Probe classes by legend name, in class order; None = DETACH's 14 open/close
            classes for `ML_Both_Arms`, or every label of another track.
        runs: Runs stored in the cache; None = the union of train/val/test runs. List all 24
            to switch splits later without a rebuild.
        skip_incomplete_runs: Leave out (with a warning) runs whose folder or files are missing,
            instead of stopping; splits then drop them.
        check_srt: Compare the SRT track of `label_track` with the matrix (and use it when the
            matrix's label column is empty).
        require_video: Count a run without its video as incomplete (true: the cache needs the
            frames); false reads sensors only (`read_sensor_run`, deployment).
        **kwargs: Shared DataModule settings (`WindowDataModule`: cache_dir, windows, batch_size,
            num_workers, num_frames, train/val/test_runs, pretrain_windows, …).
    """

    dataset_name = "opportunity"

    def __init__(
        self,
        root: str,
        channels: list[str] | None = None,
        label_track: str = "ML_Both_Arms",
        classes: list[str] | None = None,
        runs: list[str] | None = None,
        skip_incomplete_runs: bool = False,
        check_srt: bool = True,
        require_video: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.require_video = require_video
        self.root = Path(root).expanduser()
        self.channels = list(channels) if channels is not None else list(AMBIENT_CHANNELS)
        if not self.channels:
            raise ValueError("data.channels is empty: choose at least one channel (None = the 37 ambient)")
        self.label_track = label_track
        self.classes = list(classes) if classes is not None else None
        self.runs = list(runs) if runs is not None else None
        self.skip_incomplete_runs = skip_incomplete_runs
        self.check_srt = check_srt
        self.label_report = LabelReport()
        self._columns: list[str] | None = None
        self._vocabulary: LabelVocabulary | None = None
        self._run_files: dict[str, RunFiles] | None = None

    # ---- release description, read lazily ------------------------------------------------------

    def _require_root(self) -> Path:
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data.init_args.root={str(self.root)!r} is not a folder: point it at the unpacked "
                "Opportunity++ release (see docs/datasets/opportunity.md)"
            )
        return self.root.resolve()

    @property
    def column_names(self) -> list[str]:
        """All 250 column names of the sensor matrix (from `column_names.txt`)."""
        if self._columns is None:
            self._columns = parse_column_names(find_release_file(self._require_root(), "column_names.txt"))
        return self._columns

    @property
    def vocabulary(self) -> LabelVocabulary:
        """Classes, places and label-id mapping (from `label_legend.txt`)."""
        if self._vocabulary is None:
            legend = parse_label_legend(find_release_file(self._require_root(), "label_legend.txt"))
            self._vocabulary = LabelVocabulary.from_legend(legend, self.label_track, self.classes)
        return self._vocabulary

    def channel_columns(self) -> list[int]:
        """0-based matrix columns of the chosen channels."""
        return resolve_channels(self.column_names, self.channels)

    def channel_labels(self) -> list[str]:
        """Channel names as stored: the column name, plus its number where the name repeats."""
        names = self.column_names
        counts = Counter(names)
        return [
            names[c] if counts[names[c]] == 1 else f"{names[c]} [column {c + 1}]"
            for c in self.channel_columns()
        ]

    def _named_column(self, name: str) -> int:
        try:
            return self.column_names.index(name)
        except ValueError:
            raise ValueError(f"column_names.txt has no column {name!r}") from None

    @property
    def data_info(self) -> DataInfo:
        vocabulary = self.vocabulary
        return DataInfo(
            num_channels=len(self.channel_columns()),
            num_classes=len(vocabulary.class_names),
            num_places=len(PLACE_NAMES),
            class_names=list(vocabulary.class_names),
            place_names=list(PLACE_NAMES),
            channel_names=self.channel_labels(),
        )

    # ---- runs and splits ----------------------------------------------------------------------

    def default_splits(self) -> dict[str, list[str]]:
        """The classic challenge split with S2-ADL3 and S3-ADL3 held out for validation."""
        return {
            "train_runs": [
                "S1-ADL1", "S1-ADL2", "S1-ADL3", "S1-ADL4", "S1-ADL5", "S1-Drill",
                "S2-ADL1", "S2-ADL2", "S2-Drill", "S3-ADL1", "S3-ADL2", "S3-Drill",
            ],
            "val_runs": ["S2-ADL3", "S3-ADL3"],
            "test_runs": ["S2-ADL4", "S2-ADL5", "S3-ADL4", "S3-ADL5"],
        }

    def requested_runs(self) -> list[str]:
        """Runs the configuration asks for: `runs`, or the union of the three splits."""
        if self.runs is not None:
            names = list(self.runs)
        else:
            names = [
                name
                for split in ("train_runs", "val_runs", "test_runs")
                for name in WindowDataModule.split(self, split)
            ]
        return sorted(dict.fromkeys(names), key=run_sort_key)

    def run_files(self) -> dict[str, RunFiles]:
        """Files of every requested run (looked up once)."""
        if self._run_files is None:
            root = self._require_root()
            self._run_files = {run: locate_run(root, run, self.require_video) for run in self.requested_runs()}
        return self._run_files

    def available_runs(self) -> list[str]:
        """The runs that go into the cache.

        Raises:
            FileNotFoundError: A run lacks its folder or a file and `skip_incomplete_runs` is
                false (every missing item is named).
        """
        files = self.run_files()
        incomplete = {run: entry.missing for run, entry in files.items() if entry.missing}
        if incomplete and not self.skip_incomplete_runs:
            found = sorted(
                path.name for base in (self.root, self.root / "data") if base.is_dir()
                for path in base.iterdir() if path.is_dir() and path.name in RUN_NAMES
            )
            details = "; ".join(f"{run}: missing {', '.join(items)}" for run, items in incomplete.items())
            raise FileNotFoundError(
                f"Opportunity++ release at {self.root} is incomplete: {details}. Run folders found: "
                f"{found}. Set data.init_args.skip_incomplete_runs=true to continue without them."
            )
        for run, items in incomplete.items():
            if run not in self.label_report.skipped_runs:
                self.label_report.skipped_runs[run] = ", ".join(items)
                log.warning("skipping run %s: missing %s", run, ", ".join(items))
        runs = [run for run in files if run not in incomplete]
        if not runs:
            raise FileNotFoundError(f"Opportunity++ release at {self.root}: none of the runs {list(files)} is complete")
        return runs

    def split(self, name: str) -> list[str]:
        """Split runs, without runs left out by `skip_incomplete_runs`."""
        runs = super().split(name)
        if not self.skip_incomplete_runs:
            return runs
        kept = set(self.available_runs())
        return [run for run in runs if run in kept]

    def num_recordings(self) -> int:
        return len(self.available_runs())

    # ---- cache key and metadata --------------------------------------------------------------

    def source_settings(self) -> dict[str, Any]:
        """Everything besides the window settings that shapes the cache."""
        runs = self.available_runs() if self.skip_incomplete_runs else self.requested_runs()
        vocabulary = self.vocabulary
        return {
            "parser_version": PARSER_VERSION,
            "root": str(self._require_root()),
            "runs": runs,
            "channel_columns": [c + 1 for c in self.channel_columns()],
            "channel_names": self.channel_labels(),
            "label_track": self.label_track,
            "classes": list(vocabulary.class_names),
            "check_srt": self.check_srt,
        }

    def cache_meta(self) -> dict[str, Any]:
        meta = super().cache_meta()
        meta.update(
            root=str(self._require_root()),
            label_track=self.label_track,
            channel_columns=[c + 1 for c in self.channel_columns()],
        )
        return meta

    @property
    def report_path(self) -> Path:
        """JSON file next to the cache with what preparing found (labels, SRTs, videos, runs)."""
        return self.cache_path.with_suffix(".report.json")

    # ---- reading the release ------------------------------------------------------------------

    def check_release(self, runs: Sequence[str]) -> None:
        """Check every run's files before any is read: probe each video, scan each sensor matrix.

        Without this a damaged file of a late run is found only after the runs before it were
        parsed and decoded (minutes each at full size). Every problem is listed at once.

        Raises:
            ValueError: A run's video cannot be opened, its matrix has a bad line, or an SRT
                track cannot be parsed (each run and file named).
        """
        files = self.run_files()
        num_columns = len(self.column_names)
        time_column = self._named_column(TIME_COLUMN)
        problems = []
        for run in runs:
            entry = files[run]
            checks = [lambda: check_sensor_matrix(entry.sensor, num_columns, time_column)]
            if entry.video is not None:
                checks.append(lambda: probe_video(entry.video))
            if self.check_srt:
                checks += [lambda path=path: parse_srt(path) for path in entry.subtitles]
            for check in checks:
                try:
                    check()
                except (OSError, ValueError) as error:
                    problems.append(f"{run}: {error}")
        if problems:
            raise ValueError(
                f"Opportunity++ release at {self.root}: {len(problems)} problem(s) in the files of "
                f"{len(runs)} run(s), found before building the cache:\n  " + "\n  ".join(problems)
            )

    def recordings(self) -> Iterator[RunRecording]:
        """Parse the runs one at a time (sensor matrix, labels, SRT check, video stream).

        All runs' files are checked first (`check_release`), before the first run is read.
        """
        runs = self.available_runs()
        self.check_release(runs)
        files = self.run_files()
        self.label_report = LabelReport(skipped_runs=dict(self.label_report.skipped_runs))
        for run in runs:
            entry = files[run]
            if entry.video is None:
                raise FileNotFoundError(f"run {run}: missing video {entry.folder}/{run}_side.avi")
            time_ms, sensor, row_label, row_place = self.read_sensor_run(run)
            video = probe_video(entry.video)
            self._check_durations(run, video, time_ms)
            yield RunRecording(
                name=run,
                time_ms=time_ms,
                sensor=sensor,
                row_label=row_label,
                row_place=row_place,
                frames=self._frames(run, video),
                fps=video.fps,
                subject=subject_of(run),
                num_frames=video.num_frames,
                source=str(entry.folder),
            )

    def read_sensor_run(self, run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One run's sensors and labels, never touching its video.

        Returns:
            (rows,) times in ms, (rows, C) chosen channels, (rows,) class ids, (rows,) place ids
            (−1: null).

        Raises:
            FileNotFoundError: The run's folder or sensor matrix is missing.
            ValueError: A bad line in the matrix or its clock (file and line named).
        """
        entry = self.run_files().get(run) or locate_run(self._require_root(), run, self.require_video)
        if entry.sensor is None:
            raise FileNotFoundError(f"run {run}: missing {', '.join(entry.missing)}")
        matrix = parse_sensor_matrix(entry.sensor, len(self.column_names))
        time_ms = self._timeline(matrix[:, self._named_column(TIME_COLUMN)], entry.sensor)
        label_column = self._named_column(self.label_track)
        place_column = self._named_column(PLACE_TRACK)
        track_ids = self._track_label_ids(run, entry, matrix[:, label_column], time_ms)
        place_ids = track_ids if label_column == place_column else _label_ids(matrix[:, place_column])
        row_label = map_label_ids(track_ids, self.vocabulary.class_of_id)
        row_place = map_label_ids(place_ids, self.vocabulary.place_of_id)
        self._count_labels(run, track_ids, row_label)
        return time_ms, matrix[:, self.channel_columns()].copy(), row_label, row_place

    @staticmethod
    def _timeline(column: np.ndarray, path: Path) -> np.ndarray:
        """The MILLISEC column, checked: finite and strictly increasing (names the bad line)."""
        problem = timestamp_problem(column)
        if problem is not None:
            row, why = problem
            column_name = f"{TIME_COLUMN} (column 1)" if why.startswith("is ") else TIME_COLUMN
            raise ValueError(f"{path}:{row + 1}: {column_name} {why}")
        return column.astype(np.float64)

    def _track_label_ids(self, run: str, entry: RunFiles, column: np.ndarray, time_ms: np.ndarray) -> np.ndarray:
        """Per-row ids of the label track: the matrix column, checked against its SRT."""
        ids = _label_ids(column)
        if not self.check_srt:
            return ids
        track = self._srt_of_track(entry)
        if track is None:
            self.label_report.runs_without_srt.append(run)
            if np.isnan(column).all():
                log.warning("run %s: the %s column is empty and no SRT of it exists: no labels", run, self.label_track)
            return ids
        path, subtitles = track
        srt_ids = subtitle_rows(subtitles, time_ms)
        if np.isnan(column).all():
            log.warning("run %s: the %s column is empty; labels taken from %s", run, self.label_track, path)
            self.label_report.srt_fallback_runs.append(run)
            return srt_ids
        agreement = float(np.mean(srt_ids == ids))
        self.label_report.srt_agreement[run] = agreement
        if agreement < 1.0 - SRT_DISAGREEMENT_WARNING:
            log.warning(
                "run %s: %s agrees with the matrix's %s column on only %.1f%% of rows; the matrix "
                "is used",
                run, path, self.label_track, 100.0 * agreement,
            )
        return ids

    def _srt_of_track(self, entry: RunFiles) -> tuple[Path, list[Subtitle]] | None:
        """The run's SRT whose label ids belong to the label track (file names are not trusted)."""
        track_ids = self.vocabulary.track_ids
        for path in entry.subtitles:
            subtitles = parse_srt(path)
            if not subtitles:
                continue
            share = np.mean([subtitle.label_id in track_ids for subtitle in subtitles])
            if share > 0.5:
                return path, subtitles
        return None

    def _count_labels(self, run: str, track_ids: np.ndarray, row_label: np.ndarray) -> None:
        """Count unknown and excluded ids and rows per class into `label_report`."""
        vocabulary = self.vocabulary
        report = self.label_report
        values, counts = np.unique(track_ids, return_counts=True)
        unknown_here: dict[int, int] = {}
        for value, count in zip(values.tolist(), counts.tolist()):
            if value == 0 or value in vocabulary.class_of_id:
                continue
            target = report.excluded_ids if value in vocabulary.track_ids else unknown_here
            target[value] = target.get(value, 0) + count
        for value, count in unknown_here.items():
            report.unknown_ids[value] = report.unknown_ids.get(value, 0) + count
        if unknown_here:
            log.warning(
                "run %s: label id(s) not in label_legend.txt for track %s (id: rows) %s; those "
                "rows are treated as null",
                run, self.label_track, unknown_here,
            )
        classes, class_counts = np.unique(row_label[row_label >= 0], return_counts=True)
        for class_id, count in zip(classes.tolist(), class_counts.tolist()):
            name = vocabulary.class_names[class_id]
            report.class_rows[name] = report.class_rows.get(name, 0) + count

    def _check_durations(self, run: str, video: VideoInfo, time_ms: np.ndarray) -> None:
        """Report the video's measured fps and warn when it and the sensor timeline disagree."""
        frames_seconds = video.num_frames / video.fps if video.num_frames else None
        video_seconds = frames_seconds if frames_seconds is not None else video.duration_seconds
        sensor_seconds = float(time_ms[-1]) / 1000.0
        self.label_report.video[run] = {
            "fps": video.fps,
            "container_frames": video.num_frames,
            "video_seconds": video_seconds,
            "sensor_seconds": sensor_seconds,
            "width": video.width,
            "height": video.height,
        }
        if video_seconds is not None and abs(video_seconds - sensor_seconds) > max(1.0, 2.0 / video.fps):
            log.warning(
                "run %s: the video %s lasts %.1f s (%s frames at a measured %.3f fps) but the sensor "
                "timeline ends at %.1f s: only the overlap is used, windows outside the video are "
                "dropped",
                run, video.path, video_seconds, video.num_frames, video.fps, sensor_seconds,
            )

    def _frames(self, run: str, video: VideoInfo) -> Iterator[TimedFrame]:
        """Stream the run's frames (with their times) at the cache size; note a count below the container's."""
        decoded = 0
        for frame in iter_timed_frames(video.path, self.windows.image_size):
            decoded += 1
            yield frame
        self.label_report.video[run]["decoded_frames"] = decoded
        if video.num_frames and decoded < video.num_frames - 1:
            log.warning(
                "run %s: decoded %d of the %d frames %s lists (truncated or damaged file); the "
                "frames decoded are used",
                run, decoded, video.num_frames, video.path,
            )

    # ---- preparing ---------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Build the cache if needed, then save (or load) what preparing found next to it."""
        existed = self.cache_path.is_file()
        if not existed:
            ensure_writable_folder(self.cache_dir, "data.init_args.cache_dir")
        super().prepare_data()
        if existed or not self.label_report.video:  # no run read here: another process built it
            if self.report_path.is_file():
                stored = json.loads(self.report_path.read_text())
                skipped = dict(self.label_report.skipped_runs)
                self.label_report = LabelReport.from_json(stored["labels"])
                self.label_report.skipped_runs.update(skipped)
                self.reports = [RunReport(**report) for report in stored["runs"]]
            return
        if self.label_report.unknown_ids:
            log.warning(
                "Opportunity++: %d row(s) carry label ids unknown to label_legend.txt (id: rows) %s",
                sum(self.label_report.unknown_ids.values()), self.label_report.unknown_ids,
            )
        report = {"labels": self.label_report.to_json(), "runs": [asdict(r) for r in self.reports]}
        write_atomically(self.report_path, json.dumps(report, indent=1))


def _summary(module: WindowDataModule) -> str:
    """A short text about a prepared cache, for the `prepare` command."""
    path = module.cache_path
    lines = [f"cache: {path} ({path.stat().st_size / 2**30:.2f} GiB)"]
    for report in module.reports:
        lines.append(
            f"  {report.name}: {report.windows} windows, sensor {report.sensor_seconds:.1f} s, "
            f"video {report.video_seconds:.1f} s" + (f"; {'; '.join(report.notes)}" if report.notes else "")
        )
    label_report = getattr(module, "label_report", None)
    if isinstance(label_report, LabelReport):
        lines.append(f"rows per class: {label_report.class_rows}")
        if label_report.unknown_ids:
            lines.append(f"unknown label ids (id: rows): {label_report.unknown_ids}")
        if label_report.skipped_runs:
            lines.append(f"skipped runs: {label_report.skipped_runs}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m detach_pl.data.opportunity prepare --config <stage config> [overrides]`.

    Reads the same configuration as `detach fit` (so the cache key is the one training will
    use), builds the cache if it is missing and prints a summary.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "prepare":
        print(
            "usage: python -m detach_pl.data.opportunity prepare --config configs/opp/stage1.yaml "
            "[--data.init_args.root /data/Opportunity++] [other `detach fit` overrides]",
            file=sys.stderr,
        )
        return 2
    from detach_pl.cli import main as cli_main

    cli = cli_main(args[1:], run=False)
    module = cli.datamodule
    existed = module.cache_path.is_file()
    module.prepare_data()
    print(("cache already prepared\n" if existed else "") + _summary(module))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
