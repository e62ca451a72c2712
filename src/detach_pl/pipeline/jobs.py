"""Parallel jobs for the quality benchmarks: one subprocess per (seed, group of rows sharing a first step).

These small models use a 2-core machine better as N single-threaded processes than as one
process with N threads. A job is the benchmark script itself, re-run for one seed and one group
of rows; it writes its results to a JSON file that the parent merges.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from detach_pl.pipeline.stages import StageFailed
from detach_pl.pipeline.table import SIZES, Row, Step


def split_overrides(argv: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(a benchmark's own arguments, the LightningCLI overrides after `--`); None: sys.argv."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def bench_parser(description: str, config_dir: Path) -> argparse.ArgumentParser:
    """A table benchmark's parser with the options it starts with: the configs and the size."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config-dir", type=Path, default=config_dir, help="the dataset's configs")
    parser.add_argument("--size", choices=sorted(SIZES), default="default", help="epochs (and data) per step kind")
    return parser


def add_job_options(parser: argparse.ArgumentParser, repo: Path, name: str, resume_help: str) -> None:
    """The options of a table benchmark `bench_<name>` after its own: threads, folders, report, resume.

    `--seed-results` (hidden) is set by the parent on each parallel job: the file it writes its
    results to.
    """
    parser.add_argument("--threads", type=int, default=None, help="torch threads per job (default: cores / jobs)")
    parser.add_argument("--work-dir", type=Path, default=repo / "runs" / f"bench_{name}", help="run folders")
    parser.add_argument("--cache-dir", type=Path, default=repo / "data" / "cache", help="shared data cache")
    parser.add_argument("--output", type=Path, default=repo / "benchmarks" / f"{name}.md", help="Markdown report")
    parser.add_argument("--resume", action="store_true", help=resume_help)
    parser.add_argument("--seed-results", type=Path, default=None, help=argparse.SUPPRESS)


def quiet_job(threads: int) -> None:
    """Set up a benchmark process: its torch threads; Lightning's info logs and few-workers hint off."""
    torch.set_num_threads(threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def free_machine_minutes(cpu_per_job: Sequence[float], jobs: int, threads: int) -> float:
    """Wall time the jobs would take on free cores: first-free-slot schedule over `jobs` slots.

    A job's wall time is taken as its CPU time / `threads` (no contention, perfect threading),
    so this is an estimate for a machine with jobs × threads free cores.
    """
    slots = [0.0] * jobs
    for seconds in cpu_per_job:
        slots[slots.index(min(slots))] += seconds / threads
    return max(slots) / 60


def work_units(rows: Sequence[Row]) -> list[list[Row]]:
    """Rows grouped by their first step (rows sharing a stage 1 must run in one job).

    The groups with the most steps come first: a longest-first order keeps parallel jobs balanced.
    """
    groups: dict[Step | None, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.steps[0] if row.steps else None, []).append(row)
    weight = {first: len({step for row in members for step in row.steps}) for first, members in groups.items()}
    return [groups[first] for first in sorted(groups, key=lambda first: -weight[first])]


@dataclass
class Job:
    """A running subprocess: one seed, one group of rows."""

    seed: int
    rows: list[Row]
    process: subprocess.Popen
    output: Path
    log: Path


def run_in_jobs(
    script: Path,
    arguments: Callable[[int, list[Row], Path], list[str]],
    seeds: Sequence[int],
    rows: Sequence[Row],
    jobs: int,
    work_dir: Path,
    done: Callable[[int, list[Row], dict[str, Any]], None],
) -> None:
    """Every (seed, group of rows) as `python <script> <arguments(seed, group, output)>`, `jobs` at a time.

    A job writes its results to `<work_dir>/seed<N>-<group>.json` (the `output` its arguments
    must name) and its output to the `.log` beside it; `done(seed, group, results)` receives each
    job's parsed JSON. The groups are those of `work_units`, so no two jobs train the same step.
    A failed job stops the others and raises StageFailed with the end of its log.
    """
    pending = [(seed, group) for group in work_units(rows) for seed in seeds]
    running: list[Job] = []
    work_dir.mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < jobs:
            seed, group = pending.pop(0)
            name = f"seed{seed}-{group[0].key}"
            output, log = work_dir / f"{name}.json", work_dir / f"{name}.log"
            command = [sys.executable, str(script), *arguments(seed, group, output)]
            with log.open("w") as stream:
                process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
            running.append(Job(seed, group, process, output, log))
        time.sleep(1)
        for job in [job for job in running if job.process.poll() is not None]:
            running.remove(job)
            if job.process.returncode != 0:
                for other in running:
                    other.process.terminate()
                tail = "\n".join(job.log.read_text().splitlines()[-30:])
                raise StageFailed(f"seed {job.seed} failed (exit {job.process.returncode}); end of {job.log}:\n{tail}")
            done(job.seed, job.rows, json.loads(job.output.read_text()))
