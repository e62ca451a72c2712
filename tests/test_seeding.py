"""Generators keyed by (seed, stream, position) only: stable, independent, and free of the global RNG."""

from __future__ import annotations

import torch

from detach_pl.seeding import (
    SENSOR_WARP,
    VIDEO_AUGMENT,
    batch_generator,
    derive_seed,
    loader_generator,
    run_seed,
    sample_generator,
    step_generator,
)


def draws(generator: torch.Generator) -> torch.Tensor:
    return torch.rand(4, generator=generator)


def test_derived_seeds_are_stable_and_differ_for_nearby_keys() -> None:
    assert derive_seed(42, SENSOR_WARP, 3) == derive_seed(42, SENSOR_WARP, 3)
    keys = [(seed, stream, step) for seed in (1, 2) for stream in (SENSOR_WARP, VIDEO_AUGMENT) for step in (1, 2)]
    seeds = {derive_seed(*key) for key in keys}
    assert len(seeds) == 8
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_step_and_sample_generators_depend_only_on_their_keys() -> None:
    torch.manual_seed(0)
    first = draws(step_generator(7, 5))
    torch.rand(100)  # the global stream moves on; keyed generators do not notice
    assert torch.equal(draws(step_generator(7, 5)), first)
    assert not torch.equal(draws(step_generator(7, 6)), first)
    assert not torch.equal(draws(step_generator(7, 5, rank=1)), first)
    assert not torch.equal(draws(step_generator(7, 5, stream=VIDEO_AUGMENT)), first)
    clip = draws(sample_generator(7, epoch=2, index=11))
    assert torch.equal(draws(sample_generator(7, epoch=2, index=11)), clip)
    assert not torch.equal(draws(sample_generator(7, epoch=3, index=11)), clip)


def test_keyed_generators_leave_the_global_rng_alone() -> None:
    torch.manual_seed(3)
    state = torch.get_rng_state()
    draws(step_generator(1, 2))
    draws(sample_generator(1, 2, 3))
    loader = torch.utils.data.DataLoader(list(range(10)), batch_size=2, generator=loader_generator(1, "train"))
    list(loader)
    list(loader)
    assert torch.equal(torch.get_rng_state(), state)


def test_run_seed_and_a_module_without_trainer(monkeypatch) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "42")
    assert run_seed() == 42
    module = torch.nn.Module()
    assert torch.equal(draws(batch_generator(module)), draws(step_generator(42, 0)))
    monkeypatch.delenv("PL_GLOBAL_SEED")
    assert run_seed() == 0
