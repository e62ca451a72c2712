"""What a model needs to know about its data, handed from the DataModule by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataInfo:
    """Shape and vocabulary of a dataset, linked from the DataModule into every model.

    Stored in the model's hyper-parameters, so `detach test --ckpt_path` rebuilds the same model.

    Attributes:
        num_channels: Sensor channels per window (C).
        num_classes: Classes of the downstream probe.
        num_places: Instrumented places: the number of clusters K of stage 1.
        class_names: Probe class names, in class-id order.
        place_names: Place names, in place-id order.
        channel_names: Sensor channel names, in channel order.
    """

    num_channels: int
    num_classes: int
    num_places: int
    class_names: list[str] = field(default_factory=list)
    place_names: list[str] = field(default_factory=list)
    channel_names: list[str] = field(default_factory=list)
