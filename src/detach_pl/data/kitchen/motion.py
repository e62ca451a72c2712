"""How objects move: the shared minimum-jerk travel, the burst waveform and the places' open state."""

from __future__ import annotations

import math

import numpy as np

from detach_pl.data.kitchen.layout import CLASS_IS_OPEN, CLASS_PLACE, CLOSE_MOTION, NUM_PLACES, OPEN_MOTION


def minimum_jerk(m: np.ndarray) -> np.ndarray:
    """Minimum-jerk position profile 10m^3 - 15m^4 + 6m^5 of m clipped to [0, 1] (0 -> 1)."""
    m = np.clip(m, 0.0, 1.0)
    return m**3 * (10.0 - 15.0 * m + 6.0 * m**2)


def motion_progress(u: np.ndarray, is_open: bool) -> np.ndarray:
    """How far the object has travelled (0 -> 1) at normalised gesture time u."""
    start, end = OPEN_MOTION if is_open else CLOSE_MOTION
    return minimum_jerk((u - start) / (end - start))


def burst_waveform(u: np.ndarray, is_open: bool) -> np.ndarray:
    """Acceleration (in units of the sensor's gain) at normalised gesture time u in [0, 1).

    The same function for every place (P2): open = unlatch click, then the minimum-jerk
    acceleration 60m - 180m^2 + 120m^3 of a pull (scaled to peak 1); close = a faster, stronger push
    the other way ending in a slam that rings down. Zero outside [0, 1).
    """
    u = np.asarray(u, dtype=np.float64)
    start, end = OPEN_MOTION if is_open else CLOSE_MOTION
    m = (u - start) / (end - start)
    in_motion = (m >= 0.0) & (m <= 1.0)
    pull = np.where(in_motion, 60.0 * m - 180.0 * m**2 + 120.0 * m**3, 0.0) / (10.0 / math.sqrt(3.0))
    if is_open:
        after = np.maximum(u - start, 0.0)
        ring = 0.5 * np.exp(-after / 0.06) * np.sin(2 * math.pi * after / 0.16) * (u >= start)
        wave = pull + ring
    else:
        after = np.maximum(u - end, 0.0)
        taper = np.clip((1.0 - u) / 0.1, 0.0, 1.0)
        ring = 1.2 * np.exp(-after / 0.08) * np.sin(2 * math.pi * after / 0.16) * (u >= end) * taper
        wave = -1.2 * pull + ring
    return np.where((u >= 0.0) & (u < 1.0), wave, 0.0)


def openness(times_ms: np.ndarray, events: list[tuple[int, float, float]]) -> np.ndarray:
    """(T, K) opening state of every place at the given times; it persists between gestures."""
    state = np.zeros((len(times_ms), NUM_PLACES))
    for class_id, start, end in sorted(events, key=lambda event: event[1]):
        after = times_ms >= start
        progress = motion_progress((times_ms[after] - start) / (end - start), CLASS_IS_OPEN[class_id])
        state[after, CLASS_PLACE[class_id]] = progress if CLASS_IS_OPEN[class_id] else 1.0 - progress
    return state
