"""Quality benchmark: every row of the paper's table (baselines, DETACH, ablations), over seeds.

    python benchmarks/bench_quality.py                     # synthetic kitchen, default size, 3 seeds (< 30 min on 2 cores)
    python benchmarks/bench_quality.py --quick             # a few minutes: checks the chain, not the numbers
    python benchmarks/bench_quality.py --rows detach global --seeds 1 2
    python benchmarks/bench_quality.py --config-dir configs/opp --size config --rows floor global detach \
        -- --data.init_args.root /data/Opportunity++

Each row pre-trains its encoders (nothing: the floor; DETACH's stage 1 → stage 2 with or without an
ablation overlay; the global-alignment baseline; the supervised ceiling), then the linear probe on
the frozen sensor encoders is fitted and tested, for every seed. Every step runs in-process through
`detach_pl.cli.main`, with the working directory set to its own folder under `--work-dir`, so the
configs' relative `runs/…` paths land there; steps shared by rows (the stage 1 of most ablations)
run once per seed. With `--jobs N` (default size: N = the CPU cores) every seed's groups of rows
that share a first step run as subprocesses, N at a time, one torch thread each on a 2-core
machine: these small models use the cores better that way than with threads in one process.
Arguments after `--` are passed to every step (data and trainer settings; relative paths in them,
like a dataset root, are relative to the step folder: give them absolute).

Writes `--output` (default benchmarks/quality.md: mean ± std of weighted F1, mAP, accuracy per row
with the paper's published numbers beside them, and the alignment diagnostics of docs/method.md) and
the bar chart next to it (quality.png).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

REPO = Path(__file__).resolve().parents[1]

from detach_pl.cli import main as detach_main  # noqa: E402
from detach_pl.io import write_atomically  # noqa: E402,F401  (bench_labels and bench_teacher import it from here)
from detach_pl.report import latest_metrics  # noqa: E402

StepKind = Literal["stage1", "stage2", "baseline", "supervised", "probe"]
METRICS = ("f1_weighted", "map", "accuracy", "f1_macro")
# Diagnostics read from the trainer's callback metrics after each pre-training step.
DIAGNOSTIC_KEYS = (
    "val/cluster_accuracy",
    "val/cluster_nmi",
    "val/retrieval_top1",
    "diag/delta_s",
    "diag/sim/positive",
    "diag/sim/hard",
    "diag/sim/easy",
    "diag/sim/false",
    "diag/W_sp/easy",
    "diag/W_sp/hard",
    "diag/W_sp/false",
    "diag/W_tm/easy",
    "diag/W_tm/hard",
    "diag/W_tm/false",
    "diag/W/easy",
    "diag/W/hard",
    "diag/W/false",
)
# Which setting of a step receives the previous step's checkpoint.
INPUT_SETTING: dict[StepKind, str] = {
    "stage2": "--model.init_args.stage1_checkpoint",
    "probe": "--model.init_args.encoder_checkpoint",
}


@dataclass(frozen=True)
class Step:
    """One training run: a base config plus overlays (relative to the config folder)."""

    configs: tuple[str, ...]
    kind: StepKind

    @property
    def slug(self) -> str:
        """Folder-name form of the config chain, e.g. `stage2+stage2_no_spatial_weight`."""
        return "+".join(Path(config).stem for config in self.configs)


@dataclass(frozen=True)
class Row:
    """A row of the table: its pre-training chain (empty: random encoders) and the paper's numbers.

    `paper` holds the published (weighted F1, mAP) on Opportunity++ and on HWU-USP as text.
    """

    key: str
    name: str
    steps: tuple[Step, ...]
    paper: tuple[str, str] = ("—", "—")


STAGE1 = Step(("stage1.yaml",), "stage1")
STAGE1_NO_REFINEMENT = Step(("stage1.yaml", "ablations/stage1_no_refinement.yaml"), "stage1")


def stage2(*overlays: str) -> Step:
    """A stage-2 step: stage2.yaml plus ablation overlays."""
    return Step(("stage2.yaml", *(f"ablations/{overlay}.yaml" for overlay in overlays)), "stage2")


ROWS: tuple[Row, ...] = (
    Row("floor", "random encoders (floor)", ()),
    Row(
        "global",
        "global alignment, IMU2CLIP-style",
        (Step(("baseline_global.yaml",), "baseline"),),
        ("0.56 / 0.58 (EVI-MAE)¹", "0.60 / 0.55 (EVI-MAE)"),
    ),
    Row("detach", "DETACH", (STAGE1, stage2()), ("0.73 / 0.87", "0.73 / 0.67")),
    Row("no_spatial_weight", "DETACH w/o W^sp", (STAGE1, stage2("stage2_no_spatial_weight")), ("0.56 / 0.71", "0.65 / 0.61")),
    Row("no_temporal_weight", "DETACH w/o W^tm", (STAGE1, stage2("stage2_no_temporal_weight")), ("0.62 / 0.71", "0.60 / 0.61")),
    Row(
        "no_refinement_plain",
        "no refinement, plain InfoNCE",
        (STAGE1_NO_REFINEMENT, stage2("stage2_no_refinement_plain_info_nce")),
        ("0.59 / 0.70", "0.68 / 0.62"),
    ),
    Row(
        "no_refinement_weighted",
        "no refinement, weighted loss",
        (STAGE1_NO_REFINEMENT, stage2("stage2_no_refinement")),
        ("0.60 / 0.70", "0.69 / 0.65"),
    ),
    Row("refinement_plain", "refinement, plain InfoNCE", (STAGE1, stage2("stage2_plain_info_nce")), ("0.59 / 0.73", "0.49 / 0.62")),
    Row("cross_temporal", "DETACH, cross-modal S^tm (paper text)", (STAGE1, stage2("stage2_cross_temporal_similarity"))),
    Row("supervised", "supervised sensor encoders (ceiling)", (Step(("supervised.yaml",), "supervised"),)),
)
ROW_KEYS = tuple(row.key for row in ROWS)


@dataclass(frozen=True)
class Size:
    """Settings per step kind, applied after a step's base config and before its overlays."""

    name: str
    by_kind: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def overrides(self, kind: StepKind) -> list[str]:
        """The size's settings for one kind of step (its own plus those for "all")."""
        return [*self.by_kind.get("all", ()), *self.by_kind.get(kind, ())]


