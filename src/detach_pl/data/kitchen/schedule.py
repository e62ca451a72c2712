"""What the person does in a run: subject traits, episodes, idle gaps and the labelled gestures."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detach_pl.data.kitchen.config import SyntheticKitchenConfig
from detach_pl.data.kitchen.layout import (
    CLASS_IS_OPEN,
    CLASS_PLACE,
    CLOSE_S,
    DISTRACTOR_STAND_S,
    FIRST_IDLE_S,
    HOME_POSITION,
    IDLE_S,
    LEAN,
    NUM_CLASSES,
    NUM_PLACES,
    OPEN_S,
    OTHER,
    OTHER_GESTURES,
    PAUSE_S,
    PLACE_CENTRES,
    SCHEDULE,
    SUBJECT,
    WAIT_S,
    WALK_S,
    rng_for,
    stand_points,
)

SEG_STAY, SEG_HOME, SEG_WALK, SEG_GESTURE = range(4)


@dataclass
class Subject:
    """Traits of one subject: how fast, how bright the room is lit, how noisy, what they wear."""

    speed: float
    brightness: float
    noise_factor: float
    clothes_rgb: np.ndarray


@dataclass
class Schedule:
    """What the person does: piecewise motion segments, the labelled gestures and the other ones."""

    start_ms: np.ndarray  # (S,) segment start times, sorted, first = 0
    end_ms: np.ndarray  # (S,)
    kind: np.ndarray  # (S,) int: SEG_STAY, SEG_HOME, SEG_WALK or SEG_GESTURE
    origin: np.ndarray  # (S, 2) position at the segment start
    target: np.ndarray  # (S, 2) position at the segment end
    lean: np.ndarray  # (S, 2) lean direction x amplitude during a gesture (0 otherwise)
    events: list[tuple[int, float, float]]
    other_events: list[tuple[int, float, float]] = field(default_factory=list)  # (OTHER_GESTURES index, start, end)


def subject_traits(config: SyntheticKitchenConfig, subject: int) -> Subject:
    """Speed, lighting, noise level and clothing of one subject."""
    rng = rng_for(config.seed, SUBJECT, subject)
    return Subject(
        speed=float(rng.uniform(1.0 - config.speed_jitter, 1.0 + config.speed_jitter)),
        brightness=float(rng.uniform(-0.06, 0.06)),
        noise_factor=float(rng.uniform(0.7, 1.3)),
        clothes_rgb=rng.uniform(0.05, 0.55, 3),
    )


def subject_of(config: SyntheticKitchenConfig, run_index: int) -> int:
    """Subject id of a run, after checking the run index."""
    if isinstance(run_index, bool) or not isinstance(run_index, (int, np.integer)):
        raise ValueError(f"run_index must be an integer, got {run_index!r}")
    if not 0 <= run_index < config.num_runs:
        raise ValueError(f"run_index must be in [0, {config.num_runs}) (config.num_runs), got {run_index}")
    return int(run_index) // config.runs_per_subject


class ScheduleBuilder:
    """Appends motion segments and gestures one after the other on a millisecond cursor."""

    def __init__(self) -> None:
        self.now_ms = 0.0
        self.rows: list[tuple[float, float, int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.events: list[tuple[int, float, float]] = []
        self.other_events: list[tuple[int, float, float]] = []
        self.position = HOME_POSITION.copy()

    def _append(self, seconds: float, kind: int, target: np.ndarray, lean: np.ndarray) -> tuple[float, float]:
        start = self.now_ms
        end = start + float(round(seconds * 1000.0))
        self.rows.append((start, end, kind, self.position.copy(), target.copy(), lean))
        self.now_ms, self.position = end, target.copy()
        return start, end

    def stay(self, seconds: float) -> None:
        """Stand still (fidgeting when at home)."""
        kind = SEG_HOME if np.array_equal(self.position, HOME_POSITION) else SEG_STAY
        self._append(seconds, kind, self.position, np.zeros(2))

    def walk(self, seconds: float, target: np.ndarray) -> None:
        """Walk to ``target`` with the shared walking envelope (duration independent of distance)."""
        self._append(seconds, SEG_WALK, target, np.zeros(2))

    def gesture(self, seconds: float, class_id: int) -> None:
        """Operate a place: lean away (open, pulling) or towards it (close, pushing); label it."""
        towards = PLACE_CENTRES[CLASS_PLACE[class_id]] - self.position
        towards = towards / max(float(np.linalg.norm(towards)), 1e-9)
        lean = (-LEAN if CLASS_IS_OPEN[class_id] else LEAN) * towards
        start, end = self._append(seconds, SEG_GESTURE, self.position, lean)
        self.events.append((class_id, start, end))

    def other_gesture(self, seconds: float, kind: int) -> None:
        """One of the release's other gestures at its place: the person leans in; labelled null."""
        towards = PLACE_CENTRES[OTHER_GESTURES[kind][1]] - self.position
        towards = towards / max(float(np.linalg.norm(towards)), 1e-9)
        start, end = self._append(seconds, SEG_GESTURE, self.position, 0.5 * LEAN * towards)
        self.other_events.append((kind, start, end))

    def build(self, total_ms: float) -> Schedule:
        """Fill up to ``total_ms`` (plus a margin) with idling at home and freeze the arrays."""
        self.stay(max(total_ms - self.now_ms, 0.0) / 1000.0 + 1.0)
        start, end, kind, origin, target, lean = zip(*self.rows, strict=True)
        return Schedule(
            start_ms=np.asarray(start),
            end_ms=np.asarray(end),
            kind=np.asarray(kind),
            origin=np.stack(origin),
            target=np.stack(target),
            lean=np.stack(lean),
            events=list(self.events),
            other_events=list(self.other_events),
        )


