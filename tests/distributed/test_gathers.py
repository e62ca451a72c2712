"""Tests of detach_pl.distributed: identities in one process, and a real 2-process gloo pool
showing that gather_with_grad + per-rank anchors + DDP-style gradient averaging reproduce one
process on the concatenated batch (loss and gradients), in float64 with atol 1e-10, with equal and
with uneven per-rank batch sizes (3 + 5 rows, the losses scaled by `global_mean_factor`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from detach_pl import distributed
from detach_pl.losses import (
    alignment_weights,
    spatial_similarity,
    temporal_similarity,
    weighted_info_nce,
)

WORLD_SIZE = 2
GLOBAL_BATCH = 8
LOCAL_BATCH = GLOBAL_BATCH // WORLD_SIZE
UNEVEN_ROWS = [slice(0, 3), slice(3, GLOBAL_BATCH)]  # rank r's rows of the global batch
IN_DIM = 6
EMB_DIM = 5
TAU = 0.1
ATOL = 1e-10  # float64 throughout; the only differences are summation orders.
# (use_spatial, use_temporal, temporal mode)
CONFIGS: list[tuple[bool, bool, str]] = [
    (True, True, "within"),
    (True, True, "cross"),
    (False, True, "within"),
    (True, False, "within"),
    (False, False, "within"),
]


def make_batch() -> dict[str, Tensor]:
    """The fixed global batch: raw inputs of the two embeddings and the similarity features."""
    gen = torch.Generator().manual_seed(1234)
    dims = {"x_v": IN_DIM, "x_s": IN_DIM, "z_v": 3, "z_s": 3, "h_v": 3, "h_s": 3}
    batch = {
        name: torch.randn(GLOBAL_BATCH, dim, generator=gen, dtype=torch.float64)
        for name, dim in dims.items()
    }
    # Pairs 1 and 6 share place and motion, across the two ranks' halves: a false negative.
    for name in ("z_v", "z_s", "h_v", "h_s"):
        batch[name][6] = batch[name][1]
    return batch


def make_projections() -> tuple[nn.Linear, nn.Linear]:
    """Stand-ins for the two temporal encoders; identical initial parameters on every rank."""
    torch.manual_seed(99)
    return nn.Linear(IN_DIM, EMB_DIM).double(), nn.Linear(IN_DIM, EMB_DIM).double()


def stage2_step(
    batch: dict[str, Tensor], config: tuple[bool, bool, str], rows: slice
) -> dict[str, Any]:
    """One forward/backward of the stage-2 loss on the rows `rows` of `batch` held locally.

    Works unchanged in one process (rows = everything) and on a rank (rows = its half).
    """
    use_spatial, use_temporal, mode = config
    proj_v, proj_s = make_projections()
    x_v = batch["x_v"][rows].clone().requires_grad_()
    x_s = batch["x_s"][rows].clone().requires_grad_()
    emb_v = distributed.gather_with_grad(proj_v(x_v))
    emb_s = distributed.gather_with_grad(proj_s(x_s))
    z_v, z_s, h_v, h_s = (
        distributed.gather_no_grad(batch[key][rows]) for key in ("z_v", "z_s", "h_v", "h_s")
    )
    weights = alignment_weights(
        spatial_similarity(z_v, z_s),
        temporal_similarity(h_v, h_s, mode=mode),  # type: ignore[arg-type]
        use_spatial=use_spatial,
        use_temporal=use_temporal,
    )
    anchors = distributed.local_slice(x_v.shape[0])
    # Exact global mean over all anchors also when the ranks hold different numbers of rows.
    scale = distributed.global_mean_factor(torch.tensor(x_v.shape[0])).double()
    loss = weighted_info_nce(emb_v, emb_s, weights, TAU, anchors=anchors) * scale
    loss.backward()
    param_grads = {}
    for prefix, module in (("v", proj_v), ("s", proj_s)):
        for name, param in module.named_parameters():
            grad = param.grad.clone()
            if distributed.is_distributed():  # what DDP does: average parameter gradients
                dist.all_reduce(grad)
                grad /= distributed.world_size()
            param_grads[f"{prefix}.{name}"] = grad
    return {
        "loss": loss.detach(),
        "grad_x_v": x_v.grad,
        "grad_x_s": x_s.grad,
        "param_grads": param_grads,
        "weights": weights,
    }


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    """Body of one rank of the gloo pool; writes its results to out_dir/rank{rank}.pt."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        batch = make_batch()
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        uneven = batch["x_v"][UNEVEN_ROWS[rank]]
        shared = distributed.batch_sizes(uneven.shape[0])
        results: dict[str, Any] = {
            "shared_sizes_gathered": distributed.gather_no_grad(uneven, shared),
            "shared_sizes_slice": distributed.local_slice(uneven.shape[0], shared),
            "is_distributed": distributed.is_distributed(),
            "world_size": distributed.world_size(),
            "rank": distributed.rank(),
            "local_slice": distributed.local_slice(LOCAL_BATCH),
            "gathered": distributed.gather_no_grad(batch["x_v"][rows]),
            "broadcast": distributed.broadcast_from_rank0(torch.full((2, 3), float(rank + 10))),
            "steps": [stage2_step(batch, config, rows) for config in CONFIGS],
            "uneven_slice": distributed.local_slice(UNEVEN_ROWS[rank].stop - UNEVEN_ROWS[rank].start),
            "uneven_gathered": distributed.gather_no_grad(batch["x_v"][UNEVEN_ROWS[rank]]),
            "uneven_sizes": distributed.batch_sizes(UNEVEN_ROWS[rank].stop - UNEVEN_ROWS[rank].start),
            "empty_rank_gathered": distributed.gather_no_grad(torch.arange(3 * rank)[:, None]),
            "uneven_steps": [stage2_step(batch, config, UNEVEN_ROWS[rank]) for config in CONFIGS],
        }
        for name, call in (
            ("unequal_error", lambda: distributed.gather_with_grad(torch.zeros(2, rank + 1))),
            ("broadcast_error", lambda: distributed.broadcast_from_rank0(torch.zeros(rank + 1, 2))),
        ):
            try:
                call()
                results[name] = None
            except ValueError as error:
                results[name] = str(error)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Run the 2-process gloo pool once and load each rank's results."""
    tmp = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD_SIZE, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]


