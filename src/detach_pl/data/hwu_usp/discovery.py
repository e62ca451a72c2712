"""Finding HWU-USP's trials in any folder tree: trial ids, videos, ambient CSVs and their columns.

16 subjects × 9 activities = 144 trials named `<activity>_s<NN>` (`tea_s01`). Every `.mp4` and
`.csv` under `root` (globs `video_glob`, `csv_glob`) is assigned to the trial named by its file
name (`tea_s01.mp4`, `tea_s01_ambient.csv`) or, failing that, by its nearest folder
(`tea_s01/rgb.mp4`). The dataset authors' tree (`rgb_blurred/<activity>/<trial>.mp4`,
`<ambient folder>/<activity>/<trial>.csv`, `inertial/<activity>/<trial>.csv`, `depth/…npy`) and a
flat folder both work. A trial's ambient CSV is the one whose columns hold the requested
channels; CSVs under an inertial-looking path (`inertial`, `imu`, `wrist`, …) are the wrist IMU and
are ignored. A CSV without a header takes its names from the nearest `column_names.txt` in its
folder or above (up to `root`). docs/datasets/hwu_usp.md describes the release.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from detach_pl.data.hwu_usp.ambient import is_number, sniff_dialect

ACTIVITIES: tuple[str, ...] = (
    "cereals",
    "tidy",
    "laptop",
    "newspaper",
    "sandwich",
    "smartphone",
    "table",
    "tea",
    "dishes",
)
"""The nine activities in the release's class-file order (1-based ids 1–9 there)."""

DEFAULT_CHANNELS: tuple[str, ...] = (
    "Ktch_B4_Cupboard",
    "Ktch_Motion_1",
    "Ktch_Motion_2",
    "Ktch_T1_Cupboard",
    "Ktch_T2_Cupboard",
    "Ktch_T3_Cupboard",
)
"""The six ambient channels DETACH uses (docs/datasets/hwu_usp.md); with "none" they give K = 7 places."""

NONE_PLACE = "none"
_INERTIAL_HINTS = ("inertial", "imu", "wrist", "accel", "gyro")
_TRIAL_STEM = re.compile(
    r"^(?P<activity>[a-z][a-z_]*?)_s(?P<subject>\d{1,3})(?:[_\-. ].*)?$", re.IGNORECASE
)
_TRIAL_FOLDER = re.compile(r"^(?P<activity>[a-z][a-z_]*?)_s(?P<subject>\d{1,3})$", re.IGNORECASE)
_NUMBERED_NAME = re.compile(r"^(?:column:?\s*)?\d+\s*[:.)\-]?\s+(?P<name>.+?)\s*$", re.IGNORECASE)


# ---- trial discovery -----------------------------------------------------------------------


def trial_name(activity: str, subject: int) -> str:
    """Canonical trial id, e.g. `tea_s01`."""
    return f"{activity.lower()}_s{subject:02d}"


def parse_trial_name(name: str) -> tuple[str, int]:
    """(activity, subject) of a trial id such as `tea_s01`.

    Raises:
        ValueError: The name is not `<activity>_s<NN>`.
    """
    match = _TRIAL_FOLDER.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a trial id of the form <activity>_s<NN>")
    return match["activity"].lower(), int(match["subject"])


def trial_of_path(relative: Path) -> tuple[str, int] | None:
    """The trial a file belongs to: from its name (`tea_s01_x.csv`), else its nearest folder."""
    match = _TRIAL_STEM.match(relative.stem)
    if match is None:
        for folder in reversed(relative.parts[:-1]):
            match = _TRIAL_FOLDER.match(folder)
            if match is not None:
                break
    if match is None:
        return None
    return match["activity"].lower(), int(match["subject"])


def read_column_names(path: Path) -> list[str]:
    """Column names from a `column_names.txt`: one per line (optionally numbered) or comma-separated.

    Accepted line forms: `timestamp`, `1 timestamp`, `1: timestamp`, `Column: 1 timestamp`, and a
    single line `timestamp, Ktch_B1_Drawer, …`.
    """
    names: list[str] = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.strip()
        if not line:
            continue
        numbered = _NUMBERED_NAME.match(line)
        if numbered is not None:
            names.append(numbered["name"])
        else:
            names.extend(part.strip() for part in line.split(",") if part.strip())
    if not names:
        raise ValueError(f"{path}: no column names found")
    return names

def _nearest_column_names_file(folder: Path, root: Path) -> Path | None:
    """The `column_names.txt` in `folder` or the closest folder above it, not above `root`."""
    for candidate in (folder, *folder.parents):
        path = candidate / "column_names.txt"
        if path.is_file():
            return path
        if candidate == root:
            break
    return None


@dataclass(frozen=True)
class CsvColumns:
    """What a CSV's first row says about its columns.

    Attributes:
        path: The CSV file.
        names: Column names (from the header or from `column_names.txt`); empty if unknown.
        has_header: Whether the first row is a header.
        names_file: The `column_names.txt` the names came from, if any.
    """

    path: Path
    names: list[str]
    has_header: bool
    names_file: Path | None


