"""How many labelled runs the linear probe needs: DETACH's sensor encoders vs random ones.

    python benchmarks/bench_labels.py [--checkpoint runs/demo/stage2/checkpoints/last.ckpt]
        [--labelled-runs 1 2 5] [--draws 3] [-- overrides]

DETACH's promise is that after aligning with the camera the sensors need few labels. This
benchmark fits the probe of `<config-dir>/probe.yaml` (the paper's Adam probe) on the labelled
windows of only k of the training runs (`data.probe_train_runs`, `--draws` random choices of runs
per k, plus once on all of them) and tests it on the test runs, once on the encoders of an
alignment checkpoint (`make demo`'s stage 2 by default) and once on randomly initialised encoders
(the floor). The alignment itself used every training run, unlabelled: only the probe's labels
shrink. Writes a Markdown table (mean ± std over the draws) and the raw metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import (  # noqa: E402  (a sibling script, not a package)
    REPO,
    SIZES,
    Bench,
    fmt,
    machine,
    mean_std,
    repo_relative,
    split_overrides,
    write_atomically,
)

from detach_pl.cli import main as detach_cli
from detach_pl.data.datamodule import WindowDataModule

METRICS = (("f1_weighted", "weighted F1"), ("map", "mAP"), ("accuracy", "accuracy"))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Benchmark options; everything after `--` goes to every probe's command line."""
    argv, overrides = split_overrides(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-dir", type=Path, default=REPO / "configs" / "demo", help="holds probe.yaml")
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "demo" / "stage2" / "checkpoints" / "last.ckpt",
                        help="alignment checkpoint whose sensor encoders are probed")
    parser.add_argument("--labelled-runs", type=int, nargs="+", default=[1, 2, 5],
                        help="numbers of training runs whose labels the probe sees (all of them is always added)")
    parser.add_argument("--draws", type=int, default=3, help="random choices of runs per number")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run choices and of the probes")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "bench_labels", help="probe run folders")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "labels.md", help="Markdown report")
    args = parser.parse_args(argv)
    args.overrides = overrides
    if not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint} does not exist: run `make demo` first or name one")
    if args.draws < 1 or any(count < 1 for count in args.labelled_runs):
        parser.error("--draws and --labelled-runs must be >= 1")
    return args


def probe_data(config_dir: Path, overrides: Sequence[str]) -> WindowDataModule:
    """The probe config's DataModule, prepared (its training runs are those the alignment used)."""
    previous, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI reads only `args`, not ours
    try:
        datamodule = detach_cli(["--config", str(config_dir / "probe.yaml"), *overrides], run=False).datamodule
    finally:
        sys.argv = previous
    datamodule.prepare_data()
    datamodule.purpose = "probe"
    datamodule.setup("fit")
    return datamodule


def labelled_windows(datamodule: WindowDataModule, runs: Sequence[str]) -> int:
    """How many labelled windows the given runs hold (what a probe trained on them sees)."""
    cache = datamodule.cache
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


def write_report(path: Path, results: dict[str, dict[int, list[dict[str, float]]]], header: dict[str, str]) -> None:
    """Markdown: one line per number of labelled runs, DETACH and the floor side by side."""
    lines = ["# Labels the linear probe needs: DETACH vs random sensor encoders", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += ["", "Test metrics of the probe, mean ± sample std over the random choices of labelled runs.", ""]
    names = [f"{encoders} {label}" for encoders in ("DETACH", "floor") for _, label in METRICS]
    lines += ["| labelled runs | labelled windows | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for count in sorted(results["DETACH"]):
        cells = [str(count), f"{mean_std([r['windows'] for r in results['DETACH'][count]])[0]:.0f}"]
        for encoders in ("DETACH", "floor"):
            for key, _ in METRICS:
                cells.append(fmt(*mean_std([r[key] for r in results[encoders][count]])))
        lines.append("| " + " | ".join(cells) + " |")
    write_atomically(path, "\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Fit and test every probe, then write the report."""
    args = parse_args(argv)
    datamodule = probe_data(args.config_dir, args.overrides)
    runs = datamodule.split("train_runs")
    choices = run_choices(runs, args.labelled_runs, args.draws, args.seed)
    if args.work_dir.exists():
        shutil.rmtree(args.work_dir)
    results: dict[str, dict[int, list[dict[str, float]]]] = {"DETACH": {}, "floor": {}}
    checkpoint = str(args.checkpoint.resolve())
    for draw, (count, chosen) in enumerate(choices):
        extra = ["--data.init_args.probe_train_runs", json.dumps(chosen), *args.overrides]
        bench = Bench(args.config_dir, args.work_dir / f"choice{draw}", SIZES["config"], extra, resume=False)
        windows = float(labelled_windows(datamodule, chosen))
        for encoders, source in (("DETACH", checkpoint), ("floor", None)):
            metrics = bench.run_probe(bench.work_dir / encoders, args.seed, source)
            metrics["windows"] = windows
            results[encoders].setdefault(count, []).append(metrics)
            print(f"{count} labelled run(s) {chosen}: {encoders} weighted F1 {metrics['f1_weighted']:.3f}", flush=True)
    header = {
        "command": "`" + " ".join(["python benchmarks/bench_labels.py", *(sys.argv[1:] if argv is None else argv)]) + "`",
        "probe": f"{repo_relative(args.config_dir / 'probe.yaml')} (Adam, its epochs), seed {args.seed}",
        "DETACH encoders": repo_relative(args.checkpoint),
        "training runs": f"{len(runs)} ({runs[0]} … {runs[-1]}); {args.draws} random choice(s) per number",
        "machine": machine(),
    }
    write_report(args.output, results, header)
    write_atomically(args.output.with_suffix(".json"), json.dumps({"choices": choices, "runs": results}, indent=2))
    print(args.output.read_text())


if __name__ == "__main__":
    main()
