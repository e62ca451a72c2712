"""Opportunity++ labels: the legend's ids mapped to DETACH's classes and places, checked against the SRTs.

The matrix's `ML_Both_Arms` column gives each row a label id; DETACH keeps its 14 open/close
gestures (`detach_pl.data.vocabulary`) and makes the track's other gestures null. The SRT track of
the label column is compared with the matrix and used only when the column is empty. Reading a
run returns what it found (`RunLabels`); `LabelReport.from_runs` sums the runs up for the report
stored beside the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detach_pl.data.opportunity.release import LegendEntry, Subtitle, parse_srt, subtitle_rows
from detach_pl.data.vocabulary import CLASSES, PLACE_NAMES

log = logging.getLogger(__name__)

#: The label track that says where a gesture happens (and DETACH's default class track).
PLACE_TRACK = "ML_Both_Arms"
#: DETACH's 14 probe classes (names of the `ML_Both_Arms` track in `label_legend.txt`), in class
#: order, with the place each one happens at.
DETACH_CLASSES: tuple[tuple[str, str], ...] = tuple((name, PLACE_NAMES[place]) for name, place in CLASSES)
#: Rows whose SRT label differs from the matrix above this fraction trigger a warning.
SRT_DISAGREEMENT_WARNING = 0.05


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


def label_ids(column: np.ndarray) -> np.ndarray:
    """A label column of the matrix as integer ids (NaN → 0 = null)."""
    return np.nan_to_num(column, nan=0.0).astype(np.int64)


@dataclass
class RunLabels:
    """What reading one run's labels found (summed over runs by `LabelReport.from_runs`).

    Attributes:
        unknown_ids: Label id not defined by the legend for the label track → rows.
        excluded_ids: Legend id of the track that is not a probe class → rows (null rows).
        class_rows: Rows per probe class.
        srt_agreement: Fraction of rows where the SRT of the label track agrees with the matrix
            (None: not compared).
        without_srt: SRTs were checked and none belongs to the label track.
        srt_fallback: The label column was empty and the labels come from the SRT.
    """

    unknown_ids: dict[int, int] = field(default_factory=dict)
    excluded_ids: dict[int, int] = field(default_factory=dict)
    class_rows: dict[str, int] = field(default_factory=dict)
    srt_agreement: float | None = None
    without_srt: bool = False
    srt_fallback: bool = False


def srt_of_track(paths: Sequence[Path], vocabulary: LabelVocabulary) -> tuple[Path, list[Subtitle]] | None:
    """The SRT among `paths` whose label ids belong to the label track (file names are not trusted)."""
    for path in paths:
        subtitles = parse_srt(path)
        if not subtitles:
            continue
        share = np.mean([subtitle.label_id in vocabulary.track_ids for subtitle in subtitles])
        if share > 0.5:
            return path, subtitles
    return None


def track_label_ids(
    run: str,
    column: np.ndarray,
    time_ms: np.ndarray,
    srt_paths: Sequence[Path],
    vocabulary: LabelVocabulary,
    check_srt: bool,
) -> tuple[np.ndarray, RunLabels]:
    """Per-row ids of the label track: the matrix column, checked against its SRT.

    Returns:
        The ids, and a `RunLabels` holding only what the SRT check found.
    """
    ids = label_ids(column)
    found = RunLabels()
    if not check_srt:
        return ids, found
    track = srt_of_track(srt_paths, vocabulary)
    empty = bool(np.isnan(column).all())
    if track is None:
        found.without_srt = True
        if empty:
            log.warning("run %s: the %s column is empty and no SRT of it exists: no labels", run, vocabulary.track)
        return ids, found
    path, subtitles = track
    srt_ids = subtitle_rows(subtitles, time_ms)
    if empty:
        log.warning("run %s: the %s column is empty; labels taken from %s", run, vocabulary.track, path)
        found.srt_fallback = True
        return srt_ids, found
    found.srt_agreement = float(np.mean(srt_ids == ids))
    if found.srt_agreement < 1.0 - SRT_DISAGREEMENT_WARNING:
        log.warning(
            "run %s: %s agrees with the matrix's %s column on only %.1f%% of rows; the matrix is used",
            run, path, vocabulary.track, 100.0 * found.srt_agreement,
        )
    return ids, found


def count_labels(
    run: str, track_ids: np.ndarray, row_label: np.ndarray, vocabulary: LabelVocabulary, found: RunLabels
) -> None:
    """Count a run's unknown and excluded ids and its rows per class into `found`."""
    values, counts = np.unique(track_ids, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        if value == 0 or value in vocabulary.class_of_id:
            continue
        target = found.excluded_ids if value in vocabulary.track_ids else found.unknown_ids
        target[value] = target.get(value, 0) + count
    if found.unknown_ids:
        log.warning(
            "run %s: label id(s) not in label_legend.txt for track %s (id: rows) %s; those rows are "
            "treated as null",
            run, vocabulary.track, found.unknown_ids,
        )
    classes, class_counts = np.unique(row_label[row_label >= 0], return_counts=True)
    for class_id, count in zip(classes.tolist(), class_counts.tolist(), strict=True):
        name = vocabulary.class_names[class_id]
        found.class_rows[name] = found.class_rows.get(name, 0) + count


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

    @classmethod
    def from_runs(
        cls,
        runs: dict[str, RunLabels],
        video: dict[str, dict[str, float | int | None]],
        skipped_runs: dict[str, str],
    ) -> LabelReport:
        """Sum the runs' `RunLabels` up (runs in the order given)."""
        report = cls(skipped_runs=dict(skipped_runs), video=dict(video))
        for run, found in runs.items():
            tallies: tuple[tuple[dict[Any, int], dict[Any, int]], ...] = (
                (report.unknown_ids, found.unknown_ids),
                (report.excluded_ids, found.excluded_ids),
                (report.class_rows, found.class_rows),
            )
            for total, part in tallies:
                for key, count in part.items():
                    total[key] = total.get(key, 0) + count
            if found.srt_agreement is not None:
                report.srt_agreement[run] = found.srt_agreement
            if found.without_srt:
                report.runs_without_srt.append(run)
            if found.srt_fallback:
                report.srt_fallback_runs.append(run)
        return report
