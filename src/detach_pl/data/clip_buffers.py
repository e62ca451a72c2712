"""Shared-memory clip buffers that a DataLoader worker reuses from batch to batch.

A worker hands a batch to the training process through shared memory. PyTorch's default collate
allocates a new segment per batch, and the first write to each of its pages is a page fault:
on the VMs measured, 11–23 ms per 24 MiB batch (8 clips of 20 × 224²), several times the cost
of reading the clips from the cache. A worker here keeps up to `SLOTS_PER_WORKER` segments and
writes each batch's clips into a free one; a segment is free again once the training process has
dropped every tensor that views it:

- the worker sends a `PooledClips` (the clip tensor on its segment, and which slot it is);
- unpickling it in the training process (`_received_clips`) gives a plain uint8 tensor whose
  memory is owned by a NumPy view of the segment, with a finalizer on that view; the finalizer
  runs when the last tensor (or view of one) over the memory is freed, and marks the slot free
  in a small table shared by both processes (`busy`);
- a worker writes only into slots marked free, and falls back to a new segment when none is
  (the training process holding many batches: the clips are never overwritten while visible).
"""

from __future__ import annotations

import itertools
import math
import weakref
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

SLOTS_PER_WORKER = 4
"""Segments a worker keeps: the batches in flight (prefetch_factor 2) and two the trainer holds."""


def _shared_uint8(numel: int) -> torch.Tensor:
    """An uninitialised 1-D uint8 tensor in shared memory (as `default_collate` allocates in a worker)."""
    storage = torch.UntypedStorage._new_shared(numel)
    return torch.empty(0, dtype=torch.uint8).set_(storage)


_TABLES: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()
"""The busy tables of this process's `ClipBuffers` by token (a worker sends the token, not the table)."""
_TOKENS = itertools.count()
"""Tokens are never reused: a batch outliving its loader cannot free a slot of a later loader's table."""


class PooledClips:
    """A batch's clips on a worker's reused segment, as the worker sends them (unpickled as a tensor)."""

    def __init__(self, clips: torch.Tensor, token: int, worker: int, slot: int) -> None:
        self.clips, self.token, self.worker, self.slot = clips, token, worker, slot

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _received_clips, (self.clips, self.token, self.worker, self.slot)


def _received_clips(clips: torch.Tensor, token: int, worker: int, slot: int) -> torch.Tensor:
    """In the training process: the clips as a plain tensor; its slot is freed with its last view.

    Unpickled anywhere but the process that made the loader, the slot is never freed and the
    worker falls back to new segments: slower, never wrong.
    """
    owner = clips.numpy()  # keeps the received segment mapped while any tensor over it lives
    busy = _TABLES.get(token)
    if busy is not None:
        weakref.finalize(owner, _release, busy, worker, slot)
    return torch.from_numpy(owner)


def _release(busy: torch.Tensor, worker: int, slot: int) -> None:
    busy[worker, slot] = 0


class ClipBuffers:
    """The reused segments of each worker of one DataLoader, and the shared table of busy slots.

    Args:
        num_workers: The loader's worker processes (the table has a row per worker).
    """

    def __init__(self, num_workers: int) -> None:
        self.busy = torch.zeros(max(num_workers, 1), SLOTS_PER_WORKER, dtype=torch.uint8).share_memory_()
        self.token = next(_TOKENS)
        _TABLES[self.token] = self.busy
        self._segments: list[torch.Tensor | None] = [None] * SLOTS_PER_WORKER

    def __getstate__(self) -> dict[str, Any]:
        return {"busy": self.busy, "token": self.token, "_segments": [None] * SLOTS_PER_WORKER}

    def empty(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, Any]:
        """An uninitialised uint8 tensor of `shape` to read clips into, and what the batch carries.

        In the training process (no worker) the memory comes from NumPy, whose allocator hands a
        freed batch's pages to the next one; the batch carries the tensor itself.
        """
        info = get_worker_info()
        if info is None:
            clips = torch.from_numpy(np.empty(shape, dtype=np.uint8))
            return clips, clips
        numel = math.prod(shape)
        busy = self.busy.numpy()[info.id]
        for slot in range(SLOTS_PER_WORKER):
            if busy[slot]:
                continue
            segment = self._segments[slot]
            if segment is None or segment.numel() < numel:
                segment = self._segments[slot] = _shared_uint8(numel)
            busy[slot] = 1
            clips = segment[:numel].view(shape)
            return clips, PooledClips(clips, self.token, info.id, slot)
        clips = _shared_uint8(numel).view(shape)  # every slot still held by the training process
        return clips, clips
