"""What a dataset's reader returns per run: the recording for the cache and the reader's findings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from detach_pl.data.cache import RunRecording


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
