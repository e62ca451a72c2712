"""Sensor-only readers of new recordings that are not a generic CSV (`detach_pl.data.sensor_csv`).

None of them opens a video: Opportunity++ and HWU-USP runs are found without their video files
(`require_video=False`), the synthetic kitchen is regenerated from the world the model was trained
on. Each yields `SensorRecording`s whose channel names are matched to the model's later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from detach_pl.data.sensor_csv import SensorRecording
from detach_pl.data.synthetic import CLASS_NAMES, SyntheticKitchenConfig, channel_names, generate_run


def synthetic_recordings(
    world: SyntheticKitchenConfig, names: Sequence[str], class_names: Sequence[str]
) -> Iterator[SensorRecording]:
    """Runs of the synthetic kitchen regenerated from `world` (sensors; no video file exists).

    Raises:
        ValueError: An unknown run name, or the model's classes are not the kitchen's.
    """
    valid = [f"run{index:02d}" for index in range(world.num_runs)]
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ValueError(f"data.init_args.recordings: {unknown} are not runs of this world ({valid[0]}…{valid[-1]})")
    if list(class_names) != list(CLASS_NAMES):
        raise ValueError(f"the model's classes {list(class_names)} are not the synthetic kitchen's {list(CLASS_NAMES)}")
    names_of_channels = channel_names(world)
    for name in names:
        run = generate_run(world, valid.index(name))
        yield SensorRecording(
            name=run.name, time_ms=run.time_ms, sensor=run.sensor, channel_names=names_of_channels,
            row_label=run.row_label, source=f"synthetic world seed {world.seed}",
        )


def world_of(source: dict) -> SyntheticKitchenConfig:
    """The synthetic world stored in a contract's `extra["source"]`."""
    known = {item.name for item in dataclasses.fields(SyntheticKitchenConfig)}
    return SyntheticKitchenConfig(**{key: value for key, value in source.items() if key in known})
