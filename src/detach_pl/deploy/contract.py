"""Reading a probe checkpoint for deployment: its preprocessing contract, hyper-parameters and weights.

A deployed model must not depend on a training cache that the machine next to the sensors does
not have. The DataModule that trained a probe builds a `PreprocessingContract` after `setup`
(`WindowDataModule.preprocessing_contract`) and saves it with its own state in every checkpoint
(`WindowDataModule.state_dict`, key `preprocessing_contract`); `detach export` copies it into
`model.json`. `load_probe` reads it back and refuses checkpoints that cannot predict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from detach_pl.checkpoints import read_checkpoint
from detach_pl.data.contract import CONTRACT_KEY, CONTRACT_VERSION, PreprocessingContract

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
        ValueError: The file is unreadable or not a probe checkpoint (a stage-1/2 or baseline checkpoint is
            named as such), or it was saved before checkpoints carried the contract.
    """
    file = Path(path)
    checkpoint = read_checkpoint(file, setting)
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


def read_export_description(path: str | Path, setting: str = "model.json") -> dict[str, Any]:
    """The `model.json` that `detach export` writes beside a model, checked to hold a contract.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not JSON (the line and column are named) or has no contract.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{setting} {file}: no such model.json")
    try:
        values = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{setting} {file} is not a model.json written by detach export: {error}") from error
    if not isinstance(values, dict) or not isinstance(values.get(CONTRACT_KEY), dict):
        raise ValueError(f"{setting} {file}: no '{CONTRACT_KEY}' entry (not a model.json written by detach export)")
    return values


def read_contract(path: str | Path, setting: str = "contract") -> PreprocessingContract:
    """The contract of a probe checkpoint (`.ckpt`) or of an exported `model.json`."""
    file = Path(path)
    if file.suffix == ".json":
        values = read_export_description(file, setting)
        return PreprocessingContract.from_dict(values[CONTRACT_KEY], f"{setting} {file}")
    return load_probe(file, setting).contract


__all__ = [
    "CONTRACT_KEY",
    "CONTRACT_VERSION",
    "PROBE_CLASSES",
    "LoadedProbe",
    "PreprocessingContract",
    "checkpoint_kind",
    "find_contract",
    "load_probe",
    "read_contract",
    "read_export_description",
]
