"""The preprocessing contract: the typed description of how raw sensor rows become a probe's input.

It lives in the data layer because the DataModule that trained a probe writes it
(`WindowDataModule.preprocessing_contract`, saved in every checkpoint under `CONTRACT_KEY`);
`detach_pl.deploy` reads it back to predict, export and stream without a training cache.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from detach_pl.data.windows import Standardize, WindowSettings

#: Version of the contract's fields; bumped when a field changes meaning.
CONTRACT_VERSION = 1
#: Key of the contract inside the DataModule state of a checkpoint (and of `model.json`).
CONTRACT_KEY = "preprocessing_contract"

@dataclass(frozen=True)
class PreprocessingContract:
    """Typed, versioned description of the probe's input (docs/deploy.md lists every field).

    Attributes:
        dataset: Dataset the probe was trained on ("synthetic", "opportunity", "hwu_usp", …).
        channel_names: Sensor channels, in the model's input order.
        sensor_rate_hz: Sample rate of the training runs (rows per second).
        windows: The `WindowSettings` of the training cache: window length and hop, NaN policy
            and dead-channel fraction, filter scope, low-pass cutoff and order, resampled length
            and grid.
        standardize: "keep_zeros" or "affine" (`standardize_windows`).
        mean: (C,) per-channel means of the training runs.
        std: (C,) per-channel standard deviations of the training runs.
        class_names: Probe classes, in class-id order.
        probe_unit: "window" (one prediction per window) or "sequence" (per recording).
        version: `CONTRACT_VERSION` when written.
    """

    dataset: str
    channel_names: list[str]
    sensor_rate_hz: float
    windows: dict[str, Any]
    standardize: Standardize
    mean: list[float]
    std: list[float]
    class_names: list[str]
    probe_unit: Literal["window", "sequence"] = "window"
    version: int = CONTRACT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        channels = len(self.channel_names)
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(
                f"preprocessing contract: {channels} channel names but {len(self.mean)} means and "
                f"{len(self.std)} standard deviations"
            )
        if not all(value > 0 for value in self.std):
            raise ValueError("preprocessing contract: every standard deviation must be > 0")
        if not self.sensor_rate_hz > 0:
            raise ValueError(f"preprocessing contract: sensor_rate_hz={self.sensor_rate_hz} must be > 0")
        if self.probe_unit not in ("window", "sequence"):
            raise ValueError(f"preprocessing contract: probe_unit={self.probe_unit!r} must be window or sequence")
        WindowSettings(**self.windows)

    @property
    def settings(self) -> WindowSettings:
        """The window settings as the typed object."""
        return WindowSettings(**self.windows)

    @property
    def mean_array(self) -> np.ndarray:
        """(C,) float32 means."""
        return np.asarray(self.mean, dtype=np.float32)

    @property
    def std_array(self) -> np.ndarray:
        """(C,) float32 standard deviations."""
        return np.asarray(self.std, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON, `torch.load(weights_only=True)`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "the contract") -> PreprocessingContract:
        """Rebuild from `to_dict` output, refusing other versions and unknown fields."""
        version = values.get("version")
        if version != CONTRACT_VERSION:
            raise ValueError(
                f"{where}: preprocessing contract version {version!r}, this detach_pl reads version "
                f"{CONTRACT_VERSION}; export or retrain the probe with this version"
            )
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown preprocessing contract field(s) {unknown}")
        return cls(**values)

    def check_class_names(self, names: list[str] | None, where: str) -> None:
        """Raise when a reader's class list differs from the model's (None: the reader has none)."""
        if names is None or list(names) == list(self.class_names):
            return
        missing = [name for name in self.class_names if name not in names]
        extra = [name for name in names if name not in self.class_names]
        detail = f"missing {missing}, extra {extra}" if missing or extra else "same names in another order"
        raise ValueError(
            f"{where}: the class list {list(names)} differs from the checkpoint's {self.class_names} "
            f"({detail}); predict with the classes the probe was trained on"
        )
