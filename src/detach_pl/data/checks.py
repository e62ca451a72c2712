"""Up-front checks and defaults of data settings, so a bad setting fails before any work starts."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

Item = TypeVar("Item")
Checked = TypeVar("Checked")

#: Upper bound of the automatic DataLoader worker count (per process).
MAX_AUTO_WORKERS = 4


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a SLURM allocation), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def resolve_num_workers(num_workers: int | None) -> int:
    """DataLoader workers: the setting, or for None min(4, CPUs − 1) (one CPU left for training).

    Choosing from the CPUs present keeps a laptop or a 2-core VM from starting more loader
    processes than it has cores.
    """
    if num_workers is not None:
        return num_workers
    return max(0, min(MAX_AUTO_WORKERS, available_cpus() - 1))


def ensure_writable_folder(folder: str | Path, setting: str) -> Path:
    """Create `folder` if needed and prove it writable, naming the setting when it is not.

    Without this check an unwritable cache folder surfaces minutes later as an error about a
    hidden temporary file that the user never named.

    Raises:
        NotADirectoryError: The path, or a parent of it, is a file.
        PermissionError: The folder cannot be created or written.
    """
    folder = Path(folder).expanduser()
    hint = f"choose a folder you can write, e.g. --{setting} ~/detach-cache"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise NotADirectoryError(f"{setting}={str(folder)!r} is not a folder ({error}); {hint}") from error
    except OSError as error:
        raise PermissionError(f"{setting}={str(folder)!r} cannot be created ({error}); {hint}") from error
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
    except OSError as error:
        raise PermissionError(f"{setting}={str(folder)!r} is not writable ({error}); {hint}") from error
    os.close(handle)
    os.unlink(probe)
    return folder


def timestamp_problem(time: np.ndarray) -> tuple[int, str] | None:
    """The first row (0-based) whose timestamp is not finite or does not increase, and why."""
    bad = np.flatnonzero(~np.isfinite(time))
    if bad.size:
        return int(bad[0]), f"is {time[bad[0]]}"
    steps = np.flatnonzero(np.diff(time) <= 0)
    if steps.size:
        row = int(steps[0]) + 1
        return row, f"goes from {time[row - 1]:.0f} to {time[row]:.0f} ms (expected strictly increasing times)"
    return None


def check_each(
    items: Sequence[Item], name_of: Callable[[Item], str], check: Callable[[Item], Checked], where: str, kind: str
) -> dict[str, Checked]:
    """`check` of every item by name, or one error naming every item that failed and why.

    A reader calls this on every run's files before the cache build decodes any frame, so a bad
    cell in the last run fails at once instead of after the runs before it were decoded.

    Args:
        items: The runs (or trials).
        name_of: An item's name, for the result and the message.
        check: Reads an item's files; raises OSError or ValueError when it cannot.
        where: What the items belong to, for the message (e.g. the folder).
        kind: What an item is called ("run", "trial").

    Raises:
        ValueError: One or more items failed their check (each named with its error).
    """
    checked, problems = {}, []
    for item in items:
        try:
            checked[name_of(item)] = check(item)
        except (OSError, ValueError) as error:
            problems.append(f"{name_of(item)}: {error}")
    if problems:
        raise ValueError(
            f"{where}: {len(problems)} of {len(items)} {kind}(s) cannot be read, found before building the cache:\n  "
            + "\n  ".join(problems)
        )
    return checked
