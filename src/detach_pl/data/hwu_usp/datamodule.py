"""HWU-USP (Ranieri et al., Sensors 2021) as a DataModule: trials, folds, window or sequence probing.

Per trial DETACH needs the RGB video (`.mp4`) and the ambient smart-home CSV (a `timestamp`
column and 0/1 contact/motion states, plus a smart-plug power reading); `discovery` finds them,
`ambient` reads the CSV. Everything after reading the files (windows, preprocessing,
standardisation, cache, loaders) is the shared `WindowDataModule`.

- **Clock.** Sensor and video both start at the trial start (a frame at `video_offset_ms` + its
  presentation time); the frame rate is measured from the video.
- **Labels.** Every row of a trial carries its activity. The cache stores the activity's index in
  the release vocabulary (`ACTIVITIES`); the configured class subset is applied when the cache is
  opened (`window_labels`), so changing `classes` never rebuilds the cache. A trial outside the
  subset gets label −1: it is used for pre-training but not probed.
- **Places** (cluster diagnostics only; K = channels + "none" = 7 by default): a row belongs to
  the channel whose state changes nearest to it within half a window, else to "none" (id K−1); a
  window then takes the place covering most of its rows by the shared majority rule (−1 when no
  place covers half of it).
- **Folds** (the authors' protocol): 8-fold leave-two-subjects-out; fold k tests subjects 2k−1
  and 2k. `val_rule` "next_fold" validates on the next fold's two subjects and trains on the rest
  (12 subjects); "test_fold" validates on the test subjects (monitoring only) and trains on 14.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from detach_pl.data.cache import RunRecording, RunReport, WindowCache
from detach_pl.data.checks import check_each
from detach_pl.data.datamodule import WindowDataModule, labels_as_classes
from detach_pl.data.decoding import VideoInfo, iter_timed_frames, probe_video
from detach_pl.data.hwu_usp.ambient import AmbientTable, GapFill, TimestampUnit, place_per_row, read_ambient_csv
from detach_pl.data.hwu_usp.discovery import (
    ACTIVITIES,
    DEFAULT_CHANNELS,
    NONE_PLACE,
    Discovery,
    Trial,
    discover_trials,
)
from detach_pl.data.info import DataInfo
from detach_pl.data.readings import RunReading
from detach_pl.settings import check_settings, distinct_names

log = logging.getLogger(__name__)

ValRule = Literal["next_fold", "test_fold"]


def fold_subjects(fold: int, num_folds: int) -> tuple[int, int]:
    """Test subjects of a leave-two-subjects-out fold: fold k tests subjects 2k − 1 and 2k."""
    if not 1 <= fold <= num_folds:
        raise ValueError(f"data.init_args.fold={fold} must lie in [1, num_folds={num_folds}]")
    return 2 * fold - 1, 2 * fold


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
        check_settings(
            [distinct_names("channels", self.channels), distinct_names("classes", self.classes)],
            section="data.init_args",
        )
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
        self.sequence_batch_size = trials_per_batch
        self._discovery: Discovery | None = None

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
        info = probe_video(_video_of(trial))
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
        return check_each(trials, lambda trial: trial.name, self.check_trial, f"HWU-USP under {self.discovery.root}",
                          "trial")

    def read_trial(self, trial: Trial, checked: tuple[VideoInfo, AmbientTable] | None = None) -> RunReading:
        """One trial as a recording (frames stream later, once) and what reading it found.

        The findings are the reader's notes: clock unit, rates, gaps filled, the video's fps.

        Args:
            trial: The trial.
            checked: Its `check_trial` result when already known (else measured here).

        Raises:
            ValueError: See `check_trial`.
        """
        info, table = checked if checked is not None else self.check_trial(trial)
        video_seconds = info.num_frames / info.fps if info.num_frames else info.duration_seconds
        notes = [*table.notes, f"video {info.fps:.3f} fps, {video_seconds or float('nan'):.2f} s"]
        log.info("trial %s: %s", trial.name, "; ".join(notes))
        radius_ms = 500.0 * self.windows.window_seconds
        rows = table.time_ms.shape[0]
        recording = RunRecording(
            name=trial.name,
            time_ms=table.time_ms,
            sensor=table.values,
            row_label=np.full(rows, self.activities().index(trial.activity), dtype=np.int64),
            row_place=place_per_row(table.time_ms, table.values, radius_ms),
            frames=iter_timed_frames(_video_of(trial), self.windows.image_size),
            fps=info.fps,
            subject=trial.subject,
            sequence_label=self.activities().index(trial.activity),
            num_frames=info.num_frames,
            video_offset_ms=self.video_offset_ms,
            source=f"{trial.video} + {trial.ambient}",
        )
        return RunReading(recording, notes)

    # ---- WindowDataModule hooks ------------------------------------------------------------

    def source_settings(self) -> dict[str, Any]:
        """The release folder, its trials and every reading option that changes what is cached."""
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

    def recordings(self) -> Iterator[RunReading]:
        """The trials in release order; every trial's files are checked first (`check_trials`)."""
        trials = self.trials()
        checked = self.check_trials(trials)
        for trial in trials:
            yield self.read_trial(trial, checked.pop(trial.name))

    def report_extra(self, reports: list[RunReport], findings: dict[str, Any]) -> dict[str, Any]:
        """Per trial the clock unit and rates found, the gaps filled, the durations and windows.

        Also the windows kept or dropped, and the trials skipped for a missing file.
        """
        log.info("HWU-USP cache %s prepared; report in %s", self.cache_path, self.report_path)
        return {
            "root": str(self.discovery.root),
            "skipped_trials": self.skipped_trials,
            "trials": {
                run.name: {
                    "found": findings.get(run.name, []),
                    "sensor_seconds": run.sensor_seconds,
                    "video_seconds": run.video_seconds,
                    "frames": run.num_frames,
                    "windows": run.windows,
                    "windows_without_video": run.windows_without_video,
                    "notes": run.notes,
                }
                for run in reports
            },
        }

    def report_lines(self) -> list[str]:
        """The trials skipped for a missing file, for `detach prepare`."""
        skipped = self.report.get("skipped_trials")
        return [f"skipped trials: {skipped}"] if skipped else []

    def num_recordings(self) -> int:
        """The trials discovered (one run each)."""
        return len(self.discovery.trials)

    @property
    def data_info(self) -> DataInfo:
        """The configured channels and classes; one place per channel and "none"."""
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

    def sequence_labels(self, cache: WindowCache) -> dict[int, int]:
        """Class id of each trial within the configured subset; trials outside it are omitted."""
        stored = np.array([int(cache.run_attrs[name]["sequence_label"]) for name in cache.run_names], dtype=np.int64)
        labels = labels_as_classes(stored, cache.meta["activities"], self.classes)
        return {index: int(label) for index, label in enumerate(labels) if label >= 0}

    def window_labels(self, cache: WindowCache) -> np.ndarray:
        """Window labels mapped from the activity vocabulary of the cache to the configured classes."""
        return labels_as_classes(cache.label, cache.meta["activities"], self.classes)


def _video_of(trial: Trial) -> Path:
    """The trial's video file (discovery lists trials without one only to report them as skipped)."""
    if trial.video is None:
        raise ValueError(f"HWU-USP trial {trial.name}: no video file was found for it (ambient table {trial.ambient})")
    return trial.video
