"""How a DataLoader worker hands a batch's clips to the training process: reused slots, made before the workers.

PyTorch's default path moves every tensor of a batch into a new shared-memory segment in the
worker, passes one file descriptor per tensor to the training process (a round trip through
the worker's resource-sharer thread), which maps the segment and unmaps it when the batch is
freed. For clips every batch then costs page faults on both sides: the worker's first write to
each 4 KiB page of the new segment and the training process's first read of it (on the VMs
measured, 11–23 ms per 24 MiB batch of 8 clips of 20 × 224², several times the 3–4 ms of
reading the clips from the cache). Here:

- `ClipBuffers`, made in the training process before the workers start, allocates
  `SLOTS_PER_WORKER` shared segments per worker, each the size of a batch's clips. The workers
  inherit them (or receive them once, when started by spawn), so each side maps a segment once
  and its pages fault once per run, not once per batch.
- A worker writes a batch's clips into one of its free slots and sends only which slot it is
  (`SlotClips`: the loader's token, worker, slot, shape). Unpickled in the training process
  (`_received_clips`), that becomes a uint8 tensor over the process's own mapping of the slot,
  whose memory is owned by a NumPy view with a finalizer; the finalizer runs when the last tensor
  (or view of one) over that memory is freed, and marks the slot free in a small table both
  processes share (`busy`). A worker writes only into slots marked free, and sends the clips in a
  new segment when none is (the training process holding many batches): clips the training
  process can still see are never overwritten.
- The batch's other tensors (indices, sensor windows, labels) take PyTorch's default path. Sent
  inside the pickled message instead, a batch's message outgrows the pipe's 64 KiB buffer, and a
  worker whose training process was killed then blocks for ever on exit, its queue's feeder
  thread writing into a pipe nobody reads (PyTorch cancels that join only on an orderly shutdown).
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
"""Segments per worker: the batches in flight (prefetch_factor 2) and two the trainer holds."""


def _shared_uint8(numel: int) -> torch.Tensor:
    """An uninitialised 1-D uint8 tensor in shared memory (as `default_collate` allocates in a worker)."""
    storage = torch.UntypedStorage._new_shared(numel)
    return torch.empty(0, dtype=torch.uint8).set_(storage)


_BUFFERS: weakref.WeakValueDictionary[int, ClipBuffers] = weakref.WeakValueDictionary()
"""This process's `ClipBuffers` by token (a worker sends the token, not the buffers)."""
_TOKENS = itertools.count()
"""Tokens are never reused: a batch outliving its loader cannot free a slot of a later loader's table."""


class SlotClips:
    """A batch's clips written into a worker's slot, as the worker sends them (unpickled as a tensor)."""

    def __init__(self, token: int, worker: int, slot: int, shape: tuple[int, ...]) -> None:
        self.token, self.worker, self.slot, self.shape = token, worker, slot, shape

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _received_clips, (self.token, self.worker, self.slot, self.shape)


def _received_clips(token: int, worker: int, slot: int, shape: tuple[int, ...]) -> torch.Tensor:
    """In the training process: the slot's clips as a plain tensor; the slot is freed with its last view."""
    buffers = _BUFFERS.get(token)
    if buffers is None:
        raise RuntimeError(
            "clips sent in a DataLoader worker's slot were unpickled outside the process that made the loader "
            "(detach_pl.data.clip_buffers): only that process maps the slots"
        )
    owner = buffers.segments[worker][slot].numpy()[: math.prod(shape)].reshape(shape)
    weakref.finalize(owner, _release, buffers.busy, worker, slot)
    return torch.from_numpy(owner)


def _release(busy: torch.Tensor, worker: int, slot: int) -> None:
    busy[worker, slot] = 0


class ClipBuffers:
    """The clip slots of each worker of one DataLoader, and the shared table of busy slots.

    Made in the training process, before the loader starts its workers.

    Args:
        num_workers: The loader's worker processes (no slots without workers).
        clip_shape: The shape of one batch's clips at most, (B, T, H, W, 3).
    """

    def __init__(self, num_workers: int, clip_shape: tuple[int, ...]) -> None:
        self.clip_shape = tuple(clip_shape)
        numel = math.prod(self.clip_shape)
        self.segments = [[_shared_uint8(numel) for _ in range(SLOTS_PER_WORKER)] for _ in range(num_workers)]
        self.busy = torch.zeros(max(num_workers, 1), SLOTS_PER_WORKER, dtype=torch.uint8).share_memory_()
        self.token = next(_TOKENS)
        _BUFFERS[self.token] = self

    def empty(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, Any]:
        """An uninitialised uint8 tensor of `shape` to read clips into, and what the batch carries.

        In a worker: a free slot and its `SlotClips`, or a new shared segment when no slot is free
        or `shape` is larger than a slot. In the training process (no worker) the memory comes from
        NumPy, whose allocator hands a freed batch's pages to the next one; the batch carries the
        tensor itself.
        """
        info = get_worker_info()
        if info is None:
            clips = torch.from_numpy(np.empty(shape, dtype=np.uint8))
            return clips, clips
        numel = math.prod(shape)
        busy = self.busy.numpy()[info.id]
        if numel <= math.prod(self.clip_shape):
            for slot in range(SLOTS_PER_WORKER):
                if not busy[slot]:
                    busy[slot] = 1
                    clips = self.segments[info.id][slot][:numel].view(shape)
                    return clips, SlotClips(self.token, info.id, slot, tuple(shape))
        clips = _shared_uint8(numel).view(shape)
        return clips, clips