SIZES: dict[str, Size] = {
    # Just the chain: a few batches per epoch, every stage-1 phase once.
    "quick": Size(
        "quick",
        {
            "all": (
                "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
                "--data.init_args.num_workers", "0",
            ),
            "stage1": (
                "--trainer.max_epochs", "3", "--model.init_args.video_start_epoch", "1",
                "--model.init_args.refine_start_epoch", "2", "--model.init_args.min_cluster_size", "5",
            ),
            "stage2": ("--trainer.max_epochs", "1"),
            "baseline": ("--trainer.max_epochs", "2"),
            "supervised": ("--trainer.max_epochs", "2"),
            "probe": ("--trainer.max_epochs", "2"),
        },
    ),
    # The synthetic kitchen of configs/demo with 12 runs (8 train, 1 val, 3 test) instead of the
    # demo's 24 and stage 2 15 epochs instead of 30, so that three seeds of every row fit in 30
    # minutes on 2 cores; stage 1 the demo's 12 epochs, the global baseline as many as stage 1 +
    # stage 2, the probe the paper's 50. `--size config` runs the configs as written (the demo's
    # 24 runs and epochs). DataLoader workers off: the seeds run as parallel jobs instead.
    "default": Size(
        "default",
        {
            "all": (
                "--data.init_args.num_workers", "0", "--data.init_args.world.num_runs", "12",
                "--data.init_args.train_runs", json.dumps([f"run{i:02d}" for i in range(8)]),
                "--data.init_args.val_runs", "[run08]", "--data.init_args.test_runs", "[run09,run10,run11]",
            ),
            "stage2": ("--trainer.max_epochs", "15"),
            "baseline": ("--trainer.max_epochs", "27"),
            "supervised": ("--trainer.max_epochs", "30"),
            "probe": ("--trainer.max_epochs", "50"),
        },
    ),
    # The configs as written (e.g. the paper's epochs on a real dataset).
    "config": Size("config"),
}
# Per-seed settings of each kind (the seed of everything, the data order, the k-means start).
SEED_SETTINGS: dict[str, tuple[str, ...]] = {
    "all": ("--seed_everything", "--data.init_args.shuffle_seed"),
    "stage1": ("--model.init_args.kmeans_seed",),
}
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--data.init_args.progress", "false")


