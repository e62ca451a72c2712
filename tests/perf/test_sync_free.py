"""The training steps without host reads: checks off equals checks on; `debug_checks` still fires.

On CPU a host–device synchronisation cannot be observed directly; what forces one on a GPU is a
read of tensor values by the host (`.item()`, `bool()`, `float()`, boolean-mask indexing, which
needs the number of True values). A dispatch mode refuses exactly those operations during the
steps (the GPU script checks the real thing with `torch.cuda.set_sync_debug_mode("error")`).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from detach_pl.data.info import DataInfo
from detach_pl.modules import LinearProbeModule, SpatialGroundingModule, TemporalAlignmentModule
from detach_pl.modules.probe import HOST_INDEX
from helpers import tiny_encoder

HOST_READS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
}
INFO = DataInfo(num_channels=4, num_classes=3, num_places=3)
BATCH, WINDOWS = 6, 24


class NoHostReads(TorchDispatchMode):
    """Raise on any operation that reads tensor values on the host."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in HOST_READS:
            raise AssertionError(f"host read in a training step: {func}")
        return func(*args, **(kwargs or {}))


def batches(steps: int, nan_at: int | None = None) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for step in range(steps):
        sensor = torch.randn(BATCH, 4, 64, generator=gen)
        if step == nan_at:
            sensor[0, 0, 0] = float("nan")
        out.append({
            "index": torch.randperm(WINDOWS, generator=gen)[:BATCH],
            "sensor": sensor,
            "video": torch.rand(BATCH, 8, 3, 32, 32, generator=gen),
            "label": torch.randint(3, (BATCH,), generator=gen),
            "place": torch.randint(3, (BATCH,), generator=gen),
        })
    return out


def probe_batches(steps: int, nan_at: int | None = None) -> list[dict[str, torch.Tensor]]:
    """`batches` whose windows are those of a fixed table by index (an item is the same window in
    every batch, as in a dataset); with `nan_at`, a NaN in an item first seen at that step."""
    data = batches(steps)
    table = torch.randn(WINDOWS, 4, 64, generator=torch.Generator().manual_seed(7))
    if nan_at is not None:
        earlier = set(torch.cat([batch["index"] for batch in data[:nan_at]]).tolist()) if nan_at else set()
        new = next(i for i in data[nan_at]["index"].tolist() if i not in earlier)
        table[new, 0, 0] = float("nan")
    for batch in data:
        batch["sensor"] = table[batch["index"]]
    return data


def build(stage: str, debug_checks: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    if stage == "stage1":
        module = SpatialGroundingModule(INFO, tiny_encoder(), video_start_epoch=0, refine_start_epoch=0,
                                        warp_start_epoch=0, min_cluster_size=1, kmeans_inits=2, video_gate=0.0,
                                        debug_checks=debug_checks)
        module.initialize_memory(torch.randn(WINDOWS, 4, 64, generator=torch.Generator().manual_seed(5)))
    elif stage == "probe":
        module = LinearProbeModule(INFO, tiny_encoder(), debug_checks=debug_checks)
        module.reset_memos()  # what `on_fit_start` does
    else:
        module = TemporalAlignmentModule(INFO, tiny_encoder(), debug_checks=debug_checks)
    return module.train()


def run(module: torch.nn.Module, data: list[dict[str, torch.Tensor]], guard_after_first: bool) -> list[float]:
    optimizer = module.configure_optimizers()
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step, batch in enumerate(data):
            batch = module.transfer_batch_to_device(dict(batch), torch.device("cpu"), 0)  # as Lightning does
            mode = NoHostReads() if guard_after_first and step > 0 else None
            optimizer.zero_grad()
            if mode is not None:  # the step itself; AdamW reads its CPU step counter (no device sync on GPU)
                with mode:
                    loss = module.training_step(batch, step)
                    loss.backward()
            else:
                loss = module.training_step(batch, step)
                loss.backward()
            optimizer.step()
            losses.append(loss.detach())
    return losses


@pytest.mark.parametrize("stage", ["stage1", "stage2", "probe"])
def test_steps_without_checks_read_nothing_and_equal_the_checked_steps(stage: str) -> None:
    data = probe_batches(3) if stage == "probe" else batches(3)
    fast = build(stage, debug_checks=False)
    checked = build(stage, debug_checks=True)
    fast_losses = run(fast, data, guard_after_first=True)  # steps 2 and 3 under NoHostReads
    checked_losses = run(checked, data, guard_after_first=False)
    assert torch.equal(torch.stack(fast_losses), torch.stack(checked_losses))
    for a, b in zip(fast.parameters(), checked.parameters(), strict=True):
        assert torch.equal(a, b)
    if stage == "stage1":
        assert torch.equal(fast.memory.features, checked.memory.features)
        assert torch.equal(fast.memory.labels, checked.memory.labels)
    if stage == "probe":  # the memo embedded new items in the guarded steps too
        seen = torch.unique(torch.cat([batch["index"] for batch in data]))
        assert set(torch.nonzero(fast._memos["train"].known).flatten().tolist()) == set(seen.tolist())
        assert len(set(data[1]["index"].tolist()) - set(data[0]["index"].tolist())) > 0
        assert torch.equal(fast._memos["train"].values, checked._memos["train"].values)


def test_probe_memo_equals_embedding_every_batch_directly() -> None:
    """The sync-free memo returns what embedding each batch afresh gives (within a step's rounding)."""
    data = probe_batches(4)
    probe = build("probe", debug_checks=False)
    for batch in data:
        batch = probe.transfer_batch_to_device(dict(batch), torch.device("cpu"), 0)
        with NoHostReads():
            memoised = probe._memoised_embeddings(batch, "train")
        torch.testing.assert_close(memoised, probe.embed(batch["sensor"]), rtol=1e-5, atol=1e-6)
        assert batch[HOST_INDEX].tolist() == batch["index"].tolist()  # the memo's host copy


def test_the_guard_catches_a_host_read() -> None:
    with pytest.raises(AssertionError, match="host read"), NoHostReads():
        bool(torch.ones(2).sum() > 0)


@pytest.mark.parametrize(("stage", "message"), [("stage1", "NaN"), ("stage2", "finite"), ("probe", "not finite")])
def test_debug_checks_still_fire_after_the_first_step(stage: str, message: str) -> None:
    data = probe_batches(2, nan_at=1) if stage == "probe" else batches(2, nan_at=1)
    with pytest.raises(ValueError, match=message):
        run(build(stage, debug_checks=True), data, guard_after_first=False)
    run(build(stage, debug_checks=False), data, guard_after_first=False)  # default: first step only
