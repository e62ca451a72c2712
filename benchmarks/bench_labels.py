"""Label efficiency of every row: the linear probe on k labelled runs, for every method of the table.

    python -m benchmarks.bench_labels                          # the harder kitchen, every row, 3 seeds
    python -m benchmarks.bench_labels --quick                  # checks the chain, not the numbers
    python -m benchmarks.bench_labels --rows floor detach supervised --labelled-runs 1 2 --draws 3
    python -m benchmarks.bench_labels --config-dir configs/demo --size demo-small

DETACH's promise is that after aligning with the camera the sensors need few labels. For each
seed, each row of bench_quality's table pre-trains its encoders once on every training run,
unlabelled (the rows, steps and sizes are bench_quality's: `detach_pl.pipeline.table`), then the
probe of `<config-dir>/probe.yaml` is fitted on the labelled windows of only k of the training
runs (`data.probe_train_runs`: `--draws` random choices of runs per k and seed, plus once on all
of them) and tested on the test runs. The supervised ceiling is trained on the same k labelled
runs it is probed on (it has nothing else). The random floor's encoders are those of the seed.
Writes a Markdown table per metric (mean ± sample std over seeds × choices), the line chart of
weighted F1 against labelled runs (PNG beside the report) and the raw metrics as JSON.

Row "DETACH, all windows in pre-training" pre-trains on every window; the others follow the
config's `pretrain_windows` (configs/benchmark: `labelled`, which uses the labels to choose the
alignment windows, so only the all-windows row is label-free before the probe).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detach_pl.data.datamodule import WindowDataModule
from detach_pl.io import write_atomically
from detach_pl.pipeline import METRIC_LABELS, format_mean_std, format_table, mean_std, run_detach
from detach_pl.pipeline.jobs import add_job_options, bench_parser, quiet_job, run_in_jobs, split_overrides
from detach_pl.pipeline.quality_report import LoadMonitor, machine, repo_relative
from detach_pl.pipeline.runner import Bench
from detach_pl.pipeline.table import ROW_KEYS, ROWS, SIZES, Row, rows_present

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_DIR = REPO / "configs" / "benchmark"
METRICS = ("f1_weighted", "map", "accuracy")
# results[row key][number of labelled runs] = one metrics dict per (seed, choice of runs)
Results = dict[str, dict[int, list[dict[str, float]]]]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Benchmark options; everything after `--` goes to every step's command line."""
    argv, overrides = split_overrides(argv)
    parser = bench_parser(__doc__.split("\n\n")[0], DEFAULT_CONFIG_DIR)
    parser.add_argument("--quick", action="store_true", help="--size quick, one seed, one draw, k = 1 (and all)")
    parser.add_argument("--rows", nargs="+", choices=ROW_KEYS, default=None,
                        help="rows (default: every row whose configs --config-dir holds)")
    parser.add_argument("--labelled-runs", type=int, nargs="+", default=None,
                        help="numbers of training runs whose labels the probe sees "
                        "(default 1 2 5; all is always added)")
    parser.add_argument("--draws", type=int, default=None,
                        help="random choices of runs per number and seed (default 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 1 2 3; quick: 1)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel jobs (default: the CPU cores; quick: 1)")
    add_job_options(parser, REPO, "labels", "reuse finished steps and probes in --work-dir")
    args = parser.parse_args(argv)
    if args.quick:
        args.size = "quick"
    quick = args.size == "quick"
    args.labelled_runs = args.labelled_runs or ([1] if quick else [1, 2, 5])
    args.draws = args.draws or (1 if quick else 2)
    args.seeds = args.seeds or ([1] if quick else [1, 2, 3])
    cores = os.cpu_count() or 1
    args.jobs = args.jobs or (1 if quick else cores)
    args.threads = args.threads or max(1, cores // args.jobs)
    if args.draws < 1 or args.jobs < 1 or args.threads < 1 or any(count < 1 for count in args.labelled_runs):
        parser.error("--draws, --jobs, --threads and --labelled-runs must be >= 1")
    if args.rows is None:
        args.rows = [row.key for row in rows_present(args.config_dir)]
    args.overrides = ["--data.init_args.cache_dir", str(args.cache_dir.resolve()), *overrides]
    return args


def probe_data(config_dir: Path, overrides: Sequence[str]) -> WindowDataModule:
    """The probe config's DataModule, prepared (its training runs are those the alignment used)."""
    datamodule = run_detach(["--config", str(config_dir / "probe.yaml"), *overrides], run=False).datamodule
    datamodule.prepare_data()
    datamodule.purpose = "probe"
    datamodule.setup("fit")
    return datamodule


def labelled_windows(datamodule: WindowDataModule, runs: Sequence[str]) -> int:
    """How many labelled windows the given runs hold (what a probe trained on them sees)."""
    cache = datamodule.open_cache()
    chosen = np.isin(cache.window_run, cache.run_indices(runs, setting="data.probe_train_runs"))
    return int(((cache.label >= 0) & chosen).sum())


def run_choices(runs: list[str], counts: Sequence[int], draws: int, seed: int) -> list[tuple[int, list[str]]]:
    """(k, runs) pairs: `draws` random k-subsets for each k below len(runs), then all runs once."""
    rng = np.random.default_rng(seed)
    choices = []
    for count in sorted(set(counts)):
        if count >= len(runs):
            continue
        choices += [(count, sorted(rng.choice(runs, count, replace=False).tolist())) for _ in range(draws)]
    return [*choices, (len(runs), list(runs))]


def run_seed_rows(
    args: argparse.Namespace, rows: Sequence[Row], seed: int, choices: list[tuple[int, list[str]]]
) -> Results:
    """Every row for one seed: pre-train once, then one probe per choice of labelled runs."""
    size = SIZES[args.size]
    bench = Bench(args.config_dir, args.work_dir, size, args.overrides, args.resume)
    bench.check_configs(rows)
    results: Results = {}
    start = time.perf_counter()
    for row in rows:
        per_count = results.setdefault(row.key, {})
        if row.key != "supervised":
            checkpoint, folder, _, _ = bench.pretrain(row, seed)
        for index, (count, chosen) in enumerate(choices):
            labels = ["--data.init_args.probe_train_runs", json.dumps(chosen)]
            if row.key == "supervised":  # the ceiling learns from the same k labelled runs
                folder = args.work_dir / f"choice{index}"
                own = Bench(args.config_dir, folder, size, [*args.overrides, *labels], args.resume)
                metrics = own.run_row(row, seed)[0]
            else:
                metrics = bench.run_probe(folder / f"probe-choice{index}", seed, checkpoint, labels)
            per_count.setdefault(count, []).append(metrics)
            print(f"[{time.perf_counter() - start:6.0f} s] seed {seed} {row.name}, {count} labelled run(s) {chosen}: "
                  f"weighted F1 {metrics['f1_weighted']:.3f}", flush=True)
    return results


def merge(into: Results, part: Results) -> None:
    """Append one job's (row → k → metrics) into the whole run's."""
    for key, per_count in part.items():
        for count, runs in per_count.items():
            into.setdefault(key, {}).setdefault(int(count), []).extend(runs)


def write_report(
    path: Path, rows: Sequence[Row], results: Results, windows: dict[int, float], header: dict[str, str]
) -> None:
    """Markdown: per metric, one line per row, one column per number of labelled runs."""
    counts = sorted({count for per_count in results.values() for count in per_count})
    lines = ["# Labels the linear probe needs, for every row of the table", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += ["", "Test metrics of the probe on the frozen sensor encoders, mean ± sample std over seeds × random "
              "choices of labelled runs (the supervised ceiling is trained on those runs too).", ""]
    heading = ["row", *(f"{count} run(s), {windows.get(count, 0):.0f} windows" for count in counts)]
    for metric in METRICS:
        table = [
            [
                row.name,
                *(format_mean_std(*mean_std([run[metric] for run in results[row.key][count]])) for count in counts),
            ]
            for row in rows
            if row.key in results
        ]
        lines += [f"## {METRIC_LABELS[metric]}", "", format_table(heading, table), ""]
    write_atomically(path, "\n".join(lines))


def write_chart(path: Path, rows: Sequence[Row], results: Results, title: str) -> None:
    """Weighted F1 against labelled runs, one line per row (± sample std as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8.0, 5.2))
    for index, row in enumerate(row for row in rows if row.key in results):
        counts = sorted(results[row.key])
        stats = [mean_std([run["f1_weighted"] for run in results[row.key][count]]) for count in counts]
        style = "--" if row.key in ("floor", "supervised") else "-"
        axis.errorbar(counts, [m for m, _ in stats], yerr=[s for _, s in stats], linestyle=style, marker="o",
                      markersize=4, capsize=3, label=row.name, color=plt.cm.tab20(index % 20))
    axis.set_xscale("log")
    every = sorted({count for per_count in results.values() for count in per_count})
    axis.set_xticks(every, [str(count) for count in every])
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("labelled training runs (probe)")
    axis.set_ylabel("weighted F1, test")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    temporary = path.with_suffix(path.suffix + ".tmp")
    figure.savefig(temporary, dpi=120, format=path.suffix.lstrip("."))
    temporary.replace(path)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> Results:
    """Pre-train every row, fit and test every probe, write the report; returns the raw results."""
    args = parse_args(argv)
    quiet_job(args.threads)
    rows = [row for row in ROWS if row.key in args.rows]
    if not args.resume and args.seed_results is None and args.work_dir.exists():
        shutil.rmtree(args.work_dir)
    size_overrides = [*SIZES[args.size].overrides("probe"), *args.overrides]
    datamodule = probe_data(args.config_dir, size_overrides)
    train_runs = datamodule.split("train_runs")
    choices = {seed: run_choices(train_runs, args.labelled_runs, args.draws, seed) for seed in args.seeds}
    if args.seed_results is not None:  # one job of a parallel run
        (seed,) = args.seeds
        write_atomically(args.seed_results, json.dumps(run_seed_rows(args, rows, seed, choices[seed]), indent=2))
        return {}
    start, load = time.perf_counter(), LoadMonitor()
    results: Results = {}
    if args.jobs > 1:
        def arguments(seed: int, group: list[Row], output: Path) -> list[str]:
            return [
                "--config-dir", str(args.config_dir), "--size", args.size, "--rows", *(row.key for row in group),
                "--labelled-runs", *map(str, args.labelled_runs), "--draws", str(args.draws), "--seeds", str(seed),
                "--jobs", "1", "--threads", str(args.threads), "--work-dir", str(args.work_dir),
                "--cache-dir", str(args.cache_dir), "--resume", "--seed-results", str(output),
                "--", *args.overrides[2:],
            ]

        run_in_jobs(Path(__file__).resolve(), arguments, args.seeds, rows, args.jobs, args.work_dir,
                    lambda seed, group, part: merge(results, part))
    else:
        for seed in args.seeds:
            merge(results, run_seed_rows(args, rows, seed, choices[seed]))
    wall, load_summary = time.perf_counter() - start, load.stop()
    windows: dict[int, list[float]] = {}
    for chosen_list in choices.values():
        for count, chosen in chosen_list:
            windows.setdefault(count, []).append(float(labelled_windows(datamodule, chosen)))
    mean_windows = {count: float(np.mean(values)) for count, values in windows.items()}
    command = "python -m benchmarks.bench_labels " + " ".join(sys.argv[1:] if argv is None else argv)
    header = {
        "command": f"`{command.strip()}`",
        "configs": f"{repo_relative(args.config_dir, REPO)}, size {args.size}; "
        f"probe {repo_relative(args.config_dir / 'probe.yaml', REPO)}",
        "seeds": ", ".join(map(str, args.seeds)) + f"; {args.draws} random choice(s) of runs per number and seed",
        "training runs": (
            f"{len(train_runs)} ({train_runs[0]} … {train_runs[-1]}), all used unlabelled by the pre-training"
        ),
        "machine": machine(),
        "wall time": f"{wall / 60:.1f} min ({args.jobs} job(s) at a time; 1-minute load average: {load_summary})",
    }
    write_report(args.output, rows, results, mean_windows, header)
    name = args.config_dir.resolve().name
    title = f"configs/{name}: linear probe on k labelled runs, mean ± std over seeds × choices"
    write_chart(args.output.with_suffix(".png"), rows, results, title)
    write_atomically(args.output.with_suffix(".json"), json.dumps({"choices": choices, "runs": results}, indent=2))
    print(args.output.read_text())
    return results


if __name__ == "__main__":
    main()
