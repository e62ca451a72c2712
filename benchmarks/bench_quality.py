"""Quality benchmark: every row of the paper's table (baselines, DETACH, ablations), over seeds.

    python -m benchmarks.bench_quality                     # the harder kitchen (configs/benchmark), every row, 3 seeds
    python -m benchmarks.bench_quality --quick             # a few minutes: checks the chain, not the numbers
    python -m benchmarks.bench_quality --rows detach global --seeds 1 2
    python -m benchmarks.bench_quality --config-dir configs/demo --size demo-small   # the demo's world, 12 runs
    python -m benchmarks.bench_quality --config-dir configs/opp --size config --rows floor global detach \
        -- --data.init_args.root /data/Opportunity++

Each row pre-trains its encoders (nothing: the floor; DETACH's stage 1 → stage 2 with or without an
ablation overlay; the global-alignment baseline; the supervised ceiling), then the linear probe on
the frozen sensor encoders is fitted and tested, for every seed. Every step runs in-process through
`detach_pl.pipeline.stages.run_stage`, its run folder inside its own step folder under
`--work-dir` (`--run_dir`); steps shared by rows (the stage 1 of most ablations) run once per seed.
With `--jobs N` (default size: N = the CPU cores) every seed's groups of rows
that share a first step run as subprocesses, N at a time, one torch thread each on a 2-core
machine: these small models use the cores better that way than with threads in one process.
Arguments after `--` are passed to every step (data and trainer settings; relative paths in them,
like a dataset root, are relative to the working directory). Without `--rows`, every row whose
configs the config folder holds runs.

Writes `--output` (default benchmarks/quality.md: mean ± std of weighted F1, mAP, accuracy per row
with the paper's published numbers beside them, and the alignment diagnostics of docs/method.md) and
the bar chart next to it (quality.png). The parts live in `detach_pl.pipeline`: `table` (rows,
sizes), `runner` (steps, probes), `jobs` (parallel jobs), `quality_report`; this script is the
command line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from detach_pl.io import write_atomically
from detach_pl.pipeline import TEST_METRICS, mean_std
from detach_pl.pipeline.jobs import (
    add_job_options,
    bench_parser,
    free_machine_minutes,
    quiet_job,
    run_in_jobs,
    split_overrides,
    work_units,
)
from detach_pl.pipeline.quality_report import (
    LoadMonitor,
    average_diagnostics,
    machine,
    paper_value,
    repo_relative,
    summarize,
    write_chart,
    write_markdown,
)
from detach_pl.pipeline.runner import Bench, SeedResults, run_seed, used_cpu_seconds
from detach_pl.pipeline.table import (
    ROW_KEYS,
    ROWS,
    SIZES,
    STAGE1,
    STAGE1_NO_REFINEMENT,
    Row,
    Step,
    rows_present,
    stage2,
)

__all__ = [
    "ROWS", "ROW_KEYS", "SIZES", "STAGE1", "STAGE1_NO_REFINEMENT", "Bench", "Step", "free_machine_minutes",
    "main", "mean_std", "paper_value", "parse_args", "rows_present", "stage2", "work_units",
]
REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_DIR = REPO / "configs" / "benchmark"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's options; everything after `--` goes to every step."""
    argv, extra = split_overrides(argv)
    parser = bench_parser(__doc__.split("\n\n")[0], DEFAULT_CONFIG_DIR)
    parser.add_argument("--quick", action="store_true", help="same as --size quick")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: 1 2 3; quick: 1)")
    parser.add_argument("--rows", nargs="+", choices=ROW_KEYS, default=None,
                        help="rows to run (default: every row whose configs --config-dir holds)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="subprocesses at once, each one seed and one group of rows sharing a first step "
                        "(default: the CPU cores with --size default, else 1: all in this process)")
    add_job_options(parser, REPO, "quality", "reuse finished steps in --work-dir")
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
    if args.rows is None:
        args.rows = [row.key for row in rows_present(args.config_dir)]
    args.extra = extra
    return args


