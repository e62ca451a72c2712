"""The one place for torch.distributed details (world size, rank, gathers, broadcast).

Stage 2 of DETACH uses the **global** batch as negatives: every rank gathers the embeddings of all
ranks, builds the full N×N similarity matrix and uses its own rows as anchors. This module offers
the few collectives that needs. Every function is an identity / no-op when torch.distributed is not
initialised, so the same code runs in one process, under Lightning's DDP, and in tests.

Gathers accept different batch sizes on different ranks (evaluation without padded windows gives
uneven batches, see `UnpaddedBatchSampler`): one small all_gather exchanges the shapes, every rank
pads its rows to the longest, and the padding is dropped after the gather. The other dims must
agree; a mismatch raises ValueError on every rank (no rank is left hanging in the next collective).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, default_collate

# Gathered shape descriptor: [ndim, size_0, ..., size_{ndim-1}, -1 padding].
_MAX_CHECKED_NDIM = 8


def is_distributed() -> bool:
    """True when torch.distributed is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """Rank of this process in the default group (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def batch_sizes(batch_size: int) -> list[int]:
    """Every rank's batch size, in rank order: one small all_gather ([batch_size] in one process).

    Collective when distributed. A step that gathers several tensors of the same batch asks once
    and passes the result as `sizes` to each gather and to `local_slice`, instead of one shape
    exchange (and host sync) per gather.
    """
    if batch_size < 0:
        raise ValueError(f"batch_sizes: batch_size must be >= 0, got {batch_size}")
    if not is_distributed():
        return [batch_size]
    sizes = _all_gather_cat(torch.tensor([batch_size], dtype=torch.int64, device=_collective_device()))
    return [int(size) for size in sizes.tolist()]


def local_slice(batch_size: int, sizes: list[int] | None = None) -> slice:
    """Rows of this rank inside a tensor gathered with `gather_with_grad` / `gather_no_grad`.

    Collective when distributed and `sizes` is not given (every rank must call it): one small
    all_gather of the batch sizes, since ranks may hold different numbers of rows (uneven
    evaluation batches).

    Args:
        batch_size: this rank's batch size (the rows it passed to the gather).
        sizes: every rank's batch size from `batch_sizes`, if already known.

    Returns:
        slice(offset, offset + batch_size), offset = the lower ranks' rows; slice(0, batch_size) in
        one process.
    """
    if batch_size < 0:
        raise ValueError(f"local_slice: batch_size must be >= 0, got {batch_size}")
    if not is_distributed():
        return slice(0, batch_size)
    sizes = batch_sizes(batch_size) if sizes is None else sizes
    start = sum(sizes[: rank()])
    return slice(start, start + batch_size)


def _collective_device() -> torch.device:
    """Where small bookkeeping tensors travel: CUDA for NCCL, the CPU otherwise."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _gather_shapes(x: Tensor, operation: str) -> list[tuple[int, ...]]:
    """Every rank's shape of `x`, in rank order: one small all_gather of an int64 descriptor."""
    if x.dim() > _MAX_CHECKED_NDIM:
        raise ValueError(
            f"{operation}: tensors with more than {_MAX_CHECKED_NDIM} dims are not supported, "
            f"got shape {tuple(x.shape)}"
        )
    descriptor = torch.full((_MAX_CHECKED_NDIM + 1,), -1, dtype=torch.int64)
    descriptor[0] = x.dim()
    if x.dim() > 0:
        descriptor[1 : x.dim() + 1] = torch.tensor(x.shape, dtype=torch.int64)
    gathered = _all_gather_cat(descriptor[None].to(x.device)).cpu()
    return [tuple(d[1 : int(d[0]) + 1].tolist()) for d in gathered]


def _check_same_shape(x: Tensor, operation: str) -> None:
    """Raise ValueError on every rank unless `x` has the same shape on all ranks.

    Every rank sees the same gathered shapes, so every rank raises (no rank is left hanging in
    the next collective).
    """
    shapes = _gather_shapes(x, operation)
    if any(shape != shapes[0] for shape in shapes):
        raise ValueError(f"{operation}: every rank must pass a tensor of the same shape; got shapes by rank {shapes}")


