"""Atomic file writes: a reader (or a resumed run) never sees half a file."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write `data` to `path` through a temporary file beside it and a rename.

    The temporary (`.<name>.tmp-<host>-<pid>`) is flushed to disk before `os.replace`, so after a
    crash `path` holds either its old content or the new one, never a truncated file. Text is
    written as UTF-8.

    Raises:
        OSError: The folder is not writable (the message names `path`).
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path} ({error.strerror})") from error
    finally:
        if temporary.exists():
            temporary.unlink()
