"""The `detach` console script: the CLI with a faster start and, for predict and export, a faster exit.

Two costs of a short command that are not its work (measured: docs/deploy.md, benchmarks/predict.md):

- Start: importing torch, Lightning and what Lightning imports (torchmetrics → torchvision →
  torch._dynamo → sympy) creates millions of objects the garbage collector tracks (4.5 million measured),
  and its full collections during the import walk all of them again and again (≈ 1 s). The CLI
  is imported with the collector paused; the imported objects are then frozen (`gc.freeze`: moved
  out of the collected generations, never walked again) and the collector is switched back on.
- Exit: tearing the interpreter down deallocates those objects one by one (≈ 1.5 s). After
  `detach predict` and `detach export` have succeeded, every output file is written (atomically)
  and closed, so the process finishes the interpreter's exit work that matters — joins its
  non-daemon threads, runs the `atexit` handlers (logging's flush and close, multiprocessing's
  clean-up of workers), flushes stdout and stderr — and then ends with `os._exit(0)`, skipping
  only the deallocation. Any error, and every other subcommand (fit, test, prepare), exits the
  ordinary way with its ordinary status and message.

`python -m detach_pl.cli` runs the same command (with the fast exit; its import happens before
any code of ours runs, so without the paused collector).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType

#: Subcommands that exit through `fast_exit` once they have succeeded (their outputs are closed).
FAST_EXIT_SUBCOMMANDS = ("predict", "export")


def import_paused(name: str) -> ModuleType:
    """Import module `name` with the garbage collector paused, then freeze what exists and resume.

    The collector's previous state is restored (a caller that had switched it off keeps it off).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        module = importlib.import_module(name)
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
    return module


def exits_fast(arguments: Sequence[str]) -> bool:
    """Whether the command line `arguments` (without the program name) ends through `fast_exit`."""
    return bool(arguments) and arguments[0] in FAST_EXIT_SUBCOMMANDS


def fast_exit(status: int = 0) -> None:
    """End the process now, without deallocating the interpreter's objects.

    What an ordinary exit does that matters is done first: non-daemon threads are joined, the
    `atexit` handlers run, stdout and stderr are flushed. If flushing fails (a closed pipe), this
    returns and the ordinary exit reports it.
    """
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon and thread.is_alive():
            thread.join()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(status)


def run(command: Callable[[], None], arguments: Sequence[str]) -> None:
    """Run `command` (the CLI's `console_main`); on success exit fast if `arguments` allow it.

    An exception (including SystemExit, which carries the CLI's status for bad input) propagates
    to the ordinary exit.
    """
    command()
    if exits_fast(arguments):
        fast_exit(0)


def console_main() -> None:
    """Entry point of the `detach` script (pyproject.toml): `detach_pl.cli.console_main`, started and ended fast."""
    cli = import_paused("detach_pl.cli")
    run(cli.console_main, sys.argv[1:])


if __name__ == "__main__":
    console_main()
