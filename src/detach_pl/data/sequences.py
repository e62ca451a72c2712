"""Whole runs as items, for the sequence-level probe: a run's windows, padded to a batch with a mask."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from detach_pl.data.dataset import WindowDataset


class SequenceDataset(Dataset):
    """Whole runs (trials) as items, for the sequence-level probe: all windows of a run."""

    def __init__(self, windows: WindowDataset, labels: dict[int, int]) -> None:
        self.windows = windows
        self.runs = sorted(labels)
        self.labels = labels
        run_of_window = windows.sequence.numpy()
        self.members = {run: np.flatnonzero(run_of_window == run) for run in self.runs}

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        run = self.runs[index]
        rows = torch.from_numpy(self.members[run])
        return {
            "index": torch.tensor(index, dtype=torch.int64),
            "sensor": self.windows.sensor[rows],
            "label": torch.tensor(self.labels[run], dtype=torch.int64),
            "sequence": torch.tensor(run, dtype=torch.int64),
        }


def collate_sequences(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad runs of different lengths: `sensor` (B, W_max, C, L) and a `mask` (B, W_max)."""
    longest = max(item["sensor"].shape[0] for item in items)
    channels, length = items[0]["sensor"].shape[1:]
    sensor = torch.zeros(len(items), longest, channels, length)
    mask = torch.zeros(len(items), longest, dtype=torch.bool)
    for row, item in enumerate(items):
        count = item["sensor"].shape[0]
        sensor[row, :count] = item["sensor"]
        mask[row, :count] = True
    batch = {key: torch.stack([item[key] for item in items]) for key in ("index", "label", "sequence")}
    batch.update(sensor=sensor, mask=mask)
    return batch
