"""The ambient channels of a run: clock, reed switches, accelerometers, distractors and flaws."""

from __future__ import annotations

import math

import numpy as np

from detach_pl.data.kitchen.config import SyntheticKitchenConfig
from detach_pl.data.kitchen.layout import (
    AMBIENT_ACCELEROMETERS,
    CLASS_IS_OPEN,
    CLASS_PLACE,
    CLOCK,
    FLAWS,
    MOUNTING,
    NUM_AMBIENT_CHANNELS,
    OTHER_GESTURES,
    REED_SWITCHES,
    SENSOR,
    accelerometer_unit,
    cabinet_neighbours,
    reed_switch_columns,
    rng_for,
)
from detach_pl.data.kitchen.motion import burst_waveform, openness
from detach_pl.data.kitchen.room import World, random_orientations
from detach_pl.data.kitchen.schedule import Schedule, Subject


def sensor_clock(config: SyntheticKitchenConfig, run_index: int) -> np.ndarray:
    """MILLISEC-like clock: round(k * 1000 / rate) (steps of 33/34 ms at 30 Hz) plus jitter."""
    rng = rng_for(config.seed, CLOCK, run_index)
    count = int(config.run_seconds * config.sensor_rate_hz)
    nominal = np.arange(count) * (1000.0 / config.sensor_rate_hz)
    sigma = config.timing_jitter_ms
    jitter = np.clip(rng.normal(0.0, 1.0, count), -3.0, 3.0) * sigma
    jitter[0] = 0.0
    stamped = np.round(nominal + jitter)
    strictly_increasing = np.maximum.accumulate(stamped - np.arange(count)) + np.arange(count)
    return strictly_increasing.astype(np.float64)


def gesture_rows(time_ms: np.ndarray, start: float, end: float) -> slice:
    """Rows with start <= time_ms < end."""
    return slice(int(np.searchsorted(time_ms, start, "left")), int(np.searchsorted(time_ms, end, "left")))


def _add_random_bursts(
    signal: np.ndarray, time_ms: np.ndarray, gains: np.ndarray, rate_hz: float, rng: np.random.Generator
) -> None:
    """Add Poisson-timed bursts with the open/close waveforms to a (rows, 3) sensor in place."""
    duration_s = (time_ms[-1] - time_ms[0]) / 1000.0
    for _ in range(rng.poisson(rate_hz * duration_s)):
        start = rng.uniform(time_ms[0], time_ms[-1])
        end = start + rng.uniform(0.8, 2.5) * 1000.0
        rows = gesture_rows(time_ms, start, end)
        wave = burst_waveform((time_ms[rows] - start) / (end - start), bool(rng.random() < 0.5))
        signal[rows] += rng.uniform(0.4, 1.0) * wave[:, None] * gains


