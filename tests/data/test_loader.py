"""The batch contract of the shared DataModule: what the loader gives, what the model gets, loader options.

The loaders read a batch per fetch (`WindowBatches`); their batches must equal, key by key, those
of a plain PyTorch DataLoader over the same `WindowDataset` with the same sampler and the default
collate of single items (the path before batched reads).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, default_collate

from detach_pl.data.batch_slots import SLOTS_PER_WORKER
from detach_pl.data.cache import FrameStorage
from detach_pl.data.dataset import WindowDataset, clips_to_float, decodes_on_device
from detach_pl.distributed import UnpaddedBatchSampler
from helpers import tiny_datamodule

EPOCH = 1


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
def alignment_data(tmp_path_factory: pytest.TempPathFactory):
    """The tiny kitchen, prepared, serving windows with video (no augmentation)."""
    datamodule = tiny_datamodule(tmp_path_factory.mktemp("loader"), purpose="alignment", augment_video=False)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_loader_gives_contiguous_hwc_uint8_clips_and_the_model_gets_chw_floats(alignment_data) -> None:
    batch = next(iter(alignment_data.train_dataloader()))
    video = batch["video"]
    assert video.dtype == torch.uint8 and video.shape == (8, 4, 16, 16, 3) and video.is_contiguous()
    model_batch = alignment_data.on_after_batch_transfer(dict(batch), 0)
    assert model_batch["video"].dtype == torch.float32 and model_batch["video"].shape == (8, 4, 3, 16, 16)
    dataset, cache = alignment_data.datasets["train"], alignment_data.cache
    for row, index in enumerate(batch["index"].tolist()):
        frames = cache.read_frames(int(dataset.windows[index]), 4)  # (T, H, W, 3) uint8, as stored
        expected = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        assert torch.equal(model_batch["video"][row], expected)


def test_clips_to_float_equals_float_after_permute() -> None:
    clips = torch.randint(0, 256, (2, 5, 7, 9, 3), dtype=torch.uint8)
    converted = clips_to_float(clips)
    assert converted.is_contiguous() and converted.shape == (2, 5, 3, 7, 9)
    assert torch.equal(converted, clips.permute(0, 1, 4, 2, 3).float() / 255.0)
    assert torch.equal(clips_to_float(clips[0]), converted[0])
    with pytest.raises(ValueError, match=r"\(\.\.\., T, H, W, 3\) uint8"):
        clips_to_float(clips.permute(0, 1, 4, 2, 3))


def attach(datamodule, device: str = "cpu", world_size: int = 1, rank: int = 0) -> None:
    """A stand-in for the Trainer: the loaders only ask for the device, world size, rank and the epoch (EPOCH)."""
    datamodule.trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device(device)), world_size=world_size, global_rank=rank,
        fit_loop=SimpleNamespace(epoch_progress=SimpleNamespace(current=SimpleNamespace(processed=EPOCH))),
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_options_follow_the_device_and_workers(alignment_data, workers: int) -> None:
    alignment_data.num_workers = workers
    try:
        loader = alignment_data.val_dataloader()
        assert loader.num_workers == workers and loader.persistent_workers == (workers > 0)
        assert not loader.pin_memory  # no trainer: nothing to copy to
        attach(alignment_data, "cpu")
        assert not alignment_data.val_dataloader().pin_memory  # pinning only costs on CPU
        attach(alignment_data, "cuda")
        assert alignment_data.val_dataloader().pin_memory
    finally:
        alignment_data.trainer = None
        alignment_data.num_workers = 0


def test_jpeg_decoded_after_transfer_equals_jpeg_decoded_in_workers(tmp_path) -> None:
    """The GPU path (bytes through the loader, one batched decode after transfer), run on the CPU."""
    datamodule = tiny_datamodule(tmp_path, purpose="alignment", augment_video=False,
                                 frame_storage=FrameStorage(codec="jpeg", quality=90))
    datamodule.prepare_data()
    datamodule.setup("fit")
    dataset = datamodule.datasets["val"]
    assert not dataset.decode_on_device  # no trainer on a GPU: workers decode
    in_workers = datamodule.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)
    dataset.decode_on_device = True
    batch = next(iter(datamodule.val_dataloader()))
    assert "video" not in batch and len(batch["video_jpeg"]) == 4 and len(batch["video_jpeg"][0]) == 8
    assert all(isinstance(data, bytes) for step in batch["video_jpeg"] for data in step)
    after_transfer = datamodule.on_after_batch_transfer(batch, 0)
    assert "video_jpeg" not in after_transfer
    assert torch.equal(after_transfer["video"], in_workers["video"])
    assert decodes_on_device(FrameStorage("jpeg"), torch.device("cuda"))
    assert not decodes_on_device(FrameStorage("jpeg"), torch.device("cpu"))
    assert not decodes_on_device(FrameStorage(), torch.device("cuda"))


def test_augmentation_seeds_come_from_the_host_indices(alignment_data) -> None:
    """The indices that seed each clip's augmentation are read on the host before the transfer,
    so the device copy of `index` is never read back (no sync); the clips are those the
    device-side indices would give."""
    batch = next(iter(alignment_data.train_dataloader()))
    alignment_data.augment_video = True
    alignment_data.trainer = SimpleNamespace(training=True, current_epoch=1)
    try:
        reference = alignment_data.on_after_batch_transfer(dict(batch), 0)["video"]
        hooked = alignment_data.on_before_batch_transfer(dict(batch), 0)
        assert hooked["index_host"] == batch["index"].tolist()
        hooked["index"] = torch.zeros_like(batch["index"])  # what the device copy says no longer matters
        after = alignment_data.on_after_batch_transfer(hooked, 0)
        assert "index_host" not in after and torch.equal(after["video"], reference)
        assert not torch.equal(reference, clips_to_float(batch["video"]))  # augmented
    finally:
        alignment_data.augment_video = False
        alignment_data.trainer = None


# ---- batched reads: the loaders' batches equal per-item reads stacked by the default collate -------


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("workers", [0, 1])
def test_shuffled_training_batches_equal_per_item_reads(alignment_data, world: int, workers: int) -> None:
    dataset = alignment_data.datasets["train"]
    alignment_data.num_workers = workers
    try:
        for rank in range(world):
            attach(alignment_data, world_size=world, rank=rank)
            served = list(alignment_data.train_dataloader())
            seed = alignment_data.shuffle_seed
            expected = reference_training_batches(dataset, alignment_data.batch_size, seed, world, rank)
            assert_same_batches(served, expected)
            assert "video" in served[0] and served[0]["video"].dtype == torch.uint8
    finally:
        alignment_data.trainer, alignment_data.num_workers = None, 0


def test_validation_batches_equal_per_item_reads(alignment_data) -> None:
    dataset = alignment_data.datasets["val"]
    served = list(alignment_data.val_dataloader())
    expected = list(DataLoader(dataset, batch_size=alignment_data.batch_size, collate_fn=default_collate))
    assert_same_batches(served, expected)
    assert served[-1]["index"].shape[0] == (len(dataset) % alignment_data.batch_size or alignment_data.batch_size)


def test_ddp_evaluation_batches_equal_per_item_reads_on_both_ranks(alignment_data) -> None:
    dataset = alignment_data.datasets["val"]
    try:
        for rank in (0, 1):
            attach(alignment_data, world_size=2, rank=rank)
            served = list(alignment_data.val_dataloader())
            batches = UnpaddedBatchSampler(dataset, alignment_data.batch_size, num_replicas=2, rank=rank)
            assert_same_batches(served, [default_collate([dataset[i] for i in batch]) for batch in batches])
    finally:
        alignment_data.trainer = None


def test_probe_batches_equal_per_item_reads(tmp_path) -> None:
    """Sensors only (no video), labelled windows."""
    datamodule = tiny_datamodule(tmp_path, purpose="probe")
    datamodule.prepare_data()
    datamodule.setup("fit")
    try:
        attach(datamodule)
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
        attach(datamodule)
        served = list(datamodule.train_dataloader())
        assert_same_batches(served, reference_training_batches(dataset, datamodule.batch_size,
                                                               datamodule.shuffle_seed, 1, 0))
        assert ("video_jpeg" in served[0]) == on_device and ("video" in served[0]) != on_device
    finally:
        datamodule.trainer = None


def test_worker_batch_slots_are_reused_only_after_the_last_view_is_freed(alignment_data) -> None:
    """A worker writes clips into a reused shared segment only once the training process has
    dropped every tensor over it (`detach_pl.data.batch_slots`)."""
    alignment_data.num_workers = 1
    try:
        loader = alignment_data.train_dataloader()
        busy = loader.dataset.slots.busy
        held = list(loader)  # every batch held: the worker must not overwrite any of them
        dataset, cache = alignment_data.datasets["train"], alignment_data.cache
        for batch in held:
            for row, index in enumerate(batch["index"].tolist()):
                expected = torch.from_numpy(cache.read_frames(int(dataset.windows[index]), 4))
                assert torch.equal(batch["video"][row], expected)
        assert int(busy.sum()) == min(len(held), SLOTS_PER_WORKER) > 1
        view = held[0]["video"][1:2]  # a view keeps its batch's segment busy
        del held, batch
        gc.collect()
        assert int(busy.sum()) == 1
        del view
        gc.collect()
        assert int(busy.sum()) == 0
    finally:
        alignment_data.num_workers = 0


def test_worker_batches_arrive_in_their_slot(alignment_data) -> None:
    """From a worker, a batch's tensors are views of the training process's own mapping of one of the
    worker's slots (no new segment, no file descriptor per tensor)."""
    alignment_data.num_workers = 1
    try:
        loader = alignment_data.train_dataloader()
        slots = loader.dataset.slots.segments[0]
        starts = {segment.data_ptr(): slot for slot, segment in enumerate(slots)}
        seen = set()
        for batch in loader:
            assert batch["video"].data_ptr() in starts
            slot = starts[batch["video"].data_ptr()]
            seen.add(slot)
            low, size = slots[slot].data_ptr(), slots[slot].numel()
            for key in ("index", "sensor", "label", "place", "sequence"):
                assert low <= batch[key].data_ptr() < low + size, key
        assert len(seen) > 1  # batches rotate through the slots as they are freed
    finally:
        alignment_data.num_workers = 0


