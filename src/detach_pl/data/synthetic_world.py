"""A synthetic, Opportunity++-like kitchen: the built-in default dataset when no real data is at hand.

One call of :func:`generate_run` gives one raw recording, shaped like a run of the real release:
a ~30 Hz ambient-sensor matrix with a jittery millisecond clock (``MILLISEC``), per-row gesture
labels, the gesture events, and the frames of a fixed side camera. Everything is pure numpy and
deterministic from ``(config.seed, run_index)``.

The world is built to exhibit the two problems DETACH addresses (``design/method.md``):

- **P1, local detail.** The seven places (door 1, door 2, fridge, dishwasher, drawers 1-3) each
  occupy a small patch of a static textured room. Opening slides a bar of "open" colour across the
  patch, closing slides it back; the state persists in between. A large person-like blob walks to
  the place and back with the same motion envelope whatever the place or action, and lighting
  flicker and pixel noise act on the whole frame, so global pooling is dominated by distractors.
- **P2, shared temporal patterns.** Every ambient accelerometer bursts with the same temporal
  envelope for the same motion (one for open, another for close) at every place; the place is only
  in *which* channels fire (and which reed switches flip).

Channels follow the Opportunity columns 195-231 (13 reed switches, then 8 ambient 3-axis
accelerometers, values in milli g rounded to integers) plus ``num_distractor_channels`` extra noisy
channels with random bursts. Realistic flaws: NaN gaps, an all-NaN (dead) channel in some runs and
clock jitter. Run-level traits ("subjects"): speed factor, brightness offset, noise level, clothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "Open Door 1",
    "Open Door 2",
    "Close Door 1",
    "Close Door 2",
    "Open Fridge",
    "Close Fridge",
    "Open Dishwasher",
    "Close Dishwasher",
    "Open Drawer 1",
    "Close Drawer 1",
    "Open Drawer 2",
    "Close Drawer 2",
    "Open Drawer 3",
    "Close Drawer 3",
)
PLACE_NAMES: tuple[str, ...] = ("door1", "door2", "fridge", "dishwasher", "drawer1", "drawer2", "drawer3")
CLASS_PLACE: tuple[int, ...] = (0, 1, 0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6)
CLASS_IS_OPEN: tuple[bool, ...] = tuple(name.startswith("Open") for name in CLASS_NAMES)
NUM_CLASSES = len(CLASS_NAMES)
NUM_PLACES = len(PLACE_NAMES)
NUM_AMBIENT_CHANNELS = 37

# Reed switches in Opportunity column order (195-207): name, place, flip threshold on the opening
# progress (S1/S2/S3 sit at different points along the travel, so they flip at different moments).
_REED_SWITCHES: tuple[tuple[str, int, float], ...] = (
    ("REED SWITCH DISHWASHER S1", 3, 0.2),
    ("REED SWITCH FRIDGE S3", 2, 0.8),
    ("REED SWITCH FRIDGE S2", 2, 0.5),
    ("REED SWITCH FRIDGE S1", 2, 0.2),
    ("REED SWITCH MIDDLEDRAWER S1", 5, 0.2),
    ("REED SWITCH MIDDLEDRAWER S2", 5, 0.5),
    ("REED SWITCH MIDDLEDRAWER S3", 5, 0.8),
    ("REED SWITCH LOWERDRAWER S3", 6, 0.8),
    ("REED SWITCH LOWERDRAWER S2", 6, 0.5),
    ("REED SWITCH UPPERDRAWER", 4, 0.5),
    ("REED SWITCH DISHWASHER S3", 3, 0.8),
    ("REED SWITCH LOWERDRAWER S1", 6, 0.2),
    ("REED SWITCH DISHWASHER S2", 3, 0.5),
)
# Ambient accelerometers in Opportunity column order (208-231): name, place (-1: no place).
_AMBIENT_ACCELEROMETERS: tuple[tuple[str, int], ...] = (
    ("DOOR1", 0),
    ("LAZYCHAIR", -1),
    ("DOOR2", 1),
    ("DISHWASHER", 3),
    ("UPPERDRAWER", 4),
    ("LOWERDRAWER", 6),
    ("MIDDLEDRAWER", 5),
    ("FRIDGE", 2),
)
_AXES = ("X", "Y", "Z")

# Room layout in normalised (y, x) image coordinates: place centre, side the person stands on
# (+1 right, -1 left), axis the "open" bar slides along (0: y, 1: x) and whether it slides backwards.
_PLACE_CENTRES = np.array(
    [[0.30, 0.07], [0.30, 0.93], [0.22, 0.36], [0.75, 0.30], [0.42, 0.62], [0.56, 0.62], [0.70, 0.62]]
)
_STAND_SIDE = np.array([1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0])
_SLIDE_AXIS = (1, 1, 1, 0, 1, 1, 1)
_SLIDE_REVERSED = (False, True, True, False, True, True, True)
_FIXTURE_RGB = np.array(
    [[0.55, 0.40, 0.26], [0.55, 0.40, 0.26], [0.55, 0.58, 0.60], [0.62, 0.64, 0.66],
     [0.60, 0.46, 0.30], [0.60, 0.46, 0.30], [0.60, 0.46, 0.30]]
)
_OPEN_RGB = np.array(
    [[0.08, 0.08, 0.10], [0.08, 0.08, 0.10], [1.00, 1.00, 0.92], [0.15, 0.16, 0.18],
     [0.18, 0.12, 0.08], [0.18, 0.12, 0.08], [0.18, 0.12, 0.08]]
)
_HOME_POSITION = np.array([0.80, 0.85])
_STAND_DROP = 0.12  # the person's body centre is this far below the place centre
_STAND_MARGIN = 0.03

# Base durations in seconds at speed factor 1 (divided by the run's speed factor).
_WALK_S = 2.0
_OPEN_S = 1.5
_CLOSE_S = 1.2
_GESTURE_SPREAD = 0.15  # per-instance duration factor in [1 - spread, 1 + spread]
_PAUSE_S = (0.3, 0.8)  # standing still before a gesture and after it
_WAIT_S = (0.8, 3.5)  # optional longer wait between open and close
_IDLE_S = (2.0, 6.0)  # null time at home between episodes (not speed-scaled)
_DISTRACTOR_STAND_S = (0.5, 2.0)
_FIRST_IDLE_S = (1.0, 3.0)
# Motion phase (normalised gesture time) during which the object actually moves.
_OPEN_MOTION = (0.2, 0.8)
_CLOSE_MOTION = (0.15, 0.65)
_LEAN = 0.03  # how far the person leans (pull away on open, push towards on close)
_FRAME_CHUNK_PIXELS = 1 << 21  # frames are rendered in chunks of about this many pixels

# Random-stream tags for np.random.SeedSequence([seed, tag, index]).
_WORLD, _SUBJECT, _SCHEDULE, _CLOCK, _SENSOR, _FLAWS, _VIDEO = range(7)


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
    seed: int = 0

    def __post_init__(self) -> None:
        """Reject settings outside their meaningful ranges, naming the setting."""
        _check_int("num_runs", self.num_runs, 1)
        _check_int("runs_per_subject", self.runs_per_subject, 1)
        _check_int("image_size", self.image_size, 16, 512)
        _check_int("num_distractor_channels", self.num_distractor_channels, 0, 1000)
        _check_int("seed", self.seed, 0)
        if self.episodes_per_run is not None:
            _check_int("episodes_per_run", self.episodes_per_run, 1)
        _check_float("sensor_rate_hz", self.sensor_rate_hz, 1.0, 1000.0)
        _check_float("fps", self.fps, 0.5, 120.0)
        _check_float("sensor_noise", self.sensor_noise, 0.0, 10.0)
        _check_float("distractor_burst_rate_hz", self.distractor_burst_rate_hz, 0.0, 1.0)
        _check_float("change_subtlety", self.change_subtlety, 0.0, 1.0, high_inclusive=False)
        _check_float("place_size", self.place_size, 0.05, 0.2)
        _check_float("person_size", self.person_size, 0.05, 1.0)
        _check_float("flicker", self.flicker, 0.0, 1.0, high_inclusive=False)
        _check_float("frame_noise", self.frame_noise, 0.0, 1.0)
        _check_float("nan_gap_rate", self.nan_gap_rate, 0.0, 60.0)
        _check_float("dead_channel_prob", self.dead_channel_prob, 0.0, 1.0)
        _check_float("speed_jitter", self.speed_jitter, 0.0, 0.5)
        _check_float("timing_jitter_ms", self.timing_jitter_ms, 0.0, 125.0 / self.sensor_rate_hz)
        _check_float("distractor_walk_prob", self.distractor_walk_prob, 0.0, 1.0)
        _check_float("leave_open_prob", self.leave_open_prob, 0.0, 1.0)
        shortest = _longest_episode_s(self.speed_jitter) + _FIRST_IDLE_S[1] + 1.0
        _check_float("run_seconds", self.run_seconds, shortest, 1e6)


@dataclass
class SyntheticRun:
    """One raw recording, as a real release gives it.

    Attributes:
        name: Run name, ``run<NN>``.
        subject: Subject id (0-based), shared by ``runs_per_subject`` consecutive runs.
        time_ms: (rows,) float64 sample clock in ms since the run start (integer values).
        sensor: (rows, C) float32 ambient channels (see :func:`channel_names`), NaN where missing.
        row_label: (rows,) int64 class id of the gesture covering the row, -1 for null.
        row_place: (rows,) int64 place id of that gesture, -1 for null.
        frames: (F, H, W, 3) uint8 camera frames; frame k is at k * 1000 / fps ms.
        fps: Camera frame rate.
        events: Gestures as (class_id, start_ms, end_ms), sorted by time; rows with
            start_ms <= time_ms < end_ms carry the label.
    """

    name: str
    subject: int
    time_ms: np.ndarray
    sensor: np.ndarray
    row_label: np.ndarray
    row_place: np.ndarray
    frames: np.ndarray
    fps: float
    events: list[tuple[int, float, float]]


@dataclass
class _World:
    """The fixed room and sensor hardware, identical for every run of one seed."""

    background: np.ndarray  # (H, W, 3) float32 in [0, 1], closed fixtures drawn in
    boxes: np.ndarray  # (K, 4) int pixel boxes y0, y1, x0, x1
    ramps: list[np.ndarray]  # per place (h, w) position of each patch pixel along the slide axis
    accel_gravity: np.ndarray  # (8, 3) static reading of each ambient accelerometer in g
    accel_gains: np.ndarray  # (8, 3) direction x strength of each accelerometer's response
    distractor_gravity: np.ndarray  # (units, 3)
    distractor_gains: np.ndarray  # (units, 3)


@dataclass
class _Subject:
    """Traits of one subject: how fast, how bright the room is lit, how noisy, what they wear."""

    speed: float
    brightness: float
    noise_factor: float
    clothes_rgb: np.ndarray


@dataclass
class _Schedule:
    """What the person does: piecewise motion segments and the labelled gestures."""

    start_ms: np.ndarray  # (S,) segment start times, sorted, first = 0
    end_ms: np.ndarray  # (S,)
    kind: np.ndarray  # (S,) int: _SEG_STAY, _SEG_HOME, _SEG_WALK or _SEG_GESTURE
    origin: np.ndarray  # (S, 2) position at the segment start
    target: np.ndarray  # (S, 2) position at the segment end
    lean: np.ndarray  # (S, 2) lean direction x amplitude during a gesture (0 otherwise)
    events: list[tuple[int, float, float]]


_SEG_STAY, _SEG_HOME, _SEG_WALK, _SEG_GESTURE = range(4)


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    """Raise ValueError unless ``value`` is an int in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"SyntheticKitchenConfig.{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"SyntheticKitchenConfig.{name} must be {bound}, got {value}")


