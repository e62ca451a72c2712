"""Deployment figures: `detach predict` throughput, streaming latency (eager vs ONNX), model size, RSS.

At two encoder sizes: the paper's (configs/opp/encoder.yaml, Opportunity++'s 37 ambient channels,
128 samples per window) and the demo's (configs/demo/encoder.yaml, the synthetic kitchen's 41
channels). The probes carry random weights and the statistics of the generated recording: speed
does not depend on what a probe learnt. The recording is a generic sensor CSV of `--hours` at
30 Hz (reed-switch steps and accelerometer noise with NaN gaps), predicted by the real command
(`detach predict`, a fresh process: start-up included). Streaming pushes one hop of rows at a time
and times each push that completes a window, on one thread.

    python benchmarks/bench_predict.py [--hours 1] [--windows 300] [--output benchmarks/predict.md]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from detach_pl.deploy import StreamingRecognizer
from detach_pl.deploy.export import export_model
from detach_pl.io import write_atomically
from detach_pl.nn import EncoderConfig
from detach_pl.testing.probe import probe_checkpoint

REPO = Path(__file__).resolve().parents[1]

RATE_HZ = 30.0
SIZES = {"paper (Opportunity++)": ("opp", 37), "demo (synthetic kitchen)": ("demo", 41)}
CLASSES = [f"class {k}" for k in range(14)]


def machine() -> str:
    """CPU model, cores and the load average (the machine is shared)."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}; load average {load} at the start"


def recording(hours: float, channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows,) ms and (rows, C) samples: reed switches stepping 0/1, accelerometers with NaN gaps."""
    rng = np.random.default_rng(seed)
    rows = int(hours * 3600 * RATE_HZ)
    time_ms = np.arange(rows) * (1000.0 / RATE_HZ)
    values = np.empty((rows, channels))
    reeds = channels // 3
    values[:, :reeds] = (rng.random((rows // 300 + 1, reeds)) < 0.2).repeat(300, axis=0)[:rows]
    values[:, reeds:] = 1000 + 30 * rng.standard_normal((rows, channels - reeds)).cumsum(0) / 50
    for start in rng.integers(0, rows - 100, size=rows // 3000):
        values[start : start + int(rng.integers(5, 90)), rng.integers(reeds, channels)] = np.nan
    return time_ms, values


def write_csv(path: Path, time_ms: np.ndarray, values: np.ndarray, names: list[str]) -> None:
    """The recording as a generic sensor CSV (docs/deploy.md): timestamp in s, empty cells for NaN."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", *names])
        for t, row in zip(time_ms / 1000.0, values, strict=True):
            writer.writerow([f"{t:.3f}", *("" if np.isnan(v) else f"{v:.4f}" for v in row)])


def predict_seconds(ckpt: Path, csv_path: Path, folder: Path) -> tuple[float, float, float]:
    """Wall time (s), CPU time (user + sys, s) and peak RSS (MiB) of `detach predict` in a fresh process.

    The CPU time varies less than the wall time on a shared machine.
    """
    command = [
        str(Path(sys.executable).with_name("detach")), "predict", "--config", str(REPO / "configs/opp/predict.yaml"),
        "--ckpt_path", str(ckpt), "--data", "detach_pl.deploy.data.CsvRecordings", "--data.root", str(csv_path),
        "--trainer.enable_progress_bar", "false",
    ]
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "maxrss_kib=%M cpu_s=%U+%S", *command], cwd=folder,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"detach predict failed:\n{done.stderr[-3000:]}")
    figures = next(line for line in done.stderr.splitlines() if line.startswith("maxrss_kib="))
    peak, cpu = (field.split("=")[1] for field in figures.split())
    user, system = cpu.split("+")
    return seconds, float(user) + float(system), int(peak) / 1024.0


def predict_in_process(ckpt: Path, csv_path: Path, folder: Path) -> float:
    """Seconds of the same `detach predict` run in this (already started) process.

    The work itself, without the interpreter's start-up and imports.
    """
    from detach_pl.cli import main as detach

    previous = Path.cwd()
    os.chdir(folder)
    try:
        start = time.perf_counter()
        detach(["predict", "--config", str(REPO / "configs/opp/predict.yaml"), "--ckpt_path", str(ckpt),
                "--data", "detach_pl.deploy.data.CsvRecordings", "--data.root", str(csv_path),
                "--trainer.enable_progress_bar", "false"])
        return time.perf_counter() - start
    finally:
        os.chdir(previous)


