"""Runs the quality benchmarks' steps in-process: pre-training chains shared between rows, probes.

Every step runs through `detach_pl.pipeline.stages.run_stage` with its run folder set to
`<step folder>/runs` (`--run_dir`), so nothing lands where the configs' own `run_dir` points; a
finished step leaves a step.json (a probe a probe.json) in its step folder that `resume` reuses.
"""

from __future__ import annotations

import gc
import json
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from detach_pl.io import write_atomically
from detach_pl.pipeline.metrics import TEST_METRICS
from detach_pl.pipeline.stages import last_checkpoint, run_stage
from detach_pl.pipeline.table import DIAGNOSTIC_KEYS, INPUT_SETTING, QUIET, ROW_KEYS, SEED_SETTINGS, Row, Size, Step
from detach_pl.report import latest_metrics

#: The run folder of a step inside its step folder (checkpoints, TensorBoard events, test metrics).
RUN_FOLDER = "runs"


@dataclass
class StepResult:
    """Where a finished step left its checkpoint, and the diagnostics it logged."""

    checkpoint: str
    diagnostics: dict[str, float]
    seconds: float


class Bench:
    """Runs the rows' steps, sharing common prefixes, and keeps every probe's test metrics.

    Args:
        config_dir: Folder of the dataset's configs (stage1.yaml, stage2.yaml, probe.yaml, …).
        work_dir: Folder of the per-seed, per-step run folders.
        size: Size settings.
        extra: Arguments appended to every step.
        resume: Reuse finished steps found in `work_dir` (each leaves a step.json).
    """

    def __init__(self, config_dir: Path, work_dir: Path, size: Size, extra: Sequence[str], resume: bool) -> None:
        self.config_dir = config_dir.resolve()
        self.work_dir = work_dir.resolve()
        self.size = size
        self.extra = list(extra)
        self.resume = resume
        self.finished: dict[Path, StepResult] = {}

    def check_configs(self, rows: Sequence[Row]) -> None:
        """Fail before training when a config some row needs is missing."""
        needed = {"probe.yaml"} | {config for row in rows for step in row.steps for config in step.configs}
        missing = sorted(name for name in needed if not (self.config_dir / name).is_file())
        if missing:
            raise FileNotFoundError(
                f"--config-dir {self.config_dir} lacks {', '.join(missing)}; add them or choose rows "
                f"with --rows (one or more of {', '.join(ROW_KEYS)})"
            )

    def arguments(self, step: Step, seed: int, previous: str | None) -> list[str]:
        """The command line of a step: base config, size, overlays, seed, input checkpoint, extras.

        The run folder is not part of it (`run_in` adds it): the same step runs in any folder.
        """
        base, *overlays = (str(self.config_dir / config) for config in step.configs)
        args = ["--config", base, *self.size.overrides(step.kind)]
        for overlay in overlays:
            args += ["--config", overlay]
        for setting in (*SEED_SETTINGS["all"], *SEED_SETTINGS.get(step.kind, ())):
            args += [setting, str(seed)]
        if step.kind in INPUT_SETTING:
            args += [INPUT_SETTING[step.kind], previous if previous is not None else "null"]
        return [*args, *QUIET, *self.extra]

    def run_step(self, step: Step, folder: Path, seed: int, previous: str | None) -> StepResult:
        """Fit one pre-training step in `folder` (or reuse it) and return its checkpoint."""
        if folder in self.finished:
            return self.finished[folder]
        record = folder / "step.json"
        if self.resume and record.is_file():
            result = StepResult(**json.loads(record.read_text()))
            if Path(result.checkpoint).is_file():
                self.finished[folder] = result
                return result
        start = time.perf_counter()
        cli = run_in(folder, ["fit", *self.arguments(step, seed, previous)], f"{step.slug} (seed {seed})")
        path = str(last_checkpoint(cli, f"{step.slug} (seed {seed}) in {folder}"))
        metrics = cli.trainer.callback_metrics
        diagnostics = {key: float(metrics[key]) for key in DIAGNOSTIC_KEYS if key in metrics}
        result = StepResult(path, diagnostics, time.perf_counter() - start)
        write_atomically(record, json.dumps(result.__dict__, indent=2))
        self.finished[folder] = result
        del cli
        gc.collect()
        return result

    def run_probe(
        self, folder: Path, seed: int, encoder_checkpoint: str | None, extra: Sequence[str] = ()
    ) -> dict[str, float]:
        """Fit the linear probe on the frozen sensor encoders, test it, return its test metrics.

        `extra` is appended to the probe's command line (e.g. the runs whose labels it sees).
        """
        probe = Step(("probe.yaml",), "probe")
        record = folder / "probe.json"
        if self.resume and record.is_file():
            return json.loads(record.read_text())
        arguments = [*self.arguments(probe, seed, encoder_checkpoint), *extra]
        fitted = run_in(folder, ["fit", *arguments], f"probe (seed {seed})")
        last = last_checkpoint(fitted, f"probe (seed {seed}) in {folder}")
        del fitted
        test_args = ["test", *arguments, "--ckpt_path", str(last)]
        run_in(folder, test_args, f"probe test (seed {seed})")
        metrics = latest_metrics(folder)
        write_atomically(record, json.dumps(metrics, indent=2))
        gc.collect()
        return metrics

    def pretrain(self, row: Row, seed: int) -> tuple[str | None, Path, dict[str, float], float]:
        """Run (or reuse) a row's pre-training steps for one seed.

        Returns the last step's checkpoint (None: random encoders), the folder of the last step
        (where the row's probes go), the diagnostics of the steps, and the seconds spent on the
        steps this call ran (0 for reused steps).
        """
        folder = self.work_dir / f"seed{seed}"
        previous: str | None = None
        diagnostics: dict[str, float] = {}
        seconds = 0.0
        for step in row.steps:
            folder = folder / step.slug
            reused = folder in self.finished
            result = self.run_step(step, folder, seed, previous)
            seconds += 0.0 if reused else result.seconds
            previous = result.checkpoint
            diagnostics.update(result.diagnostics)
        return previous, folder, diagnostics, seconds

    def run_row(self, row: Row, seed: int) -> tuple[dict[str, float], dict[str, float], float]:
        """Pre-train (sharing finished prefixes), probe and test one row for one seed.

        Returns the probe's test metrics, the diagnostics of the row's steps, and the seconds spent
        on the steps this call ran (0 for reused steps).
        """
        checkpoint, folder, diagnostics, seconds = self.pretrain(row, seed)
        start = time.perf_counter()
        metrics = self.run_probe(folder / "probe", seed, checkpoint)
        return metrics, diagnostics, seconds + time.perf_counter() - start


