"""Probe checkpoints for a dataset's channels without training one (deploy tests, bench_predict).

The weights are the random initialisation and the statistics those of the rows given: these
checkpoints test what prediction reads and how fast, not what it recognises.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import lightning
import numpy as np
import torch

from detach_pl.data.info import DataInfo
from detach_pl.data.windows import WindowSettings
from detach_pl.deploy.contract import CONTRACT_KEY, PreprocessingContract
from detach_pl.modules import LinearProbeModule
from detach_pl.nn import EncoderConfig


def is_dataclass_instance(value: object) -> bool:
    """Whether `value` is a dataclass instance (saved as a plain dict), not a dataclass type."""
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def probe_checkpoint(path: Path, dataset: str, channels: list[str], classes: list[str], rows: np.ndarray,
                     rate_hz: float, encoder: EncoderConfig, probe_unit: Literal["window", "sequence"] = "window",
                     source: dict | None = None) -> Path:
    """Save a LinearProbeModule checkpoint with the contract of `rows` ((n, C) raw samples).

    Args:
        path: Where to save it.
        dataset: The contract's dataset name.
        channels: Channel names, in the order of `rows`' columns.
        classes: Class names.
        rows: (n, C) raw samples whose statistics the contract holds.
        rate_hz: Sensor rate of the contract.
        encoder: Sensor encoder sizes (e.g. configs/demo/encoder.yaml, or the paper's).
        probe_unit: "window", or "sequence" (HWU-USP's sequence probe).
        source: The training DataModule's source settings stored in the contract.

    Returns:
        `path`.
    """
    torch.manual_seed(0)
    info = DataInfo(num_channels=len(channels), num_classes=len(classes), num_places=7,
                    class_names=list(classes), channel_names=list(channels))
    model = LinearProbeModule(data_info=info, encoder=encoder)
    std = np.nanstd(rows, axis=0)
    contract = PreprocessingContract(
        dataset=dataset, channel_names=list(channels), sensor_rate_hz=rate_hz,
        windows=WindowSettings().to_dict(), standardize="keep_zeros",
        mean=np.nan_to_num(np.nanmean(rows, axis=0)).tolist(),
        std=np.where(np.isfinite(std) & (std > 1e-6), std, 1.0).tolist(),
        class_names=list(classes), probe_unit=probe_unit, extra={"source": source or {}},
    )
    hparams = {key: dataclasses.asdict(value) if is_dataclass_instance(value) else value
               for key, value in model.hparams.items()}
    hparams["_class_path"] = "detach_pl.modules.LinearProbeModule"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams, "epoch": 0, "global_step": 0,
                "pytorch-lightning_version": lightning.__version__,
                "DataModule": {CONTRACT_KEY: contract.to_dict()}}, path)
    return path
