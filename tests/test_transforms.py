"""Tests of the sensor time warp and the clip-consistent video augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from detach_pl.transforms import augment_clip, sinusoidal_time_warp


def generator(seed: int) -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- time warp


def test_time_warp_with_zero_sigma_is_identity() -> None:
    x = torch.randn(4, 3, 128)
    assert torch.equal(sinusoidal_time_warp(x, sigma=0.0, generator=generator(0)), x)


@pytest.mark.parametrize("phase_end", [None, 4.0 * math.pi])
def test_time_warp_matches_an_explicit_interpolation(phase_end: float | None) -> None:
    """Default: the released constant 4·3.14; 4π (the paper's formula) on request."""
    batch, channels, length, sigma = 3, 2, 50, 0.2
    x = torch.randn(batch, channels, length, dtype=torch.float64)
    strength = torch.rand(batch, generator=generator(7)).numpy()
    options = {} if phase_end is None else {"phase_end": phase_end}
    out = sinusoidal_time_warp(x, sigma=sigma, generator=generator(7), **options)
    grid = np.linspace(0.0, 4 * 3.14 if phase_end is None else phase_end, length)
    for b in range(batch):
        positions = [
            min(max(t + sigma * length * math.sin(grid[t]) * strength[b], 0.0), length - 1)
            for t in range(length)
        ]
        for c in range(channels):
            expected = np.interp(positions, np.arange(length), x[b, c].numpy())
            np.testing.assert_allclose(out[b, c].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_time_warp_is_finite_shaped_and_deterministic() -> None:
    x = torch.randn(8, 5, 128)
    first = sinusoidal_time_warp(x, generator=generator(3))
    assert first.shape == x.shape and first.dtype == x.dtype
    assert torch.isfinite(first).all()
    assert torch.equal(first, sinusoidal_time_warp(x, generator=generator(3)))
    assert not torch.equal(first, sinusoidal_time_warp(x, generator=generator(4)))
    assert not torch.equal(first, x)


def test_time_warp_shares_the_warp_across_channels() -> None:
    row = torch.randn(2, 1, 64)
    out = sinusoidal_time_warp(row.expand(2, 4, 64).contiguous(), generator=generator(1))
    assert torch.equal(out, out[:, :1].expand(2, 4, 64))


def test_ramp_stays_in_range_and_monotone_for_gentle_warps() -> None:
    length = 128
    ramp = torch.arange(length, dtype=torch.float32).expand(16, 1, length).contiguous()
    gentle = sinusoidal_time_warp(ramp, sigma=0.05, generator=generator(0))
    assert gentle.min() >= 0 and gentle.max() <= length - 1
    assert (gentle.diff(dim=-1) >= -1e-4).all()
    strong = sinusoidal_time_warp(ramp, sigma=0.2, generator=generator(0))
    assert strong.min() >= 0 and strong.max() <= length - 1
    # sigma = 0.2 lets the published warp fold back on itself for large U(0, 1) draws
    assert (strong.diff(dim=-1) < 0).any()


def test_time_warp_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, L\)"):
        sinusoidal_time_warp(torch.randn(3, 128))
    with pytest.raises(ValueError, match="sigma"):
        sinusoidal_time_warp(torch.randn(1, 1, 8), sigma=-0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_time_warp_on_cuda_with_cpu_generator() -> None:
    x = torch.randn(4, 3, 128)
    on_device = sinusoidal_time_warp(x.cuda(), generator=generator(5))
    torch.testing.assert_close(on_device.cpu(), sinusoidal_time_warp(x, generator=generator(5)))


# ---------------------------------------------------------------- video clips


def test_augment_clip_uses_one_draw_per_clip() -> None:
    torch.manual_seed(0)
    frame = torch.rand(3, 16, 16)
    clip = frame.expand(6, 3, 16, 16).contiguous()
    out = augment_clip(clip, generator=generator(0))
    assert out.shape == clip.shape
    for t in range(1, 6):
        assert torch.equal(out[t], out[0])
    assert out.min() >= 0 and out.max() <= 1
    assert (out - clip).abs().max() > 1e-3


def test_augment_clip_is_deterministic_with_a_seed_and_varies_between_seeds() -> None:
    clip = torch.rand(4, 3, 16, 16)
    first = augment_clip(clip, generator=generator(1))
    assert torch.equal(first, augment_clip(clip, generator=generator(1)))
    assert not torch.equal(first, augment_clip(clip, generator=generator(2)))


def test_augment_clip_applies_the_jitter_operations_in_a_random_order() -> None:
    """Released: torchvision ColorJitter's random order; "fixed": brightness, contrast, saturation, hue."""
    from torchvision.transforms.v2 import functional as TF

    clip = torch.rand(2, 3, 12, 12)

    def by_hand(order: list[int], seed: int) -> torch.Tensor:
        draws = torch.rand(5, generator=generator(seed)).tolist()
        factors = [0.6 + 0.8 * u for u in draws[:3]]
        ops = [
            lambda im: TF.adjust_brightness(im, factors[0]),
            lambda im: TF.adjust_contrast(im, factors[1]),
            lambda im: TF.adjust_saturation(im, factors[2]),
            lambda im: TF.adjust_hue(im, 0.1 * (2 * draws[3] - 1)),
        ]
        out = clip
        for index in order:
            out = ops[index](out)
        sigma = 0.1 + 1.9 * draws[4]
        return TF.gaussian_blur(out, kernel_size=[5, 5], sigma=[sigma, sigma]).clamp(0, 1)

    orders = set()
    for seed in range(8):
        gen = generator(seed)
        torch.rand(5, generator=gen)
        order = torch.randperm(4, generator=gen).tolist()
        orders.add(tuple(order))
        torch.testing.assert_close(augment_clip(clip, generator=generator(seed)), by_hand(order, seed))
        fixed = augment_clip(clip, generator=generator(seed), jitter_order="fixed")
        torch.testing.assert_close(fixed, by_hand([0, 1, 2, 3], seed))
    assert len(orders) > 1


def test_augment_clip_keeps_range_for_extreme_pixels() -> None:
    clip = (torch.rand(3, 3, 16, 16) > 0.5).float()
    for seed in range(5):
        out = augment_clip(clip, generator=generator(seed))
        assert out.min() >= 0 and out.max() <= 1


def test_augment_clip_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        augment_clip(torch.rand(2, 4, 3, 8, 8))
    with pytest.raises(ValueError, match="blur_kernel"):
        augment_clip(torch.rand(2, 3, 8, 8), blur_kernel=4)