def mounting(config: SyntheticKitchenConfig, world: World, run_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(8, 3) gravity readings and (8, 3) response gains of the ambient accelerometers in one run.

    Each orientation u turns towards a fresh random direction r of the run:
    normalise((1 - j) u + j r) with j = `mounting_jitter`, keeping the response's strength.
    Without jitter these are the world's own arrays.
    """
    if config.mounting_jitter == 0.0:
        return world.accel_gravity, world.accel_gains
    rng = rng_for(config.seed, MOUNTING, run_index)
    jitter = config.mounting_jitter
    count = len(world.accel_gravity)
    turned = []
    for base in (world.accel_gravity, world.accel_gains):
        strength = np.linalg.norm(base, axis=1, keepdims=True)
        mixed = (1.0 - jitter) * base / strength + jitter * random_orientations(rng, count)
        turned.append(strength * mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-9))
    return turned[0], turned[1]


def other_waveform(u: np.ndarray, seconds: float, kind: int) -> np.ndarray:
    """Acceleration (in units of the sensor's gain) of another gesture at normalised time u.

    A Hann-windowed oscillation, sin(pi u)^2 sin(2 pi f u T), at 6 Hz for a knock on the switch and
    2 Hz for wiping (T the gesture's seconds); peak `OTHER_GESTURES[kind][2]`.
    """
    frequency = 6.0 if kind == 0 else 2.0
    wave = np.sin(math.pi * u) ** 2 * np.sin(2 * math.pi * frequency * u * seconds)
    return OTHER_GESTURES[kind][2] * np.where((u >= 0.0) & (u < 1.0), wave, 0.0)


def _shake(
    accel: np.ndarray, gains: np.ndarray, place: int, rows: slice, wave: np.ndarray, crosstalk: float
) -> None:
    """Add ``wave`` to the accelerometer of ``place`` and ``crosstalk`` x it to its cabinet's others."""
    accel[rows, accelerometer_unit(place)] += wave[:, None] * gains[accelerometer_unit(place)]
    if crosstalk > 0.0:
        for neighbour in cabinet_neighbours(place):
            unit = accelerometer_unit(neighbour)
            accel[rows, unit] += crosstalk * wave[:, None] * gains[unit]


def render_sensors(
    config: SyntheticKitchenConfig,
    world: World,
    subject: Subject,
    schedule: Schedule,
    time_ms: np.ndarray,
    run_index: int,
) -> np.ndarray:
    """(rows, C) ambient channels before flaws: reed switches (0/1) and accelerometers (milli g)."""
    rng = rng_for(config.seed, SENSOR, run_index)
    rows = len(time_ms)
    state = openness(time_ms, schedule.events)
    reed = np.stack([state[:, place] >= threshold for _, place, threshold in REED_SWITCHES], axis=1)
    gravity, gains = mounting(config, world, run_index)
    accel = np.repeat(gravity[None], rows, axis=0)
    for class_id, start, end in schedule.events:
        span = gesture_rows(time_ms, start, end)
        wave = burst_waveform((time_ms[span] - start) / (end - start), CLASS_IS_OPEN[class_id])
        _shake(accel, gains, CLASS_PLACE[class_id], span, rng.uniform(0.8, 1.2) * wave, config.crosstalk)
    for kind, start, end in schedule.other_events:
        span = gesture_rows(time_ms, start, end)
        wave = other_waveform((time_ms[span] - start) / (end - start), (end - start) / 1000.0, kind)
        _shake(accel, gains, OTHER_GESTURES[kind][1], span, wave, config.crosstalk)
    lazy_chair = [name for name, _ in AMBIENT_ACCELEROMETERS].index("LAZYCHAIR")
    burst_rate = config.distractor_burst_rate_hz
    _add_random_bursts(accel[:, lazy_chair], time_ms, gains[lazy_chair], burst_rate, rng)
    noise_sd = config.sensor_noise * subject.noise_factor
    accel += rng.normal(0.0, noise_sd, accel.shape)
    units = len(world.distractor_gains)
    distractors = np.repeat(world.distractor_gravity[None], rows, axis=0)
    for unit in range(units):
        period_s = rng.uniform(20.0, 60.0, 3)
        phase = rng.uniform(0.0, 2 * math.pi, 3)
        distractors[:, unit] += 0.05 * np.sin(2 * math.pi * time_ms[:, None] / 1000.0 / period_s + phase)
        _add_random_bursts(distractors[:, unit], time_ms, world.distractor_gains[unit], burst_rate, rng)
    distractors += rng.normal(0.0, 2.0 * noise_sd, distractors.shape)
    columns = [
        reed.astype(np.float64),
        np.round(1000.0 * accel.reshape(rows, -1)),
        np.round(1000.0 * distractors.reshape(rows, -1)[:, : config.num_distractor_channels]),
    ]
    return np.concatenate(columns, axis=1).astype(np.float32)


def _sensor_units(config: SyntheticKitchenConfig) -> list[np.ndarray]:
    """Column groups that fail together: each reed switch, each 3-axis accelerometer."""
    units = [np.array([column]) for column in reed_switch_columns()]
    first_accel = len(REED_SWITCHES)
    units += [first_accel + 3 * unit + np.arange(3) for unit in range(len(AMBIENT_ACCELEROMETERS))]
    first_distractor = NUM_AMBIENT_CHANNELS
    for start in range(0, config.num_distractor_channels, 3):
        stop = min(start + 3, config.num_distractor_channels)
        units.append(first_distractor + np.arange(start, stop))
    return units


def apply_flaws(
    config: SyntheticKitchenConfig, sensor: np.ndarray, time_ms: np.ndarray, run_index: int
) -> None:
    """NaN gaps (whole sensor units, 0.3-3 s) and possibly one dead (all-NaN) channel, in place."""
    rng = rng_for(config.seed, FLAWS, run_index)
    minutes = (time_ms[-1] - time_ms[0]) / 60000.0
    for columns in _sensor_units(config):
        for _ in range(rng.poisson(config.nan_gap_rate * minutes)):
            start = rng.uniform(time_ms[0], time_ms[-1])
            rows = gesture_rows(time_ms, start, start + rng.uniform(0.3, 3.0) * 1000.0)
            sensor[rows, columns[0] : columns[-1] + 1] = np.nan
    if rng.random() < config.dead_channel_prob:
        sensor[:, rng.integers(sensor.shape[1])] = np.nan