def _check_float(name: str, value: Any, low: float, high: float, high_inclusive: bool = True) -> None:
    """Raise ValueError unless ``value`` is a finite number in [low, high] (or [low, high))."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise ValueError(f"SyntheticKitchenConfig.{name} must be a finite number, got {value!r}")
    too_high = value > high if high_inclusive else value >= high
    if value < low or too_high:
        bracket = "]" if high_inclusive else ")"
        raise ValueError(f"SyntheticKitchenConfig.{name} must be in [{low:g}, {high:g}{bracket}, got {value}")


def _longest_episode_s(speed_jitter: float) -> float:
    """Upper bound on one episode's duration (idle gap and distractor walk included)."""
    scaled = (
        4 * _WALK_S + 4 * _PAUSE_S[1] + (_OPEN_S + _CLOSE_S) * (1 + _GESTURE_SPREAD) + _WAIT_S[1]
        + 2 * _WALK_S + _DISTRACTOR_STAND_S[1]
    )
    return scaled / (1.0 - speed_jitter) + 2 * _IDLE_S[1]


def _rng(seed: int, tag: int, index: int = 0) -> np.random.Generator:
    """Independent random stream for (seed, purpose, index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, tag, index]))


def channel_names(config: SyntheticKitchenConfig) -> list[str]:
    """Names of the sensor columns, in Opportunity style (columns 195-231, then distractors)."""
    names = [name for name, _, _ in _REED_SWITCHES]
    names += [f"Accelerometer {unit} acc{axis}" for unit, _ in _AMBIENT_ACCELEROMETERS for axis in _AXES]
    names += [
        f"Accelerometer DISTRACTOR{i // 3 + 1} acc{_AXES[i % 3]}" for i in range(config.num_distractor_channels)
    ]
    return names


def channel_places(config: SyntheticKitchenConfig) -> np.ndarray:
    """(C,) int64 place id each sensor column belongs to, -1 for LAZYCHAIR and distractors."""
    places = [place for _, place, _ in _REED_SWITCHES]
    places += [place for _, place in _AMBIENT_ACCELEROMETERS for _ in _AXES]
    places += [-1] * config.num_distractor_channels
    return np.asarray(places, dtype=np.int64)


def reed_switch_columns() -> np.ndarray:
    """(13,) column indices of the reed switches (0/1 channels)."""
    return np.arange(len(_REED_SWITCHES))


def accelerometer_columns(place: int) -> np.ndarray:
    """(3,) column indices of the ambient accelerometer mounted at ``place``."""
    unit = [p for _, p in _AMBIENT_ACCELEROMETERS].index(place)
    return len(_REED_SWITCHES) + 3 * unit + np.arange(3)


def place_boxes(config: SyntheticKitchenConfig) -> np.ndarray:
    """(K, 4) int64 pixel boxes (y0, y1, x0, x1), end-exclusive, of the places' patches."""
    size = config.image_size
    side = max(2, int(round(config.place_size * size)))
    corner = np.round(_PLACE_CENTRES * size - side / 2).astype(np.int64)
    corner = np.clip(corner, 0, size - side)
    return np.stack([corner[:, 0], corner[:, 0] + side, corner[:, 1], corner[:, 1] + side], axis=1)


