"""The side camera's frames: room, place states, the person, lighting flicker and noise."""

from __future__ import annotations

import math

import numpy as np

from detach_pl.data.kitchen.config import SyntheticKitchenConfig
from detach_pl.data.kitchen.layout import FRAME_CHUNK_PIXELS, OPEN_RGB, VIDEO, rng_for
from detach_pl.data.kitchen.motion import minimum_jerk, openness
from detach_pl.data.kitchen.room import World
from detach_pl.data.kitchen.schedule import SEG_HOME, SEG_WALK, Schedule, Subject


def _person_centres(schedule: Schedule, times_ms: np.ndarray) -> np.ndarray:
    """(T, 2) body centre of the person: walks (minimum-jerk path with a gait bob), leans, fidgets."""
    last = len(schedule.start_ms) - 1
    segment = np.clip(np.searchsorted(schedule.start_ms, times_ms, "right") - 1, 0, last)
    start, end, kind = schedule.start_ms[segment], schedule.end_ms[segment], schedule.kind[segment]
    u = np.clip((times_ms - start) / np.maximum(end - start, 1.0), 0.0, 1.0)
    origin, target = schedule.origin[segment], schedule.target[segment]
    centre = origin + (target - origin) * minimum_jerk(u)[:, None]
    centre[:, 0] -= np.where(kind == SEG_WALK, 0.015 * np.abs(np.sin(4 * math.pi * u)), 0.0)
    centre += schedule.lean[segment] * (np.sin(math.pi * u) ** 2)[:, None]
    seconds = times_ms / 1000.0
    fidget = np.stack(
        [0.005 * np.sin(2 * math.pi * 0.25 * seconds), 0.01 * np.sin(2 * math.pi * 0.15 * seconds + 1.0)], axis=1
    )
    centre += np.where((kind == SEG_HOME)[:, None], fidget, 0.0)
    return centre


def _soft_ellipse(size: int, centre: np.ndarray, radius_y: float, radius_x: float) -> np.ndarray:
    """(T, size, size) coverage in [0, 1] of ellipses at ``centre`` (T, 2), 1-pixel soft edge."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    dy = (grid[None, :, None] - centre[:, 0, None, None].astype(np.float32)) / radius_y
    dx = (grid[None, None, :] - centre[:, 1, None, None].astype(np.float32)) / radius_x
    distance = np.sqrt(dy * dy + dx * dx)
    return np.clip((1.0 - distance) * (min(radius_y, radius_x) * size) + 0.5, 0.0, 1.0)


def _flicker_wave(times_ms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(T,) lighting fluctuation of roughly unit amplitude: a slow beat plus smoothed noise."""
    beat = np.sin(2 * math.pi * 0.7 * times_ms / 1000.0 + rng.uniform(0.0, 2 * math.pi))
    smooth = np.convolve(rng.normal(0.0, 1.0, len(times_ms) + 4), np.ones(5) / math.sqrt(5.0), mode="valid")
    return 0.6 * beat + 0.4 * np.clip(smooth, -2.5, 2.5)


def render_frames(
    config: SyntheticKitchenConfig, world: World, subject: Subject, schedule: Schedule, run_index: int
) -> np.ndarray:
    """(F, H, W, 3) uint8 frames: room + place states + person + flicker + brightness + noise.

    Rendered in chunks of frames so that large image sizes keep a bounded float working set.
    """
    rng = rng_for(config.seed, VIDEO, run_index)
    count = int(config.run_seconds * config.fps)
    times_ms = np.arange(count) * (1000.0 / config.fps)
    state = openness(times_ms, schedule.events).astype(np.float32)
    centre = _person_centres(schedule, times_ms)
    gain = (1.0 + config.flicker * _flicker_wave(times_ms, rng)).astype(np.float32)
    noise_sd = np.float32(config.frame_noise * subject.noise_factor)
    height = config.person_size
    hair_rgb = np.array([0.22, 0.16, 0.12], dtype=np.float32)
    clothes_rgb = subject.clothes_rgb.astype(np.float32)
    contrast = 1.0 - config.change_subtlety
    softness = 0.25
    chunk = max(1, FRAME_CHUNK_PIXELS // config.image_size**2)
    output = np.empty((count, config.image_size, config.image_size, 3), dtype=np.uint8)
    for first in range(0, count, chunk):
        part = slice(first, min(first + chunk, count))
        frames = np.repeat(world.background[None], part.stop - part.start, axis=0)
        for place, (y0, y1, x0, x1) in enumerate(world.boxes):
            reach = state[part, place, None, None] * (1 + softness) - world.ramps[place]
            covered = np.clip(reach / softness, 0.0, 1.0)
            change = (OPEN_RGB[place] - world.background[y0:y1, x0:x1]).astype(np.float32)
            frames[:, y0:y1, x0:x1] += contrast * covered[..., None] * change[None]
        body = _soft_ellipse(config.image_size, centre[part], 0.36 * height, 0.16 * height)
        head_centre = centre[part] - np.array([0.46 * height, 0.0])
        head = _soft_ellipse(config.image_size, head_centre, 0.12 * height, 0.12 * height)
        for coverage, rgb in ((body, clothes_rgb), (head, hair_rgb)):
            frames += coverage[..., None] * (rgb - frames)
        frames *= gain[part, None, None, None]
        frames += subject.brightness
        if noise_sd > 0:
            frames += rng.standard_normal(frames.shape, dtype=np.float32) * noise_sd
        output[part] = np.round(np.clip(frames, 0.0, 1.0) * 255.0)
    return output
