"""What a dataset's reader returns per run, and the report lines `detach prepare` prints.

A reader yields `RunReading`s (the recording for the cache and what reading it found); the
findings are kept by run name while the cache writer consumes the recordings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detach_pl.data.cache import RunRecording, RunReport


@dataclass(frozen=True)
class RunReading:
    """One run as a reader returns it: the recording for the cache and what reading it found.

    Attributes:
        recording: What the cache writer stores.
        findings: JSON-able notes of the reader about this run (clock unit, label counts, …),
            handed to `WindowDataModule.report_extra`; None when there is nothing to say.
    """

    recording: RunRecording
    findings: Any = None


def collect_findings(
    items: Iterable[RunRecording | RunReading], findings: dict[str, Any], read: list[bool]
) -> Iterator[RunRecording]:
    """The recordings of a reader's items, with each `RunReading`'s findings kept by run name.

    `read` gets one entry when the first item is asked for (the writer may reuse a cache that
    another process finished, and then reads none).
    """
    read.append(True)
    for item in items:
        if isinstance(item, RunReading):
            findings[item.recording.name] = item.findings
            yield item.recording
        else:
            yield item


def report_lines(cache_path: Path, report_path: Path, report: dict[str, Any], reports: list[RunReport]) -> list[str]:
    """The cache (and its size), the report file, and one line per run of what the cache writer found."""
    size = f" ({cache_path.stat().st_size / 2**30:.2f} GiB)" if cache_path.is_file() else ""
    lines = [f"cache: {cache_path}{size}", f"report: {report_path}"]
    if not report:
        lines.append("  (no report stored beside this cache)")
    for run in reports:
        notes = f"; {'; '.join(run.notes)}" if run.notes else ""
        lines.append(
            f"  {run.name}: {run.windows} windows, sensor {run.sensor_seconds:.1f} s, "
            f"video {run.video_seconds:.1f} s{notes}"
        )
    return lines