def _batch_sizes(x: Tensor, operation: str) -> list[int]:
    """Every rank's size of dim 0; ValueError on every rank unless the other dims agree."""
    shapes = _gather_shapes(x, operation)
    if any(shape[1:] != shapes[0][1:] for shape in shapes):
        raise ValueError(
            f"{operation}: every rank must pass tensors whose shapes agree beyond the batch dim 0; "
            f"got shapes by rank {shapes}"
        )
    return [shape[0] for shape in shapes]


def _require_batch_dim(x: Tensor, operation: str) -> None:
    """Gathers concatenate along dim 0, so a 0-dim tensor is an error."""
    if x.dim() == 0:
        raise ValueError(f"{operation}: expected a tensor with a batch dim 0, got a scalar")


def _all_gather_cat(x: Tensor) -> Tensor:
    """Concatenate all ranks' `x` (same shape everywhere) along dim 0 in rank order (no autograd)."""
    chunks = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(chunks, x.contiguous())
    return torch.cat(chunks, dim=0)


def _all_gather_rows(x: Tensor, sizes: list[int]) -> Tensor:
    """Concatenate all ranks' rows in rank order when rank r holds `sizes[r]` rows (no autograd).

    Each rank pads its rows to the longest with zeros; the padding is dropped after the gather.
    """
    longest = max(sizes)
    if all(size == longest for size in sizes):
        return _all_gather_cat(x)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    chunks = _all_gather_cat(padded).split(longest, dim=0)
    return torch.cat([chunk[:size] for chunk, size in zip(chunks, sizes, strict=True)], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; all_reduce(SUM) of the full gradient, sliced to this rank, backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: list[int]) -> Tensor:  # noqa: D102 - documented on the class
        start = sum(sizes[: rank()])
        ctx.rows = slice(start, start + x.shape[0])
        return _all_gather_rows(x, sizes)

    @staticmethod
    def backward(ctx: Any, grad_gathered: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        grad = grad_gathered.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rows], None


def gather_with_grad(x: Tensor, sizes: list[int] | None = None) -> Tensor:
    """All ranks' `x` concatenated along dim 0 in rank order, with gradients flowing back.

    Gradient convention. Let rank r hold local rows x_r (n rows each, R ranks, X = cat_r x_r) and
    compute its loss L_r = (1/n) Σ_{a ∈ rows of r} ℓ_a(X) (mean over its own anchors, keys from the
    whole X). One process on the concatenated batch would compute L = (1/(R·n)) Σ_a ℓ_a(X) =
    (1/R) Σ_r L_r. DDP averages parameter gradients: g = (1/R) Σ_r G_r · ∂x_r/∂θ, where G_r is the
    gradient reaching x_r on rank r. For g to equal ∂L/∂θ = Σ_r (∂L/∂x_r) · ∂x_r/∂θ we need
    G_r = R · ∂L/∂x_r = Σ_{r'} ∂L_{r'}/∂x_r. The backward therefore all_reduces (SUM) the
    gradient of the whole gathered tensor (summing every rank's ∂L_{r'}/∂X) and returns this rank's
    slice. No world-size factor is needed anywhere, provided each rank's loss is the MEAN over its
    own anchors and parameter gradients are averaged (DDP's default).

    Note that x_r.grad on a rank is thus R times the single-process ∂L/∂x_r (the 1/R comes with
    DDP's averaging of parameter gradients). With uneven batch sizes (n_r rows on rank r) the
    backward is still the exact gradient of Σ_r L_r / R; a mean over all anchors then needs each
    L_r scaled by `global_mean_factor` (training batches are even; evaluation needs no gradient).

    Not `torch.distributed.nn.functional.all_gather` (same values and gradients, checked on gloo):
    torch 2.14 deprecates it (FutureWarning) for `torch.distributed._functional_collectives`, a
    private module, and neither gathers uneven per-rank row counts without the padding done here.

    Args:
        x: (n_r, ...) local tensor; the dims after 0 agree on every rank.
        sizes: every rank's n_r from `batch_sizes`, when the caller already has them (the
            caller then vouches for the other dims); None exchanges and checks the shapes.

    Returns:
        (Σ_r n_r, ...) tensor; `x` itself when not distributed.

    Raises:
        ValueError: if the shapes differ between ranks beyond dim 0.
    """
    _require_batch_dim(x, "gather_with_grad")
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x, _batch_sizes(x, "gather_with_grad") if sizes is None else sizes)