def _stand_points(config: SyntheticKitchenConfig) -> np.ndarray:
    """(K, 2) where the person's body centre stands to operate each place, beside its patch."""
    offset = config.place_size / 2 + 0.16 * config.person_size + _STAND_MARGIN
    points = _PLACE_CENTRES + np.stack([np.full(NUM_PLACES, _STAND_DROP), _STAND_SIDE * offset], axis=1)
    return np.clip(points, 0.0, 1.0)


def _build_world(config: SyntheticKitchenConfig) -> _World:
    """Room texture, closed fixtures and sensor hardware, from the seed alone.

    The room and the hardware use separate streams, so changing the image size keeps the sensors.
    """
    rng = _rng(config.seed, _WORLD, 0)
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
        patch = _FIXTURE_RGB[place] + rng.normal(0.0, 0.03, (y1 - y0, x1 - x0, 3))
        background[y0:y1, x0:x1] = patch
        length = (y1 - y0) if _SLIDE_AXIS[place] == 0 else (x1 - x0)
        ramp = (np.arange(length) + 0.5) / length
        if _SLIDE_REVERSED[place]:
            ramp = ramp[::-1]
        ramps.append(ramp[:, None] if _SLIDE_AXIS[place] == 0 else ramp[None, :])
    hardware = _rng(config.seed, _WORLD, 1)
    num_accelerometers = len(_AMBIENT_ACCELEROMETERS)
    accel_gravity = _random_orientations(hardware, num_accelerometers)
    accel_gains = _random_orientations(hardware, num_accelerometers) * hardware.uniform(0.6, 1.0, (num_accelerometers, 1))
    num_units = math.ceil(config.num_distractor_channels / 3)
    distractor_gravity = _random_orientations(hardware, num_units)
    distractor_gains = _random_orientations(hardware, num_units) * hardware.uniform(0.4, 1.0, (num_units, 1))
    return _World(
        background=np.clip(background, 0.0, 1.0).astype(np.float32),
        boxes=boxes,
        ramps=ramps,
        accel_gravity=accel_gravity,
        accel_gains=accel_gains,
        distractor_gravity=distractor_gravity,
        distractor_gains=distractor_gains,
    )


