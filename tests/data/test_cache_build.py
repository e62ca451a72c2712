"""Building the window cache survives kill -9, SIGTERM and a second builder (issue 12, item 5)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from detach_pl.data.cache import (
    CacheBuildInterrupted,
    RunRecording,
    WindowCache,
    build_cache,
    remove_stale_temporaries,
)
from detach_pl.io import write_atomically
from detach_pl.testing.cache import META, SETTINGS, recordings


def start_builder(
    cache: Path, marker: Path, sleep: float, runs: int = 2, go: Path | None = None
) -> subprocess.Popen[str]:
    """Run the builder program in its own process (stdout and stderr captured); `go`: see its `--go`."""
    return subprocess.Popen(
        [sys.executable, "-m", "detach_pl.testing.cache", str(cache), str(marker), "--sleep", str(sleep),
         "--runs", str(runs), *(["--go", str(go)] if go is not None else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def read_stderr_until(
    process: subprocess.Popen[str], text: str, timeout: float = 60.0
) -> tuple[list[str], threading.Thread]:
    """Collect `process`'s stderr lines in a thread; return the list and the thread once a line holds `text`.

    The thread reads on until the process closes stderr (so the pipe never fills up); join it to
    have every line. Fails if `text` does not come within `timeout` seconds.
    """
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if text in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not seen.wait(timeout):
        process.kill()
        raise AssertionError(f"no stderr line with {text!r} within {timeout} s: {lines}")
    return lines, reader


def wait_for_temporary(folder: Path, process: subprocess.Popen[str], timeout: float = 60.0) -> Path:
    """Wait until the builder has created its temporary file (the build is under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(".*.tmp-*"))
        if found:
            return found[0]
        if process.poll() is not None:
            raise AssertionError(f"the builder ended early: {process.communicate()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the builder never created its temporary file")


def test_next_build_after_kill_9_leaves_only_the_cache(tmp_path: Path) -> None:
    cache, marker = tmp_path / "cache" / "c.h5", tmp_path / "marker"
    builder = start_builder(cache, marker, sleep=60.0)
    temporary = wait_for_temporary(cache.parent, builder)
    builder.send_signal(signal.SIGKILL)
    builder.wait(timeout=30)
    assert temporary.exists()  # what kill -9 leaves behind
    build_cache(cache, recordings(marker, 0.0, 2), SETTINGS, META, progress=False)
    assert sorted(path.name for path in cache.parent.iterdir()) == ["c.h5"]
    assert WindowCache(cache).run_names == ["run0", "run1"]


def test_sigterm_during_a_build_removes_the_temporary_and_says_why(tmp_path: Path) -> None:
    cache, marker = tmp_path / "cache" / "c.h5", tmp_path / "marker"
    builder = start_builder(cache, marker, sleep=60.0)
    wait_for_temporary(cache.parent, builder)
    builder.send_signal(signal.SIGTERM)
    _, stderr = builder.communicate(timeout=30)
    assert builder.returncode != 0
    assert f"SIGTERM received while building the window cache {cache}" in stderr
    assert "the partial cache" in stderr
    assert list(cache.parent.iterdir()) == []


def sigterm_inside_an_extension(runs: Iterator[RunRecording], swallow: bool) -> Iterator[RunRecording]:
    """Deliver SIGTERM while the first run is read, and mishandle it as C extensions can.

    `swallow`: the interrupt vanishes (as in a weakref callback, where Python only prints it);
    otherwise it is turned into a `TypeError` (as h5py does while writing an attribute).
    """
    for index, run in enumerate(runs):
        if index == 0:
            try:
                signal.raise_signal(signal.SIGTERM)
            except CacheBuildInterrupted:
                if not swallow:
                    raise TypeError("Operation not defined for data type class") from None
        yield run


@pytest.mark.parametrize("swallow", [False, True], ids=["turned_into_type_error", "swallowed"])
def test_sigterm_mishandled_by_an_extension_still_stops_the_build(
    tmp_path: Path, swallow: bool, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache" / "c.h5"
    runs = sigterm_inside_an_extension(recordings(tmp_path / "marker", 0.0, 2), swallow)
    with pytest.raises(CacheBuildInterrupted, match="SIGTERM received while building the window cache") as info:
        build_cache(cache, runs, SETTINGS, META, progress=False)
    if not swallow:
        assert isinstance(info.value.__cause__, TypeError)
    assert "the partial cache" in caplog.text
    assert list(cache.parent.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_two_concurrent_builders_build_once_and_both_use_the_cache(tmp_path: Path) -> None:
    cache, marker = tmp_path / "cache" / "c.h5", tmp_path / "marker"
    go = tmp_path / "go"
    first = start_builder(cache, marker, sleep=0.0, go=go)  # holds the lock until `go` exists
    wait_for_temporary(cache.parent, first)
    second = start_builder(cache, marker, sleep=0.0)
    second_stderr, reader = read_stderr_until(second, "waiting for the other builder")
    go.touch()
    first_output = first.communicate(timeout=120)
    assert second.wait(timeout=120) == 0 and second.stdout is not None
    second_stdout = second.stdout.read()
    reader.join(timeout=30)
    assert first.returncode == 0, first_output
    assert len(marker.read_text().splitlines()) == 1  # the recordings were read once
    assert any("reusing it" in line for line in second_stderr), second_stderr
    assert all("built 2 run(s)" in stdout for stdout in (first_output[0], second_stdout))  # the reuser gets them too
    assert sorted(path.name for path in cache.parent.iterdir()) == ["c.h5"]
    assert len(WindowCache(cache)) > 0


def test_only_dead_local_builders_temporaries_are_removed(tmp_path: Path) -> None:
    cache = tmp_path / "c.h5"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    try:
        names = {
            "live": f".c.h5.tmp-{host}-{sleeper.pid}",
            "dead": f".c.h5.tmp-{host}-{dead.pid}",
            "legacy_dead": f".c.h5.tmp-{dead.pid}",
            "other_host": f".c.h5.tmp-elsewhere.example-{dead.pid}",
            "other_cache": f".d.h5.tmp-{host}-{dead.pid}",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        removed = remove_stale_temporaries(cache)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(path.name for path in removed) == sorted([names["dead"], names["legacy_dead"]])
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [names["live"], names["other_host"], names["other_cache"]]
    )


def test_the_sigterm_handler_is_restored_after_a_build(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    build_cache(tmp_path / "c.h5", recordings(tmp_path / "marker", 0.0, 1), SETTINGS, META, progress=False)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_reused_cache_returns_the_stored_reports(tmp_path: Path) -> None:
    cache, marker = tmp_path / "c.h5", tmp_path / "marker"
    built = build_cache(cache, recordings(marker, 0.0, 2), SETTINGS, META, progress=False)
    reused = build_cache(cache, recordings(marker, 0.0, 2), SETTINGS, META, progress=False)
    assert reused == built
    assert len(marker.read_text().splitlines()) == 1


def test_write_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "done.json"
    write_atomically(target, json.dumps({"checkpoint": "a"}))
    write_atomically(target, b'{"checkpoint": "b"}')
    assert json.loads(target.read_text()) == {"checkpoint": "b"}
    assert [path.name for path in tmp_path.iterdir()] == ["done.json"]
    with pytest.raises(OSError, match=str(tmp_path / "missing" / "x.json")):
        write_atomically(tmp_path / "missing" / "x.json", "{}")
    assert np.array_equal(sorted(os.listdir(tmp_path)), ["done.json"])
