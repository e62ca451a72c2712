"""A cache-building program for the cache-build tests: `python -m detach_pl.testing.cache CACHE MARKER [--sleep S]`.

Builds a tiny window cache at CACHE from generated runs. The recordings generator appends
"build <pid>" to MARKER when it is first asked for a run (so the number of lines counts the builds
that really read recordings), then sleeps `--sleep` seconds before each run: a deterministic,
slow build that a test can interrupt while the temporary file exists.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from detach_pl.data.cache import RunRecording, build_cache
from detach_pl.data.windows import WindowSettings

SETTINGS = WindowSettings(image_size=8, sensor_length=16)
META = {"channel_names": ["a", "b"], "class_names": ["x"], "place_names": ["p"]}


def recordings(marker: Path, sleep: float, runs: int) -> Iterator[RunRecording]:
    """`runs` 6-s recordings (30 Hz sensors, 10 fps frames), slowed down by `sleep` per run."""
    with marker.open("a") as handle:
        handle.write(f"build {os.getpid()}\n")
    rng = np.random.default_rng(0)
    for index in range(runs):
        time.sleep(sleep)
        rows = 180
        time_ms = np.arange(rows) * (1000.0 / 30.0)
        frames = (np.full((8, 8, 3), k, dtype=np.uint8) for k in range(60))
        yield RunRecording(
            f"run{index}", time_ms, rng.normal(size=(rows, 2)), np.full(rows, -1), np.full(rows, -1),
            frames, 10.0, num_frames=60,
        )


def main() -> None:
    """Parse the arguments and build the cache."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cache", type=Path)
    parser.add_argument("marker", type=Path)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    reports = build_cache(args.cache, recordings(args.marker, args.sleep, args.runs), SETTINGS, META, progress=False)
    print(f"built {len(reports)} run(s)")


if __name__ == "__main__":
    main()