def gather_no_grad(x: Tensor, sizes: list[int] | None = None) -> Tensor:
    """All ranks' `x` concatenated along dim 0 in rank order, detached (no gradient).

    Args:
        x: (n_r, ...) local tensor; the dims after 0 agree on every rank.
        sizes: every rank's n_r from `batch_sizes`, if already known (see `gather_with_grad`).

    Returns:
        (Σ_r n_r, ...) detached tensor; `x.detach()` when not distributed.

    Raises:
        ValueError: if the shapes differ between ranks beyond dim 0.
    """
    _require_batch_dim(x, "gather_no_grad")
    if not is_distributed():
        return x.detach()
    sizes = _batch_sizes(x, "gather_no_grad") if sizes is None else sizes
    with torch.no_grad():
        return _all_gather_rows(x.detach(), sizes)


def broadcast_from_rank0(x: Tensor) -> Tensor:
    """Rank 0's value of `x` on every rank (e.g. k-means centroids computed on rank 0).

    Args:
        x: tensor of the same shape and dtype on every rank (the non-zero ranks' values are only
            placeholders).

    Returns:
        A detached tensor holding rank 0's values (`x.detach()` when not distributed).

    Raises:
        ValueError: if the shapes differ between ranks.
    """
    if not is_distributed():
        return x.detach()
    _check_same_shape(x, "broadcast_from_rank0")
    with torch.no_grad():
        out = x.detach().contiguous().clone()
        dist.broadcast(out, src=0)
    return out


class UnpaddedBatchSampler(DistributedSampler):
    """Evaluation batches of one rank: every item exactly once, the same batch count on every rank.

    PyTorch's DistributedSampler, which Lightning puts into evaluation loaders under DDP, pads the
    dataset by repeating items, so metrics count some windows twice. Lightning's
    `UnrepeatedDistributedSampler` does not pad, but the ranks' batch counts may then differ by one,
    and an evaluation step that gathers across ranks (stage 2's global negatives, stage 1's cluster
    assignments) hangs on the rank with the extra batch. This sampler yields whole batches (index
    lists, for a `DataLoader(BatchedDataset(...), batch_size=None)`): the N items, in order, are cut
    into S global batches of near-equal size, each split into R contiguous per-rank parts of
    near-equal size, so every rank runs S non-empty batches and the gather of one step returns a
    global batch in dataset order. S = ceil(N / (R·batch_size)) keeps each part within
    `batch_size`; S is at most N // R so that no part is empty (with batch_size 1 and R not
    dividing N a rank then takes up to 2 items). Being a DistributedSampler, Lightning leaves it in
    place.

    Args:
        dataset: Sized dataset of N ≥ R items.
        batch_size: Largest per-rank batch (the DataModule's per-device batch size).
        num_replicas: R (default: the process group's world size).
        rank: This rank (default: the process group's rank).

    Raises:
        ValueError: batch_size < 1, or fewer items than ranks (a rank would have none).
    """

    def __init__(
        self, dataset: Sized, batch_size: int, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)  # type: ignore[arg-type]
        if batch_size < 1:
            raise ValueError(f"UnpaddedBatchSampler: batch_size must be >= 1, got {batch_size}")
        total, ranks = len(dataset), self.num_replicas
        if total < ranks:
            raise ValueError(
                f"an evaluation set of {total} items cannot be shared by {ranks} processes without "
                f"repeating items: evaluate on at most {total} devices"
            )
        steps = min(math.ceil(total / (ranks * batch_size)), total // ranks)
        self.batch_size = batch_size
        self.batches: list[list[int]] = []
        for step in range(steps):
            start, stop = total * step // steps, total * (step + 1) // steps
            size = stop - start
            part = slice(start + size * self.rank // ranks, start + size * (self.rank + 1) // ranks)
            self.batches.append(list(range(part.start, part.stop)))
        self.num_samples = sum(len(batch) for batch in self.batches)
        self.total_size = total

    def __iter__(self) -> Iterator[list[int]]:
        return (list(batch) for batch in self.batches)

    def __len__(self) -> int:
        """Number of batches (each yielded element is one batch)."""
        return len(self.batches)


class BatchedDataset(Dataset):
    """A dataset indexed by index lists: item = collate_fn([dataset[i] for i in indices]).

    The partner of `UnpaddedBatchSampler` in a `DataLoader(..., batch_size=None)`: batches of
    varying size are collated in the loader's workers, as automatic batching would.

    Args:
        dataset: Map-style dataset of single items.
        collate_fn: Merges a list of items into a batch (default: PyTorch's `default_collate`).
    """

    def __init__(self, dataset: Dataset, collate_fn: Callable[[list[Any]], Any] | None = None) -> None:
        self.dataset = dataset
        self.collate_fn = collate_fn or default_collate

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, indices: list[int]) -> Any:
        return self.collate_fn([self.dataset[index] for index in indices])


def _rng_state_vector() -> Tensor:
    """This process's Python, NumPy, torch CPU (and current CUDA device) random states, packed."""
    import pickle
    import random

    import numpy as np

    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    payload = pickle.dumps((random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda))
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8)


