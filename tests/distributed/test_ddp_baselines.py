"""Global-alignment baseline on 2 real processes (gloo, CPU): global negatives equal one process."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from baseline_inputs import baseline, fake_batch
from detach_pl import distributed

WORLD = 2


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        video, sensor = fake_batch(8, seed=3)
        local = distributed.local_slice(4)
        results = {}
        for gather in (True, False):
            module = baseline(gather_distributed=gather).eval()
            loss, *_ = module.alignment_loss(video[local], sensor[local])
            loss.backward()
            grads = [p.grad.clone() for p in module.parameters() if p.grad is not None]
            for grad in grads:  # DDP averages parameter gradients over the ranks
                dist.all_reduce(grad)
                grad /= WORLD
            results[gather] = {"loss": loss.detach(), "grads": grads}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def single_process(video: torch.Tensor, sensor: torch.Tensor) -> dict:
    module = baseline().eval()
    loss, *_ = module.alignment_loss(video, sensor)
    loss.backward()
    return {"loss": loss.detach(), "grads": [p.grad for p in module.parameters() if p.grad is not None]}


def test_two_ranks_with_global_negatives_equal_one_process(tmp_path) -> None:
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    video, sensor = fake_batch(8, seed=3)
    whole = single_process(video, sensor)
    mean_loss = sum(rank[True]["loss"] for rank in ranks) / WORLD
    torch.testing.assert_close(mean_loss, whole["loss"], atol=1e-5, rtol=1e-5)
    for ours, reference in zip(ranks[0][True]["grads"], whole["grads"], strict=True):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)
    # Local negatives: each rank's loss is one process's loss on its own half.
    for rank in range(WORLD):
        half = single_process(video[4 * rank : 4 * rank + 4], sensor[4 * rank : 4 * rank + 4])
        torch.testing.assert_close(ranks[rank][False]["loss"], half["loss"], atol=1e-5, rtol=1e-5)
