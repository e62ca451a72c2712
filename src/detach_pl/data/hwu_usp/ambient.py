"""Reading an HWU-USP ambient CSV onto a relative millisecond clock, and the place of every row.

- **Columns** are selected by header name (or by the names a header-less CSV is given).
- **Clock.** The timestamp column (`timestamp`, `time`, …) may hold seconds, milliseconds,
  micro/nanoseconds (relative or Unix epoch) or date-time strings; the unit is read from the
  column name, else from the epoch magnitude, else from the sampling step (the one unit that gives
  a plausible rate, 0.5–2000 Hz; ties and misses are decided by the video's duration). Times are
  made relative to the first row. The sensor rate is the median step. A median step over 1 s
  suggests an event log: set `sensor_rate_hz`.
- **Gaps.** A dense 0/1 table is used as is. Empty cells and missing rows (steps longer than 1.5×
  the median) are filled by `gap_fill`: "hold" (a state persists until the next reading, and
  missing rows are re-sampled on a regular grid at the sensor rate) or "interpolate" (left NaN for
  the shared linear interpolation and dead-channel rule).
- **Places**: a row belongs to the channel whose state changes nearest to it within a radius,
  else to "none" (`place_per_row`).
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as time_of_day
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

TimestampUnit = Literal["auto", "s", "ms", "us", "ns"]
GapFill = Literal["hold", "interpolate"]

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


def is_number(cell: str) -> bool:
    """Whether a CSV cell reads as a float."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def sniff_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    """The CSV dialect of a sample (`,`, `;` or tab separated; excel when unsure)."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        return csv.excel


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
        for row, (cell, line) in enumerate(zip(cells, lines, strict=True)):
            try:
                value = parse(cell)
            except ValueError:
                raise ValueError(
                    f"{where}: line {line}, column {column!r}: cannot read {cell!r} as a time "
                    f"like the first row's {cells[0]!r}"
                ) from None
            if isinstance(value, datetime) and isinstance(start, datetime):
                seconds[row] = (value - start).total_seconds()
            else:
                seconds[row] = (
                    (value.hour - start.hour) * 3600 + (value.minute - start.minute) * 60
                    + (value.second - start.second) + (value.microsecond - start.microsecond) / 1e6
                )
        return seconds, True
    bad = next(i for i, cell in enumerate(cells) if not is_number(cell))
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
    names, rows = _named_rows(path, column_names)
    _check_channels(names, channels, where)
    values = _channel_values(rows, names, channels, where)
    time_ms, values, notes = _relative_clock(
        rows, names, values, timestamp_unit, sensor_rate_hz, reference_seconds, where
    )
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


Rows = list[tuple[int, list[str]]]
"""Non-empty CSV rows as (line number, stripped cells)."""


def _named_rows(path: Path, column_names: Sequence[str] | None) -> tuple[list[str], Rows]:
    """The column names (header row, else `column_names`) and the data rows of a CSV.

    Raises:
        ValueError: The file is empty, has no header and no names were given, or has < 2 rows.
    """
    where = str(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(8192)
        handle.seek(0)
        reader = csv.reader(handle, sniff_dialect(sample))
        rows = [
            (reader.line_num, [cell.strip() for cell in row])
            for row in reader
            if any(cell.strip() for cell in row)
        ]
    if not rows:
        raise ValueError(f"{where}: the file is empty")
    if not any(is_number(cell) for cell in rows[0][1]):
        names = rows[0][1]
        rows = rows[1:]
    elif column_names is not None:
        names = list(column_names)
    else:
        raise ValueError(f"{where}: no header row and no column names given (column_names.txt)")
    if len(rows) < 2:
        raise ValueError(f"{where}: fewer than 2 data rows")
    return names, rows


def _check_channels(names: Sequence[str], channels: Sequence[str], where: str) -> None:
    """Every requested channel names exactly one column (the columns present are listed)."""
    missing = [channel for channel in channels if channel not in names]
    if missing:
        raise ValueError(f"{where}: lacks column(s) {missing}; it has {names}")
    repeated = [channel for channel in channels if names.count(channel) > 1]
    if repeated:
        raise ValueError(f"{where}: column(s) {repeated} appear more than once in {names}")


def _channel_values(rows: Rows, names: Sequence[str], channels: Sequence[str], where: str) -> np.ndarray:
    """(rows, C) float64 of the requested columns; missing tokens (empty, NaN, null, …) are NaN.

    Raises:
        ValueError: A cell that is not a number (file, line, column named).
    """
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
                raise ValueError(f"{where}: line {line}, column {channel!r}: {cell!r} is not a number") from None
    return values


def _relative_clock(
    rows: Rows,
    names: Sequence[str],
    values: np.ndarray,
    timestamp_unit: TimestampUnit,
    sensor_rate_hz: float | None,
    reference_seconds: float | None,
    where: str,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Row times in ms from the first row (rows with a repeated time dropped), and notes.

    Raises:
        ValueError: No timestamp column and no `sensor_rate_hz`, times going back, fewer than two
            distinct times, or an unreadable unit.
    """
    time_index = find_time_column(names)
    if time_index is None:
        if sensor_rate_hz is None:
            raise ValueError(
                f"{where}: no timestamp column among {names}; set data.init_args.sensor_rate_hz to "
                "give the rows a clock"
            )
        time_ms = np.arange(len(rows), dtype=np.float64) * 1000.0 / sensor_rate_hz
        return time_ms, values, [f"no timestamp column: rows at the configured {sensor_rate_hz:g} Hz"]
    lines = [line for line, _ in rows]
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
    notes = [f"timestamps in {unit} ({how})"]
    backwards = np.flatnonzero(np.diff(time_ms) < 0)
    if backwards.size:
        raise ValueError(f"{where}: line {lines[backwards[0] + 1]}: column {time_name!r} goes back in time")
    repeated_rows = np.flatnonzero(np.diff(time_ms) == 0)
    if repeated_rows.size:
        keep = np.ones(time_ms.size, dtype=bool)
        keep[repeated_rows] = False
        time_ms, values = time_ms[keep], values[keep]
        notes.append(f"{repeated_rows.size} repeated timestamp(s): the last row of each kept")
    if time_ms.size < 2:
        raise ValueError(f"{where}: fewer than 2 distinct timestamps")
    return time_ms, values, notes


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
