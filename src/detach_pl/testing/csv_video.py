"""Runs of the synthetic kitchen written as one's own recordings would come: `<run>.csv` + `<run>.mp4`.

The CSV is the generic sensor CSV (docs/deploy.md): a `timestamp` column in milliseconds written
with 17 significant digits (so every float64 reads back exactly), the kitchen's channels (an empty
cell where a sample is NaN) and a `label` column of class names (empty for null). The video is the
kitchen's camera, frame k at k / fps, encoded with PyAV. Reading such a folder with
`CsvVideoDataModule` must give the sensor windows and labels of `SyntheticKitchenDataModule` over
the same world (tests/data/test_csv_video.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from detach_pl.data.synthetic import CLASS_NAMES, SyntheticKitchenConfig, channel_names, generate_run
from detach_pl.testing.video import write_video


def write_csv_video_runs(root: Path, world: SyntheticKitchenConfig, bit_rate: int = 2_000_000) -> list[str]:
    """Write every run of `world` under `root`; returns the run names."""
    root.mkdir(parents=True, exist_ok=True)
    header = ",".join(["timestamp", *channel_names(world), "label"])
    names = []
    for index in range(world.num_runs):
        run = generate_run(world, index)
        table = io.StringIO()
        np.savetxt(table, np.column_stack([run.time_ms, run.sensor]), fmt="%.17g", delimiter=",")
        numbers = table.getvalue().replace("nan", "").splitlines()
        labels = [CLASS_NAMES[label] if label >= 0 else "" for label in run.row_label.tolist()]
        lines = [header, *(f"{row},{label}" for row, label in zip(numbers, labels, strict=True))]
        (root / f"{run.name}.csv").write_text("\n".join(lines) + "\n")
        images = (frame if isinstance(frame, np.ndarray) else frame.image for frame in run.frames)
        write_video(root / f"{run.name}.mp4", images, run.fps, bit_rate=bit_rate)
        names.append(run.name)
    return names
