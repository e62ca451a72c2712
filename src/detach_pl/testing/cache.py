"""A cache-building program for the cache-build tests: `python -m detach_pl.testing.cache CACHE MARKER [--sleep S]`.

Builds a tiny window cache at CACHE from generated runs. The recordings generator appends
"build <pid>" to MARKER when it is first asked for a run (so the number of lines counts the builds
that really read recordings), waits for the file `--go` when one is named (a test releases the
build when it is ready), then sleeps `--sleep` seconds before each run: a slow build that a test
can interrupt while the temporary file exists.
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
GO_TIMEOUT_S = 120.0


def recordings(marker: Path, sleep: float, runs: int, go: Path | None = None) -> Iterator[RunRecording]:
    """`runs` 6-s recordings (30 Hz sensors, 10 fps frames), slowed down by `sleep` per run.

    With `go`, the first run waits until that file exists (at most `GO_TIMEOUT_S`).
    """
    with marker.open("a") as handle:
        handle.write(f"build {os.getpid()}\n")
    deadline = time.monotonic() + GO_TIMEOUT_S
    while go is not None and not go.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{go} did not appear within {GO_TIMEOUT_S} s")
        time.sleep(0.02)
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
    parser.add_argument("--go", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    runs = recordings(args.marker, args.sleep, args.runs, args.go)
    reports = build_cache(args.cache, runs, SETTINGS, META, progress=False)
    print(f"built {len(reports)} run(s)")


if __name__ == "__main__":
    main()