def streaming_latency(recognizer: StreamingRecognizer, time_ms: np.ndarray, values: np.ndarray,
                      windows: int) -> tuple[float, float]:
    """Median and p99 (ms) of the pushes that complete one window (one hop of rows each)."""
    hop = int(RATE_HZ)
    recognizer.push(time_ms[: 2 * hop], values[: 2 * hop])
    timings: list[float] = []
    position = 2 * hop
    while len(timings) < windows and position + hop <= time_ms.size:
        start = time.perf_counter()
        out = recognizer.push(time_ms[position : position + hop], values[position : position + hop])
        elapsed = time.perf_counter() - start
        if len(out):
            timings.append(1000.0 * elapsed / len(out))
        position += hop
    return float(np.median(timings)), float(np.percentile(timings, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--windows", type=int, default=300, help="streamed windows timed per model")
    parser.add_argument("--output", default=str(REPO / "benchmarks/predict.md"))
    parser.add_argument("--sizes", nargs="+", choices=sorted(config for config, _ in SIZES.values()),
                        default=[config for config, _ in SIZES.values()], help="encoder sizes (opp: the paper's)")
    args = parser.parse_args()
    lines = [
        "# Deployment benchmark (`make bench-predict`)", "",
        f"Machine: {machine()}. The machine is shared with other jobs (the load average is that of "
        "several processes on 2 cores), so every figure here is pessimistic and varies between runs.",
        f"Recording: {args.hours:g} h of a generic sensor CSV at {RATE_HZ:g} Hz; probes with random weights "
        "(speed does not depend on training). Targets: p99 < 10 ms per window on one thread at the paper's size; "
        "1 h at 30 Hz predicted in < 10 s.", "",
        "| encoders | C × L | `detach predict`, whole command: wall (s) / CPU user+sys (s) "
        "| the same predict in a started process (s) "
        "| hours of recording per minute (whole command / started process) | peak RSS of the command (MiB) "
        "| streaming eager median / p99 (ms/window) | streaming ONNX median / p99 (ms/window) | ONNX size (KiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for label, (config, channels) in SIZES.items():
            if config not in args.sizes:
                continue
            encoder = EncoderConfig(**yaml.safe_load((REPO / f"configs/{config}/encoder.yaml").read_text()))
            names = [f"sensor {c:02d}" for c in range(channels)]
            time_ms, values = recording(args.hours, channels)
            ckpt = probe_checkpoint(scratch / f"{config}.ckpt", "csv", names, CLASSES, values, RATE_HZ, encoder)
            csv_path = scratch / f"{config}.csv"
            write_csv(csv_path, time_ms, values, names)
            (scratch / config).mkdir()
            seconds, cpu, rss = predict_seconds(ckpt, csv_path, scratch / config)
            (scratch / f"{config}-in-process").mkdir()
            torch.set_num_threads(os.cpu_count() or 1)
            work = predict_in_process(ckpt, csv_path, scratch / f"{config}-in-process")
            model, _, _ = export_model(ckpt, scratch / f"{config}.onnx")
            torch.set_num_threads(1)
            eager = streaming_latency(StreamingRecognizer.from_checkpoint(ckpt), time_ms, values, args.windows)
            onnx = streaming_latency(StreamingRecognizer.from_export(model, threads=1), time_ms, values, args.windows)
            lines.append(
                f"| {label} | {channels} × 128 | {seconds:.1f} / {cpu:.1f} | {work:.1f} "
                f"| {60.0 * args.hours / seconds:.1f} / {60.0 * args.hours / work:.1f} | {rss:.0f} "
                f"| {eager[0]:.2f} / {eager[1]:.2f} | {onnx[0]:.2f} / {onnx[1]:.2f} "
                f"| {model.stat().st_size / 1024:.0f} |"
            )
            print(lines[-1], flush=True)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines += ["", f"Command: `python benchmarks/bench_predict.py --hours {args.hours:g} --windows {args.windows} "
              f"--sizes {' '.join(args.sizes)}`; finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
              f"(load average {load} at the end).", ""]
    write_atomically(args.output, "\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
