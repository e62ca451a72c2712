"""Where a run's frames lie on the sensor clock: checking frame times, and the frames of a time span."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GAP_INTERVALS = 3.0
"""A step between frame times longer than this many (median) frame intervals is a gap."""
_TIME_TOLERANCE_MS = 1e-3


@dataclass(frozen=True)
class FramePlacement:
    """Where a run's frames lie on the sensor clock, and up to where they can be trusted.

    Attributes:
        times_ms: (G,) times of the frames that can be placed (the first G stored frames),
            strictly increasing.
        end_ms: End of the placed video: the last placed frame's time + the step before it.
        video_end_ms: The same for every decoded frame (the video as a whole).
        interval_ms: Median step between frame times (one frame interval).
        problem: Why frames from G on cannot be placed, or None.
    """

    times_ms: np.ndarray
    end_ms: float
    video_end_ms: float
    interval_ms: float
    problem: str | None = None

    @property
    def start_ms(self) -> float:
        """Time of the first placed frame (inf when none can be placed)."""
        return float(self.times_ms[0]) if self.times_ms.size else float("inf")

    def frame_range(self, start_ms: float, stop_ms: float) -> tuple[int, int] | None:
        """The frames [first, stop) shown in [start_ms, stop_ms), or None if the span is not covered."""
        if start_ms < self.start_ms - _TIME_TOLERANCE_MS or stop_ms > self.end_ms + _TIME_TOLERANCE_MS:
            return None
        first, stop = np.searchsorted(self.times_ms, [start_ms - _TIME_TOLERANCE_MS, stop_ms - _TIME_TOLERANCE_MS])
        return (int(first), int(stop)) if stop > first else None

    def unplaced(self, start_ms: float, stop_ms: float) -> bool:
        """Whether [start_ms, stop_ms) reaches decoded frames that cannot be placed."""
        return self.problem is not None and stop_ms > self.end_ms + _TIME_TOLERANCE_MS and start_ms < self.video_end_ms


def place_frames(times_ms: np.ndarray, fps: float, video_offset_ms: float = 0.0) -> FramePlacement:
    """Check a run's frame times and keep the prefix that can be placed on the sensor clock.

    Frames stop being placeable at the first one without a timestamp, the first step back (or a
    repeated time) and the first jump longer than `GAP_INTERVALS` median intervals: what follows
    a damaged stretch is out of sync by an unknown amount. A video without any timestamp is placed
    by index at `fps` (frame k at video_offset_ms + k · 1000 / fps).
    """
    times: np.ndarray = np.asarray(times_ms, dtype=np.float64)
    if times.size and np.isnan(times).all():
        times = video_offset_ms + np.arange(times.size) * (1000.0 / fps)
    steps = np.diff(times)
    positive = steps[np.isfinite(steps) & (steps > 0)]
    interval = float(np.median(positive)) if positive.size else 1000.0 / fps
    finite = times[np.isfinite(times)]
    video_end = float(finite.max()) + _last_step(finite, interval) if finite.size else float("-inf")
    problem: str | None = None
    good = times.size
    if times.size and np.isnan(times[0]):
        good, problem = 0, "frame 0 has no timestamp"
    else:
        broken = np.flatnonzero(~np.isfinite(steps) | (steps <= 0) | (steps > GAP_INTERVALS * interval))
        if broken.size:
            good = int(broken[0]) + 1
            before, after = times[good - 1] / 1000.0, times[good] / 1000.0
            if np.isnan(after):
                problem = f"frame {good} has no timestamp"
            elif after <= before:
                problem = f"frame {good}'s time goes back from {before:.3f} s to {after:.3f} s"
            else:
                problem = (
                    f"frames jump from {before:.3f} s to {after:.3f} s (more than {GAP_INTERVALS:g} "
                    f"frame intervals of {interval:.0f} ms: missing or damaged frames)"
                )
    placed = times[:good]
    end = float(placed[-1]) + _last_step(placed, interval) if good else float("-inf")
    return FramePlacement(placed, end, video_end, interval, problem)


def _last_step(times: np.ndarray, interval: float) -> float:
    """How long the last of `times` is shown: the step before it (the local rate), else `interval`."""
    step = float(times[-1] - times[-2]) if times.size >= 2 else 0.0
    return step if 0.0 < step <= GAP_INTERVALS * interval else interval
