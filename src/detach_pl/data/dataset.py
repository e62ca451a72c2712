"""The window dataset: cached windows as items of the batch contract.

Batch contract. What the DataLoader gives (per item, stacked to B by the default collate):
`index` (), `sensor` (C, L) float32, `label` (), `place` (), `sequence` () int64 and, for
alignment, `video` (T, H, W, 3) uint8 exactly as the cache stores frames, contiguous. What the
model gets, after the DataModule's `on_after_batch_transfer` on the training device: `video`
(B, T, 3, H, W) float32 in [0, 1] (`clips_to_float`), augmented on training batches.

A JPEG cache (`frame_storage: {codec: jpeg}`) is decoded where the model runs: in the DataLoader
workers on CPU (items carry `video` as above), or, when training on a CUDA device, on the GPU
(nvJPEG): items then carry `video_jpeg`, a tuple of the T frames' JPEG bytes, which the default
collate turns into T tuples of B `bytes` (not tensors: Lightning leaves them on the host, where
`decode_jpeg` wants its input), and `on_after_batch_transfer` decodes the batch in one call
(`jpeg_clips_to_float`) into the same `video` the model always gets.

Why the loader carries HWC uint8: stacking contiguous clips is one memory copy, whereas
stacking permuted (T, 3, H, W) views gathers bytes three apart (measured 14 ms against 7.7 ms
per batch of 8 clips of 20 × 224²); uint8 moves 4× fewer bytes from workers and to the device,
and the permute + conversion is one pass on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from detach_pl.data.batch_slots import ALIGNMENT, BatchSlots
from detach_pl.data.cache import FrameStorage, WindowCache, decode_jpeg_frames
from detach_pl.data.windows import Standardize, standardize_windows
from detach_pl.seeding import run_seed, sample_generator
from detach_pl.transforms import augment_clip

SMALL_FIELDS = ("sensor", "label", "place", "sequence")
"""The per-window tensors of a batch besides its clips (and its `index`, one int64 per window)."""


class WindowDataset(Dataset):
    """Windows of a cache: standardised sensor channels and, optionally, a sampled video clip.

    Sensor windows are standardised once, here, with the training runs' statistics
    (`standardize_windows`); with `nan_policy: zero_channel` mostly-NaN channels are then zeroed.

    Items follow the batch contract (module docstring): `index` (position in this dataset, for
    the ODC memory), `sensor` (C, L), `video` (T, H, W, 3) uint8, `label`, `place`, `sequence`.
    Clips stay uint8 and channels-last until they reach the training device; the DataModule's
    `on_after_batch_transfer` turns them into (T, 3, H, W) floats in [0, 1] (`clips_to_float`).
    With `decode_on_device` and a JPEG cache, items carry the frames' JPEG bytes as `video_jpeg`
    instead (module docstring).
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
        decode_on_device: bool = False,
    ) -> None:
        self.cache = cache
        self.decode_on_device = decode_on_device and cache.frame_storage.codec == "jpeg"
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

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One item of the batch contract (module docstring)."""
        item: dict[str, Any] = {
            "index": torch.tensor(index, dtype=torch.int64),
            "sensor": self.sensor[index],
            "label": self.label[index],
            "place": self.place[index],
            "sequence": self.sequence[index],
        }
        if self.load_video and self.decode_on_device:
            encoded = self.cache.read_encoded_frames(int(self.windows[index]), self.num_frames)
            item["video_jpeg"] = tuple(frame.numpy().tobytes() for frame in encoded)
        elif self.load_video:
            frames = self.cache.read_frames(int(self.windows[index]), self.num_frames)
            item["video"] = torch.from_numpy(frames)
        return item

    def empty_clips(self, count: int) -> torch.Tensor:
        """An uninitialised (count, T, H, W, 3) uint8 tensor for `read_batch` (NumPy memory, reused by NumPy)."""
        return torch.from_numpy(np.empty((count, self.num_frames, *self.cache.frame_shape), dtype=np.uint8))

    def read_batch(self, indices: Sequence[int], clips: torch.Tensor | None = None) -> dict[str, Any]:
        """The items `indices` as the default collate stacks them, read in one go (a loader's batch).

        Equal to `default_collate([self[i] for i in indices])`, key by key, without building the
        items: sensor fields are gathered with one index each, and the clips are read straight
        into one (B, T, H, W, 3) uint8 tensor allocated up front (`clips` when given, e.g. a
        worker's reused shared memory, `detach_pl.data.batch_slots`), the frames in file order.
        """
        rows = np.array(indices, dtype=np.int64)  # a copy: the batch's index never aliases the caller's
        batch: dict[str, Any] = {"index": torch.from_numpy(rows)}
        for key in SMALL_FIELDS:  # NumPy's gather: no OpenMP region per field
            batch[key] = torch.from_numpy(getattr(self, key).numpy()[rows])
        windows = self.windows[rows]
        if self.load_video and self.decode_on_device:
            encoded = [self.cache.read_encoded_frames(int(window), self.num_frames) for window in windows]
            steps = range(self.num_frames)
            batch["video_jpeg"] = [tuple(clip[step].numpy().tobytes() for clip in encoded) for step in steps]
        elif self.load_video:
            video = self.empty_clips(len(windows)) if clips is None else clips
            self.cache.read_clips(windows, self.num_frames, video.numpy())
            batch["video"] = video
        return batch


class WindowBatches(Dataset):
    """A `WindowDataset` as the DataModule's loaders read it: one `read_batch` call per batch.

    The DataLoader's fetcher calls `__getitems__` with a batch's indices when a dataset has it
    (automatic batching, `already_batched` as the collate); a sampler that yields whole batches
    (`UnpaddedBatchSampler`, with `batch_size=None`) indexes it with the list. Either way the
    batch is that of `default_collate` over the items (`WindowDataset.read_batch`). In a worker,
    the batch is written into one of the worker's reused slots (`detach_pl.data.batch_slots`).

    Args:
        windows: The dataset.
        num_workers: Worker processes of the loader that reads it.
        batch_size: The most windows a fetch asks for (the size of a worker's slots).
    """

    def __init__(self, windows: WindowDataset, num_workers: int = 0, batch_size: int = 1) -> None:
        self.windows = windows
        if windows.load_video and not windows.decode_on_device:
            per_item = 8 + sum(getattr(windows, key)[:1].nbytes for key in SMALL_FIELDS)  # 8: the int64 index
            self.slots = BatchSlots(num_workers, (batch_size, windows.num_frames, *windows.cache.frame_shape),
                                       extra_bytes=batch_size * per_item + (len(SMALL_FIELDS) + 1) * ALIGNMENT)
        else:
            self.slots = BatchSlots(0, (0,))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, indices: Sequence[int]) -> dict[str, Any]:
        return self.__getitems__(indices)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        dataset = self.windows
        if not dataset.load_video or dataset.decode_on_device:
            return dataset.read_batch(indices)
        clips, sent = self.slots.empty((len(indices), dataset.num_frames, *dataset.cache.frame_shape))
        return self.slots.pack(dataset.read_batch(indices, clips), "video", sent)


def already_batched(batch: dict[str, Any]) -> dict[str, Any]:
    """The collate of `WindowBatches`: the batch is made by the dataset, nothing left to merge."""
    return batch


def batch_for_model(batch: dict[str, Any], *, augment_epoch: int | None) -> dict[str, Any]:
    """A batch after its transfer to the training device, as the model gets it (module docstring).

    uint8 clips (B, T, H, W, 3), or a JPEG cache's frame bytes, become floats (B, T, 3, H, W) in
    [0, 1]; with `augment_epoch`, each clip is augmented by its window's generator of that epoch
    (`sample_generator`: one draw per clip, whichever batch or rank serves it), seeded from the
    host copy of the indices (`index_host`, popped) when the batch has one, so that the device's
    `index` is never read back (a sync).
    """
    indices = batch.pop("index_host", None)
    if "video_jpeg" in batch:
        video = jpeg_clips_to_float(batch.pop("video_jpeg"), batch["sensor"].device)
    elif "video" in batch and batch["video"].dtype == torch.uint8:
        video = clips_to_float(batch["video"])
    else:
        return batch
    if augment_epoch is not None:
        seed = run_seed()
        indices = batch["index"].tolist() if indices is None else indices  # called without the hook before
        generators = [sample_generator(seed, augment_epoch, index) for index in indices]
        video = torch.stack([augment_clip(clip, generator=g) for clip, g in zip(video, generators, strict=True)])
    batch["video"] = video
    return batch


def decodes_on_device(storage: FrameStorage, device: torch.device) -> bool:
    """Whether JPEG frames are decoded on the training device (CUDA) rather than in the loader workers."""
    return storage.codec == "jpeg" and device.type == "cuda"


def jpeg_clips_to_float(encoded: Sequence[Sequence[bytes]], device: torch.device) -> torch.Tensor:
    """A batch's `video_jpeg` (T tuples of B JPEG byte strings) → (B, T, 3, H, W) float32 in [0, 1] on `device`.

    One batched `decode_jpeg` call for all B·T frames (nvJPEG on a GPU).
    """
    frames = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for step in encoded for data in step]
    decoded = decode_jpeg_frames(frames, device)
    steps, batch = len(encoded), len(encoded[0])
    clips = decoded.view(steps, batch, *decoded.shape[1:]).transpose(0, 1)
    return clips.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def clips_to_float(video: torch.Tensor) -> torch.Tensor:
    """Clips as the loader gives them, (..., T, H, W, 3) uint8, to the model's (..., T, 3, H, W) float32 in [0, 1].

    One pass: the channel permute and the conversion write a contiguous float tensor, then it is
    divided by 255 in place (the same values as `clip.float() / 255` of a CHW clip).
    """
    if video.dtype != torch.uint8 or video.shape[-1] != 3:
        raise ValueError(f"expected clips (..., T, H, W, 3) uint8, got {tuple(video.shape)} {video.dtype}")
    dims = list(range(video.dim()))
    channels_first = video.permute(*dims[:-3], dims[-1], dims[-3], dims[-2])
    return channels_first.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
