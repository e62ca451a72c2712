"""One's own sensors and camera as a DataModule: per run a sensor CSV and the fixed camera's video.

The folder `root` holds, per run, `<run>.csv` in the generic sensor CSV format (docs/deploy.md:
a timestamp column, one column per ambient channel, optionally a label column of class names) and
`<run>.mp4` (or .mkv, .avi, .mov, .webm) from a camera that does not move. The same CSVs, without
their videos, are what `detach predict` reads afterwards (`detach_pl.deploy.data.CsvRecordings`),
so a model trained here deploys on the sensors alone.

- **Clock.** Time 0 of a video lies at `video_offset_ms` on its CSV's clock (0: both start
  together), per run overridable in `video_offsets_ms`; a frame's time is its presentation time.
- **Channels.** Matched by name: every run's CSV must hold the channels (by default those of the
  first run's CSV); column order and extra columns do not matter.
- **Labels.** Class names in the label column; the classes are the configured list, or every name
  found, sorted. Rows without a label are null (−1). Places are not annotated (−1): stage 1's
  cluster diagnostics against places are then not logged.
- **Run classes.** For `probe_unit: sequence` (one prediction per recording, its windows
  mean-pooled, as HWU-USP's trials), `run_classes` gives each run's class by name.
- **Cache.** Every CSV is read and every video probed before any frame is decoded, so a bad cell in
  the last run fails at once. The cache key holds each file's size and modification time, so an
  edited recording builds a new cache. The cache stores labels by the names found in the label
  columns (its `class_names`) and maps them to the classes when it is opened, so changing
  `classes` or `run_classes` rebuilds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from detach_pl.data.cache import RunRecording, RunReport, WindowCache
from detach_pl.data.checks import check_each, timestamp_problem
from detach_pl.data.csv_video.runs import CsvVideoRun, find_runs
from detach_pl.data.datamodule import WindowDataModule, labels_as_classes
from detach_pl.data.decoding import VideoInfo, iter_timed_frames, probe_video
from detach_pl.data.info import DataInfo
from detach_pl.data.readings import RunReading
from detach_pl.data.sensor_csv import (
    TIME_UNITS,
    SensorRecording,
    check_named_runs,
    csv_columns,
    label_names,
    read_sensor_csv,
    run_class_ids,
)
from detach_pl.settings import check_settings, distinct_names, one_of

log = logging.getLogger(__name__)


def file_identity(path: Path) -> list[Any]:
    """Name, size and modification time of a file (one `stat`): a changed file changes the cache key."""
    stat = path.stat()
    return [path.name, stat.st_size, stat.st_mtime_ns]


class CsvVideoDataModule(WindowDataModule):
    """Your own recordings: per run a sensor CSV and a video of the fixed camera (module docstring).

    Args:
        root: Folder of `<run>.csv` + `<run>.<video>` pairs.
        num_places: How many instrumented places (doors, drawers, appliances) the camera sees:
            the clusters K of stage 1. Required: nothing in the files says it.
        channels: CSV columns used as the sensor channels, in this order (None: every column of
            the first run's CSV but the timestamp and label columns).
        classes: Class names of the label column, in class-id order (None: every name found in
            the runs' label columns and in `run_classes`, sorted). A label outside the list is an
            error naming file and line.
        time_column: Header name of the timestamp column.
        time_unit: Unit of the timestamps, "s" or "ms".
        label_column: Header name of the label column (None: no labels; the probe then has none).
        delimiter: Cell separator.
        video_offset_ms: Where time 0 of each video lies on its CSV's clock.
        video_offsets_ms: Per-run exceptions to `video_offset_ms`, by run name.
        run_classes: The class of each whole run, by run name, for `probe_unit: sequence`
            (required there; runs not named are left out of the sequence probe; ignored, with a
            warning, for the window probe).
        **kwargs: Shared settings of `WindowDataModule` (cache_dir, windows, batch_size, splits, …).
    """

    dataset_name = "csv_video"

    def __init__(
        self,
        root: str,
        num_places: int | None = None,
        channels: list[str] | None = None,
        classes: list[str] | None = None,
        time_column: str = "timestamp",
        time_unit: Literal["s", "ms"] = "s",
        label_column: str | None = "label",
        delimiter: str = ",",
        video_offset_ms: float = 0.0,
        video_offsets_ms: dict[str, float] | None = None,
        run_classes: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_settings(
            [
                (
                    "num_places", num_places, num_places is not None and num_places >= 1,
                    ">= 1: how many instrumented places the camera sees (stage 1's K)",
                ),
                distinct_names("channels", channels, null="the first run's columns"),
                distinct_names("classes", classes, null="every label found"),
                one_of("time_unit", time_unit, list(TIME_UNITS)),
                (
                    "run_classes", run_classes, self.probe_unit != "sequence" or bool(run_classes),
                    "the class of each whole run for probe_unit=sequence, e.g. {kitchen_01: Make coffee}",
                ),
            ],
            section="data.init_args",
        )
        self.root = Path(root).expanduser()
        self.num_places = int(num_places or 0)
        self.configured_channels = None if channels is None else list(channels)
        self.configured_classes = None if classes is None else list(classes)
        self.csv_format: dict[str, Any] = {
            "time_column": time_column, "time_unit": time_unit, "label_column": label_column, "delimiter": delimiter,
        }
        self.video_offset_ms = video_offset_ms
        self.video_offsets_ms = dict(video_offsets_ms or {})
        if run_classes and self.probe_unit != "sequence":
            log.warning("data.init_args.run_classes are read for probe_unit: sequence only (here %r): ignored",
                        self.probe_unit)
        #: Run → class of the whole run; read only for the sequence probe, so a window probe has no
        #: class that no window carries.
        self.run_classes = dict(run_classes or {}) if self.probe_unit == "sequence" else {}

    # ---- the recordings -------------------------------------------------------------------

    @cached_property
    def runs(self) -> list[CsvVideoRun]:
        """The runs under `root`, by name (searched once).

        Raises:
            FileNotFoundError: See `find_runs`.
            ValueError: `video_offsets_ms` or `run_classes` names a run that does not exist.
        """
        runs = find_runs(self.root)
        names = [run.name for run in runs]
        for setting, named in (("video_offsets_ms", self.video_offsets_ms), ("run_classes", self.run_classes)):
            check_named_runs(named, names, f"data.init_args.{setting}", self.root)
        return runs

    @cached_property
    def channel_names(self) -> list[str]:
        """The channels, each present in every run's CSV (headers only are read).

        Raises:
            ValueError: A run's CSV lacks channels (every such run named with what it lacks), or
                the first CSV has no column besides the timestamp and label.
        """
        own = {self.csv_format["time_column"], self.csv_format["label_column"]}
        headers = {run.name: csv_columns(run.csv, self.csv_format["delimiter"]) for run in self.runs}
        first = self.runs[0]
        channels = self.configured_channels or [name for name in headers[first.name] if name not in own]
        if not channels:
            raise ValueError(f"{first.csv}:1: the header {headers[first.name]} names no sensor channel")
        lacking = {name: [c for c in channels if c not in header] for name, header in headers.items()}
        lacking = {name: missing for name, missing in lacking.items() if missing}
        if lacking:
            raise ValueError(
                f"{self.root}: {len(lacking)} run(s) lack channels"
                + ("" if self.configured_channels else f" of the first run's CSV ({first.csv.name})")
                + f": {lacking} (data.init_args.channels chooses the channels)"
            )
        return channels

    @cached_property
    def run_labels(self) -> dict[str, set[str]]:
        """The class names each run's label column holds (none without a label column)."""
        column = self.csv_format["label_column"]
        if column is None:
            return {run.name: set() for run in self.runs}
        return {run.name: label_names(run.csv, column, self.csv_format["delimiter"]) for run in self.runs}

    @cached_property
    def label_vocabulary(self) -> list[str]:
        """Every class name the label columns hold, sorted: what the cache's labels index."""
        return sorted(set().union(*self.run_labels.values()))

    @cached_property
    def class_names(self) -> list[str]:
        """The configured classes, or every label found in the runs' label columns and `run_classes`, sorted.

        Raises:
            ValueError: No label is found and no classes are configured, a label is not one of
                the configured classes (its file and line named), or a run class is not.
        """
        if self.configured_classes is not None:
            for run in self.runs:
                if not self.run_labels[run.name] <= set(self.configured_classes):
                    read_sensor_csv(  # names the file and line
                        run.csv, self.configured_classes, **self.csv_format, classes_name="data.init_args.classes"
                    )
            self.run_class_ids(self.configured_classes)
            return self.configured_classes
        found = set(self.label_vocabulary) | set(self.run_classes.values())
        if not found:
            column = self.csv_format["label_column"]
            raise ValueError(
                f"{self.root}: no run's CSV has a class name in a {column!r} column; the probe needs labelled "
                "windows: add the label column (data.init_args.label_column names it), set data.init_args.classes, "
                "or give whole runs a class (data.init_args.run_classes, for probe_unit: sequence)"
            )
        return sorted(found)

    def run_class_ids(self, class_names: list[str]) -> dict[str, int]:
        """Each named run's class id among `class_names` (`run_classes`)."""
        names = [run.name for run in self.runs]
        return run_class_ids(self.run_classes, class_names, names, "data.init_args.run_classes", self.root)

    def offset_ms(self, run: CsvVideoRun) -> float:
        """Where time 0 of the run's video lies on its CSV's clock."""
        return float(self.video_offsets_ms.get(run.name, self.video_offset_ms))

    def check_runs(self) -> dict[str, tuple[SensorRecording, VideoInfo]]:
        """Read every CSV and probe every video before any frame is decoded, naming every problem at once.

        Raises:
            ValueError: One or more runs cannot be read, or have timestamps that do not increase
                strictly (each named with why).
        """
        return check_each(self.runs, lambda run: run.name, self.check_run, str(self.root), "run")

    def check_run(self, run: CsvVideoRun) -> tuple[SensorRecording, VideoInfo]:
        """Read one run's CSV and probe its video, without decoding a frame.

        Raises:
            ValueError: A bad cell, timestamps that do not increase, an unreadable video.
        """
        table = read_sensor_csv(run.csv, self.label_vocabulary, **self.csv_format)
        problem = timestamp_problem(table.time_ms)
        if problem is not None:
            raise ValueError(f"{run.csv}: data row {problem[0] + 1}: the timestamp {problem[1]}")
        return table, probe_video(run.video)

    def read_run(self, run: CsvVideoRun, table: SensorRecording, video: VideoInfo) -> RunReading:
        """One run as a recording (its frames stream later, once) and what reading it found."""
        columns = [table.channel_names.index(name) for name in self.channel_names]
        rows = table.time_ms.shape[0]
        labels = table.row_label if table.row_label is not None else np.full(rows, -1, dtype=np.int64)
        seconds = (table.time_ms[-1] - table.time_ms[0]) / 1000.0
        video_seconds = video.num_frames / video.fps if video.num_frames else video.duration_seconds
        notes = [
            f"{rows} rows over {seconds:.1f} s ({(rows - 1) / max(seconds, 1e-9):.2f} Hz)",
            f"{int((labels >= 0).sum())} labelled rows",
            f"video {video.fps:.3f} fps, {video_seconds or float('nan'):.1f} s, {video.width}x{video.height}",
        ]
        log.info("run %s: %s", run.name, "; ".join(notes))
        recording = RunRecording(
            name=run.name,
            time_ms=table.time_ms,
            sensor=np.ascontiguousarray(table.sensor[:, columns]),
            row_label=labels,
            row_place=np.full(rows, -1, dtype=np.int64),
            frames=iter_timed_frames(run.video, self.windows.image_size),
            fps=video.fps,
            num_frames=video.num_frames,
            video_offset_ms=self.offset_ms(run),
            source=f"{run.csv} + {run.video}",
        )
        return RunReading(recording, notes)

    # ---- WindowDataModule hooks ------------------------------------------------------------

    def source_settings(self) -> dict[str, Any]:
        """The folder, each run's files (with size and modification time) and every reading option.

        Not the classes: the cache stores labels by the names in the files (`cache_meta`).
        """
        files = {run.name: [file_identity(run.csv), file_identity(run.video)] for run in self.runs}
        return {
            "root": str(self.root.resolve()),
            "files": files,
            "channels": self.channel_names,
            **self.csv_format,
            "video_offsets_ms": {run.name: self.offset_ms(run) for run in self.runs},
        }

    def recordings(self) -> Iterator[RunReading]:
        """The runs by name; every CSV is read and every video probed first (`check_runs`)."""
        checked = self.check_runs()
        for run in self.runs:
            yield self.read_run(run, *checked.pop(run.name))

    def report_extra(self, reports: list[RunReport], findings: dict[str, Any]) -> dict[str, Any]:
        """What reading each run found (rows and rate, labelled rows, the video's rate, length and size)."""
        return {"read": {run.name: findings.get(run.name, []) for run in reports}}

    def report_lines(self) -> list[str]:
        """Per run what reading it found and, as configured now, its class for the sequence probe."""
        read = self.report.get("read", {})
        lines = ["what reading found:", *(f"  {name}: {'; '.join(notes)}" for name, notes in read.items())]
        if self.run_classes:
            lines.append("run classes (data.init_args.run_classes, the sequence probe):")
            lines += [f"  {run.name}: {self.run_classes.get(run.name, '(none: left out)')}" for run in self.runs]
        return lines if read or self.run_classes else []

    def cache_meta(self) -> dict[str, Any]:
        """The shared metadata, with `class_names` the names the cached labels index (`label_vocabulary`)."""
        return {**super().cache_meta(), "class_names": self.label_vocabulary}

    def window_labels(self, cache: WindowCache) -> np.ndarray:
        """The cached labels (indices into the cache's `class_names`) as ids of the classes in force."""
        return labels_as_classes(cache.label, cache.meta["class_names"], self.class_names)

    def sequence_labels(self, cache: WindowCache) -> dict[int, int]:
        """Class id of each run that `run_classes` names, by its index in the cache (the sequence probe)."""
        ids = self.run_class_ids(self.class_names)
        return {index: ids[name] for index, name in enumerate(cache.run_names) if name in ids}

    def num_recordings(self) -> int:
        """The runs found."""
        return len(self.runs)

    def default_splits(self) -> dict[str, list[str]]:
        """All runs but the last two (by name) train; the second-to-last validates, the last tests.

        Raises:
            ValueError: Fewer than three runs.
        """
        names = [run.name for run in self.runs]
        if len(names) < 3:
            raise ValueError(
                f"{self.root}: {len(names)} run(s) {names}; the default split needs 3 (training, one validation, one "
                "test): set data.init_args.train_runs, val_runs and test_runs"
            )
        return {"train_runs": names[:-2], "val_runs": names[-2:-1], "test_runs": names[-1:]}

    @property
    def data_info(self) -> DataInfo:
        """The channels and classes found (or configured) and `num_places` places."""
        return DataInfo(
            num_channels=len(self.channel_names),
            num_classes=len(self.class_names),
            num_places=self.num_places,
            class_names=list(self.class_names),
            place_names=[f"place {index + 1}" for index in range(self.num_places)],
            channel_names=list(self.channel_names),
        )
