"""Fixed layout of the synthetic kitchen: classes, places, sensor columns, room geometry, timings.

Everything here is a constant of the world's design, shared by the schedule, the sensors and the
renderer. Opportunity++'s 14 gestures, 7 places and ambient columns 195-231 come from the vocabulary
the Opportunity++ reader uses too (`detach_pl.data.vocabulary`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from detach_pl.data.vocabulary import AMBIENT_ACCELEROMETERS, AXES, CLASS_NAMES, PLACE_NAMES
from detach_pl.data.vocabulary import CLASS_PLACE as CLASS_PLACE  # re-exported to the generator
from detach_pl.data.vocabulary import REED_SWITCHES as REED_PLACES

if TYPE_CHECKING:
    from detach_pl.data.kitchen.config import SyntheticKitchenConfig

CLASS_IS_OPEN: tuple[bool, ...] = tuple(name.startswith("Open") for name in CLASS_NAMES)
NUM_CLASSES = len(CLASS_NAMES)
NUM_PLACES = len(PLACE_NAMES)
NUM_AMBIENT_CHANNELS = 37

# The release's other ML_Both_Arms gestures (not among the 14 classes: labelled null), each done
# at one of the places: name, place, peak acceleration it causes on that place's sensor (in units
# of the sensor's gain), base duration in seconds. Toggling the light switch beside door 1 knocks
# its frame; wiping the table leans on the drawer cabinet; drinking from a cup by the fridge
# touches nothing.
OTHER_GESTURES: tuple[tuple[str, int, float, float], ...] = (
    ("Toggle Switch", 0, 0.3, 0.8),
    ("Clean Table", 5, 0.25, 3.0),
    ("Drink from Cup", 2, 0.0, 2.5),
)
# Fixtures that share one cabinet body: a gesture at one shakes the others' accelerometers.
CABINETS: tuple[tuple[int, ...], ...] = ((4, 5, 6),)

# Where along the opening travel each reed switch (vocabulary.REED_SWITCHES, column order) flips:
# S1/S2/S3 sit at different points, so they flip at different moments.
REED_FLIP_THRESHOLDS: tuple[float, ...] = (0.2, 0.8, 0.5, 0.2, 0.2, 0.5, 0.8, 0.8, 0.5, 0.5, 0.8, 0.2, 0.5)
# Reed switches in Opportunity column order (195-207): name, place, flip threshold.
REED_SWITCHES: tuple[tuple[str, int, float], ...] = tuple(
    (name, place, threshold) for (name, place), threshold in zip(REED_PLACES, REED_FLIP_THRESHOLDS, strict=True)
)

# Room layout in normalised (y, x) image coordinates: place centre, side the person stands on
# (+1 right, -1 left), axis the "open" bar slides along (0: y, 1: x) and whether it slides backwards.
PLACE_CENTRES = np.array(
    [[0.30, 0.07], [0.30, 0.93], [0.22, 0.36], [0.75, 0.30], [0.42, 0.62], [0.56, 0.62], [0.70, 0.62]]
)
STAND_SIDE = np.array([1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0])
SLIDE_AXIS = (1, 1, 1, 0, 1, 1, 1)
SLIDE_REVERSED = (False, True, True, False, True, True, True)
FIXTURE_RGB = np.array(
    [[0.55, 0.40, 0.26], [0.55, 0.40, 0.26], [0.55, 0.58, 0.60], [0.62, 0.64, 0.66],
     [0.60, 0.46, 0.30], [0.60, 0.46, 0.30], [0.60, 0.46, 0.30]]
)
OPEN_RGB = np.array(
    [[0.08, 0.08, 0.10], [0.08, 0.08, 0.10], [1.00, 1.00, 0.92], [0.15, 0.16, 0.18],
     [0.18, 0.12, 0.08], [0.18, 0.12, 0.08], [0.18, 0.12, 0.08]]
)
HOME_POSITION = np.array([0.80, 0.85])
STAND_DROP = 0.12  # the person's body centre is this far below the place centre
STAND_MARGIN = 0.03

# Base durations in seconds at speed factor 1 (divided by the run's speed factor).
WALK_S = 2.0
OPEN_S = 1.5
CLOSE_S = 1.2
PAUSE_S = (0.3, 0.8)  # standing still before a gesture and after it
WAIT_S = (0.8, 3.5)  # optional longer wait between open and close
IDLE_S = (2.0, 6.0)  # null time at home between episodes (not speed-scaled)
DISTRACTOR_STAND_S = (0.5, 2.0)
FIRST_IDLE_S = (1.0, 3.0)
# Motion phase (normalised gesture time) during which the object actually moves.
OPEN_MOTION = (0.2, 0.8)
CLOSE_MOTION = (0.15, 0.65)
LEAN = 0.03  # how far the person leans (pull away on open, push towards on close)
FRAME_CHUNK_PIXELS = 1 << 21  # frames are rendered in chunks of about this many pixels

# Random-stream tags for np.random.SeedSequence([seed, tag, index]).
WORLD, SUBJECT, SCHEDULE, CLOCK, SENSOR, FLAWS, VIDEO, MOUNTING, OTHER = range(9)


def rng_for(seed: int, tag: int, index: int = 0) -> np.random.Generator:
    """Independent random stream for (seed, purpose, index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, tag, index]))


