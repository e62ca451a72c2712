"""The preprocessing contract: everything that turns raw sensor rows into the probe's input.

A deployed model must not depend on a training cache that the machine next to the sensors does
not have. The DataModule that trained a probe builds a `PreprocessingContract` after `setup`
(`WindowDataModule.preprocessing_contract`) and saves it with its own state in every checkpoint
(`WindowDataModule.state_dict`, key `preprocessing_contract`); `detach export` copies it into
`model.json`. `load_probe` reads it back and refuses checkpoints that cannot predict.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from detach_pl.data.windows import Standardize, WindowSettings

#: Version of the contract's fields; bumped when a field changes meaning.
CONTRACT_VERSION = 1
#: Key of the contract inside the DataModule state of a checkpoint (and of `model.json`).
CONTRACT_KEY = "preprocessing_contract"
#: Model classes that `detach predict`, `detach export` and streaming accept: sensor encoders
#: and a linear layer (the probe, or the supervised baseline that shares its forward).
PROBE_CLASSES = ("LinearProbeModule", "SupervisedSensorModule")
#: What each alignment stage's class is, for messages about a wrong checkpoint.
STAGE_OF_CLASS = {
    "SpatialGroundingModule": "a stage-1 (spatial grounding) checkpoint",
    "TemporalAlignmentModule": "a stage-2 (temporal alignment) checkpoint",
    "GlobalAlignmentModule": "a global-alignment baseline (alignment stage) checkpoint",
}


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


@dataclass(frozen=True)
class LoadedProbe:
    """A probe checkpoint read for deployment: its contract, hyper-parameters and weights."""

    path: Path
    contract: PreprocessingContract
    hparams: dict[str, Any]
    state_dict: dict[str, torch.Tensor]


def checkpoint_kind(hparams: dict[str, Any]) -> str:
    """The model class name a checkpoint was saved from ("" when unknown)."""
    return str(hparams.get("_class_path", "")).rsplit(".", 1)[-1]


def find_contract(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The contract dict saved with the DataModule state (any DataModule class), or None."""
    for value in checkpoint.values():
        if isinstance(value, dict) and isinstance(value.get(CONTRACT_KEY), dict):
            return value[CONTRACT_KEY]
    return None


def load_probe(path: str | Path, setting: str = "--ckpt_path") -> LoadedProbe:
    """Read a probe checkpoint for prediction, export or streaming.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a probe checkpoint (a stage-1/2 or baseline checkpoint is
            named as such), or it was saved before checkpoints carried the contract.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{setting} {file}: no such checkpoint file")
    checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    hparams = dict(checkpoint.get("hyper_parameters", {}))
    kind = checkpoint_kind(hparams)
    if kind not in PROBE_CLASSES:
        what = STAGE_OF_CLASS.get(kind, f"a {kind or 'model of unknown class'} checkpoint")
        raise ValueError(
            f"{setting} {file} is {what}; prediction needs a linear-probe checkpoint "
            f"({' or '.join(PROBE_CLASSES)}, e.g. runs/demo/probe/checkpoints/last.ckpt after `detach fit --config "
            "configs/<dataset>/probe.yaml`)"
        )
    contract = find_contract(checkpoint)
    if contract is None:
        raise ValueError(
            f"{setting} {file} is a probe checkpoint without a preprocessing contract (saved before "
            "detach_pl stored one): it cannot be deployed on sensors alone; train the probe again "
            "(`detach fit --config configs/<dataset>/probe.yaml`) to get a checkpoint that carries it"
        )
    return LoadedProbe(
        file, PreprocessingContract.from_dict(contract, f"{setting} {file}"), hparams, checkpoint["state_dict"]
    )


def read_contract(path: str | Path, setting: str = "contract") -> PreprocessingContract:
    """The contract of a probe checkpoint (`.ckpt`) or of an exported `model.json`."""
    file = Path(path)
    if file.suffix == ".json":
        if not file.is_file():
            raise FileNotFoundError(f"{setting} {file}: no such model.json")
        values = json.loads(file.read_text())
        if CONTRACT_KEY not in values:
            raise ValueError(f"{setting} {file}: no '{CONTRACT_KEY}' entry (not a detach export JSON)")
        return PreprocessingContract.from_dict(values[CONTRACT_KEY], f"{setting} {file}")
    return load_probe(file, setting).contract