def run_in(folder: Path, args: list[str], what: str) -> LightningCLI:
    """`detach <args>` in-process, its run folder `<folder>/runs` (whatever the configs say)."""
    folder.mkdir(parents=True, exist_ok=True)
    return run_stage([*args, "--run_dir", str(folder / RUN_FOLDER)], f"{what} in {folder}")


@dataclass
class SeedResults:
    """Everything one seed produced, per row key, and the CPU seconds it took."""

    runs: dict[str, dict[str, float]]
    diagnostics: dict[str, dict[str, float]]
    seconds: dict[str, float]
    cpu_seconds: float = 0.0
    job_cpu_seconds: list[float] = field(default_factory=list)


def used_cpu_seconds() -> float:
    """CPU time of this process and its finished children (e.g. DataLoader workers)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(part.ru_utime + part.ru_stime for part in usage)


def run_seed(bench: Bench, rows: Sequence[Row], seed: int) -> SeedResults:
    """All rows for one seed, in this process."""
    results = SeedResults({}, {}, {})
    start, cpu_start = time.perf_counter(), used_cpu_seconds()
    for row in rows:
        metrics, diagnostics, spent = bench.run_row(row, seed)
        results.runs[row.key], results.diagnostics[row.key], results.seconds[row.key] = metrics, diagnostics, spent
        print(
            f"[{time.perf_counter() - start:7.0f} s] seed {seed} {row.name}: "
            + ", ".join(f"{metric} {metrics[metric]:.3f}" for metric in TEST_METRICS),
            flush=True,
        )
    results.cpu_seconds = used_cpu_seconds() - cpu_start
    return results
