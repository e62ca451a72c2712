"""UnpaddedBatchSampler and BatchedDataset: each item once, equal batch counts, no process needed."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from detach_pl.distributed import BatchedDataset, UnpaddedBatchSampler

# (items N, ranks R, per-rank batch size B): divisible, uneven, tiny last chunk, B = 1, N = R.
CASES = [(48, 2, 8), (49, 2, 8), (7, 2, 8), (5, 2, 2), (9, 2, 4), (17, 4, 3), (10, 3, 1), (3, 2, 1), (2, 2, 5)]


def batches_by_rank(items: int, ranks: int, batch_size: int) -> list[list[list[int]]]:
    return [
        list(UnpaddedBatchSampler(range(items), batch_size, num_replicas=ranks, rank=r)) for r in range(ranks)
    ]


@pytest.mark.parametrize(("items", "ranks", "batch_size"), CASES)
def test_every_item_once_and_the_same_batch_count_on_every_rank(items: int, ranks: int, batch_size: int) -> None:
    by_rank = batches_by_rank(items, ranks, batch_size)
    counts = {len(batches) for batches in by_rank}
    assert len(counts) == 1
    assert all(batch for batches in by_rank for batch in batches), "no empty batch"
    largest = max(len(batch) for batches in by_rank for batch in batches)
    assert largest <= (batch_size if batch_size > 1 else 2)
    # Step by step, the ranks' parts in rank order are the items in order: what a gather returns.
    steps = [sum((by_rank[r][step] for r in range(ranks)), []) for step in range(counts.pop())]
    assert sum(steps, []) == list(range(items))


def test_divisible_sets_keep_the_full_batch_size() -> None:
    assert [len(batch) for batch in batches_by_rank(48, 2, 8)[1]] == [8, 8, 8]


def test_length_is_the_batch_count_and_lightning_sees_a_distributed_sampler() -> None:
    sampler = UnpaddedBatchSampler(range(49), 8, num_replicas=2, rank=1)
    assert isinstance(sampler, DistributedSampler) and not sampler.shuffle
    assert len(sampler) == len(list(sampler)) == 4
    assert sampler.num_samples == 25 and sampler.total_size == 49


def test_too_few_items_or_a_bad_batch_size_raise() -> None:
    with pytest.raises(ValueError, match="3 items cannot be shared by 4 processes"):
        UnpaddedBatchSampler(range(3), 8, num_replicas=4, rank=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        UnpaddedBatchSampler(range(3), 0, num_replicas=1, rank=0)


def test_batched_dataset_in_a_loader_collates_the_sampler_batches() -> None:
    items = [{"index": torch.tensor(i), "x": torch.full((2,), float(i))} for i in range(9)]
    sampler = UnpaddedBatchSampler(items, 4, num_replicas=2, rank=1)
    loader = DataLoader(BatchedDataset(items), batch_size=None, sampler=sampler)
    batches = list(loader)
    assert [batch["index"].tolist() for batch in batches] == list(sampler)
    assert batches[-1]["x"].shape == (len(list(sampler)[-1]), 2)
