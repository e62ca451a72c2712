"""Opportunity++ as a DataModule: the release's runs through the shared window cache.

What this adds to the shared cache (`detach_pl.data.cache`), reading with `release` and `labels`:

* channels are chosen **by name** from `column_names.txt` (default: the 37 ambient channels,
  columns 195–231: 13 reed switches and 8 three-axis accelerometers on doors, drawers and
  appliances);
* window labels come from the matrix's `ML_Both_Arms` column, mapped to DETACH's 14 open/close
  classes (the other gestures of the track become null); the SRT tracks are checked against it
  and used only when the column is empty;
* each window's place (door1 … drawer3) is kept for cluster diagnostics;
* the frame rate is measured from each video, never assumed; durations are compared with the
  sensor timeline and a mismatch is reported (only the overlap is used).

`detach prepare --config configs/opp/data.yaml --data.init_args.root /data/Opportunity++` builds
the cache ahead of training and prints what preparing found.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from detach_pl.data.cache import RunRecording, RunReport
from detach_pl.data.checks import timestamp_problem
from detach_pl.data.datamodule import WindowDataModule
from detach_pl.data.decoding import VideoInfo, iter_timed_frames, probe_video
from detach_pl.data.info import DataInfo
from detach_pl.data.opportunity.labels import (
    PLACE_TRACK,
    LabelReport,
    LabelVocabulary,
    RunLabels,
    count_labels,
    label_ids,
    map_label_ids,
    track_label_ids,
)
from detach_pl.data.opportunity.release import (
    RUN_NAMES,
    TIME_COLUMN,
    RunFiles,
    check_sensor_matrix,
    find_release_file,
    locate_run,
    parse_column_names,
    parse_label_legend,
    parse_sensor_matrix,
    parse_srt,
    resolve_channels,
    run_sort_key,
    subject_of,
)
from detach_pl.data.readings import RunReading
from detach_pl.data.vocabulary import AMBIENT_CHANNELS, PLACE_NAMES

log = logging.getLogger(__name__)

#: Bump when parsing changes what ends up in a cache (part of the cache key).
PARSER_VERSION = 1


@dataclass
class SensorRun:
    """One run's sensors and labels as read from its matrix (no video).

    Attributes:
        time_ms: (rows,) the MILLISEC clock.
        sensor: (rows, C) the chosen channels, NaN where missing.
        row_label: (rows,) class id per row, −1 for null.
        row_place: (rows,) place id per row, −1 for none.
        labels: What reading the labels found.
    """

    time_ms: np.ndarray
    sensor: np.ndarray
    row_label: np.ndarray
    row_place: np.ndarray
    labels: RunLabels


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
        """The chosen channels (by name), DETACH's classes and the places, read from the description files."""
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
                for name in self.configured_runs(split)
            ]
        return sorted(dict.fromkeys(names), key=run_sort_key)

    def run_files(self) -> dict[str, RunFiles]:
        """Files of every requested run (looked up once)."""
        if self._run_files is None:
            root = self._require_root()
            self._run_files = {run: locate_run(root, run, self.require_video) for run in self.requested_runs()}
        return self._run_files

    def incomplete_runs(self) -> dict[str, str]:
        """Requested runs that lack their folder or a file: run → what is missing."""
        return {run: ", ".join(entry.missing) for run, entry in self.run_files().items() if entry.missing}

    def available_runs(self) -> list[str]:
        """The runs that go into the cache.

        Raises:
            FileNotFoundError: A run lacks its folder or a file and `skip_incomplete_runs` is
                false (every missing item is named).
        """
        files = self.run_files()
        incomplete = self.incomplete_runs()
        if incomplete and not self.skip_incomplete_runs:
            found = sorted(
                path.name for base in (self.root, self.root / "data") if base.is_dir()
                for path in base.iterdir() if path.is_dir() and path.name in RUN_NAMES
            )
            details = "; ".join(f"{run}: missing {items}" for run, items in incomplete.items())
            raise FileNotFoundError(
                f"Opportunity++ release at {self.root} is incomplete: {details}. Run folders found: "
                f"{found}. Set data.init_args.skip_incomplete_runs=true to continue without them."
            )
        runs = [run for run in files if run not in incomplete]
        if not runs:
            raise FileNotFoundError(f"Opportunity++ release at {self.root}: none of the runs {list(files)} is complete")
        return runs

    def excluded_runs(self) -> set[str]:
        """Runs left out by `skip_incomplete_runs` (none unless it is set)."""
        return set(self.incomplete_runs()) if self.skip_incomplete_runs else set()

    def num_recordings(self) -> int:
        """The runs found in the release."""
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
        """The shared metadata plus the release folder and the columns read."""
        meta = super().cache_meta()
        meta.update(
            root=str(self._require_root()),
            label_track=self.label_track,
            channel_columns=[c + 1 for c in self.channel_columns()],
        )
        return meta

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
            if entry.sensor is None:
                problems.append(f"{run}: no sensor matrix (*_sensors_data.txt) in its folder")
                continue
            checks: list[Callable[[], object]] = [partial(check_sensor_matrix, entry.sensor, num_columns, time_column)]
            if entry.video is not None:
                checks.append(partial(probe_video, entry.video))
            if self.check_srt:
                checks += [partial(parse_srt, path) for path in entry.subtitles]
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

    def recordings(self) -> Iterator[RunReading]:
        """Parse the runs one at a time (sensor matrix, labels, SRT check, video stream).

        All runs' files are checked first (`check_release`), before the first run is read. Each
        reading's findings are its `RunLabels` and what its video measured.
        """
        runs = self.available_runs()
        for run, missing in self.incomplete_runs().items():
            log.warning("skipping run %s: missing %s", run, missing)
        self.check_release(runs)
        files = self.run_files()
        for run in runs:
            entry = files[run]
            if entry.video is None:
                raise FileNotFoundError(f"run {run}: missing video {entry.folder}/{run}_side.avi")
            read = self.read_run(run)
            video = probe_video(entry.video)
            recording = RunRecording(
                name=run,
                time_ms=read.time_ms,
                sensor=read.sensor,
                row_label=read.row_label,
                row_place=read.row_place,
                frames=iter_timed_frames(video.path, self.windows.image_size),
                fps=video.fps,
                subject=subject_of(run),
                num_frames=video.num_frames,
                source=str(entry.folder),
            )
            yield RunReading(recording, {"labels": read.labels, "video": video_findings(run, video, read.time_ms)})

    def read_run(self, run: str) -> SensorRun:
        """One run's sensors and labels, never touching its video.

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
        vocabulary = self.vocabulary
        track_ids, labels = track_label_ids(
            run, matrix[:, label_column], time_ms, entry.subtitles, vocabulary, self.check_srt
        )
        place_ids = track_ids if label_column == place_column else label_ids(matrix[:, place_column])
        row_label = map_label_ids(track_ids, vocabulary.class_of_id)
        row_place = map_label_ids(place_ids, vocabulary.place_of_id)
        count_labels(run, track_ids, row_label, vocabulary, labels)
        return SensorRun(time_ms, matrix[:, self.channel_columns()].copy(), row_label, row_place, labels)

    def read_sensor_run(self, run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(rows,) times in ms, (rows, C) chosen channels, (rows,) class ids, (rows,) place ids (−1: null).

        The sensors of `read_run` without its findings, for deployment (`detach_pl.deploy`).
        """
        read = self.read_run(run)
        return read.time_ms, read.sensor, read.row_label, read.row_place

    @staticmethod
    def _timeline(column: np.ndarray, path: Path) -> np.ndarray:
        """The MILLISEC column, checked: finite and strictly increasing (names the bad line)."""
        problem = timestamp_problem(column)
        if problem is not None:
            row, why = problem
            column_name = f"{TIME_COLUMN} (column 1)" if why.startswith("is ") else TIME_COLUMN
            raise ValueError(f"{path}:{row + 1}: {column_name} {why}")
        return column.astype(np.float64)

    # ---- the report ----------------------------------------------------------------------------

    def report_extra(self, reports: list[RunReport], findings: dict[str, Any]) -> dict[str, Any]:
        """The label report: ids, rows per class, SRT checks, skipped runs, videos (decoded frames)."""
        video = {}
        for report in reports:
            measured = dict(findings[report.name]["video"], decoded_frames=report.num_frames)
            container = measured["container_frames"]
            if container and report.num_frames < container - 1:
                log.warning(
                    "run %s: decoded %d of the %d frames the video lists (truncated or damaged file); "
                    "the frames decoded are used",
                    report.name, report.num_frames, container,
                )
            video[report.name] = measured
        labels = LabelReport.from_runs(
            {name: found["labels"] for name, found in findings.items()}, video, self.incomplete_runs()
        )
        if labels.unknown_ids:
            log.warning(
                "Opportunity++: %d row(s) carry label ids unknown to label_legend.txt (id: rows) %s",
                sum(labels.unknown_ids.values()), labels.unknown_ids,
            )
        return {"labels": labels.to_json()}

    @property
    def label_report(self) -> LabelReport:
        """What preparing found about the labels and runs (after `prepare_data`)."""
        return LabelReport.from_json(self.report.get("labels", {}))

    def report_lines(self) -> list[str]:
        """Rows per class, unknown label ids and skipped runs, for `detach prepare`."""
        labels = self.label_report
        lines = [f"rows per class: {labels.class_rows}"]
        if labels.unknown_ids:
            lines.append(f"unknown label ids (id: rows): {labels.unknown_ids}")
        if labels.skipped_runs:
            lines.append(f"skipped runs: {labels.skipped_runs}")
        return lines


def video_findings(run: str, video: VideoInfo, time_ms: np.ndarray) -> dict[str, float | int | None]:
    """A run video's measured fps, frame count and duration; warns when it and the sensors disagree."""
    frames_seconds = video.num_frames / video.fps if video.num_frames else None
    video_seconds = frames_seconds if frames_seconds is not None else video.duration_seconds
    sensor_seconds = float(time_ms[-1]) / 1000.0
    if video_seconds is not None and abs(video_seconds - sensor_seconds) > max(1.0, 2.0 / video.fps):
        log.warning(
            "run %s: the video %s lasts %.1f s (%s frames at a measured %.3f fps) but the sensor "
            "timeline ends at %.1f s: only the overlap is used, windows outside the video are dropped",
            run, video.path, video_seconds, video.num_frames, video.fps, sensor_seconds,
        )
    return {
        "fps": video.fps,
        "container_frames": video.num_frames,
        "video_seconds": video_seconds,
        "sensor_seconds": sensor_seconds,
        "width": video.width,
        "height": video.height,
    }