def gather_rng_states(device: torch.device | str = "cpu") -> list[bytes]:
    """Every rank's random-number state (Python, NumPy, torch CPU and CUDA), in rank order.

    Checkpoints store all of them so that a resumed run draws the same augmentations on every rank
    as the uninterrupted one. Collective: all ranks must call it (Lightning calls
    `on_save_checkpoint` on every rank). `device` is where the bytes travel (NCCL needs CUDA).
    """
    local = _rng_state_vector()
    if not is_distributed():
        return [local.numpy().tobytes()]
    size = torch.tensor([local.numel()], device=device)
    sizes = _all_gather_cat(size).tolist()
    padded = torch.zeros(max(sizes), dtype=torch.uint8, device=device)
    padded[: local.numel()] = local.to(device)
    gathered = _all_gather_cat(padded[None]).cpu()
    return [gathered[r, : sizes[r]].numpy().tobytes() for r in range(len(sizes))]


def restore_rng_state(states: list[bytes]) -> None:
    """Restore this rank's state from `gather_rng_states` output (rank modulo the saved count)."""
    import pickle
    import random

    import numpy as np

    python_state, numpy_state, torch_state, cuda_state = pickle.loads(states[rank() % len(states)])
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    if cuda_state is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_state)


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of `x` over all ranks (a new tensor; `x` itself in one process)."""
    if not is_distributed():
        return x
    total = x.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def global_mean_factor(local_count: Tensor) -> Tensor:
    """Factor that turns a rank's masked mean into its share of the global masked mean.

    A loss averaged over the masked-in samples of one rank, L_r = S_r / n_r, is not what one
    process on the whole batch computes, S / n with S = Σ_r S_r and n = Σ_r n_r, when the ranks
    hold different numbers of masked-in samples. DDP averages gradients over the R ranks, so each
    rank must contribute R·S_r / n: multiply L_r by R·n_r / n. This is the exact global mean, not a
    world-size fudge; it is 1 in one process and when every rank has the same count.

    Args:
        local_count: Number of masked-in samples on this rank (0-d tensor).

    Returns:
        0-d float tensor (0 when no rank has any sample).
    """
    local = local_count.detach().to(torch.float64).reshape(1)
    if not is_distributed():
        return torch.ones((), dtype=torch.float32, device=local_count.device)
    total = gather_no_grad(local).sum()
    safe_total = torch.where(total > 0, total, torch.ones_like(total))  # no host read of the count
    return torch.where(total > 0, world_size() * local[0] / safe_total, torch.zeros_like(total)).to(torch.float32)


def allow_unused_parameters(trainer: Any) -> None:
    """Let a DDP strategy tolerate parameters that receive no gradient in some steps.

    Stage 1 leaves its video branch unused while clustering and frozen while refining; plain DDP
    then fails. Called from the module's `setup`, which Lightning runs before the strategy wraps
    the model, so it covers "ddp", "auto" on several devices and the Python API alike.
    """
    from lightning.pytorch.strategies import DDPStrategy
    from lightning.pytorch.utilities import rank_zero_info

    strategy = trainer.strategy
    options = getattr(strategy, "_ddp_kwargs", None)
    if isinstance(strategy, DDPStrategy) and options is not None and not options.get("find_unused_parameters"):
        options["find_unused_parameters"] = True
        rank_zero_info("DDP: find_unused_parameters=True (stage 1's video branch is idle in some epochs)")
