"""The DataLoader every split of the shared DataModule is served by.

Window datasets are read a batch per fetch (`WindowBatches`: one `read_batch` call, the clips
read into one preallocated tensor, no per-item collate); the sequence probe's runs are collated
by `collate_sequences`. The batches, their order and their seeding are those of PyTorch's
automatic batching over the same sampler (docs/data_loading.md).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from detach_pl.data.dataset import WindowBatches, WindowDataset, already_batched
from detach_pl.data.sequences import SequenceDataset, collate_sequences
from detach_pl.distributed import BatchedDataset, UnpaddedBatchSampler


def split_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: DistributedSampler | None,
    *,
    world_size: int,
    rank: int,
    num_workers: int,
    pin_memory: bool,
    generator: torch.Generator,
) -> DataLoader:
    """A loader over `dataset` (a `WindowDataset` or `SequenceDataset`) of `batch_size` items per batch.

    With a sampler (training) the batches are `batch_size` consecutive indices of it, the last
    incomplete one dropped when every rank can fill one. Without a sampler (evaluation), in
    order; under DDP (world_size > 1) the loader serves whole batches of an
    `UnpaddedBatchSampler` instead: each item exactly once and the same number of batches on every
    rank. Being a DistributedSampler, Lightning does not replace it by its padded one.
    """
    served: Dataset
    collate: Any
    if isinstance(dataset, SequenceDataset):
        served, collate = dataset, collate_sequences
    elif isinstance(dataset, WindowDataset):
        served, collate = WindowBatches(dataset, num_workers, batch_size), already_batched
    else:
        raise TypeError(f"split_loader serves WindowDataset or SequenceDataset, got {type(dataset).__name__}")
    loader_batch: int | None = batch_size
    if sampler is None and world_size > 1:
        sampler = UnpaddedBatchSampler(dataset, batch_size, num_replicas=world_size, rank=rank)
        loader_batch = None
        if isinstance(served, SequenceDataset):
            served, collate = BatchedDataset(served, collate), None
    return DataLoader(
        served,
        batch_size=loader_batch,
        sampler=sampler,
        drop_last=loader_batch is not None
        and sampler is not None
        and len(dataset) >= batch_size * sampler.num_replicas,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        collate_fn=collate,
        generator=generator,
    )