def _class_of(place: int, is_open: bool) -> int:
    """Class id of (place, open/close)."""
    return next(c for c in range(NUM_CLASSES) if CLASS_PLACE[c] == place and CLASS_IS_OPEN[c] == is_open)


def build_schedule(config: SyntheticKitchenConfig, run_index: int) -> Schedule:
    """Plan the run: idle gaps (sometimes with a distractor walk or another gesture) and episodes.

    Places are drawn as shuffled rounds of all seven, so every place recurs in every long run.
    The other gestures draw from their own stream, so without them the schedule is unchanged.
    """
    subject = subject_traits(config, subject_of(config, run_index))
    rng = rng_for(config.seed, SCHEDULE, run_index)
    other_rng = rng_for(config.seed, OTHER, run_index)
    stands = stand_points(config)
    total_s = config.run_seconds
    builder = ScheduleBuilder()
    builder.stay(rng.uniform(*FIRST_IDLE_S))
    place_queue: list[int] = []
    episodes = 0
    while config.episodes_per_run is None or episodes < config.episodes_per_run:
        if not place_queue:
            place_queue = list(rng.permutation(NUM_PLACES))
        place = int(place_queue.pop(0))
        plan = _plan_episode(rng, subject.speed, config)
        idle = _plan_idle(rng, subject.speed, config.distractor_walk_prob)
        other = _plan_other_gesture(other_rng, subject.speed, config)
        needed = sum(seconds for _, seconds in [*plan, *other]) + idle.total_seconds
        if config.episodes_per_run is None and builder.now_ms / 1000.0 + needed + 1.0 > total_s:
            break
        for step, seconds in [*plan, *other]:
            if step == "walk_to":
                builder.walk(seconds, stands[place])
            elif step == "walk_to_other":
                builder.walk(seconds, stands[OTHER_GESTURES[int(other_kind(other))][1]])
            elif step.startswith("other"):
                builder.other_gesture(seconds, int(step.removeprefix("other")))
            elif step == "walk_home":
                builder.walk(seconds, HOME_POSITION)
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


def _gesture_seconds(rng: np.random.Generator, base: float, speed: float, config: SyntheticKitchenConfig) -> float:
    """One gesture's duration: base x scale x a factor from [1 - spread, 1 + spread], / speed."""
    return base * config.gesture_scale * rng.uniform(1 - config.gesture_spread, 1 + config.gesture_spread) / speed


def _plan_episode(rng: np.random.Generator, speed: float, config: SyntheticKitchenConfig) -> list[tuple[str, float]]:
    """Steps of one episode with their durations in seconds (already divided by the speed)."""

    def pause() -> float:
        return rng.uniform(*PAUSE_S) / speed

    walk = WALK_S / speed
    plan = [("walk_to", walk), ("stay", pause()), ("open", _gesture_seconds(rng, OPEN_S, speed, config))]
    if rng.random() < config.leave_open_prob:
        plan += [("stay", pause()), ("walk_home", walk), ("stay", rng.uniform(*IDLE_S)), ("walk_to", walk)]
    elif rng.random() < 0.5:
        plan += [("stay", rng.uniform(*WAIT_S) / speed)]
    plan += [("stay", pause()), ("close", _gesture_seconds(rng, CLOSE_S, speed, config))]
    plan += [("stay", pause()), ("walk_home", walk)]
    return plan


def _plan_other_gesture(
    rng: np.random.Generator, speed: float, config: SyntheticKitchenConfig
) -> list[tuple[str, float]]:
    """With probability `other_gesture_prob`, a trip to do one of the release's other gestures.

    Steps: walk to the gesture's place, pause, ``other<kind>``, pause, walk home (none otherwise).
    """
    if config.other_gesture_prob == 0.0 or rng.random() >= config.other_gesture_prob:
        return []
    kind = int(rng.integers(len(OTHER_GESTURES)))
    seconds = _gesture_seconds(rng, OTHER_GESTURES[kind][3], speed, config)
    walk = WALK_S / speed
    pauses = rng.uniform(*PAUSE_S, 2) / speed
    return [("walk_to_other", walk), ("stay", pauses[0]), (f"other{kind}", seconds), ("stay", pauses[1]),
            ("walk_home", walk)]


def other_kind(steps: list[tuple[str, float]]) -> int:
    """The OTHER_GESTURES index of a planned other-gesture trip."""
    return next(int(step.removeprefix("other")) for step, _ in steps if step.startswith("other"))


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
    gap = rng.uniform(*IDLE_S)
    target = int(rng.integers(NUM_PLACES))
    if rng.random() >= walk_prob:
        return _Idle(gap, 0.0, 0.0, target)
    return _Idle(gap, WALK_S / speed, rng.uniform(*DISTRACTOR_STAND_S) / speed, target)


def _append_idle(
    builder: ScheduleBuilder, rng: np.random.Generator, idle: _Idle, stand_point: np.ndarray
) -> None:
    """Idle at home; with a distractor walk, go to the place, stand without touching, come back."""
    if idle.walk_seconds == 0.0:
        builder.stay(idle.gap_seconds)
        return
    before = rng.uniform(0.0, idle.gap_seconds)
    builder.stay(before)
    builder.walk(idle.walk_seconds, stand_point)
    builder.stay(idle.stand_seconds)
    builder.walk(idle.walk_seconds, HOME_POSITION)
    builder.stay(idle.gap_seconds - before)
