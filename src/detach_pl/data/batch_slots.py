"""How a DataLoader worker hands a batch to the training process: reused slots, made before the workers.

PyTorch's default path moves every tensor of a batch into a new shared-memory segment in the
worker, passes one file descriptor per tensor to the training process (a round trip through
the worker's resource-sharer thread), which maps the segment and unmaps it when the batch is
freed. For clips every batch then costs page faults on both sides: the worker's first write to
each 4 KiB page of the new segment and the training process's first read of it (on the VMs
measured, 11–23 ms per 24 MiB batch of 8 clips of 20 × 224², several times the 3–4 ms of
reading the clips from the cache). Here:

- `BatchSlots`, made in the training process before the workers start, allocates
  `SLOTS_PER_WORKER` shared segments per worker, each the size of one batch. The workers
  inherit them (or receive them once, when started by spawn), so each side maps a segment once
  and its pages fault once per run, not once per batch.
- A worker writes a batch into one of its free slots (the clips first, then the other tensors:
  indices, sensor windows, labels) and sends only which slot it is and where each tensor lies
  (`SlotBatch`, a message of a few hundred bytes). Unpickled in the training process
  (`_received_batch`), that becomes the batch's tensors over the process's own mapping of the
  slot, whose memory is owned by one NumPy view with a finalizer; the finalizer runs when the last
  tensor (or view of one) over that memory is freed, and marks the slot free in a small table both
  processes share (`busy`). A worker writes only into slots marked free, and sends the batch by
  PyTorch's default path when none is (the training process holding many batches): tensors the
  training process can still see are never overwritten.
- Each slot's pages are made once and mapped once per process, before the first batch: the
  training process writes the slots when it makes them (the pages exist), and each worker reads
  one byte per page of its slots before it serves its first batch (`map_pages`: a read fault
  maps its page and, on Linux, the existing pages around it, writable, and changes nothing). On
  the VM measured, a worker that instead faulted its pages while reading clips into them spent
  60–80 ms per 24 MiB slot on it, against 3 ms for the reads; that cost fell inside the first
  epoch, and inside a later one whenever a slot was first used then (the training process
  holding one batch more).
- The message stays small on purpose. With the sensor windows inside the pickled message it
  outgrew the pipe's 64 KiB buffer, and a worker whose training process was killed then blocked
  for ever on exit, its queue's feeder thread writing into a pipe nobody reads.
"""

from __future__ import annotations

import itertools
import math
import os
import weakref
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import get_worker_info

SLOTS_PER_WORKER = 4
"""Segments per worker: the batches in flight (prefetch_factor 2) and two the trainer holds."""


PAGE_BYTES = 4096
"""The stride of `map_pages` (the smallest page size of the platforms PyTorch runs on)."""


def _shared_uint8(numel: int) -> torch.Tensor:
    """An uninitialised 1-D uint8 tensor in shared memory (as `default_collate` allocates in a worker)."""
    storage = torch.UntypedStorage._new_shared(numel)
    return torch.empty(0, dtype=torch.uint8).set_(storage)


def map_pages(segment: torch.Tensor) -> None:
    """Map every page of a shared segment into this process by reading one byte per page.

    Read, not written: the segment's contents stay as they are, so a slot that a batch in the
    training process still holds can be mapped too (workers started again for a new epoch).
    """
    int(segment.numpy()[::PAGE_BYTES].sum())


_SLOTS: weakref.WeakValueDictionary[int, BatchSlots] = weakref.WeakValueDictionary()
"""This process's `BatchSlots` by token (a worker sends the token, not the slots)."""
_TOKENS = itertools.count()
"""Tokens are never reused: a batch outliving its loader cannot free a slot of a later loader's table."""


class Slot(NamedTuple):
    """Which slot of which worker of which loader a batch was written into."""

    token: int
    worker: int
    slot: int


ALIGNMENT = 64
"""Byte alignment of each tensor in a slot."""


class SlotBatch:
    """A batch written into a worker's slot, as the worker sends it (unpickled as the batch dict).

    Args:
        slot: The slot.
        layout: (key, byte offset, shape, dtype) of each tensor in the slot.
        rest: The batch's other entries, sent the ordinary way.
    """

    def __init__(self, slot: Slot, layout: list[tuple[str, int, tuple[int, ...], str]], rest: dict[str, Any]) -> None:
        self.slot, self.layout, self.rest = slot, layout, rest

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _received_batch, (*self.slot, self.layout, self.rest)