def _random_orientations(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3) random unit vectors (sensor mounting orientations)."""
    vectors = rng.normal(size=(count, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _subject_traits(config: SyntheticKitchenConfig, subject: int) -> _Subject:
    """Speed, lighting, noise level and clothing of one subject."""
    rng = _rng(config.seed, _SUBJECT, subject)
    return _Subject(
        speed=float(rng.uniform(1.0 - config.speed_jitter, 1.0 + config.speed_jitter)),
        brightness=float(rng.uniform(-0.06, 0.06)),
        noise_factor=float(rng.uniform(0.7, 1.3)),
        clothes_rgb=rng.uniform(0.05, 0.55, 3),
    )


def _subject_of(config: SyntheticKitchenConfig, run_index: int) -> int:
    """Subject id of a run, after checking the run index."""
    if isinstance(run_index, bool) or not isinstance(run_index, (int, np.integer)):
        raise ValueError(f"run_index must be an integer, got {run_index!r}")
    if not 0 <= run_index < config.num_runs:
        raise ValueError(f"run_index must be in [0, {config.num_runs}) (config.num_runs), got {run_index}")
    return int(run_index) // config.runs_per_subject


class _ScheduleBuilder:
    """Appends motion segments and gestures one after the other on a millisecond cursor."""

    def __init__(self) -> None:
        self.now_ms = 0.0
        self.rows: list[tuple[float, float, int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.events: list[tuple[int, float, float]] = []
        self.position = _HOME_POSITION.copy()

    def _append(self, seconds: float, kind: int, target: np.ndarray, lean: np.ndarray) -> tuple[float, float]:
        start = self.now_ms
        end = start + float(round(seconds * 1000.0))
        self.rows.append((start, end, kind, self.position.copy(), target.copy(), lean))
        self.now_ms, self.position = end, target.copy()
        return start, end

    def stay(self, seconds: float) -> None:
        """Stand still (fidgeting when at home)."""
        kind = _SEG_HOME if np.array_equal(self.position, _HOME_POSITION) else _SEG_STAY
        self._append(seconds, kind, self.position, np.zeros(2))

    def walk(self, seconds: float, target: np.ndarray) -> None:
        """Walk to ``target`` with the shared walking envelope (duration independent of distance)."""
        self._append(seconds, _SEG_WALK, target, np.zeros(2))

    def gesture(self, seconds: float, class_id: int) -> None:
        """Operate a place: lean away (open, pulling) or towards it (close, pushing); label it."""
        towards = _PLACE_CENTRES[CLASS_PLACE[class_id]] - self.position
        towards = towards / max(float(np.linalg.norm(towards)), 1e-9)
        lean = (-_LEAN if CLASS_IS_OPEN[class_id] else _LEAN) * towards
        start, end = self._append(seconds, _SEG_GESTURE, self.position, lean)
        self.events.append((class_id, start, end))

    def build(self, total_ms: float) -> _Schedule:
        """Fill up to ``total_ms`` (plus a margin) with idling at home and freeze the arrays."""
        self.stay(max(total_ms - self.now_ms, 0.0) / 1000.0 + 1.0)
        start, end, kind, origin, target, lean = zip(*self.rows)
        return _Schedule(
            start_ms=np.asarray(start),
            end_ms=np.asarray(end),
            kind=np.asarray(kind),
            origin=np.stack(origin),
            target=np.stack(target),
            lean=np.stack(lean),
            events=list(self.events),
        )


def _class_of(place: int, is_open: bool) -> int:
    """Class id of (place, open/close)."""
    return next(c for c in range(NUM_CLASSES) if CLASS_PLACE[c] == place and CLASS_IS_OPEN[c] == is_open)


def _build_schedule(config: SyntheticKitchenConfig, run_index: int) -> _Schedule:
    """Plan the run: idle gaps (sometimes with a distractor walk) and open ... close episodes.

    Places are drawn as shuffled rounds of all seven, so every place recurs in every long run.
    """
    subject = _subject_traits(config, _subject_of(config, run_index))
    rng = _rng(config.seed, _SCHEDULE, run_index)
    stands = _stand_points(config)
    total_s = config.run_seconds
    builder = _ScheduleBuilder()
    builder.stay(rng.uniform(*_FIRST_IDLE_S))
    place_queue: list[int] = []
    episodes = 0
    while config.episodes_per_run is None or episodes < config.episodes_per_run:
        if not place_queue:
            place_queue = list(rng.permutation(NUM_PLACES))
        place = int(place_queue.pop(0))
        plan = _plan_episode(rng, subject.speed, config.leave_open_prob)
        idle = _plan_idle(rng, subject.speed, config.distractor_walk_prob)
        needed = sum(seconds for _, seconds in plan) + idle.total_seconds
        if config.episodes_per_run is None and builder.now_ms / 1000.0 + needed + 1.0 > total_s:
            break
        for step, seconds in plan:
            if step == "walk_to":
                builder.walk(seconds, stands[place])
            elif step == "walk_home":
                builder.walk(seconds, _HOME_POSITION)
            elif step == "open":
                builder.gesture(seconds, _class_of(place, True))
            elif step == "close":
                builder.gesture(seconds, _class_of(place, False))
            else:
                builder.stay(seconds)
        _append_idle(builder, rng, idle, stands[idle.target])
        episodes += 1
    if builder.now_ms > total_s * 1000.0:
        raise ValueError(
            f"SyntheticKitchenConfig.episodes_per_run={config.episodes_per_run} does not fit in "
            f"run_seconds={total_s} for run {run_index} ({builder.now_ms / 1000.0:.1f} s needed)"
        )
    return builder.build(total_s * 1000.0)


def _plan_episode(rng: np.random.Generator, speed: float, leave_open_prob: float) -> list[tuple[str, float]]:
    """Steps of one episode with their durations in seconds (already divided by the speed)."""

    def pause() -> float:
        return rng.uniform(*_PAUSE_S) / speed

    def gesture(base: float) -> float:
        return base * rng.uniform(1 - _GESTURE_SPREAD, 1 + _GESTURE_SPREAD) / speed

    walk = _WALK_S / speed
    plan = [("walk_to", walk), ("stay", pause()), ("open", gesture(_OPEN_S))]
    if rng.random() < leave_open_prob:
        plan += [("stay", pause()), ("walk_home", walk), ("stay", rng.uniform(*_IDLE_S)), ("walk_to", walk)]
    elif rng.random() < 0.5:
        plan += [("stay", rng.uniform(*_WAIT_S) / speed)]
    plan += [("stay", pause()), ("close", gesture(_CLOSE_S)), ("stay", pause()), ("walk_home", walk)]
    return plan


@dataclass
class _Idle:
    """Null time after an episode, optionally with a walk to a place that touches nothing."""

    gap_seconds: float  # time spent idling at home
    walk_seconds: float  # duration of each leg of the distractor walk (0: no walk)
    stand_seconds: float  # time standing at the place without touching it
    target: int  # place the distractor walk goes to

    @property
    def total_seconds(self) -> float:
        """Whole duration of the idle part."""
        return self.gap_seconds + 2 * self.walk_seconds + self.stand_seconds


def _plan_idle(rng: np.random.Generator, speed: float, walk_prob: float) -> _Idle:
    """Draw the idle part that follows an episode."""
    gap = rng.uniform(*_IDLE_S)
    target = int(rng.integers(NUM_PLACES))
    if rng.random() >= walk_prob:
        return _Idle(gap, 0.0, 0.0, target)
    return _Idle(gap, _WALK_S / speed, rng.uniform(*_DISTRACTOR_STAND_S) / speed, target)


def _append_idle(
    builder: _ScheduleBuilder, rng: np.random.Generator, idle: _Idle, stand_point: np.ndarray
) -> None:
    """Idle at home; with a distractor walk, go to the place, stand without touching, come back."""
    if idle.walk_seconds == 0.0:
        builder.stay(idle.gap_seconds)
        return
    before = rng.uniform(0.0, idle.gap_seconds)
    builder.stay(before)
    builder.walk(idle.walk_seconds, stand_point)
    builder.stay(idle.stand_seconds)
    builder.walk(idle.walk_seconds, _HOME_POSITION)
    builder.stay(idle.gap_seconds - before)


def _minimum_jerk(m: np.ndarray) -> np.ndarray:
    """Minimum-jerk position profile 10m^3 - 15m^4 + 6m^5 of m clipped to [0, 1] (0 -> 1)."""
    m = np.clip(m, 0.0, 1.0)
    return m**3 * (10.0 - 15.0 * m + 6.0 * m**2)


def _motion_progress(u: np.ndarray, is_open: bool) -> np.ndarray:
    """How far the object has travelled (0 -> 1) at normalised gesture time u."""
    start, end = _OPEN_MOTION if is_open else _CLOSE_MOTION
    return _minimum_jerk((u - start) / (end - start))


def burst_waveform(u: np.ndarray, is_open: bool) -> np.ndarray:
    """Acceleration (in units of the sensor's gain) at normalised gesture time u in [0, 1).

    The same function for every place (P2): open = unlatch click, then the minimum-jerk
    acceleration 60m - 180m^2 + 120m^3 of a pull (scaled to peak 1); close = a faster, stronger push
    the other way ending in a slam that rings down. Zero outside [0, 1).
    """
    u = np.asarray(u, dtype=np.float64)
    start, end = _OPEN_MOTION if is_open else _CLOSE_MOTION
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


def _openness(times_ms: np.ndarray, events: list[tuple[int, float, float]]) -> np.ndarray:
    """(T, K) opening state of every place at the given times; it persists between gestures."""
    state = np.zeros((len(times_ms), NUM_PLACES))
    for class_id, start, end in sorted(events, key=lambda event: event[1]):
        after = times_ms >= start
        progress = _motion_progress((times_ms[after] - start) / (end - start), CLASS_IS_OPEN[class_id])
        state[after, CLASS_PLACE[class_id]] = progress if CLASS_IS_OPEN[class_id] else 1.0 - progress
    return state


def _sensor_clock(config: SyntheticKitchenConfig, run_index: int) -> np.ndarray:
    """MILLISEC-like clock: round(k * 1000 / rate) (steps of 33/34 ms at 30 Hz) plus jitter."""
    rng = _rng(config.seed, _CLOCK, run_index)
    count = int(config.run_seconds * config.sensor_rate_hz)
    nominal = np.arange(count) * (1000.0 / config.sensor_rate_hz)
    sigma = config.timing_jitter_ms
    jitter = np.clip(rng.normal(0.0, 1.0, count), -3.0, 3.0) * sigma
    jitter[0] = 0.0
    stamped = np.round(nominal + jitter)
    strictly_increasing = np.maximum.accumulate(stamped - np.arange(count)) + np.arange(count)
    return strictly_increasing.astype(np.float64)


def _gesture_rows(time_ms: np.ndarray, start: float, end: float) -> slice:
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
        rows = _gesture_rows(time_ms, start, end)
        wave = burst_waveform((time_ms[rows] - start) / (end - start), bool(rng.random() < 0.5))
        signal[rows] += rng.uniform(0.4, 1.0) * wave[:, None] * gains


def _render_sensors(
    config: SyntheticKitchenConfig,
    world: _World,
    subject: _Subject,
    events: list[tuple[int, float, float]],
    time_ms: np.ndarray,
    run_index: int,
) -> np.ndarray:
    """(rows, C) ambient channels before flaws: reed switches (0/1) and accelerometers (milli g)."""
    rng = _rng(config.seed, _SENSOR, run_index)
    rows = len(time_ms)
    openness = _openness(time_ms, events)
    reed = np.stack([openness[:, place] >= threshold for _, place, threshold in _REED_SWITCHES], axis=1)
    accel = np.repeat(world.accel_gravity[None], rows, axis=0)
    unit_of_place = {place: unit for unit, (_, place) in enumerate(_AMBIENT_ACCELEROMETERS) if place >= 0}
    for class_id, start, end in events:
        unit = unit_of_place[CLASS_PLACE[class_id]]
        span = _gesture_rows(time_ms, start, end)
        wave = burst_waveform((time_ms[span] - start) / (end - start), CLASS_IS_OPEN[class_id])
        accel[span, unit] += rng.uniform(0.8, 1.2) * wave[:, None] * world.accel_gains[unit]
    lazy_chair = [name for name, _ in _AMBIENT_ACCELEROMETERS].index("LAZYCHAIR")
    burst_rate = config.distractor_burst_rate_hz
    _add_random_bursts(accel[:, lazy_chair], time_ms, world.accel_gains[lazy_chair], burst_rate, rng)
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
    first_accel = len(_REED_SWITCHES)
    units += [first_accel + 3 * unit + np.arange(3) for unit in range(len(_AMBIENT_ACCELEROMETERS))]
    first_distractor = NUM_AMBIENT_CHANNELS
    for start in range(0, config.num_distractor_channels, 3):
        stop = min(start + 3, config.num_distractor_channels)
        units.append(first_distractor + np.arange(start, stop))
    return units


def _apply_flaws(
    config: SyntheticKitchenConfig, sensor: np.ndarray, time_ms: np.ndarray, run_index: int
) -> None:
    """NaN gaps (whole sensor units, 0.3-3 s) and possibly one dead (all-NaN) channel, in place."""
    rng = _rng(config.seed, _FLAWS, run_index)
    minutes = (time_ms[-1] - time_ms[0]) / 60000.0
    for columns in _sensor_units(config):
        for _ in range(rng.poisson(config.nan_gap_rate * minutes)):
            start = rng.uniform(time_ms[0], time_ms[-1])
            rows = _gesture_rows(time_ms, start, start + rng.uniform(0.3, 3.0) * 1000.0)
            sensor[rows, columns[0] : columns[-1] + 1] = np.nan
    if rng.random() < config.dead_channel_prob:
        sensor[:, rng.integers(sensor.shape[1])] = np.nan


def _person_centres(schedule: _Schedule, times_ms: np.ndarray) -> np.ndarray:
    """(T, 2) body centre of the person: walks (minimum-jerk path with a gait bob), leans, fidgets."""
    last = len(schedule.start_ms) - 1
    segment = np.clip(np.searchsorted(schedule.start_ms, times_ms, "right") - 1, 0, last)
    start, end, kind = schedule.start_ms[segment], schedule.end_ms[segment], schedule.kind[segment]
    u = np.clip((times_ms - start) / np.maximum(end - start, 1.0), 0.0, 1.0)
    origin, target = schedule.origin[segment], schedule.target[segment]
    centre = origin + (target - origin) * _minimum_jerk(u)[:, None]
    centre[:, 0] -= np.where(kind == _SEG_WALK, 0.015 * np.abs(np.sin(4 * math.pi * u)), 0.0)
    centre += schedule.lean[segment] * (np.sin(math.pi * u) ** 2)[:, None]
    seconds = times_ms / 1000.0
    fidget = np.stack(
        [0.005 * np.sin(2 * math.pi * 0.25 * seconds), 0.01 * np.sin(2 * math.pi * 0.15 * seconds + 1.0)], axis=1
    )
    centre += np.where((kind == _SEG_HOME)[:, None], fidget, 0.0)
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


def _render_frames(
    config: SyntheticKitchenConfig, world: _World, subject: _Subject, schedule: _Schedule, run_index: int
) -> np.ndarray:
    """(F, H, W, 3) uint8 frames: room + place states + person + flicker + brightness + noise.

    Rendered in chunks of frames so that large image sizes keep a bounded float working set.
    """
    rng = _rng(config.seed, _VIDEO, run_index)
    count = int(config.run_seconds * config.fps)
    times_ms = np.arange(count) * (1000.0 / config.fps)
    openness = _openness(times_ms, schedule.events).astype(np.float32)
    centre = _person_centres(schedule, times_ms)
    gain = (1.0 + config.flicker * _flicker_wave(times_ms, rng)).astype(np.float32)
    noise_sd = np.float32(config.frame_noise * subject.noise_factor)
    height = config.person_size
    hair_rgb = np.array([0.22, 0.16, 0.12], dtype=np.float32)
    clothes_rgb = subject.clothes_rgb.astype(np.float32)
    contrast = 1.0 - config.change_subtlety
    softness = 0.25
    chunk = max(1, _FRAME_CHUNK_PIXELS // config.image_size**2)
    output = np.empty((count, config.image_size, config.image_size, 3), dtype=np.uint8)
    for first in range(0, count, chunk):
        part = slice(first, min(first + chunk, count))
        frames = np.repeat(world.background[None], part.stop - part.start, axis=0)
        for place, (y0, y1, x0, x1) in enumerate(world.boxes):
            reach = openness[part, place, None, None] * (1 + softness) - world.ramps[place]
            covered = np.clip(reach / softness, 0.0, 1.0)
            change = (_OPEN_RGB[place] - world.background[y0:y1, x0:x1]).astype(np.float32)
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


def ground_truth_events(config: SyntheticKitchenConfig, run_index: int) -> list[tuple[int, float, float]]:
    """Gestures (class_id, start_ms, end_ms) of a run, without rendering anything (cheap)."""
    return _build_schedule(config, run_index).events


def generate_run(config: SyntheticKitchenConfig, run_index: int) -> SyntheticRun:
    """Generate run ``run_index`` of the synthetic kitchen, deterministically from (seed, run_index).

    Raises:
        ValueError: If ``run_index`` is outside [0, num_runs) or the episodes do not fit the run.
    """
    subject_id = _subject_of(config, run_index)
    world = _build_world(config)
    subject = _subject_traits(config, subject_id)
    schedule = _build_schedule(config, run_index)
    time_ms = _sensor_clock(config, run_index)
    sensor = _render_sensors(config, world, subject, schedule.events, time_ms, run_index)
    _apply_flaws(config, sensor, time_ms, run_index)
    row_label = np.full(len(time_ms), -1, dtype=np.int64)
    for class_id, start, end in schedule.events:
        row_label[_gesture_rows(time_ms, start, end)] = class_id
    row_place = np.where(row_label >= 0, np.asarray(CLASS_PLACE)[row_label], -1).astype(np.int64)
    return SyntheticRun(
        name=f"run{run_index:02d}",
        subject=subject_id,
        time_ms=time_ms,
        sensor=sensor,
        row_label=row_label,
        row_place=row_place,
        frames=_render_frames(config, world, subject, schedule, run_index),
        fps=float(config.fps),
        events=list(schedule.events),
    )
