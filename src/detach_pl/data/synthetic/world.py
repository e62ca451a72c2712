"""A synthetic, Opportunity++-like kitchen: the built-in default dataset when no real data is at hand.

One call of :func:`generate_run` gives one raw recording, shaped like a run of the real release:
a ~30 Hz ambient-sensor matrix with a jittery millisecond clock (``MILLISEC``), per-row gesture
labels, the gesture events, and the frames of a fixed side camera. Everything is pure numpy and
deterministic from ``(config.seed, run_index)``.

The world is built to exhibit the two problems DETACH addresses (docs/method.md):

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

Mechanisms of the real release that make the world harder, each a setting that is off by default
(docs/benchmark_kitchen.md): accelerometer crosstalk between the fixtures of one cabinet
(``crosstalk``), per-run sensor mounting (``mounting_jitter``), the release's other gestures at the
same places, labelled null (``other_gesture_prob``), and longer, more varied gestures
(``gesture_scale``, ``gesture_spread``). The doors carry accelerometers only, as in the release.

The generator lives in :mod:`detach_pl.data.kitchen` (layout, config, room, schedule, motion,
sensors, rendering, generator); this module gathers its public names, which
:mod:`detach_pl.data.synthetic` re-exports. The classes, places and channel names are the
Opportunity++ vocabulary (:mod:`detach_pl.data.vocabulary`).
"""

from __future__ import annotations

from detach_pl.data.kitchen.config import SyntheticKitchenConfig
from detach_pl.data.kitchen.generator import SyntheticRun, generate_run, ground_truth_events
from detach_pl.data.kitchen.layout import (
    CABINETS,
    CLASS_IS_OPEN,
    CLASS_NAMES,
    CLASS_PLACE,
    NUM_AMBIENT_CHANNELS,
    NUM_CLASSES,
    NUM_PLACES,
    OTHER_GESTURES,
    PLACE_NAMES,
    accelerometer_columns,
    cabinet_neighbours,
    channel_names,
    channel_places,
    place_boxes,
    reed_switch_columns,
)
from detach_pl.data.kitchen.motion import burst_waveform

__all__ = [
    "CABINETS",
    "CLASS_IS_OPEN",
    "CLASS_NAMES",
    "CLASS_PLACE",
    "NUM_AMBIENT_CHANNELS",
    "NUM_CLASSES",
    "NUM_PLACES",
    "OTHER_GESTURES",
    "PLACE_NAMES",
    "SyntheticKitchenConfig",
    "SyntheticRun",
    "accelerometer_columns",
    "burst_waveform",
    "cabinet_neighbours",
    "channel_names",
    "channel_places",
    "generate_run",
    "ground_truth_events",
    "place_boxes",
    "reed_switch_columns",
]