class StepFailed(RuntimeError):
    """A step of the benchmark failed; the message names the step and its folder."""


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
        """The command line of a step: base config, size, overlays, seed, input checkpoint, extras."""
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
        checkpoint = cli.trainer.checkpoint_callback
        if checkpoint is None or not checkpoint.last_model_path:
            raise StepFailed(
                f"{step.slug} (seed {seed}) in {folder}: no last checkpoint was written; its config "
                "needs a ModelCheckpoint callback with save_last: true"
            )
        metrics = cli.trainer.callback_metrics
        diagnostics = {key: float(metrics[key]) for key in DIAGNOSTIC_KEYS if key in metrics}
        path = str((folder / checkpoint.last_model_path).resolve())
        result = StepResult(path, diagnostics, time.perf_counter() - start)
        write_atomically(record, json.dumps(result.__dict__, indent=2))
        self.finished[folder] = result
        del cli
        gc.collect()
        return result

    def run_probe(self, folder: Path, seed: int, encoder_checkpoint: str | None) -> dict[str, float]:
        """Fit the linear probe on the frozen sensor encoders, test it, return its test metrics."""
        probe = Step(("probe.yaml",), "probe")
        record = folder / "probe.json"
        if self.resume and record.is_file():
            return json.loads(record.read_text())
        fitted = run_in(folder, ["fit", *self.arguments(probe, seed, encoder_checkpoint)], f"probe (seed {seed})")
        checkpoint = fitted.trainer.checkpoint_callback
        if checkpoint is None or not checkpoint.last_model_path:
            raise StepFailed(f"probe (seed {seed}) in {folder}: probe.yaml needs a ModelCheckpoint with save_last: true")
        last = folder / checkpoint.last_model_path
        del fitted
        test_args = ["test", *self.arguments(probe, seed, encoder_checkpoint), "--ckpt_path", str(last)]
        run_in(folder, test_args, f"probe test (seed {seed})")
        metrics = latest_metrics(folder)
        write_atomically(record, json.dumps(metrics, indent=2))
        gc.collect()
        return metrics

    def run_row(self, row: Row, seed: int) -> tuple[dict[str, float], dict[str, float], float]:
        """Pre-train (sharing finished prefixes), probe and test one row for one seed.

        Returns the probe's test metrics, the diagnostics of the row's steps, and the seconds spent
        on the steps this call ran (0 for reused steps).
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
        start = time.perf_counter()
        metrics = self.run_probe(folder / "probe", seed, previous)
        return metrics, diagnostics, seconds + time.perf_counter() - start


def run_in(folder: Path, args: list[str], what: str):
    """`detach <args>` in-process with `folder` as the working directory."""
    folder.mkdir(parents=True, exist_ok=True)
    previous, argv = Path.cwd(), sys.argv
    os.chdir(folder)
    sys.argv = argv[:1]  # the benchmark's own arguments are not the step's
    try:
        return detach_main(args)
    except SystemExit as error:
        raise StepFailed(f"{what} in {folder}: the `detach` command line was refused (exit {error.code}): {args}") from error
    finally:
        os.chdir(previous)
        sys.argv = argv


# ---- aggregation and report -------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Row → metric → (mean, std) over seeds."""
    return {
        key: {metric: mean_std([run[metric] for run in runs]) for metric in METRICS}
        for key, runs in results.items()
        if runs
    }


