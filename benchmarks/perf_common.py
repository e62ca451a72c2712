"""What the benchmark scripts share: thread settings, the machine's name, timing, tables, reports.

Timings are medians of several repeats (a shared machine's load makes single runs noisy); the
reports state the load average next to the figures, and ratios against a named limit are the
figures to compare across machines.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from detach_pl.io import write_atomically

REPO = Path(__file__).resolve().parents[1]


def set_threads(count: int = 1) -> None:
    """Run torch on `count` intra-op threads (1: figures that do not depend on a neighbour's load)."""
    torch.set_num_threads(count)


def machine_name(device: torch.device | str = "cpu") -> str:
    """CPU model and core count, torch version, and the GPU's name when `device` is CUDA."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"
    if torch.device(device).type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(torch.device(device))}"
    return text


def load_average() -> float:
    """The 1-minute load average (how many runnable processes shared the cores)."""
    return os.getloadavg()[0]


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a timer measures it (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    run: Callable[[], object], *, repeats: int = 5, warmup: int = 1, device: torch.device | str = "cpu"
) -> float:
    """Median wall time of `run()` over `repeats` calls after `warmup` untimed ones."""
    return interleaved_median_seconds({"run": run}, repeats=repeats, warmup=warmup, device=device)["run"]


def interleaved_median_seconds(
    runs: Mapping[str, Callable[[], object]], *, repeats: int = 5, warmup: int = 1, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Median wall time of each of `runs`, timed in turn within every repeat.

    Timing one variant's repeats after the other's lets a drift of a shared machine's load read
    as a difference between them; taking turns spreads any drift over all of them alike.
    """
    for _ in range(warmup):
        for run in runs.values():
            run()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            synchronize(device)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak_rss() -> None:
    """Start a new peak for `peak_rss_bytes`, so that a figure holds no earlier section's peak (Linux).

    Writing 5 to `/proc/self/clear_refs` sets the process's high-water mark (VmHWM) to its resident size now.
    """
    if CLEAR_REFS.exists():
        CLEAR_REFS.write_text("5")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process since `reset_peak_rss` (VmHWM), else since it started (`ru_maxrss`)."""
    if STATUS.exists():
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: str | Path, text: str) -> None:
    """Write a report atomically (a reader never sees half of it)."""
    write_atomically(path, text if text.endswith("\n") else text + "\n")
