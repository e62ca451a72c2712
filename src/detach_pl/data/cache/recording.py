"""What a dataset reader hands the cache writer (`RunRecording`) and what the writer reports back (`RunReport`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from detach_pl.data.decoding import TimedFrame


@dataclass
class RunRecording:
    """One recording as a dataset parser hands it to the cache writer.

    Attributes:
        name: Run or trial name (unique within the dataset).
        time_ms: (rows,) sensor sample times on the run's clock; a frame is at
            `video_offset_ms + its time · 1000` on the same clock.
        sensor: (rows, C) raw ambient channels, NaN where missing.
        row_label: (rows,) class id per row, −1 for null.
        row_place: (rows,) place id per row, −1 for none (diagnostics only).
        frames: The video, frame by frame, already at the cache's image size: `TimedFrame`s
            (presentation time in seconds on the file's clock, (H, W, 3) uint8 image), or bare
            arrays, which are taken as frame k at k / fps (generated video). An iterator is
            consumed once, so a long video never sits in memory.
        fps: Measured frame rate of the video.
        subject: Subject id, −1 if unknown.
        sequence_label: Class of the whole recording (HWU-USP activity), −1 if none.
        num_frames: Expected frame count, if known (progress display only).
        video_offset_ms: Where time 0 of the video's clock lies on the sensor clock.
        source: Free-form description of the files it came from (for messages).
    """

    name: str
    time_ms: np.ndarray
    sensor: np.ndarray
    row_label: np.ndarray
    row_place: np.ndarray
    frames: Iterable[TimedFrame | np.ndarray]
    fps: float
    subject: int = -1
    sequence_label: int = -1
    num_frames: int | None = None
    video_offset_ms: float = 0.0
    source: str = ""


@dataclass
class RunReport:
    """What the writer found while storing one run (durations, dropped windows).

    `windows_unplaced` counts the windows dropped because their frames cannot be placed in time
    (after a gap or a break in the frame timestamps); `notes` says where.
    """

    name: str
    sensor_seconds: float
    video_seconds: float
    num_frames: int
    windows: int
    windows_without_video: int
    notes: list[str] = field(default_factory=list)
    windows_unplaced: int = 0


def validate_recording(run: RunRecording, num_channels: int) -> None:
    """Refuse a recording whose arrays do not fit together, naming the run and its source."""
    rows = run.time_ms.shape[0]
    where = f"run {run.name!r}" + (f" ({run.source})" if run.source else "")
    if run.sensor.ndim != 2 or run.sensor.shape != (rows, num_channels):
        raise ValueError(
            f"{where}: sensor matrix has shape {run.sensor.shape}, expected ({rows}, {num_channels})"
        )
    if run.row_label.shape != (rows,) or run.row_place.shape != (rows,):
        raise ValueError(f"{where}: per-row labels/places must have shape ({rows},)")
    if rows < 2 or np.any(np.diff(run.time_ms) <= 0):
        raise ValueError(f"{where}: sensor timestamps must be strictly increasing (>= 2 rows)")
    if not run.fps > 0:
        raise ValueError(f"{where}: frame rate must be positive, got {run.fps}")