def channel_names(config: SyntheticKitchenConfig) -> list[str]:
    """Names of the sensor columns, in Opportunity style (columns 195-231, then distractors)."""
    names = [name for name, _, _ in REED_SWITCHES]
    names += [f"Accelerometer {unit} acc{axis}" for unit, _ in AMBIENT_ACCELEROMETERS for axis in AXES]
    names += [
        f"Accelerometer DISTRACTOR{i // 3 + 1} acc{AXES[i % 3]}" for i in range(config.num_distractor_channels)
    ]
    return names


def channel_places(config: SyntheticKitchenConfig) -> np.ndarray:
    """(C,) int64 place id each sensor column belongs to, -1 for LAZYCHAIR and distractors."""
    places = [place for _, place, _ in REED_SWITCHES]
    places += [place for _, place in AMBIENT_ACCELEROMETERS for _ in AXES]
    places += [-1] * config.num_distractor_channels
    return np.asarray(places, dtype=np.int64)


def reed_switch_columns() -> np.ndarray:
    """(13,) column indices of the reed switches (0/1 channels)."""
    return np.arange(len(REED_SWITCHES))


def accelerometer_unit(place: int) -> int:
    """Index (in AMBIENT_ACCELEROMETERS order) of the accelerometer mounted at ``place``."""
    return [p for _, p in AMBIENT_ACCELEROMETERS].index(place)


def accelerometer_columns(place: int) -> np.ndarray:
    """(3,) column indices of the ambient accelerometer mounted at ``place``."""
    return len(REED_SWITCHES) + 3 * accelerometer_unit(place) + np.arange(3)


def cabinet_neighbours(place: int) -> tuple[int, ...]:
    """The other places of ``place``'s cabinet (whose accelerometers its gestures shake), if any."""
    for cabinet in CABINETS:
        if place in cabinet:
            return tuple(other for other in cabinet if other != place)
    return ()


def place_boxes(config: SyntheticKitchenConfig) -> np.ndarray:
    """(K, 4) int64 pixel boxes (y0, y1, x0, x1), end-exclusive, of the places' patches."""
    size = config.image_size
    side = max(2, int(round(config.place_size * size)))
    corner = np.round(PLACE_CENTRES * size - side / 2).astype(np.int64)
    corner = np.clip(corner, 0, size - side)
    return np.stack([corner[:, 0], corner[:, 0] + side, corner[:, 1], corner[:, 1] + side], axis=1)


def stand_points(config: SyntheticKitchenConfig) -> np.ndarray:
    """(K, 2) where the person's body centre stands to operate each place, beside its patch."""
    offset = config.place_size / 2 + 0.16 * config.person_size + STAND_MARGIN
    points = PLACE_CENTRES + np.stack([np.full(NUM_PLACES, STAND_DROP), STAND_SIDE * offset], axis=1)
    return np.clip(points, 0.0, 1.0)
