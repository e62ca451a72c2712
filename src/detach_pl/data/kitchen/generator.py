"""One run of the synthetic kitchen: the schedule rendered into sensors, labels and frames."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detach_pl.data.cache import RunRecording
from detach_pl.data.kitchen.config import SyntheticKitchenConfig
from detach_pl.data.kitchen.layout import CLASS_PLACE
from detach_pl.data.kitchen.rendering import render_frames
from detach_pl.data.kitchen.room import build_world
from detach_pl.data.kitchen.schedule import build_schedule, subject_of, subject_traits
from detach_pl.data.kitchen.sensors import apply_flaws, gesture_rows, render_sensors, sensor_clock


@dataclass
class SyntheticRun(RunRecording):
    """One generated recording: a `RunRecording` as a real release's reader gives it, plus the truth.

    The recording fields are those of `RunRecording`, with: `name` ``run<NN>``; `subject` the
    0-based subject id, shared by ``runs_per_subject`` consecutive runs; `time_ms` a float64 clock
    in ms since the run start (integer values); `sensor` (rows, C) float32 (see
    :func:`channel_names`), NaN where missing; `row_label` / `row_place` the class / place of the
    gesture covering the row (−1 for null); `frames` an (F, H, W, 3) uint8 array, frame k at
    k * 1000 / fps ms.

    Attributes:
        events: Gestures as (class_id, start_ms, end_ms), sorted by time; rows with
            start_ms <= time_ms < end_ms carry the label.
        other_events: The release's other gestures as (index into OTHER_GESTURES, start_ms,
            end_ms); their rows are null (-1).
    """

    events: list[tuple[int, float, float]] = field(default_factory=list)
    other_events: list[tuple[int, float, float]] = field(default_factory=list)


def ground_truth_events(config: SyntheticKitchenConfig, run_index: int) -> list[tuple[int, float, float]]:
    """Gestures (class_id, start_ms, end_ms) of a run, without rendering anything (cheap)."""
    return build_schedule(config, run_index).events


def generate_run(config: SyntheticKitchenConfig, run_index: int) -> SyntheticRun:
    """Generate run ``run_index`` of the synthetic kitchen, deterministically from (seed, run_index).

    Raises:
        ValueError: If ``run_index`` is outside [0, num_runs) or the episodes do not fit the run.
    """
    subject_id = subject_of(config, run_index)
    world = build_world(config)
    subject = subject_traits(config, subject_id)
    schedule = build_schedule(config, run_index)
    time_ms = sensor_clock(config, run_index)
    sensor = render_sensors(config, world, subject, schedule, time_ms, run_index)
    apply_flaws(config, sensor, time_ms, run_index)
    row_label = np.full(len(time_ms), -1, dtype=np.int64)
    for class_id, start, end in schedule.events:
        row_label[gesture_rows(time_ms, start, end)] = class_id
    row_place = np.where(row_label >= 0, np.asarray(CLASS_PLACE)[row_label], -1).astype(np.int64)
    frames = render_frames(config, world, subject, schedule, run_index)
    return SyntheticRun(
        name=f"run{run_index:02d}",
        subject=subject_id,
        time_ms=time_ms,
        sensor=sensor,
        row_label=row_label,
        row_place=row_place,
        frames=frames,
        fps=float(config.fps),
        num_frames=frames.shape[0],
        source=f"synthetic world seed {config.seed}",
        events=list(schedule.events),
        other_events=list(schedule.other_events),
    )
