"""Data augmentation: the sensor time warp (stage 1/2) and clip-consistent video augmentation."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

JitterOrder = Literal["random", "fixed"]


def _uniform(count: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``count`` samples of U(0, 1), drawn on the generator's device and moved to ``device``.

    The draws stay those of the generator (a CPU generator seeded per batch gives the same values
    on every rank, device and resume). A CPU → CUDA move goes through pinned memory with
    ``non_blocking=True``: a copy from pageable memory would make the host wait for the device,
    one synchronisation per warped training step.
    """
    draw_device = generator.device if generator is not None else device
    draws = torch.rand(count, generator=generator, device=draw_device)
    if draws.device.type == "cpu" and torch.device(device).type == "cuda":
        return draws.pin_memory().to(device, non_blocking=True)
    return draws.to(device)


RELEASED_WARP_PHASE_END = 4 * 3.14
"""End of the warp's phase, linspace(0, ·, L): the released code writes 4·3.14 where the paper has 4π."""


def sinusoidal_time_warp(
    x: Tensor,
    sigma: float = 0.2,
    generator: torch.Generator | None = None,
    phase_end: float = RELEASED_WARP_PHASE_END,
) -> Tensor:
    """Resample each window at sinusoidally displaced times (docs/method.md, stage 1a augmentation).

    Per sample b: offset_b(t) = σ·L·sin(linspace(0, phase_end, L)_t)·u_b with u_b ~ U(0, 1)
    (phase_end = 4·3.14 as released; 4π in the paper's formula); the window
    is read at positions clamp(t + offset_b(t), 0, L − 1) by linear interpolation along time; all
    channels of a sample share the warp.

    Note: the displacement changes faster than time itself once σ·u·4π·L/(L − 1) > 1 (σ·u above
    about 0.08), so with σ = 0.2 the warp often folds back on itself (non-monotone positions).
    This follows the published formula.

    Args:
        x: Sensor windows (B, C, L), any device.
        sigma: Warp strength σ ≥ 0 (0 gives the identity).
        generator: Optional random generator (on x's device or on the CPU).
        phase_end: End of the sine's phase (two periods: 4·3.14 released, 4π paper).

    Returns:
        Warped windows, same shape, dtype and device as ``x``.
    """
    if x.dim() != 3:
        raise ValueError(
            f"sinusoidal_time_warp needs windows of shape (B, C, L), got {tuple(x.shape)}"
        )
    if sigma < 0:
        raise ValueError(f"sinusoidal_time_warp needs sigma >= 0, got {sigma}")
    batch, channels, length = x.shape
    position_dtype = torch.promote_types(x.dtype, torch.float32)
    times = torch.arange(length, device=x.device, dtype=position_dtype)
    phase = torch.linspace(0.0, phase_end, length, device=x.device, dtype=position_dtype)
    wave = torch.sin(phase)
    strength = _uniform(batch, generator, x.device).to(position_dtype)
    positions = (times + sigma * length * wave * strength[:, None]).clamp(0.0, length - 1)
    lower = positions.floor().long().clamp(max=length - 1)
    upper = (lower + 1).clamp(max=length - 1)
    fraction = (positions - lower).to(x.dtype)[:, None, :]
    lower_values = x.gather(2, lower[:, None, :].expand(batch, channels, length))
    upper_values = x.gather(2, upper[:, None, :].expand(batch, channels, length))
    return lower_values + fraction * (upper_values - lower_values)


def augment_clip(
    clip: Tensor,
    generator: torch.Generator | None = None,
    *,
    jitter: tuple[float, float] = (0.6, 1.4),
    hue: float = 0.1,
    blur_kernel: int = 5,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    jitter_order: JitterOrder = "random",
) -> Tensor:
    """Colour jitter and Gaussian blur with ONE random draw for all frames of a clip.

    Why not `torchvision.transforms.v2` ColorJitter + GaussianBlur (they too draw once for a whole
    (T, 3, H, W) clip): they draw from the global RNG, with no generator argument, and the
    per-window generator is what keeps a window's augmentation the same on every rank, batch
    size and resume; the image operations here are v2's own functional ones.

    Sharing the parameters keeps frame differences free of augmentation noise (the temporal
    encoder reads them). The four jitter operations (brightness, contrast, saturation, hue) run
    in a random order drawn per clip, as torchvision's ColorJitter does (released), or in that
    fixed order (`jitter_order="fixed"`); the blur comes last.

    Args:
        clip: Frames (T, 3, H, W) with values in [0, 1].
        generator: Optional random generator.
        jitter: Range of the brightness, contrast and saturation factors.
        hue: Hue shift drawn from U(−hue, hue), hue in [0, 0.5].
        blur_kernel: Odd Gaussian kernel size.
        blur_sigma: Range of the Gaussian standard deviation.
        jitter_order: "random" (released) or "fixed".

    Returns:
        Augmented clip, same shape, values clamped to [0, 1].
    """
    if clip.dim() != 4 or clip.shape[1] != 3:
        raise ValueError(
            f"augment_clip needs a clip of shape (T, 3, H, W), got {tuple(clip.shape)}"
        )
    if not 0.0 <= jitter[0] <= jitter[1]:
        raise ValueError(f"augment_clip needs 0 <= jitter[0] <= jitter[1], got {jitter}")
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"augment_clip needs hue in [0, 0.5], got {hue}")
    if blur_kernel <= 0 or blur_kernel % 2 == 0:
        raise ValueError(f"augment_clip needs an odd positive blur_kernel, got {blur_kernel}")
    if not 0.0 < blur_sigma[0] <= blur_sigma[1]:
        raise ValueError(f"augment_clip needs 0 < blur_sigma[0] <= blur_sigma[1], got {blur_sigma}")
    if jitter_order not in ("random", "fixed"):
        raise ValueError(f"augment_clip needs jitter_order 'random' or 'fixed', got {jitter_order!r}")
    draws = _uniform(5, generator, torch.device("cpu")).tolist()
    low, high = jitter
    brightness, contrast, saturation = (low + (high - low) * u for u in draws[:3])
    hue_shift = hue * (2.0 * draws[3] - 1.0)
    sigma = blur_sigma[0] + (blur_sigma[1] - blur_sigma[0]) * draws[4]
    operations = (
        lambda image: TF.adjust_brightness(image, brightness),
        lambda image: TF.adjust_contrast(image, contrast),
        lambda image: TF.adjust_saturation(image, saturation),
        lambda image: TF.adjust_hue(image, hue_shift),
    )
    draw_device = generator.device if generator is not None else torch.device("cpu")
    order = torch.randperm(4, generator=generator, device=draw_device) if jitter_order == "random" else torch.arange(4)
    out = clip
    for operation in order.tolist():
        out = operations[operation](out)
    out = TF.gaussian_blur(out, kernel_size=[blur_kernel, blur_kernel], sigma=[sigma, sigma])
    return out.clamp(0.0, 1.0)