def run_parallel(args: argparse.Namespace, rows: Sequence[Row]) -> dict[int, SeedResults]:
    """Every (seed, group of rows) as a job of this script (`detach_pl.pipeline.jobs.run_in_jobs`)."""
    finished: dict[int, SeedResults] = {seed: SeedResults({}, {}, {}) for seed in args.seeds}

    def arguments(seed: int, group: list[Row], output: Path) -> list[str]:
        return [
            "--config-dir", str(args.config_dir), "--size", args.size, "--rows", *(row.key for row in group),
            "--seeds", str(seed), "--jobs", "1", "--threads", str(args.threads), "--work-dir", str(args.work_dir),
            "--cache-dir", str(args.cache_dir), "--resume", "--seed-results", str(output), "--", *args.extra,
        ]

    def done(seed: int, group: list[Row], results: dict) -> None:
        part = SeedResults(**results)
        merged = finished[seed]
        merged.runs.update(part.runs)
        merged.diagnostics.update(part.diagnostics)
        merged.seconds.update(part.seconds)
        merged.cpu_seconds += part.cpu_seconds
        merged.job_cpu_seconds.append(part.cpu_seconds)
        for row in group:
            metrics = part.runs[row.key]
            print(f"seed {seed} {row.name}: " + ", ".join(f"{m} {metrics[m]:.3f}" for m in TEST_METRICS), flush=True)

    run_in_jobs(Path(__file__).resolve(), arguments, args.seeds, rows, args.jobs, args.work_dir, done)
    return finished


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, tuple[float, float]]]:
    """Run the benchmark; returns row → metric → (mean, std)."""
    args = parse_args(argv)
    quiet_job(args.threads)
    rows = [row for row in ROWS if row.key in args.rows]
    if not args.resume and args.work_dir.exists():
        shutil.rmtree(args.work_dir)
    extra = ["--data.init_args.cache_dir", str(args.cache_dir.resolve()), *args.extra]
    bench = Bench(args.config_dir, args.work_dir, SIZES[args.size], extra, args.resume)
    bench.check_configs(rows)
    if args.seed_results is not None:  # one job of a parallel run
        (seed,) = args.seeds
        job = run_seed(bench, rows, seed)
        job.cpu_seconds = used_cpu_seconds()  # the whole job, start-up included
        write_atomically(args.seed_results, json.dumps(job.__dict__, indent=2))
        return {}
    start, load = time.perf_counter(), LoadMonitor()
    if args.jobs > 1:
        per_seed = run_parallel(args, rows)
    else:
        per_seed = {seed: run_seed(bench, rows, seed) for seed in args.seeds}
    wall, load_summary = time.perf_counter() - start, load.stop()
    ordered = [per_seed[seed] for seed in args.seeds]
    job_cpu = [value for seed in ordered for value in (seed.job_cpu_seconds or [seed.cpu_seconds])]
    results = {row.key: [seed.runs[row.key] for seed in ordered] for row in rows}
    diagnostics = {row.key: [seed.diagnostics[row.key] for seed in ordered] for row in rows}
    seconds = {row.key: statistics.fmean(seed.seconds[row.key] for seed in ordered) for row in rows}
    summary = summarize(results)
    command = "python -m benchmarks.bench_quality " + " ".join(sys.argv[1:] if argv is None else argv)
    by_kind = {kind: " ".join(options) for kind, options in SIZES[args.size].by_kind.items()}
    header = {
        "command": f"`{command.strip()}`",
        "configs": repo_relative(args.config_dir, REPO),
        "size": f"{args.size} (per step kind: {json.dumps(by_kind)})",
        "seeds": ", ".join(map(str, args.seeds))
        + f" ({args.jobs} job(s) at a time, {args.threads} torch thread(s) each)",
        "machine": machine(),
        "wall time": f"{wall / 60:.1f} min (1-minute load average of the machine during the run: {load_summary})",
        "CPU time": "per seed " + " / ".join(f"{seed.cpu_seconds / 60:.1f}" for seed in ordered) + " min; on "
        f"{args.jobs * args.threads} free cores this run would take about "
        f"{free_machine_minutes(job_cpu, args.jobs, args.threads):.1f} min",
    }
    name = args.config_dir.resolve().name
    dataset = {"demo": "the synthetic kitchen (demo)", "benchmark": "the harder kitchen"}.get(name, f"configs/{name}")
    write_markdown(args.output, rows, summary, average_diagnostics(diagnostics), seconds, header, dataset)
    title = f"{dataset}: linear probe on the frozen sensor encoders, mean ± std over {len(args.seeds)} seed(s)"
    write_chart(args.output.with_suffix(".png"), rows, summary, title)
    raw = {"runs": results, "diagnostics": diagnostics}
    write_atomically(args.output.with_suffix(".json"), json.dumps(raw, indent=2))
    print(args.output.read_text())
    return summary


if __name__ == "__main__":
    main()
