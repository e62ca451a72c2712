"""The window dataset: cached windows as items of the batch contract."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from detach_pl.data.cache import WindowCache
from detach_pl.data.windows import Standardize, standardize_windows


class WindowDataset(Dataset):
    """Windows of a cache: standardised sensor channels and, optionally, a sampled video clip.

    Sensor windows are standardised once, here, with the training runs' statistics
    (`standardize_windows`); with `nan_policy: zero_channel` mostly-NaN channels are then zeroed.

    Items follow the batch contract: `index` (position in this dataset, for the ODC memory),
    `sensor` (C, L), `video` (T, 3, H, W) uint8, `label`, `place`, `sequence`. Clips stay uint8 until
    they reach the training device (4× less to move between processes); the DataModule's
    `on_after_batch_transfer` turns them into floats in [0, 1].
    """

    def __init__(
        self,
        cache: WindowCache,
        windows: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        *,
        num_frames: int,
        load_video: bool,
        standardize: Standardize = "keep_zeros",
    ) -> None:
        self.cache = cache
        self.windows = np.asarray(windows, dtype=np.int64)
        self.num_frames = num_frames
        self.load_video = load_video
        raw, zeros, dead = cache.read_sensor(self.windows)
        sensor = standardize_windows(raw, zeros, mean, std, standardize)
        if cache.settings.nan_policy == "zero_channel":
            sensor[dead] = 0.0
        self.sensor = torch.from_numpy(sensor)
        self.label = torch.from_numpy(cache.label[self.windows])
        self.place = torch.from_numpy(cache.place[self.windows])
        self.sequence = torch.from_numpy(cache.window_run[self.windows])

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {
            "index": torch.tensor(index, dtype=torch.int64),
            "sensor": self.sensor[index],
            "label": self.label[index],
            "place": self.place[index],
            "sequence": self.sequence[index],
        }
        if self.load_video:
            frames = self.cache.read_frames(int(self.windows[index]), self.num_frames)
            item["video"] = torch.from_numpy(frames).permute(0, 3, 1, 2)
        return item