def test_spawned_workers_write_into_the_slots_they_received(alignment_data) -> None:
    """Workers started by spawn get the slots once, pickled with the dataset; batches stay exact."""
    from detach_pl.data.dataset import WindowBatches, already_batched

    dataset = alignment_data.datasets["train"]
    served = WindowBatches(dataset, num_workers=1, batch_size=4)
    starts = {segment.data_ptr() for segment in served.slots.segments[0]}
    loader = DataLoader(served, batch_size=4, num_workers=1, collate_fn=already_batched,
                        multiprocessing_context="spawn")
    batches = list(loader)  # all held: the first SLOTS_PER_WORKER take the slots, the rest new segments
    assert len(batches) > SLOTS_PER_WORKER
    in_slots = [batch["video"].data_ptr() in starts for batch in batches]
    assert all(in_slots[:SLOTS_PER_WORKER]) and not any(in_slots[SLOTS_PER_WORKER:])
    for batch in batches:
        expected = dataset.read_batch(batch["index"].tolist())
        assert batch.keys() == expected.keys()
        assert all(torch.equal(batch[key], expected[key]) for key in expected)


def test_clip_slots_are_not_used_outside_the_process_that_made_the_loader() -> None:
    """A slot descriptor unpickled where its loader's slots do not live is an error, not garbage clips."""
    from detach_pl.data.batch_slots import _received_batch

    with pytest.raises(RuntimeError, match="outside the process that made the loader"):
        _received_batch(10**9, 0, 0, [("video", 0, (1, 2, 2, 2, 3), "uint8")], {})