def average_diagnostics(diagnostics: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Row → diagnostic → mean over the seeds that logged it."""
    averaged = {}
    for key, runs in diagnostics.items():
        names = sorted({name for run in runs for name in run})
        averaged[key] = {name: statistics.fmean([run[name] for run in runs if name in run]) for name in names}
    return averaged


def fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def comparisons(summary: dict[str, dict[str, tuple[float, float]]]) -> list[str]:
    """Plain statements of the paper's expectations against the measured means."""
    lines = []
    if "detach" not in summary:
        return lines
    detach_f1 = summary["detach"]["f1_weighted"][0]
    if "global" in summary:
        gap = detach_f1 - summary["global"]["f1_weighted"][0]
        lines.append(
            f"- DETACH − global alignment, weighted F1: {gap:+.3f} (paper, Opportunity++: 0.73 − 0.56 = +0.17)."
        )
    for key in ("no_spatial_weight", "no_temporal_weight", "no_refinement_plain", "no_refinement_weighted", "refinement_plain", "cross_temporal"):
        if key in summary:
            name = next(row.name for row in ROWS if row.key == key)
            diff = summary[key]["f1_weighted"][0] - detach_f1
            std = summary[key]["f1_weighted"][1]
            verdict = "below" if diff < 0 else "not below"
            lines.append(f"- {name} − DETACH, weighted F1: {diff:+.3f} ({verdict} DETACH; row std {std:.3f}).")
    for key, name in (("floor", "random-encoder floor"), ("supervised", "supervised ceiling")):
        if key in summary:
            lines.append(f"- {name}: weighted F1 {summary[key]['f1_weighted'][0]:.3f}; DETACH {detach_f1:.3f}.")
    return lines


def machine() -> str:
    """CPU model, cores and torch threads of this machine."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}; {os.cpu_count()} logical CPUs; torch {torch.__version__}"


DIAGNOSTICS_INTRO = [
    "",
    "## Alignment diagnostics (validation set, last epoch, mean over seeds)",
    "",
    "Negative types against ground truth: easy = other place, hard = same place and other class, "
    "false = same class. ΔS = sim(v, hard) − sim(v, easy) of the cross-modal cosine similarity "
    "(> 0: the embedding groups by place; < 0: by shared motion, the P2 inversion). W^sp and W^tm "
    "are the factors as computed from the learnt features (also in the ablations that do not use "
    "them); W is the weight the loss used. Stage-1 cluster quality is Hungarian accuracy / NMI "
    "of the validation windows against the true places.",
    "",
    "| row | stage-1 cluster acc / NMI | retrieval top-1 | ΔS | sim pos / hard / easy / false "
    "| W^sp easy / hard / false | W^tm easy / hard / false | W easy / hard / false |",
    "|---|---|---|---|---|---|---|---|",
]


def joined(values: dict[str, float], *names: str) -> str:
    """ "a / b / …" of the named values, "—" where one is missing."""
    return " / ".join(f"{values[name]:.3f}" if name in values else "—" for name in names)


def write_markdown(
    path: Path,
    rows: Sequence[Row],
    summary: dict[str, dict[str, tuple[float, float]]],
    diagnostics: dict[str, dict[str, float]],
    seconds: dict[str, float],
    header: dict[str, str],
    dataset: str,
) -> None:
    """The benchmark's Markdown report: settings, the table, diagnostics, comparisons."""
    lines = [f"# Quality benchmark: the paper's table on {dataset}", ""]
    lines += [f"- {name}: {value}" for name, value in header.items()]
    lines += [
        "",
        "Weighted F1, mAP (macro AP of the softmax scores) and accuracy of the linear probe on the frozen",
        "sensor encoders, on the test runs; mean ± sample std over the seeds. The paper's numbers are",
        "for the real datasets (weighted F1 / mAP) and are given for reference only.",
        "",
        "| row | weighted F1 | mAP | accuracy | macro F1 | paper Opp++ F1 / mAP | paper HWU-USP F1 / mAP | minutes per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.key not in summary:
            continue
        values = summary[row.key]
        cells = [fmt(*values[metric]) for metric in METRICS]
        lines.append(f"| {row.name} | " + " | ".join(cells) + f" | {row.paper[0]} | {row.paper[1]} | {seconds.get(row.key, 0.0) / 60:.1f} |")
    lines += [
        "",
        "¹ The paper's best global-alignment baseline; IMU2CLIP / PRIMUS / COMODO reach 0.28–0.43 weighted F1 "
        "on Opportunity++. Minutes per seed count only the steps a row ran itself (a shared stage 1 is "
        "counted once, for the first row that needs it).",
    ]
    diagnosed = [row for row in rows if diagnostics.get(row.key)]
    if diagnosed:
        lines += DIAGNOSTICS_INTRO
    for row in diagnosed:
        values = diagnostics[row.key]
        lines.append(
            f"| {row.name} | {joined(values, 'val/cluster_accuracy', 'val/cluster_nmi')} | "
            f"{joined(values, 'val/retrieval_top1')} | {joined(values, 'diag/delta_s')} | "
            f"{joined(values, *(f'diag/sim/{k}' for k in ('positive', 'hard', 'easy', 'false')))} | "
            + " | ".join(joined(values, *(f"diag/{w}/{k}" for k in ("easy", "hard", "false"))) for w in ("W_sp", "W_tm", "W"))
            + " |"
        )
    statements = comparisons(summary)
    if statements:
        lines += ["", "## Against the paper's expectations", "", *statements]
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, "\n".join(lines))


def write_chart(path: Path, rows: Sequence[Row], summary: dict[str, dict[str, tuple[float, float]]], title: str) -> None:
    """Bars of weighted F1 and mAP per row (± std), the paper's Opportunity++ numbers as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [row for row in rows if row.key in summary]
    positions = range(len(shown))
    width = 0.38
    figure, axis = plt.subplots(figsize=(max(7.0, 1.1 * len(shown) + 2), 4.8))
    for offset, metric, label in ((-width / 2, "f1_weighted", "weighted F1"), (width / 2, "map", "mAP")):
        means = [summary[row.key][metric][0] for row in shown]
        stds = [summary[row.key][metric][1] for row in shown]
        axis.bar([p + offset for p in positions], means, width, yerr=stds, capsize=3, label=label)
        paper = [paper_value(row.paper[0], metric) for row in shown]
        points = [(p + offset, value) for p, value in zip(positions, paper) if value is not None]
        if points:
            axis.scatter(*zip(*points), marker="D", color="black", zorder=3, s=18,
                         label="paper, Opportunity++" if metric == "f1_weighted" else None)
    axis.set_xticks(list(positions), [row.name for row in shown], rotation=30, ha="right")
    axis.set_ylim(0, 1.15)  # room above 1 for the error bars and the legend
    axis.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axis.set_ylabel("linear probe, test")
    axis.set_title(title, fontsize=10)
    axis.legend(loc="upper center", ncol=3, fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    figure.savefig(temporary, dpi=120, format=path.suffix.lstrip("."))
    temporary.replace(path)
    plt.close(figure)


def paper_value(text: str, metric: str) -> float | None:
    """The F1 (first) or mAP (second) number of a "F1 / mAP …" cell, None when absent."""
    parts = text.split("/")
    index = 0 if metric == "f1_weighted" else 1
    if len(parts) < 2:
        return None
    try:
        return float(parts[index].split()[0])
    except (ValueError, IndexError):
        return None


# ---- command line -----------------------------------------------------------------------------


def split_overrides(argv: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(the script's own arguments, the LightningCLI overrides after `--`); None: sys.argv."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    argv, extra = split_overrides(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-dir", type=Path, default=REPO / "configs" / "demo", help="the dataset's configs")
    parser.add_argument("--size", choices=sorted(SIZES), default="default", help="epochs (and data) per step kind")
    parser.add_argument("--quick", action="store_true", help="same as --size quick")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: 1 2 3; quick: 1)")
    parser.add_argument("--rows", nargs="+", choices=ROW_KEYS, default=list(ROW_KEYS), help="rows to run")
    parser.add_argument("--jobs", type=int, default=None,
                        help="subprocesses at once, each one seed and one group of rows sharing a first step "
                        "(default: the CPU cores with --size default, else 1: all in this process)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per job (default: cores / jobs)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "bench_quality", help="run folders")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "data" / "cache", help="shared data cache")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "quality.md", help="Markdown report")
    parser.add_argument("--resume", action="store_true", help="reuse finished steps in --work-dir")
    parser.add_argument("--seed-results", type=Path, default=None, help=argparse.SUPPRESS)  # a job's output
    args = parser.parse_args(argv)
    if args.quick:
        args.size = "quick"
    if args.seeds is None:
        args.seeds = [1] if args.size == "quick" else [1, 2, 3]
    cores = os.cpu_count() or 1
    if args.jobs is None:
        args.jobs = cores if args.size == "default" else 1
    if args.threads is None:
        args.threads = max(1, cores // args.jobs)
    if args.jobs < 1 or args.threads < 1:
        parser.error(f"--jobs {args.jobs} and --threads {args.threads} must be >= 1")
    args.extra = extra
    return args


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


def free_machine_minutes(cpu_per_job: Sequence[float], jobs: int, threads: int) -> float:
    """Wall time the jobs would take on free cores: first-free-slot schedule over `jobs` slots.

    A job's wall time is taken as its CPU time / `threads` (no contention, perfect threading),
    so this is an estimate for a machine with jobs × threads free cores.
    """
    slots = [0.0] * jobs
    for seconds in cpu_per_job:
        slots[slots.index(min(slots))] += seconds / threads
    return max(slots) / 60


def run_seed(bench: Bench, rows: Sequence[Row], seed: int) -> SeedResults:
    """All rows for one seed, in this process."""
    results = SeedResults({}, {}, {})
    start, cpu_start = time.perf_counter(), used_cpu_seconds()
    for row in rows:
        metrics, diagnostics, spent = bench.run_row(row, seed)
        results.runs[row.key], results.diagnostics[row.key], results.seconds[row.key] = metrics, diagnostics, spent
        print(
            f"[{time.perf_counter() - start:7.0f} s] seed {seed} {row.name}: "
            + ", ".join(f"{metric} {metrics[metric]:.3f}" for metric in METRICS),
            flush=True,
        )
    results.cpu_seconds = used_cpu_seconds() - cpu_start
    return results


def work_units(rows: Sequence[Row]) -> list[list[Row]]:
    """Rows grouped by their first step (rows sharing a stage 1 must run in one job), the groups
    with the most steps first (a longest-first order keeps parallel jobs balanced)."""
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


def run_in_jobs(args: argparse.Namespace, rows: Sequence[Row]) -> dict[int, SeedResults]:
    """Every (seed, group of rows) in its own subprocess (this script), `args.jobs` at a time.

    A job writes its results to `<work-dir>/seed<N>-<group>.json` and its output to the `.log`
    beside it; the groups are those of `work_units`, so no two jobs train the same step.
    """
    pending = [(seed, group) for group in work_units(rows) for seed in args.seeds]
    running: list[Job] = []
    finished: dict[int, SeedResults] = {seed: SeedResults({}, {}, {}) for seed in args.seeds}
    args.work_dir.mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < args.jobs:
            seed, group = pending.pop(0)
            name = f"seed{seed}-{group[0].key}"
            output, log = args.work_dir / f"{name}.json", args.work_dir / f"{name}.log"
            command = [
                sys.executable, str(Path(__file__).resolve()), "--config-dir", str(args.config_dir), "--size", args.size,
                "--rows", *(row.key for row in group), "--seeds", str(seed), "--jobs", "1",
                "--threads", str(args.threads), "--work-dir", str(args.work_dir), "--cache-dir", str(args.cache_dir),
                "--resume", "--seed-results", str(output), "--", *args.extra,
            ]
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
                raise StepFailed(f"seed {job.seed} failed (exit {job.process.returncode}); end of {job.log}:\n{tail}")
            part = SeedResults(**json.loads(job.output.read_text()))
            merged = finished[job.seed]
            merged.runs.update(part.runs)
            merged.diagnostics.update(part.diagnostics)
            merged.seconds.update(part.seconds)
            merged.cpu_seconds += part.cpu_seconds
            merged.job_cpu_seconds.append(part.cpu_seconds)
            for row in job.rows:
                metrics = part.runs[row.key]
                print(f"seed {job.seed} {row.name}: " + ", ".join(f"{m} {metrics[m]:.3f}" for m in METRICS), flush=True)
    return finished


class LoadMonitor:
    """Samples the 1-minute load average every `interval` seconds while the benchmark runs."""

    def __init__(self, interval: float = 30.0) -> None:
        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> str:
        """"mean X, max Y" of the samples."""
        self._stop.set()
        self.samples.append(os.getloadavg()[0])
        return f"mean {statistics.fmean(self.samples):.1f}, max {max(self.samples):.1f}"


def repo_relative(path: Path) -> str:
    """`path` relative to the repository when it lies inside it (reports stay machine-neutral)."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, tuple[float, float]]]:
    """Run the benchmark; returns row → metric → (mean, std)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    rows = [row for row in ROWS if row.key in args.rows]
    if not args.resume and args.work_dir.exists():
        shutil.rmtree(args.work_dir)
    extra = ["--data.init_args.cache_dir", str(args.cache_dir.resolve()), *args.extra]
    bench = Bench(args.config_dir, args.work_dir, SIZES[args.size], extra, args.resume)
    bench.check_configs(rows)
    if args.seed_results is not None:  # one job of a parallel run
        (seed,) = args.seeds
        results = run_seed(bench, rows, seed)
        results.cpu_seconds = used_cpu_seconds()  # the whole job, start-up included
        write_atomically(args.seed_results, json.dumps(results.__dict__, indent=2))
        return {}
    start, load = time.perf_counter(), LoadMonitor()
    if args.jobs > 1:
        per_seed = run_in_jobs(args, rows)
    else:
        per_seed = {seed: run_seed(bench, rows, seed) for seed in args.seeds}
    wall, load_summary = time.perf_counter() - start, load.stop()
    ordered = [per_seed[seed] for seed in args.seeds]
    job_cpu = [value for seed in ordered for value in (seed.job_cpu_seconds or [seed.cpu_seconds])]
    results = {row.key: [seed.runs[row.key] for seed in ordered] for row in rows}
    diagnostics = {row.key: [seed.diagnostics[row.key] for seed in ordered] for row in rows}
    seconds = {row.key: statistics.fmean(seed.seconds[row.key] for seed in ordered) for row in rows}
    summary = summarize(results)
    command = "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = {
        "command": f"`{command.strip()}`",
        "configs": repo_relative(args.config_dir),
        "size": f"{args.size} (per step kind: {json.dumps({k: ' '.join(v) for k, v in SIZES[args.size].by_kind.items()})})",
        "seeds": ", ".join(map(str, args.seeds)) + f" ({args.jobs} job(s) at a time, {args.threads} torch thread(s) each)",
        "machine": machine(),
        "wall time": f"{wall / 60:.1f} min (1-minute load average of the machine during the run: {load_summary})",
        "CPU time": "per seed " + " / ".join(f"{seed.cpu_seconds / 60:.1f}" for seed in ordered) + " min; on "
        f"{args.jobs * args.threads} free cores this run would take about "
        f"{free_machine_minutes(job_cpu, args.jobs, args.threads):.1f} min",
    }
    name = args.config_dir.resolve().name
    dataset = "the synthetic kitchen" if name == "demo" else f"configs/{name}"
    write_markdown(args.output, rows, summary, average_diagnostics(diagnostics), seconds, header, dataset)
    title = f"{dataset}: linear probe on the frozen sensor encoders, mean ± std over {len(args.seeds)} seed(s)"
    write_chart(args.output.with_suffix(".png"), rows, summary, title)
    write_atomically(args.output.with_suffix(".json"), json.dumps({"runs": results, "diagnostics": diagnostics}, indent=2))
    print(args.output.read_text())
    return summary


if __name__ == "__main__":
    main()