def test_world_helpers_and_plain_gathers(rank_results: list[dict[str, Any]]) -> None:
    full = make_batch()["x_v"]
    for r, results in enumerate(rank_results):
        assert results["is_distributed"] is True
        assert results["world_size"] == WORLD_SIZE and results["rank"] == r
        assert results["local_slice"] == slice(r * LOCAL_BATCH, (r + 1) * LOCAL_BATCH)
        torch.testing.assert_close(results["gathered"], full, rtol=0, atol=0)
        torch.testing.assert_close(results["broadcast"], torch.full((2, 3), 10.0))
        # One size exchange shared by several gathers gives what each gather's own exchange gives.
        sizes = [UNEVEN_ROWS[k].stop - UNEVEN_ROWS[k].start for k in range(WORLD_SIZE)]
        assert results["uneven_sizes"] == sizes
        torch.testing.assert_close(results["shared_sizes_gathered"], results["uneven_gathered"], rtol=0, atol=0)
        assert results["shared_sizes_slice"] == results["uneven_slice"] == UNEVEN_ROWS[r]


def test_uneven_batch_sizes_gather_in_rank_order(rank_results: list[dict[str, Any]]) -> None:
    full = make_batch()["x_v"]
    for r, results in enumerate(rank_results):
        assert results["uneven_slice"] == UNEVEN_ROWS[r]
        torch.testing.assert_close(results["uneven_gathered"], full, rtol=0, atol=0)
        assert torch.equal(results["empty_rank_gathered"], torch.arange(3)[:, None])


