"""The generic sensor CSV (docs/deploy.md, "The generic sensor CSV"): one recording per file.

A header row, one timestamp column, one column per channel, optionally a label column of class
names. Read for training by `detach_pl.data.csv_video` (each CSV beside its video) and for
prediction by `detach_pl.deploy.data.CsvRecordings` (sensors only).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

#: Label cells that mean "no label" in a CSV's label column.
NULL_LABELS = ("", "null")
#: Time units of a CSV's timestamp column → milliseconds per unit.
TIME_UNITS = {"s": 1000.0, "ms": 1.0}


@dataclass
class SensorRecording:
    """One recording's sensor rows, as read from its files.

    Attributes:
        name: Recording name (run or trial id, or CSV file stem).
        time_ms: (rows,) timestamps in milliseconds.
        sensor: (rows, C) samples, NaN where missing, columns named by `channel_names`.
        channel_names: The recording's own channel names (matched to the model's by name).
        row_label: (rows,) class ids in the model's class order, −1 for none; None: no labels.
        sequence_label: Class of the whole recording (sequence probe; −1: unknown).
        source: The files it came from (for messages).
    """

    name: str
    time_ms: np.ndarray
    sensor: np.ndarray
    channel_names: list[str]
    row_label: np.ndarray | None = None
    sequence_label: int = -1
    source: str = ""

    @property
    def where(self) -> str:
        """How messages name this recording."""
        return f"recording {self.name!r}" + (f" ({self.source})" if self.source else "")


def _number(cell: str, path: Path, line: int, column: str) -> float:
    """A CSV cell as a float (empty or NaN → NaN), naming file, line and column otherwise."""
    text = cell.strip()
    if text == "" or text.lower() == "nan":
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: column {column!r} holds {cell!r}, expected a number") from None


def parse_numbers(path: Path, body: list[tuple[int, list[str]]], columns: list[int], header: list[str]) -> np.ndarray:
    """The numeric columns of the body rows as a (rows, len(columns)) float64 array.

    Converted by numpy in one go (an hour of 30-Hz rows in about a second); when that fails the
    cells are read one by one to name the file, line and column of the first bad one.
    """
    cells = np.array([[row[i] for i in columns] for _, row in body], dtype=str)
    cells[cells == ""] = "nan"
    try:
        return cells.astype(np.float64)
    except ValueError:
        return np.array([[_number(row[i], path, line, header[i]) for i in columns] for line, row in body])


def fast_numbers(text: str, columns: list[int], width: int, delimiter: str) -> np.ndarray | None:
    """The numeric `columns` of a plain CSV body (no quotes, no blank rows) by numpy's C parser.

    About ten times faster than splitting every row in Python (an hour of 30-Hz rows of 37
    channels in well under a second). Empty cells become NaN. None when the body is not plain:
    a quote, a carriage return (`read_sensor_csv` passes CRLF line ends as LF), a blank row, a row
    with another number of cells or a cell numpy cannot read; `read_sensor_csv` then reads it row
    by row, which names the bad line.
    """
    if '"' in text or "\r" in text or len(delimiter) != 1 or delimiter.isspace():
        return None
    body = text.rstrip("\n")
    if not body:
        return None
    empty, filled = delimiter * 2, f"{delimiter}nan{delimiter}"
    body = body.replace(empty, filled).replace(empty, filled)
    body = body.replace(f"\n{delimiter}", f"\nnan{delimiter}").replace(f"{delimiter}\n", f"{delimiter}nan\n")
    body = ("nan" if body.startswith(delimiter) else "") + body + ("nan" if body.endswith(delimiter) else "")
    lines = body.split("\n")
    # A row of empty cells now reads "nan,…,nan": left to the row-by-row reader, which skips blank rows.
    maybe_blank = f"{delimiter} \tna"
    if any(line.count(delimiter) != width - 1 or not line.strip(maybe_blank) for line in lines):
        return None
    try:  # the lines themselves: a StringIO of the body would hold a 4-byte-per-character copy of it
        return np.loadtxt(lines, delimiter=delimiter, usecols=columns, dtype=np.float64,
                          comments=None, quotechar=None, ndmin=2)
    except ValueError:
        return None


def column_names(header_row: list[str], path: Path) -> list[str]:
    """The stripped names of a CSV's header row.

    Raises:
        ValueError: There is no header row (an empty file).
    """
    if not header_row:
        raise ValueError(f"{path}: empty file; expected a header row naming the columns")
    return [name.strip() for name in header_row]


def read_sensor_csv(
    path: str | Path,
    class_names: Sequence[str],
    time_column: str = "timestamp",
    time_unit: Literal["s", "ms"] = "s",
    label_column: str | None = "label",
    delimiter: str = ",",
    classes_name: str = "the model's classes",
) -> SensorRecording:
    """Read a generic ambient-sensor CSV (docs/deploy.md).

    A header row, one timestamp column, one column per channel, optionally a label column holding
    class names. `classes_name` says in messages what `class_names` are ("the model's classes"
    when predicting, the setting when training).

    Raises:
        ValueError: No header or timestamp column, a non-numeric cell, an unknown class name in
            the label column (file and line named), or no rows.
    """
    path = Path(path)
    if time_unit not in TIME_UNITS:
        raise ValueError(f"data.init_args.time_unit={time_unit!r}: expected one of {list(TIME_UNITS)}")
    text = path.read_text(encoding="utf-8-sig")
    first_line, _, rest = text.partition("\n")
    plain_header = '"' not in first_line
    header_rows = csv.reader([first_line] if plain_header else io.StringIO(text), delimiter=delimiter)
    header = column_names(next(header_rows, []), path)
    if time_column not in header:
        raise ValueError(f"{path}:1: no timestamp column {time_column!r} in the header {header}")
    time_index = header.index(time_column)
    label_index = header.index(label_column) if label_column is not None and label_column in header else None
    channels = [i for i in range(len(header)) if i not in (time_index, label_index)]
    if not channels:
        raise ValueError(f"{path}:1: the header {header} names no sensor channel")
    numeric = [time_index, *channels]
    lines = rest.replace("\r\n", "\n")
    table = fast_numbers(lines, numeric, len(header), delimiter) if plain_header else None
    if table is not None:
        label_cells = [] if label_index is None else [
            (line, row.split(delimiter)[label_index])
            for line, row in enumerate(lines.rstrip("\n").split("\n"), start=2)
        ]
    else:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
        body = [(line, row) for line, row in enumerate(rows[1:], start=2) if any(cell.strip() for cell in row)]
        if not body:
            raise ValueError(f"{path}: a header but no rows")
        for line, row in body:
            if len(row) != len(header):
                raise ValueError(f"{path}:{line}: {len(row)} cells, the header has {len(header)} columns")
        table = parse_numbers(path, body, numeric, header)
        label_cells = [] if label_index is None else [(line, row[label_index]) for line, row in body]
    labels = []
    if label_index is not None:
        known = {name: index for index, name in enumerate(class_names)}
        for line, cell in label_cells:
            name = cell.strip()
            if name.lower() in NULL_LABELS:
                labels.append(-1)
            elif name in known:
                labels.append(known[name])
            else:
                raise ValueError(
                    f"{path}:{line}: label {name!r} is not one of {classes_name} {list(class_names)} "
                    f"(leave the cell empty or write null for no label)"
                )
    times, values = table[:, 0], table[:, 1:]
    return SensorRecording(
        name=path.stem,
        time_ms=np.asarray(times, dtype=np.float64) * TIME_UNITS[time_unit],
        sensor=np.ascontiguousarray(values),
        channel_names=[header[i] for i in channels],
        row_label=None if label_index is None else np.asarray(labels, dtype=np.int64),
        source=str(path),
    )


def csv_files(root: Path, recordings: Sequence[str] | None) -> list[Path]:
    """The CSV files of a file or folder, optionally only the named stems (each must exist)."""
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(root.glob("*.csv"))
    else:
        raise FileNotFoundError(f"data.init_args.root={str(root)!r}: no such CSV file or folder")
    if recordings is not None:
        by_stem = {path.stem: path for path in files}
        missing = [name for name in recordings if name not in by_stem]
        if missing:
            raise FileNotFoundError(
                f"data.init_args.recordings: no CSV {missing} under {root}; found {sorted(by_stem)}"
            )
        files = [by_stem[name] for name in recordings]
    if not files:
        raise FileNotFoundError(f"data.init_args.root={str(root)!r}: no .csv file")
    return files


def check_named_runs(named: Collection[str], runs: Collection[str], setting: str, where: Path) -> None:
    """Refuse a setting that names runs which do not exist (a misspelt run would be ignored silently).

    Raises:
        ValueError: Naming the unknown runs and the runs there are.
    """
    unknown = sorted(set(named) - set(runs))
    if unknown:
        raise ValueError(f"{setting} names {unknown}, which are not runs under {where} (found: {sorted(runs)})")


def run_class_ids(
    run_classes: Mapping[str, str], class_names: Sequence[str], runs: Collection[str], setting: str, where: Path
) -> dict[str, int]:
    """Each named run's class id (the class of the whole recording, for the sequence probe).

    Args:
        run_classes: Run (file stem) → class name, as configured.
        class_names: The classes, in class-id order.
        runs: The runs there are, for naming a misspelt one.
        setting: The setting's config name, for messages.
        where: The folder the runs are in, for messages.

    Raises:
        ValueError: A named run does not exist, or a class is not one of `class_names` (every
            such run named).
    """
    check_named_runs(run_classes, runs, setting, where)
    outside = {run: name for run, name in run_classes.items() if name not in class_names}
    if outside:
        raise ValueError(f"{setting}: {outside} are not among the classes {list(class_names)}")
    return {run: list(class_names).index(name) for run, name in run_classes.items()}


def csv_columns(path: Path, delimiter: str = ",") -> list[str]:
    """The header row's column names of a CSV (the rest of the file is not read).

    Raises:
        ValueError: The file is empty.
    """
    with path.open(encoding="utf-8-sig", newline="") as file:
        return column_names(next(csv.reader(file, delimiter=delimiter), []), path)


def label_names(path: Path, label_column: str, delimiter: str = ",") -> set[str]:
    """The class names a CSV's label column holds (empty and null cells left out; none without the column)."""
    with path.open(encoding="utf-8-sig", newline="") as file:
        rows = csv.reader(file, delimiter=delimiter)
        header = [name.strip() for name in next(rows, [])]
        if label_column not in header:
            return set()
        index = header.index(label_column)
        names = {row[index].strip() for row in rows if len(row) > index}
    return {name for name in names if name.lower() not in NULL_LABELS}
