"""Random generators that depend on (seed, epoch, index or batch) only, never on a global stream.

A resumed run must draw what the uninterrupted run draws. The global torch RNG cannot promise
that: every DataLoader iterator takes its base seed from it, and a resumed run creates its
iterators at other times than an uninterrupted one (persistent workers start once per `fit`).
So each random draw of training gets its own generator, seeded from a hash of the run's seed, a
stream name (which augmentation) and where in training it happens.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

SENSOR_WARP = "sensor_warp"
"""Stream of the sinusoidal time warp (one generator per training batch and rank)."""

VIDEO_AUGMENT = "video_augment"
"""Stream of the clip augmentation (one generator per epoch and window)."""

LOADER = "loader"
"""Stream of a DataLoader's own generator (its workers' base seed)."""

_SEED_MASK = (1 << 63) - 1


def derive_seed(*keys: int | str) -> int:
    """A 63-bit seed from any tuple of integers and names (stable across processes and runs).

    A cryptographic hash, not arithmetic on the keys, so nearby keys (seed 1 step 2 vs seed 2
    step 1) give unrelated streams.
    """
    text = "\x1f".join(str(key) for key in keys).encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "little") & _SEED_MASK


def keyed_generator(*keys: int | str, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on `device` seeded with `derive_seed(*keys)`."""
    return torch.Generator(device=device).manual_seed(derive_seed(*keys))


def step_generator(
    seed: int, step: int, device: torch.device | str = "cpu", *, stream: str = SENSOR_WARP, rank: int = 0
) -> torch.Generator:
    """The generator of one training batch: a function of (seed, stream, step, rank) only.

    Args:
        seed: The run's seed (`run_seed()`).
        step: Training batch counter across epochs (restored on resume).
        device: Where the generator draws; the CPU (default) draws the same numbers on any
            accelerator, so a run on CPU and on GPU augment alike.
        stream: Which augmentation draws (independent streams for independent draws).
        rank: Process rank, so that ranks augment their different windows independently.
    """
    return keyed_generator(seed, stream, "step", step, "rank", rank, device=device)


def run_seed() -> int:
    """The run's seed: `seed_everything`'s (LightningCLI exports it as PL_GLOBAL_SEED), else 0."""
    value = os.environ.get("PL_GLOBAL_SEED")
    return int(value) if value else 0


def batch_generator(module: Any, stream: str = SENSOR_WARP) -> torch.Generator:
    """`step_generator` of a LightningModule's current training batch.

    The step is Lightning's training batch counter (`fit_loop.epoch_loop.total_batch_idx`), not
    `global_step`: with gradient accumulation several batches share one optimiser step and must
    not share augmentations. A module without a trainer draws as at step 0.
    """
    trainer = getattr(module, "_trainer", None)
    if trainer is None:
        return step_generator(run_seed(), 0, stream=stream)
    step = trainer.fit_loop.epoch_loop.total_batch_idx
    return step_generator(run_seed(), step, stream=stream, rank=trainer.global_rank)


def sample_generator(seed: int, epoch: int, index: int, *, stream: str = VIDEO_AUGMENT) -> torch.Generator:
    """The generator of one window in one epoch: a function of (seed, stream, epoch, index) only.

    Keyed by the window's dataset index, a window gets the same augmentation whichever rank,
    batch or batch size serves it.
    """
    return keyed_generator(seed, stream, "epoch", epoch, "index", index)


def loader_generator(seed: int, split: str) -> torch.Generator:
    """A DataLoader's own generator, so that creating an iterator leaves the global RNG alone.

    Without one, each iterator draws its base seed (workers' seeds) from the global torch RNG;
    with one, iterator creation no longer shifts any other random draw. Worker seeds are then a
    function of (seed, split, iterator count, worker id); the datasets draw nothing at random.
    """
    return keyed_generator(seed, LOADER, split)