def test_shapes_that_differ_beyond_dim_0_raise_on_every_rank(rank_results: list[dict[str, Any]]) -> None:
    for results in rank_results:
        message = results["unequal_error"]
        assert message is not None
        assert "beyond the batch dim 0" in message and "[(2, 1), (2, 2)]" in message
        assert results["broadcast_error"] is not None and "same shape" in results["broadcast_error"]


@pytest.mark.parametrize("uneven", [False, True], ids=["even", "uneven"])
@pytest.mark.parametrize("config_index", range(len(CONFIGS)))
def test_two_ranks_match_one_process_on_the_concatenated_batch(
    rank_results: list[dict[str, Any]], config_index: int, uneven: bool
) -> None:
    batch = make_batch()
    single = stage2_step(batch, CONFIGS[config_index], slice(None))
    steps = [results["uneven_steps" if uneven else "steps"][config_index] for results in rank_results]
    row_slices = UNEVEN_ROWS if uneven else [slice(r * LOCAL_BATCH, (r + 1) * LOCAL_BATCH) for r in range(WORLD_SIZE)]

    # The weights built from the gathered similarity inputs are the single-process weights.
    for step in steps:
        torch.testing.assert_close(step["weights"], single["weights"], rtol=0, atol=ATOL)
    _, use_temporal, mode = CONFIGS[config_index]
    if use_temporal and mode == "within":  # W^tm suppresses the cross-rank duplicate pair (1, 6)
        assert single["weights"][1, 6].item() == pytest.approx(0.0, abs=1e-12)

    # (a) L = (1/N) Σ_a ℓ_a = (1/R) Σ_r L_r, each L_r the mean over its n_r anchors times
    # R·n_r/N (`global_mean_factor`, 1 when the ranks hold N/R rows each).
    mean_loss = sum(step["loss"] for step in steps) / WORLD_SIZE
    torch.testing.assert_close(mean_loss, single["loss"], rtol=0, atol=ATOL)

    # (b) Input gradients. Rank r's x_r.grad is G_r = Σ_{r'} ∂L_{r'}/∂x_r: its own loss plus,
    # through the all_reduce in gather_with_grad's backward, the other ranks' losses (x_r is a key
    # of their anchors). Since L = (1/R) Σ_{r'} L_{r'}, single-process ∂L/∂x_r = G_r / R, which is
    # exactly the 1/R that DDP's gradient averaging applies to whatever G_r propagates into the
    # parameters. Without the all_reduce, G_r would miss the other ranks' terms and this fails.
    for step, rows in zip(steps, row_slices, strict=True):
        for name in ("grad_x_v", "grad_x_s"):
            torch.testing.assert_close(
                step[name] / WORLD_SIZE, single[name][rows], rtol=0, atol=ATOL
            )

    # (c) Parameter gradients averaged over ranks (as DDP does) equal the single-process ones.
    for step in steps:
        for name, grad in step["param_grads"].items():
            torch.testing.assert_close(grad, single["param_grads"][name], rtol=0, atol=ATOL)


def test_single_process_helpers_are_identities() -> None:
    assert not distributed.is_distributed()
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.local_slice(5) == slice(0, 5)
    assert distributed.batch_sizes(5) == [5] and distributed.local_slice(5, [5]) == slice(0, 5)
    x = torch.randn(4, 3, requires_grad=True)
    gathered = distributed.gather_with_grad(x)
    assert gathered is x
    no_grad = distributed.gather_no_grad(x)
    assert torch.equal(no_grad, x) and not no_grad.requires_grad
    broadcast = distributed.broadcast_from_rank0(x)
    assert torch.equal(broadcast, x) and not broadcast.requires_grad
    with pytest.raises(ValueError, match="batch dim"):
        distributed.gather_with_grad(torch.tensor(1.0))
    with pytest.raises(ValueError, match="batch_size"):
        distributed.local_slice(-1)