def _exit_status_of_forked(check: Callable[[], bool]) -> int:
    """Run `check()` (True when it holds) in a forked process, as a worker runs; 0 when it held."""
    import os

    child = os.fork()
    if child == 0:  # pragma: no cover - the forked process (NumPy only: torch's thread pool does not survive fork)
        status = 1
        try:
            status = 0 if check() else 2
        finally:
            os._exit(status)
    return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])


def test_map_pages_keeps_the_contents_and_leaves_no_page_to_fault_on_write() -> None:
    """In a forked process (as a worker), `map_pages` maps a slot the training process wrote, without
    changing it. Writing the whole slot afterwards then takes a handful of page faults (the process's
    own), not one per page as it does unmapped."""
    import resource

    from detach_pl.data.batch_slots import PAGE_BYTES, _shared_uint8, map_pages

    pages = 2048
    segment = _shared_uint8(pages * PAGE_BYTES).zero_()
    pattern = (np.arange(segment.numel()) % 251).astype(np.uint8)
    segment.numpy()[...] = pattern

    def unchanged() -> bool:
        map_pages(segment)
        return bool(np.array_equal(segment.numpy(), pattern))

    def write_faults(mapped: bool) -> int:
        if mapped:
            map_pages(segment)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        segment.numpy()[...] = 7
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    assert _exit_status_of_forked(unchanged) == 0
    assert _exit_status_of_forked(lambda: write_faults(mapped=True) < pages // 16) == 0
    assert _exit_status_of_forked(lambda: write_faults(mapped=False) >= pages // 2) == 0  # what it saves
    assert np.all(segment.numpy() == 7)  # the children wrote the shared pages


def test_workers_started_again_map_the_slots_without_touching_held_batches(alignment_data) -> None:
    """Non-persistent workers are new processes each epoch and map every slot of theirs again,
    including the slots of batches the training process still holds: those stay exact."""
    from detach_pl.data.dataset import WindowBatches, already_batched

    dataset = alignment_data.datasets["train"]
    served = WindowBatches(dataset, num_workers=1, batch_size=4)
    loader = DataLoader(served, batch_size=4, num_workers=1, collate_fn=already_batched, persistent_workers=False)
    held = list(loader)[:2]
    assert int(served.slots.busy.sum()) == len(held) == 2  # the rest were freed
    assert len(list(loader)) > 0  # a new worker: maps all its slots, writes into the free ones only
    for batch in held:
        expected = dataset.read_batch(batch["index"].tolist())
        assert all(torch.equal(batch[key], expected[key]) for key in expected)
