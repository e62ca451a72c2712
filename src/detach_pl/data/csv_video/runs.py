"""Finding the runs of one's own recordings: `<run>.csv` (the generic sensor CSV) beside `<run>.<video>`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Video files a run's CSV may have beside it, by suffix (anything PyAV decodes would do).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")


@dataclass(frozen=True)
class CsvVideoRun:
    """One run: its sensor CSV and the video of the fixed camera.

    Attributes:
        name: The files' common stem, the run's name in splits and the cache.
        csv: The sensor CSV.
        video: The video file.
    """

    name: str
    csv: Path
    video: Path


def find_runs(root: Path) -> list[CsvVideoRun]:
    """Every `<name>.csv` in `root` with its one video `<name>.<suffix>` (`VIDEO_SUFFIXES`), by name.

    Raises:
        FileNotFoundError: `root` is not a folder, holds no CSV, or a CSV has no video beside it
            (every such CSV is named).
        ValueError: A CSV has more than one video beside it.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"data.init_args.root={str(root)!r} is not a folder")
    csvs = sorted(root.glob("*.csv"))
    if not csvs:
        raise FileNotFoundError(
            f"data.init_args.root={str(root)!r}: no .csv file; expected one sensor CSV and one video per run "
            "(docs/datasets/csv_video.md)"
        )
    runs, lacking, doubled = [], [], []
    for path in csvs:
        videos = [path.with_suffix(suffix) for suffix in VIDEO_SUFFIXES if path.with_suffix(suffix).is_file()]
        if not videos:
            lacking.append(path.name)
        elif len(videos) > 1:
            doubled.append(f"{path.stem}: {[video.name for video in videos]}")
        else:
            runs.append(CsvVideoRun(path.stem, path, videos[0]))
    if lacking:
        raise FileNotFoundError(
            f"{root}: {len(lacking)} sensor CSV(s) without a video of the same name "
            f"({'/'.join(VIDEO_SUFFIXES)}): {lacking}"
        )
    if doubled:
        raise ValueError(f"{root}: runs with more than one video, keep one each: {doubled}")
    return runs
