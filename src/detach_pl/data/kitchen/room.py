"""The fixed room and sensor hardware of one seed: background texture, closed fixtures, mountings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detach_pl.data.kitchen.config import SyntheticKitchenConfig
from detach_pl.data.kitchen.layout import (
    AMBIENT_ACCELEROMETERS,
    FIXTURE_RGB,
    SLIDE_AXIS,
    SLIDE_REVERSED,
    WORLD,
    place_boxes,
    rng_for,
)


@dataclass
class World:
    """The fixed room and sensor hardware, identical for every run of one seed."""

    background: np.ndarray  # (H, W, 3) float32 in [0, 1], closed fixtures drawn in
    boxes: np.ndarray  # (K, 4) int pixel boxes y0, y1, x0, x1
    ramps: list[np.ndarray]  # per place (h, w) position of each patch pixel along the slide axis
    accel_gravity: np.ndarray  # (8, 3) static reading of each ambient accelerometer in g
    accel_gains: np.ndarray  # (8, 3) direction x strength of each accelerometer's response
    distractor_gravity: np.ndarray  # (units, 3)
    distractor_gains: np.ndarray  # (units, 3)


def build_world(config: SyntheticKitchenConfig) -> World:
    """Room texture, closed fixtures and sensor hardware, from the seed alone.

    The room and the hardware use separate streams, so changing the image size keeps the sensors.
    """
    rng = rng_for(config.seed, WORLD, 0)
    size = config.image_size
    centres = (np.arange(size) + 0.5) / size
    grid_y, grid_x = np.meshgrid(centres, centres, indexing="ij")
    wall = np.array([0.70, 0.66, 0.58]) + rng.uniform(-0.05, 0.05, 3)
    floor = np.array([0.42, 0.36, 0.30]) + rng.uniform(-0.05, 0.05, 3)
    background = np.where((grid_y < 0.62)[..., None], wall, floor)
    for _ in range(6):
        freq = rng.uniform(1.0, 6.0, 2) * rng.choice([-1.0, 1.0], 2)
        phase = rng.uniform(0.0, 2 * math.pi)
        wave = np.sin(2 * math.pi * (freq[0] * grid_y + freq[1] * grid_x) + phase)
        background += 0.04 * wave[..., None] * rng.uniform(0.5, 1.0, 3)
    for _ in range(5):
        y0, x0 = rng.uniform(0.0, 0.9, 2)
        height, width = rng.uniform(0.05, 0.25, 2)
        inside = (grid_y >= y0) & (grid_y < y0 + height) & (grid_x >= x0) & (grid_x < x0 + width)
        background[inside] += rng.uniform(-0.15, 0.15, 3)
    background += rng.normal(0.0, 0.04, background.shape)
    boxes = place_boxes(config)
    ramps = []
    for place, (y0, y1, x0, x1) in enumerate(boxes):
        patch = FIXTURE_RGB[place] + rng.normal(0.0, 0.03, (y1 - y0, x1 - x0, 3))
        background[y0:y1, x0:x1] = patch
        length = (y1 - y0) if SLIDE_AXIS[place] == 0 else (x1 - x0)
        ramp = (np.arange(length) + 0.5) / length
        if SLIDE_REVERSED[place]:
            ramp = ramp[::-1]
        ramps.append(ramp[:, None] if SLIDE_AXIS[place] == 0 else ramp[None, :])
    hardware = rng_for(config.seed, WORLD, 1)
    num_accelerometers = len(AMBIENT_ACCELEROMETERS)
    accel_gravity = random_orientations(hardware, num_accelerometers)
    accel_gains = random_orientations(hardware, num_accelerometers)
    accel_gains = accel_gains * hardware.uniform(0.6, 1.0, (num_accelerometers, 1))
    num_units = math.ceil(config.num_distractor_channels / 3)
    distractor_gravity = random_orientations(hardware, num_units)
    distractor_gains = random_orientations(hardware, num_units) * hardware.uniform(0.4, 1.0, (num_units, 1))
    return World(
        background=np.clip(background, 0.0, 1.0).astype(np.float32),
        boxes=boxes,
        ramps=ramps,
        accel_gravity=accel_gravity,
        accel_gains=accel_gains,
        distractor_gravity=distractor_gravity,
        distractor_gains=distractor_gains,
    )


def random_orientations(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3) random unit vectors (sensor mounting orientations)."""
    vectors = rng.normal(size=(count, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
