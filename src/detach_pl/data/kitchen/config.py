"""The difficulty knobs of the synthetic kitchen, checked on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from detach_pl.data.kitchen.layout import (
    CLOSE_S,
    DISTRACTOR_STAND_S,
    FIRST_IDLE_S,
    IDLE_S,
    OPEN_S,
    OTHER_GESTURES,
    PAUSE_S,
    WAIT_S,
    WALK_S,
)
from detach_pl.settings import SettingRule, check_settings


@dataclass
class SyntheticKitchenConfig:
    """Difficulty knobs of the synthetic kitchen (plain fields so jsonargparse can set them).

    Attributes:
        num_runs: Number of recorded runs.
        runs_per_subject: Consecutive runs that share a subject (speed, brightness, noise, clothes).
        run_seconds: Duration of each run in seconds.
        sensor_rate_hz: Ambient sensor sampling rate (30 Hz gives clock steps of 33/34 ms).
        fps: Camera frame rate.
        image_size: Side of the square frames in pixels.
        episodes_per_run: Open/close episodes per run; ``None`` fills ``run_seconds``.
        sensor_noise: Accelerometer noise standard deviation in g (bursts peak near 1 g).
        num_distractor_channels: Extra noisy channels with random bursts, after the 37 ambient ones.
        distractor_burst_rate_hz: Rate of random bursts on LAZYCHAIR and on each distractor unit.
        change_subtlety: How faint a place's open/closed change is, in [0, 1): the patch moves
            ``1 - change_subtlety`` of the way from its closed colour to its open colour.
        place_size: Side of a place's patch as a fraction of the frame side (small: P1).
        person_size: Height of the person blob as a fraction of the frame side.
        flicker: Amplitude of the multiplicative lighting flicker.
        frame_noise: Standard deviation of the per-pixel noise (intensities in [0, 1]).
        nan_gap_rate: NaN gaps per sensor unit per minute (a unit: a reed switch or a 3-axis sensor).
        dead_channel_prob: Probability that a run has one all-NaN channel.
        speed_jitter: Run speed factors are drawn from [1 - speed_jitter, 1 + speed_jitter].
        timing_jitter_ms: Standard deviation of the sample clock jitter in ms.
        distractor_walk_prob: Probability that an idle gap holds a walk that touches nothing.
        leave_open_prob: Probability that the person leaves an object open, goes away and returns.
        gesture_spread: Per-instance gesture duration factor drawn from [1 - spread, 1 + spread].
        gesture_scale: Factor on the base gesture durations (1.5 s open, 1.2 s close): with 2-s
            windows, longer and more varied gestures leave many windows holding part of one.
        crosstalk: Fraction of a gesture's acceleration that reaches the accelerometers of the
            other fixtures of its cabinet (the three drawers share one body).
        mounting_jitter: How far, per run, each ambient accelerometer's mounting (its gravity
            reading and the direction of its response) turns away from the world's, in [0, 1]
            (1: a new random orientation every run, as when sensors are re-attached).
        other_gesture_prob: Probability that an idle gap holds one of the release's other gestures
            (toggle switch, clean table, drink from cup) at its place, labelled null.
        seed: Seed of the world (room, sensors) and of every run.
    """

    num_runs: int = 6
    runs_per_subject: int = 1
    run_seconds: float = 180.0
    sensor_rate_hz: float = 30.0
    fps: float = 10.0
    image_size: int = 32
    episodes_per_run: int | None = None
    sensor_noise: float = 0.05
    num_distractor_channels: int = 4
    distractor_burst_rate_hz: float = 0.03
    change_subtlety: float = 0.7
    place_size: float = 0.125
    person_size: float = 0.4
    flicker: float = 0.1
    frame_noise: float = 0.02
    nan_gap_rate: float = 0.1
    dead_channel_prob: float = 0.25
    speed_jitter: float = 0.2
    timing_jitter_ms: float = 0.5
    distractor_walk_prob: float = 0.3
    leave_open_prob: float = 0.2
    gesture_spread: float = 0.15
    gesture_scale: float = 1.0
    crosstalk: float = 0.0
    mounting_jitter: float = 0.0
    other_gesture_prob: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        """Reject settings outside their meaningful ranges, each named as a config spells it.

        Raises:
            ValueError: Naming every bad field (``data.init_args.world.<field>=<value> must be …``).
        """
        rules = [
            _integer("num_runs", self.num_runs, 1),
            _integer("runs_per_subject", self.runs_per_subject, 1),
            _integer("image_size", self.image_size, 16, 512),
            _integer("num_distractor_channels", self.num_distractor_channels, 0, 1000),
            _integer("seed", self.seed, 0),
            _number("sensor_rate_hz", self.sensor_rate_hz, 1.0, 1000.0),
            _number("fps", self.fps, 0.5, 120.0),
            _number("sensor_noise", self.sensor_noise, 0.0, 10.0),
            _number("distractor_burst_rate_hz", self.distractor_burst_rate_hz, 0.0, 1.0),
            _number("change_subtlety", self.change_subtlety, 0.0, 1.0, high_inclusive=False),
            _number("place_size", self.place_size, 0.05, 0.2),
            _number("person_size", self.person_size, 0.05, 1.0),
            _number("flicker", self.flicker, 0.0, 1.0, high_inclusive=False),
            _number("frame_noise", self.frame_noise, 0.0, 1.0),
            _number("nan_gap_rate", self.nan_gap_rate, 0.0, 60.0),
            _number("dead_channel_prob", self.dead_channel_prob, 0.0, 1.0),
            _number("speed_jitter", self.speed_jitter, 0.0, 0.5),
            _number("distractor_walk_prob", self.distractor_walk_prob, 0.0, 1.0),
            _number("leave_open_prob", self.leave_open_prob, 0.0, 1.0),
            _number("gesture_spread", self.gesture_spread, 0.0, 0.9),
            _number("gesture_scale", self.gesture_scale, 0.3, 3.0),
            _number("crosstalk", self.crosstalk, 0.0, 1.0),
            _number("mounting_jitter", self.mounting_jitter, 0.0, 1.0),
            _number("other_gesture_prob", self.other_gesture_prob, 0.0, 1.0),
        ]
        if self.episodes_per_run is not None:
            rules.append(_integer("episodes_per_run", self.episodes_per_run, 1))
        check_settings(rules, section=SECTION)
        # Bounds that follow from the fields checked above.
        shortest = longest_episode_s(self) + FIRST_IDLE_S[1] + 1.0
        name, value, ok, _ = _number("run_seconds", self.run_seconds, shortest, 1e6)
        check_settings(
            [
                _number("timing_jitter_ms", self.timing_jitter_ms, 0.0, 125.0 / self.sensor_rate_hz),
                (name, value, ok, f"a number in [{shortest:.1f}, 1e6]: a run holds at least its longest episode"),
            ],
            section=SECTION,
        )


#: Where a config sets the kitchen's fields (the synthetic DataModules' `world`).
SECTION = "data.init_args.world"


def _integer(name: str, value: Any, low: int, high: int | None = None) -> SettingRule:
    """The rule "an int in [low, high]" (no upper bound without `high`)."""
    integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    in_range = integer and value >= low and (high is None or value <= high)
    return name, value, in_range, f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"


def _number(name: str, value: Any, low: float, high: float, high_inclusive: bool = True) -> SettingRule:
    """The rule "a finite number in [low, high]" (or [low, high))."""
    number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
    in_range = number and low <= value and (value <= high if high_inclusive else value < high)
    return name, value, in_range, f"a number in [{low:g}, {high:g}{']' if high_inclusive else ')'}"


def longest_episode_s(config: SyntheticKitchenConfig) -> float:
    """Upper bound on one episode's duration (its idle part, distractor walk and other gesture included)."""
    stretch = config.gesture_scale * (1 + config.gesture_spread)
    scaled = (
        4 * WALK_S + 4 * PAUSE_S[1] + (OPEN_S + CLOSE_S) * stretch + WAIT_S[1]
        + 2 * WALK_S + DISTRACTOR_STAND_S[1]
    )
    if config.other_gesture_prob > 0:
        scaled += 2 * WALK_S + 2 * PAUSE_S[1] + max(seconds for _, _, _, seconds in OTHER_GESTURES) * stretch
    return scaled / (1.0 - config.speed_jitter) + 2 * IDLE_S[1]