def csv_columns(path: Path, root: Path) -> CsvColumns:
    """Column names of a CSV: its header row, or the nearest `column_names.txt` if it has none.

    A first row is a header when none of its cells is a number.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(8192)
    first_line = next((line for line in sample.splitlines() if line.strip()), "")
    if not first_line:
        return CsvColumns(path, [], False, None)
    first_row = [cell.strip() for cell in next(csv.reader([first_line], sniff_dialect(sample)))]
    if not any(is_number(cell) for cell in first_row):
        return CsvColumns(path, first_row, True, None)
    names_file = _nearest_column_names_file(path.parent, root)
    names = read_column_names(names_file) if names_file is not None else []
    return CsvColumns(path, names, False, names_file)


@dataclass(frozen=True)
class Trial:
    """The files of one complete trial.

    Attributes:
        name: Trial id (`tea_s01`).
        activity: Activity name as found in the file names (lower case).
        subject: Subject number (1-based).
        video: The RGB `.mp4` (None only when discovered with `require_video=False`).
        ambient: The ambient CSV.
        columns: Its column names and where they came from.
    """

    name: str
    activity: str
    subject: int
    video: Path | None
    ambient: Path
    columns: CsvColumns


@dataclass
class Discovery:
    """Every trial found under a root, complete or not.

    Attributes:
        root: The folder searched.
        trials: Complete trials by name.
        incomplete: Trials lacking a video or an ambient CSV: name → what is missing (and what
            was found).
    """

    root: Path
    trials: dict[str, Trial] = field(default_factory=dict)
    incomplete: dict[str, str] = field(default_factory=dict)


def _looks_inertial(relative: Path) -> bool:
    parts = [part.lower() for part in (*relative.parts[:-1], relative.stem)]
    return any(hint in part for part in parts for hint in _INERTIAL_HINTS)


def _choose_ambient(
    name: str, csvs: Sequence[Path], root: Path, channels: Sequence[str]
) -> tuple[CsvColumns | None, str]:
    """Pick the ambient CSV of a trial among its CSV files (None + reason when there is none).

    Raises:
        ValueError: Several CSVs hold the channels, or the only candidates lack some of them.
    """
    columns = [csv_columns(path, root) for path in csvs]
    complete = [c for c in columns if all(ch in c.names for ch in channels)]
    if len(complete) > 1:
        raise ValueError(
            f"trial {name}: several CSVs hold the requested channels: "
            f"{[str(c.path) for c in complete]}; narrow data.init_args.csv_glob"
        )
    if complete:
        return complete[0], ""
    partial = [c for c in columns if any(ch in c.names for ch in channels)]
    candidates = partial or [c for c in columns if not _looks_inertial(c.path.relative_to(root))]
    if not candidates:
        found = [str(path) for path in csvs]
        wanted = f"no ambient CSV ({name}*.csv or {name}/*.csv with the columns {list(channels)})"
        return None, wanted + (f"; only inertial CSVs: {found}" if found else "")
    problems = []
    for c in candidates:
        if not c.names:
            source = "it has no header and no column_names.txt was found in its folder or above"
            problems.append(f"{c.path}: {source}")
        else:
            missing = [ch for ch in channels if ch not in c.names]
            origin = f" (names from {c.names_file})" if c.names_file else ""
            problems.append(f"{c.path} lacks column(s) {missing}; it has {c.names}{origin}")
    raise ValueError(f"trial {name}: ambient CSV without the requested channels: " + "; ".join(problems))


def discover_trials(
    root: str | Path,
    channels: Sequence[str],
    *,
    video_glob: str = "**/*.mp4",
    csv_glob: str = "**/*.csv",
    require_video: bool = True,
) -> Discovery:
    """Find every trial under `root` by trial id, whatever the folder tree.

    Args:
        root: Folder holding the release (any depth).
        channels: Ambient channels that identify the ambient CSV.
        video_glob: Pattern (relative to root) of the video files.
        csv_glob: Pattern of the CSV files.
        require_video: Count a trial without video as incomplete (false: sensor-only
            prediction, which never opens a video).

    Returns:
        Complete trials and, separately, the incomplete ones with what they lack.

    Raises:
        FileNotFoundError: `root` does not exist or holds no trial files.
        ValueError: Ambiguous files, or an ambient CSV without the requested channels.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"data.init_args.root: HWU-USP folder {root} does not exist")
    videos: dict[str, list[Path]] = {}
    csvs: dict[str, list[Path]] = {}
    for pattern, bucket in ((video_glob, videos), (csv_glob, csvs)):
        for path in sorted(root.glob(pattern)):
            if not path.is_file():
                continue
            trial = trial_of_path(path.relative_to(root))
            if trial is not None:
                bucket.setdefault(trial_name(*trial), []).append(path)
    names = sorted(set(videos) | set(csvs))
    if not names:
        raise FileNotFoundError(
            f"no HWU-USP trial files (<activity>_s<NN>, globs {video_glob!r} and {csv_glob!r}) "
            f"under {root}"
        )
    discovery = Discovery(root)
    for name in names:
        activity, subject = parse_trial_name(name)
        trial_videos = videos.get(name, [])
        if len(trial_videos) > 1:
            raise ValueError(
                f"trial {name}: several videos {[str(p) for p in trial_videos]}; narrow "
                "data.init_args.video_glob (e.g. 'rgb_blurred/**/*.mp4')"
            )
        ambient, reason = _choose_ambient(name, csvs.get(name, []), root, channels)
        missing = []
        if not trial_videos and require_video:
            missing.append(f"no video ({name}*.mp4 or {name}/*.mp4 matching {video_glob!r})")
        if ambient is None:
            missing.append(reason)
        if missing:
            found = [str(p) for p in trial_videos] + ([str(ambient.path)] if ambient else [])
            discovery.incomplete[name] = "; ".join(missing) + (f"; found {found}" if found else "")
            continue
        assert ambient is not None
        video = trial_videos[0] if trial_videos else None
        discovery.trials[name] = Trial(name, activity, subject, video, ambient.path, ambient)
    return discovery
