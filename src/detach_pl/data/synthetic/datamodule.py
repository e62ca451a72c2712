"""The built-in synthetic kitchen as a DataModule: the default when no dataset is at hand."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from detach_pl.data.datamodule import WindowDataModule
from detach_pl.data.info import DataInfo
from detach_pl.data.synthetic.world import (
    CLASS_NAMES,
    PLACE_NAMES,
    SyntheticKitchenConfig,
    SyntheticRun,
    channel_names,
    generate_run,
)


class SyntheticKitchenDataModule(WindowDataModule):
    """A generated kitchen with Opportunity++'s structure (14 classes, 7 places, 37+ channels).

    Runs are generated deterministically from `world.seed` into the shared window cache on first
    use, and rendered at `windows.image_size`. The last two runs are validation and test by
    default; the rest train.

    Args:
        world: Generator settings and difficulty knobs.
        **kwargs: Shared DataModule settings (`WindowDataModule`).
    """

    dataset_name = "synthetic"

    def __init__(
        self,
        world: SyntheticKitchenConfig = SyntheticKitchenConfig(),  # noqa: B008 - jsonargparse reads the default; never mutated (replaced below)
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if world.num_runs < 3:
            raise ValueError(f"data.world.num_runs={world.num_runs}: need >= 3 (train, val, test)")
        self.world = dataclasses.replace(world, image_size=self.windows.image_size)

    def run_names(self) -> list[str]:
        """Names of the generated runs."""
        return [f"run{index:02d}" for index in range(self.world.num_runs)]

    def source_settings(self) -> dict[str, Any]:
        """Every knob of the world (each one changes the generated runs)."""
        return dataclasses.asdict(self.world)

    def default_splits(self) -> dict[str, list[str]]:
        """All runs but the last two for training, then one for validation and one for the test."""
        names = self.run_names()
        return {"train_runs": names[:-2], "val_runs": names[-2:-1], "test_runs": names[-1:]}

    def num_recordings(self) -> int:
        """The runs the world generates."""
        return self.world.num_runs

    @property
    def data_info(self) -> DataInfo:
        """The world's channels, classes and places."""
        return DataInfo(
            num_channels=len(channel_names(self.world)),
            num_classes=len(CLASS_NAMES),
            num_places=len(PLACE_NAMES),
            class_names=list(CLASS_NAMES),
            place_names=list(PLACE_NAMES),
            channel_names=channel_names(self.world),
        )

    def recordings(self) -> Iterator[SyntheticRun]:
        """The generated runs, one at a time (each a `RunRecording` with its ground truth)."""
        for index in range(self.world.num_runs):
            yield generate_run(self.world, index)
