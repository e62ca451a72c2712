"""Generated stand-ins for the Opportunity++ release, with the release's exact layout.

The real release needs an IEEE DataPort login, so the loader is tested on folders written here:

```
<root>/label_legend.txt                      the real file (CRLF, no final newline)
<root>/data/column_names.txt                 the real file
<root>/data/<run>/<run>_sensors_data.txt     250 whitespace-separated columns, integers and NaN
<root>/data/<run>/<run>_side.avi             PyAV-encoded video (mjpeg or mpeg4), measured fps
<root>/data/<run>/<run>_side.ML_Both_Arms.srt    SubRip, texts "<id> - <name>"
<root>/data/<run>/<run>_side.Locomotion.srt      a second track (the loader must ignore it)
```

(`layout="flat"` writes `<root>/<run>/` and both text files into the root instead.)

What a run holds: a ~33/34 ms `MILLISEC` clock from 0; a schedule of gestures of the
`ML_Both_Arms` track (the 14 open/close classes in turn, every fifth one an "other" gesture such as
Clean Table) written into the label columns (ML_Both_Arms, plus the matching LL_Right_Arm action
and object); the ambient channels respond to them (the reed switches of the place flip at open and
close, the place's accelerometer shakes during the gesture); body, object and location channels
are noise with long NaN gaps; a few short NaN gaps in the ambient channels. The video shows seven
place squares, the active one lit during its gesture, plus the frame number in grey levels.

Everything written is returned (`StandinRelease`): the exact matrix (with NaN), the gesture
segments on the ms clock, the frame count, so tests can compare the loader's output with the truth.
Used by the tests (`tests/data/test_opportunity*.py`, …) and `benchmarks/bench_data.py`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detach_pl.testing.video import write_video

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "opportunity"
SENSOR_RATE_HZ = 30.0

#: `ML_Both_Arms` ids of DETACH's 14 classes, in class order (datasets.md).
CLASS_IDS: tuple[int, ...] = (
    406516, 406517, 404516, 404517, 406520, 404520, 406505,
    404505, 406519, 404519, 406511, 404511, 406508, 404508,
)
#: Place id (door 1, door 2, fridge, dishwasher, drawer 1, drawer 2, drawer 3) of each class.
CLASS_PLACES: tuple[int, ...] = (0, 1, 0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6)
#: The other gestures of the track (null for DETACH): Clean Table, Drink from Cup, Toggle Switch.
OTHER_IDS: tuple[int, ...] = (408512, 407521, 405506)
#: Ambient channels that respond to each place (names of column_names.txt without the axis).
PLACE_REEDS: tuple[tuple[str, ...], ...] = (
    (),
    (),
    ("FRIDGE S1", "FRIDGE S2", "FRIDGE S3"),
    ("DISHWASHER S1", "DISHWASHER S2", "DISHWASHER S3"),
    ("UPPERDRAWER",),
    ("MIDDLEDRAWER S1", "MIDDLEDRAWER S2", "MIDDLEDRAWER S3"),
    ("LOWERDRAWER S1", "LOWERDRAWER S2", "LOWERDRAWER S3"),
)
PLACE_ACCELEROMETERS: tuple[str, ...] = (
    "DOOR1", "DOOR2", "FRIDGE", "DISHWASHER", "UPPERDRAWER", "MIDDLEDRAWER", "LOWERDRAWER",
)
DEFAULT_RUNS: tuple[str, ...] = ("S1-ADL1", "S1-Drill", "S2-ADL3", "S2-ADL4", "S3-ADL4")


def column_names() -> list[str]:
    """The 250 names of the real `column_names.txt` (parsed independently of the loader)."""
    text = (FIXTURES / "column_names.txt").read_text()
    return [m.group(2).strip() for m in re.finditer(r"Column:\s*(\d+)\s+(.*?)(;|\r?$)", text, re.M)]


@dataclass
class StandinRun:
    """Everything written for one run.

    Attributes:
        name: Run name, e.g. "S1-ADL1".
        folder: The run's folder.
        sensor_path: The sensor matrix file.
        video_path: The video file.
        srt_paths: The SubRip files.
        time_ms: (rows,) the MILLISEC column.
        matrix: (rows, 250) exactly the values written (NaN where `NaN` was written).
        segments: Gestures of the ML_Both_Arms track: (start_ms, stop_ms, id), rows with
            start <= t < stop carry the id.
        fps: Frame rate of the video.
        num_frames: Frames written.
    """

    name: str
    folder: Path
    sensor_path: Path
    video_path: Path
    srt_paths: list[Path]
    time_ms: np.ndarray
    matrix: np.ndarray
    segments: list[tuple[float, float, int]]
    fps: float
    num_frames: int


@dataclass
class StandinRelease:
    """A written stand-in release: its root and its runs by name."""

    root: Path
    runs: dict[str, StandinRun] = field(default_factory=dict)

    def column(self, name: str) -> int:
        """0-based matrix column of a (unique) column name."""
        return column_names().index(name)


def gesture_schedule(
    duration_ms: float, rng: np.random.Generator, start_class: int = 0
) -> list[tuple[float, float, int]]:
    """Gestures (start_ms, stop_ms, id): the 14 classes in turn, every fifth an "other" gesture."""
    segments: list[tuple[float, float, int]] = []
    time = 1000.0 + float(rng.uniform(0, 500))
    count = 0
    while True:
        length = float(rng.uniform(1300.0, 3000.0))
        if time + length > duration_ms - 500.0:
            return segments
        if count % 5 == 4:
            label = OTHER_IDS[(count // 5) % len(OTHER_IDS)]
        else:
            label = CLASS_IDS[(start_class + count - count // 5) % len(CLASS_IDS)]
        segments.append((round(time), round(time + length), label))
        time += length + float(rng.uniform(700.0, 2500.0))
        count += 1


def rows_of_segments(time_ms: np.ndarray, segments: Sequence[tuple[float, float, int]]) -> np.ndarray:
    """Per-row id (0 = null) of the segments on the clock."""
    ids = np.zeros(time_ms.shape[0], dtype=np.int64)
    for start, stop, label in segments:
        ids[(time_ms >= start) & (time_ms < stop)] = label
    return ids


def make_matrix(
    time_ms: np.ndarray, segments: Sequence[tuple[float, float, int]], rng: np.random.Generator
) -> np.ndarray:
    """The 250-column matrix of one run (float64, NaN where missing, integers elsewhere)."""
    names = column_names()
    index = {name: i for i, name in enumerate(names)}
    rows = time_ms.shape[0]
    matrix = np.round(rng.normal(0.0, 300.0, (rows, len(names))))
    matrix[:, 0] = time_ms
    # Long NaN gaps in the wireless body and object sensors, one channel all-NaN.
    for column in range(1, 194):
        if rng.random() < 0.3:
            gap_start = int(rng.integers(0, rows))
            matrix[gap_start : gap_start + int(rng.integers(rows // 20, rows // 4)), column] = np.nan
    matrix[:, int(rng.integers(1, 134))] = np.nan
    matrix[:, 231:243] = np.where(rng.random((rows, 12)) < 0.2, np.nan, matrix[:, 231:243])
    # Ambient accelerometers: gravity on z, small noise; reed switches: closed (0).
    for name in PLACE_ACCELEROMETERS + ("LAZYCHAIR",):
        for axis, base in zip("XYZ", (0.0, 0.0, 1000.0), strict=True):
            matrix[:, index[f"Accelerometer {name} acc{axis}"]] = np.round(base + rng.normal(0, 5, rows))
    reed_columns = [i for i, name in enumerate(names) if name.startswith("REED SWITCH")]
    matrix[:, reed_columns] = 0.0
    opened = [False] * len(PLACE_ACCELEROMETERS)
    for start, stop, label in segments:
        if label not in CLASS_IDS:
            continue
        place = CLASS_PLACES[CLASS_IDS.index(label)]
        inside = (time_ms >= start) & (time_ms < stop)
        phase = (time_ms[inside] - start) / (stop - start)
        for axis, gain in zip("XYZ", (300.0, 200.0, 100.0), strict=True):
            column = index[f"Accelerometer {PLACE_ACCELEROMETERS[place]} acc{axis}"]
            matrix[inside, column] += np.round(gain * np.sin(np.pi * phase) * np.sin(12 * np.pi * phase))
        opened[place] = label // 1000 == 406
        after = time_ms >= (start + stop) / 2
        for reed in PLACE_REEDS[place]:
            matrix[after, index[f"REED SWITCH {reed}"]] = 1.0 if opened[place] else 0.0
    # Short NaN gaps in two ambient channels, one long enough to kill a channel in a window.
    ambient = reed_columns + [index[f"Accelerometer {n} acc{a}"] for n in PLACE_ACCELEROMETERS for a in "XYZ"]
    for length in (8, 45):
        column = int(rng.choice(ambient))
        gap_start = int(rng.integers(0, rows - length))
        matrix[gap_start : gap_start + length, column] = np.nan
    # Label columns: Locomotion (stand), ML_Both_Arms and the matching right-arm columns.
    ml_ids = rows_of_segments(time_ms, segments)
    matrix[:, 243:250] = 0.0
    matrix[:, index["Locomotion"]] = 1.0
    matrix[:, index["ML_Both_Arms"]] = ml_ids
    matrix[:, index["LL_Right_Arm"]] = ml_ids // 1000
    matrix[:, index["LL_Right_Arm_Object"]] = ml_ids % 1000
    return matrix


def write_sensor_matrix(path: Path, matrix: np.ndarray, newline: str = "\n") -> None:
    """Write a matrix as the release does: space-separated integers, `NaN` for missing values."""
    missing = np.isnan(matrix)
    numbers = np.where(missing, 0, matrix).astype(np.int64).astype(str)
    tokens = np.where(missing, "NaN", numbers)
    path.write_text(newline.join(" ".join(row) for row in tokens.tolist()) + newline, newline="")


def _srt_time(ms: float) -> str:
    ms = int(round(ms))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def write_srt(path: Path, segments: Sequence[tuple[float, float, int]], names: dict[int, str]) -> None:
    """Write segments as SubRip blocks with texts `<id> - <name>` (CRLF, as subtitle tools do)."""
    blocks = [
        f"{number}\r\n{_srt_time(start)} --> {_srt_time(stop)}\r\n{label} - {names.get(label, '?')}\r\n"
        for number, (start, stop, label) in enumerate(segments, start=1)
    ]
    path.write_text("\r\n".join(blocks), newline="")


def legend_names() -> dict[int, str]:
    """Label id → name, parsed from the real legend (independently of the loader)."""
    names = {}
    for line in (FIXTURES / "label_legend.txt").read_text().splitlines():
        match = re.match(r"\s*(\d+)\s+-\s+\S+\s+-\s+(.*?)\s*$", line)
        if match:
            names[int(match.group(1))] = match.group(2)
    return names


def render_frames(
    num_frames: int,
    fps: float,
    segments: Sequence[tuple[float, float, int]],
    width: int,
    height: int,
    noise: int = 0,
) -> Iterator[np.ndarray]:
    """Frames of a fixed camera: seven place squares, the active one lit, the frame number in grey.

    `noise` > 0 adds a textured background and per-frame sensor noise of that amplitude (grey
    levels), so that an encoder spends a realistic bit rate and a decoder realistic work.
    """
    cell = max(2, width // 9)
    base = np.full((height, width, 3), 60, np.uint8)
    rng = np.random.default_rng(0)
    if noise:
        texture = rng.integers(0, 4 * noise, (height // 8 + 1, width // 8 + 1, 3))
        base = (base + np.kron(texture, np.ones((8, 8, 1)))[:height, :width]).clip(0, 255).astype(np.uint8)
        grain = [rng.integers(0, noise + 1, (height, width, 3), dtype=np.uint8) for _ in range(7)]
    for place in range(7):
        x = (place + 1) * width // 9
        base[height // 3 : height // 3 + cell, x : x + cell] = 90
    starts = np.array([s for s, _, _ in segments] + [np.inf])
    for k in range(num_frames):
        frame = base.copy()
        t = k * 1000.0 / fps
        current = int(np.searchsorted(starts, t, side="right")) - 1
        if current >= 0:
            start, stop, label = segments[current]
            if t < stop and label in CLASS_IDS:
                x = (CLASS_PLACES[CLASS_IDS.index(label)] + 1) * width // 9
                frame[height // 3 : height // 3 + cell, x : x + cell] = 230
        frame[-4:, :, :] = (k * 7) % 256
        if noise:
            frame = saturating_add(frame, np.roll(grain[k % len(grain)], 3 * k, axis=1))
        yield frame


def saturating_add(frame: np.ndarray, grain: np.ndarray) -> np.ndarray:
    """Saturating uint8 addition."""
    return np.minimum(frame.astype(np.uint16) + grain, 255).astype(np.uint8)


def write_standin_release(
    root: str | Path,
    runs: Sequence[str] = DEFAULT_RUNS,
    *,
    seconds: float = 30.0,
    fps: float = 10.0,
    frame_size: tuple[int, int] = (64, 48),
    codec: str = "mjpeg",
    layout: str = "data",
    video_seconds: dict[str, float] | None = None,
    srt: bool = True,
    newline: str = "\n",
    noise: int = 0,
    seed: int = 0,
) -> StandinRelease:
    """Write a stand-in release.

    Args:
        root: Folder to create (must not hold another release).
        runs: Run names (each gets its own gestures; the class cycle starts elsewhere per run).
        seconds: Length of each run's sensor timeline.
        fps: Video frame rate.
        frame_size: Video (width, height).
        codec: "mjpeg" (every frame independent) or "mpeg4".
        layout: "data" (`<root>/data/<run>/`, legend in root, column names in data/) or "flat"
            (`<root>/<run>/`, both text files in the root).
        video_seconds: Per-run video length when it should differ from the sensor timeline.
        srt: Write the SRT tracks.
        newline: Line ending of the sensor matrices.
        noise: Amplitude of background texture and per-frame noise (0: flat frames, the fastest to
            encode and decode; the benchmark uses noise for realistic decoding work).
        seed: Random seed.
    """
    root = Path(root)
    base = root / "data" if layout == "data" else root
    base.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / "label_legend.txt", root / "label_legend.txt")
    shutil.copyfile(FIXTURES / "column_names.txt", base / "column_names.txt")
    names = legend_names()
    release = StandinRelease(root)
    width, height = frame_size
    for number, run in enumerate(runs):
        rng = np.random.default_rng(seed * 1000 + number)
        folder = base / run
        folder.mkdir(parents=True, exist_ok=True)
        rows = int(seconds * SENSOR_RATE_HZ)
        time_ms = np.round(np.arange(rows) * 1000.0 / SENSOR_RATE_HZ)
        segments = gesture_schedule(seconds * 1000.0, rng, start_class=3 * number)
        matrix = make_matrix(time_ms, segments, rng)
        sensor_path = folder / f"{run}_sensors_data.txt"
        write_sensor_matrix(sensor_path, matrix, newline)
        length = (video_seconds or {}).get(run, seconds)
        num_frames = int(round(length * fps))
        video_path = folder / f"{run}_side.avi"
        frames = render_frames(num_frames, fps, segments, width, height, noise)
        write_video(video_path, frames, fps, codec, None if codec == "mjpeg" else 2_000_000)
        srt_paths = []
        if srt:
            srt_paths = [folder / f"{run}_side.ML_Both_Arms.srt", folder / f"{run}_side.Locomotion.srt"]
            write_srt(srt_paths[0], segments, names)
            write_srt(srt_paths[1], [(0.0, float(time_ms[-1]) + 1.0, 1)], names)
        release.runs[run] = StandinRun(
            run, folder, sensor_path, video_path, srt_paths, time_ms, matrix, segments, fps, num_frames
        )
    return release
