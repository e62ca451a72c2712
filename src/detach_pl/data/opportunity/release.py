"""Reading the Opportunity++ release: its description files, sensor matrices, SRT tracks and run folders.

The release (Ciliberto et al. 2021; layout in `docs/datasets/opportunity.md`) holds 24 runs,
`S1-ADL1` … `S4-Drill`, each a folder with the OPPORTUNITY sensor matrix
(`<run>_sensors_data.txt`: 250 whitespace-separated columns, `NaN` tokens, column 1 = ms), a side
camera video (`<run>_side.avi`) and SubRip label tracks (`*.srt`). `column_names.txt` and
`label_legend.txt` describe the columns and label ids. Everything here parses and checks files;
nothing knows about caches or DataModules.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The 24 runs of the release: 4 subjects × (5 ADL runs + 1 Drill run).
RUN_NAMES: tuple[str, ...] = tuple(
    f"S{subject}-{kind}"
    for subject in range(1, 5)
    for kind in ("ADL1", "ADL2", "ADL3", "ADL4", "ADL5", "Drill")
)

TIME_COLUMN = "MILLISEC"
_COLUMN_PATTERN = re.compile(r"Column:\s*(\d+)\s+(.*?)(;|$)")
_LEGEND_PATTERN = re.compile(r"^\s*(\d+)\s+-\s+(\S+)\s+-\s+(.*?)\s*$")
_SRT_TIME = re.compile(
    r"^\s*(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})\s*-->\s*(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
)
_VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")


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


def _matrix_lines(path: Path, num_columns: int) -> Iterator[tuple[int, bytes, list[bytes]]]:
    """The non-empty lines of a sensor matrix as (line number, line, tokens), each of `num_columns` tokens.

    Raises:
        ValueError: A line with another column count (file:line).
    """
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != num_columns:
                raise _column_count_error(path, line_number, len(tokens), num_columns)
            yield line_number, line, tokens


def _raise_first_bad_line(path: Path, num_columns: int) -> None:
    """Find the first malformed line of a sensor matrix and raise a ValueError naming it."""
    for line_number, _, tokens in _matrix_lines(path, num_columns):
        for column, token in enumerate(tokens, start=1):
            try:
                float(token)
            except ValueError:
                raise ValueError(
                    f"{path}:{line_number}: column {column} holds {token.decode(errors='replace')!r}, which is "
                    "not a number (expected an integer, a decimal or NaN)"
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
    for line_number, line, tokens in _matrix_lines(path, num_columns):
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
