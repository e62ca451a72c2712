"""Shared by the Opportunity++ and base-DataModule tests: a CPU-sized module on a stand-in release.

The stand-in (`detach_pl.testing.opportunity`) holds the exact matrices written, so the tests
compare what the DataModule serves with a direct computation on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detach_pl.data.opportunity import OpportunityDataModule
from detach_pl.data.windows import WindowSettings
from detach_pl.testing.opportunity import StandinRelease

TRAIN, VAL, TEST = ["S1-ADL1", "S1-Drill"], ["S2-ADL3"], ["S2-ADL4", "S3-ADL4"]
AMBIENT = slice(194, 231)  # columns 195–231, 0-based


def module(root: Path, cache_dir: Path, **kwargs) -> OpportunityDataModule:
    """A CPU-sized data module on a stand-in (16-pixel frames, 4 frames per clip)."""
    options = dict(
        root=str(root), cache_dir=str(cache_dir), windows=WindowSettings(image_size=16), num_frames=4,
        batch_size=4, num_workers=0, train_runs=TRAIN, val_runs=VAL, test_runs=TEST, progress=False,
        purpose="alignment",
    )
    options.update(kwargs)
    return OpportunityDataModule(**options)


def single_run(run: str) -> dict:
    """Splits that all name one run (enough for prepare_data)."""
    return dict(train_runs=[run], val_runs=[run], test_runs=[run])


def expected_standardisation(
    release: StandinRelease, runs: list[str], columns: slice | list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std over the non-NaN raw samples of the given runs (`nan_statistics`)."""
    return nan_statistics(np.concatenate([release.runs[r].matrix[:, columns] for r in runs]))


def nan_statistics(stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of (samples, channels), NaNs left out, std 1 if constant (explicit loop)."""
    mean, std = np.zeros(stacked.shape[1]), np.ones(stacked.shape[1])
    for channel in range(stacked.shape[1]):
        values = stacked[~np.isnan(stacked[:, channel]), channel]
        if values.size:
            mean[channel] = values.mean()
            spread = values.std()
            std[channel] = spread if spread >= 1e-6 else 1.0
    return mean, std
