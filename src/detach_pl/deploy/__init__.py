"""Sensor-only deployment (docs/deploy.md).

The preprocessing contract, `detach predict` data and writer, `detach export` and the streaming
recogniser.

Names are imported on first use, so `detach_pl.data` can import the contract type without
loading the model code.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PreprocessingContract": "detach_pl.deploy.contract",
    "load_probe": "detach_pl.deploy.contract",
    "read_contract": "detach_pl.deploy.contract",
    "SensorRecordingsDataModule": "detach_pl.deploy.data",
    "SyntheticRecordings": "detach_pl.deploy.data",
    "OpportunityRecordings": "detach_pl.deploy.data",
    "HwuRecordings": "detach_pl.deploy.data",
    "CsvRecordings": "detach_pl.deploy.data",
    "PredictionWriter": "detach_pl.deploy.writer",
    "export_model": "detach_pl.deploy.export",
    "StreamingRecognizer": "detach_pl.deploy.streaming",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import `name` from its module on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'detach_pl.deploy' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
