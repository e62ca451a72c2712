"""One builder per cache: the lock beside it, removal of dead builders' temporaries, SIGTERM as Ctrl-C."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-(?:(?P<host>.+)-)?(?P<pid>\d+)$")


class CacheBuildInterrupted(KeyboardInterrupt):
    """SIGTERM arrived while a cache was being built (handled like Ctrl-C: nothing half-written stays)."""


def temporary_path(path: Path) -> Path:
    """Where the cache at `path` is written before it is renamed: `.<name>.tmp-<host>-<pid>`."""
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def _process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporaries of `path` left by builders on this host that no longer run.

    A temporary is `.<name>.tmp-<host>-<pid>` (or `.<name>.tmp-<pid>`, written before the host
    was part of the name: taken as this host's). Temporaries of other hosts (a shared folder)
    and of live processes are left alone. Returns what was removed.
    """
    host, removed = socket.gethostname(), []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        match = _TEMPORARY.match(candidate.name)
        if match is None or match["name"] != path.name or match["host"] not in (None, host):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _process_alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            size = candidate.stat().st_size
            candidate.unlink()
            removed.append(candidate)
            log.warning(
                "removed %s (%.1f MB), left by an interrupted build of process %d, which has ended",
                candidate, size / 1e6, pid,
            )
    return removed


@contextlib.contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` (flock) while the cache at `path` is built.

    A second builder logs that it waits for the first (and which process that is), then blocks.
    The holder deletes the lock file before releasing it, so a finished build leaves only the
    cache; a waiter that then holds a deleted file's lock notices (inode check) and locks anew.

    Raises:
        OSError: The lock file cannot be created; the message names it.
    """
    lock_path = path.with_name(f"{path.name}.lock")
    while True:
        try:
            handle = open(lock_path, "a+")
        except OSError as error:
            raise OSError(
                error.errno, f"cannot create the lock file {lock_path} beside the window cache ({error.strerror})"
            ) from error
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            log.warning("waiting for the other builder of %s (%s) to finish (lock %s)", path, holder, lock_path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    with handle:
        try:
            handle.truncate(0)
            handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def sigterm_as_interrupt(what: str) -> Iterator[Callable[[], None]]:
    """Turn SIGTERM into `CacheBuildInterrupted` (a KeyboardInterrupt) while `what` runs.

    SLURM and other schedulers send SIGTERM at a time limit; by default it kills Python without
    running `finally` blocks. Installed only in the main thread (signals are delivered there),
    and the previous handler is restored afterwards.

    The handler raises wherever Python happens to be. Inside a C extension the exception may be
    turned into another one (h5py writing an attribute raises a `TypeError`), or swallowed (in a
    weakref callback Python only prints it). So whatever escapes after a SIGTERM is re-raised
    as `CacheBuildInterrupted` with that error as its cause, and the body gets a function to
    call at its safe points (between runs, before the rename) that raises if a SIGTERM came.

    Yields:
        `raise_if_interrupted`: raises `CacheBuildInterrupted` once a SIGTERM has arrived.
    """
    message = f"SIGTERM received while {what}"
    received = False

    def raise_if_interrupted() -> None:
        if received:
            raise CacheBuildInterrupted(message)

    if threading.current_thread() is not threading.main_thread():
        yield raise_if_interrupted
        return

    def interrupt(signum: int, frame: object) -> None:
        nonlocal received
        received = True
        raise CacheBuildInterrupted(message)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield raise_if_interrupted
    except CacheBuildInterrupted:
        raise
    except BaseException as error:
        if received:
            raise CacheBuildInterrupted(message) from error
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
