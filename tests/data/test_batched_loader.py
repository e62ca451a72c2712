"""The DataModule's loaders read a batch per fetch (`WindowBatches`); their batches must equal, key
by key, those of a plain PyTorch DataLoader over the same `WindowDataset` with the same sampler and
the default collate of single items (the path before batched reads)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from helpers import tiny_datamodule
from torch.utils.data import DataLoader, DistributedSampler, default_collate

from detach_pl.data.cache import FrameStorage
from detach_pl.data.dataset import WindowDataset
from detach_pl.distributed import UnpaddedBatchSampler

EPOCH = 1


def attach(datamodule, world_size: int, rank: int) -> None:
    """A Trainer stand-in: the loaders ask only for the device, world size, rank and the epoch."""
    datamodule.trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device("cpu")), world_size=world_size, global_rank=rank,
        fit_loop=SimpleNamespace(epoch_progress=SimpleNamespace(current=SimpleNamespace(processed=EPOCH))),
    )


def reference_training_batches(dataset: WindowDataset, batch_size: int, seed: int, world: int, rank: int) -> list:
    """Per-item reads stacked by the default collate, in a DistributedSampler's epoch-EPOCH order."""
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                 drop_last=len(dataset) >= world)
    sampler.set_epoch(EPOCH)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=default_collate,
                        drop_last=len(dataset) >= batch_size * world)
    return list(loader)


def assert_same_batches(served: list[dict[str, Any]], reference: list[dict[str, Any]]) -> None:
    """Same number of batches, same keys, and per key the same dtype, shape and values (or bytes)."""
    assert len(served) == len(reference) > 0
    for batch, expected in zip(served, reference, strict=True):
        assert batch.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                got = batch[key]
                assert got.dtype == value.dtype and got.shape == value.shape, key
                assert got.is_contiguous() and torch.equal(got, value), key
            else:  # video_jpeg: T tuples of B byte strings
                assert type(batch[key]) is type(value) and batch[key] == value, key


@pytest.fixture(scope="module")
def raw_data(tmp_path_factory: pytest.TempPathFactory):
    """The tiny kitchen with video, raw frames, no augmentation."""
    datamodule = tiny_datamodule(tmp_path_factory.mktemp("batched"), purpose="alignment", augment_video=False)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("workers", [0, 1])
def test_shuffled_training_batches_equal_per_item_reads(raw_data, world: int, workers: int) -> None:
    dataset = raw_data.datasets["train"]
    raw_data.num_workers = workers
    try:
        for rank in range(world):
            attach(raw_data, world, rank)
            served = list(raw_data.train_dataloader())
            expected = reference_training_batches(dataset, raw_data.batch_size, raw_data.shuffle_seed, world, rank)
            assert_same_batches(served, expected)
            assert "video" in served[0] and served[0]["video"].dtype == torch.uint8
    finally:
        raw_data.trainer, raw_data.num_workers = None, 0


def test_validation_batches_equal_per_item_reads(raw_data) -> None:
    dataset = raw_data.datasets["val"]
    served = list(raw_data.val_dataloader())
    expected = list(DataLoader(dataset, batch_size=raw_data.batch_size, collate_fn=default_collate))
    assert_same_batches(served, expected)
    assert served[-1]["index"].shape[0] == (len(dataset) % raw_data.batch_size or raw_data.batch_size)


def test_ddp_evaluation_batches_equal_per_item_reads_on_both_ranks(raw_data) -> None:
    dataset = raw_data.datasets["val"]
    try:
        for rank in (0, 1):
            attach(raw_data, 2, rank)
            served = list(raw_data.val_dataloader())
            batches = UnpaddedBatchSampler(dataset, raw_data.batch_size, num_replicas=2, rank=rank)
            assert_same_batches(served, [default_collate([dataset[i] for i in batch]) for batch in batches])
    finally:
        raw_data.trainer = None


def test_probe_batches_equal_per_item_reads(tmp_path) -> None:
    """Sensors only (no video), labelled windows."""
    datamodule = tiny_datamodule(tmp_path, purpose="probe")
    datamodule.prepare_data()
    datamodule.setup("fit")
    try:
        attach(datamodule, 1, 0)
        dataset = datamodule.datasets["train"]
        served = list(datamodule.train_dataloader())
        assert_same_batches(served, reference_training_batches(dataset, datamodule.batch_size,
                                                               datamodule.shuffle_seed, 1, 0))
        assert "video" not in served[0]
    finally:
        datamodule.trainer = None


@pytest.mark.parametrize("on_device", [False, True])
def test_jpeg_training_batches_equal_per_item_reads(tmp_path, on_device: bool) -> None:
    """Decoded in the loader (CPU training) or carried as JPEG bytes for a decode on the device."""
    datamodule = tiny_datamodule(tmp_path, purpose="alignment", augment_video=False,
                                 frame_storage=FrameStorage(codec="jpeg", quality=90))
    datamodule.prepare_data()
    datamodule.setup("fit")
    dataset = datamodule.datasets["train"]
    dataset.decode_on_device = on_device
    try:
        attach(datamodule, 1, 0)
        served = list(datamodule.train_dataloader())
        assert_same_batches(served, reference_training_batches(dataset, datamodule.batch_size,
                                                               datamodule.shuffle_seed, 1, 0))
        assert ("video_jpeg" in served[0]) == on_device and ("video" in served[0]) != on_device
    finally:
        datamodule.trainer = None