def _received_batch(token: int, worker: int, slot: int, layout: list[tuple[str, int, tuple[int, ...], str]],
                    rest: dict[str, Any]) -> dict[str, Any]:
    """In the training process: the batch over the slot's memory; the slot is freed with its last view."""
    slots = _SLOTS.get(token)
    if slots is None:
        raise RuntimeError(
            "a batch sent in a DataLoader worker's slot was unpickled outside the process that made the loader "
            "(detach_pl.data.batch_slots): only that process maps the slots"
        )
    owner = slots.segments[worker][slot].numpy()  # a new view: every tensor below keeps it alive
    weakref.finalize(owner, _release, slots.busy, worker, slot)
    batch = dict(rest)
    for key, offset, shape, dtype in layout:
        kind = np.dtype(dtype)
        nbytes = math.prod(shape) * kind.itemsize
        batch[key] = torch.from_numpy(owner[offset : offset + nbytes].view(kind).reshape(shape))
    return batch


def _release(busy: torch.Tensor, worker: int, slot: int) -> None:
    busy[worker, slot] = 0


class BatchSlots:
    """The batch slots of each worker of one DataLoader, and the shared table of busy slots.

    Made in the training process, before the loader starts its workers; it writes each slot once
    (zeros), so that the slots' pages exist before any worker maps them (`map_pages`).

    Args:
        num_workers: The loader's worker processes (no slots without workers).
        clip_shape: The shape of one batch's clips at most, (B, T, H, W, 3).
        extra_bytes: Room in each slot for the batch's other tensors (`pack`).
    """

    def __init__(self, num_workers: int, clip_shape: tuple[int, ...], extra_bytes: int = 0) -> None:
        self.clip_shape = tuple(clip_shape)
        numel = _aligned(math.prod(self.clip_shape)) + extra_bytes
        self.segments = [[_shared_uint8(numel).zero_() for _ in range(SLOTS_PER_WORKER)] for _ in range(num_workers)]
        self.busy = torch.zeros(max(num_workers, 1), SLOTS_PER_WORKER, dtype=torch.uint8).share_memory_()
        self.token = next(_TOKENS)
        self._mapped_by = os.getpid()
        _SLOTS[self.token] = self

    def empty(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, Any]:
        """An uninitialised uint8 tensor of `shape` to read clips into, and what the batch carries.

        In a worker: a free slot and its `Slot`, or a new shared segment when no slot is free
        or `shape` is larger than a slot. In the training process (no worker) the memory comes from
        NumPy, whose allocator hands a freed batch's pages to the next one; the batch carries the
        tensor itself.
        """
        info = get_worker_info()
        if info is None:
            clips = torch.from_numpy(np.empty(shape, dtype=np.uint8))
            return clips, clips
        if self._mapped_by != os.getpid():  # a worker's first batch: its slots' pages, before any clip
            for segment in self.segments[info.id]:
                map_pages(segment)
            self._mapped_by = os.getpid()
        numel = math.prod(shape)
        busy = self.busy.numpy()[info.id]
        if numel <= math.prod(self.clip_shape):
            for slot in range(SLOTS_PER_WORKER):
                if not busy[slot]:
                    busy[slot] = 1
                    clips = self.segments[info.id][slot][:numel].view(shape)
                    return clips, Slot(self.token, info.id, slot)
        clips = _shared_uint8(numel).view(shape)
        return clips, clips

    def pack(self, batch: dict[str, Any], key: str, sent: Any) -> Any:
        """What a worker sends for `batch`, whose `key` tensor came from `empty` (with `sent`).

        In a slot: a `SlotBatch`, the batch's other tensors copied after the clips while they fit.
        Otherwise the batch itself, by PyTorch's default path.
        """
        if not isinstance(sent, Slot):
            return {**batch, key: sent}
        segment = self.segments[sent.worker][sent.slot].numpy()
        clips = batch[key]
        layout = [(key, 0, tuple(clips.shape), str(clips.numpy().dtype))]
        offset, rest = _aligned(clips.numel() * clips.element_size()), {}
        for name, value in batch.items():
            if name == key:
                continue
            if not isinstance(value, torch.Tensor) or offset + value.numel() * value.element_size() > segment.size:
                rest[name] = value
                continue
            array = np.ascontiguousarray(value.numpy())
            segment[offset : offset + array.nbytes].view(array.dtype).reshape(array.shape)[...] = array
            layout.append((name, offset, tuple(array.shape), str(array.dtype)))
            offset = _aligned(offset + array.nbytes)
        return SlotBatch(sent, layout, rest)


def _aligned(nbytes: int) -> int:
    """`nbytes` rounded up to a multiple of `ALIGNMENT`."""
    return -(-nbytes // ALIGNMENT) * ALIGNMENT
