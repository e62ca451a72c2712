"""Figures of the HWU-USP loader and probe, on generated stand-ins (detach_pl.testing.hwu_usp).

    python -m benchmarks.bench_hwu            # full (about 15 min on 2 cores)
    python -m benchmarks.bench_hwu --quick    # shorter trials, fewer epochs (a few minutes)

Measured, and printed as a table (also written to benchmarks/out/hwu.json):

1. Cache build time and size per trial: `--trials` trials of `--seconds` s, 640×480 25 fps
   MPEG-4 video at 2 Mbit/s (textured frames) and a 50 Hz ambient table, prepared at 224 and 112
   pixels. Reported: seconds per trial (total, and the CSV reading alone), MB of cache per trial
   and per minute of recording, and the extrapolation to the release's 144 trials at that length.
2. Probe time per fold on CPU: 16 subjects × 5 activities of `--probe-seconds` s; the sequence
   probe of configs/hwu/probe.yaml (paper-size encoders; `--demo-encoder` for the CPU-sized ones)
   is fitted for `--epochs` epochs on fold 1 (12 training subjects, 60 trials) and tested on its 2
   subjects; per-epoch time is extrapolated to the paper's 50 epochs. The probe never reads video,
   so these stand-ins carry tiny 5 fps videos.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch

from detach_pl.data.hwu_usp import HwuUspDataModule, read_ambient_csv
from detach_pl.data.windows import WindowSettings
from detach_pl.pipeline import last_checkpoint, run_stage
from detach_pl.testing.hwu_usp import write_standin

REPO = Path(__file__).resolve().parents[1]

PROBE_CLASSES = ["cereals", "laptop", "sandwich", "tea", "dishes"]


def cache_figures(work: Path, trials: int, seconds: float) -> list[dict]:
    """Prepare `trials` long trials at 224 and 112 px; time and size per trial."""
    subjects = tuple(range(1, trials + 1))
    started = time.perf_counter()
    release = write_standin(
        work / "cache_release", subjects=subjects, activities=("tea",), seconds=seconds,
        frame_size=(480, 640), noise=12,
    )
    print(f"  stand-in written in {time.perf_counter() - started:.0f} s", flush=True)
    csv_seconds = []
    for truth in release.trials.values():
        started = time.perf_counter()
        read_ambient_csv(truth.ambient, ["Ktch_T1_Cupboard", "Ktch_T2_Cupboard"])
        csv_seconds.append(time.perf_counter() - started)
    rows = []
    for image_size in (224, 112):
        module = HwuUspDataModule(
            root=str(release.root), cache_dir=str(work / f"cache{image_size}"), classes=["tea"], num_folds=1,
            val_rule="test_fold", windows=WindowSettings(image_size=image_size), progress=False,
        )
        started = time.perf_counter()
        module.prepare_data()
        elapsed = time.perf_counter() - started
        megabytes = module.cache_path.stat().st_size / 1e6
        rows.append({
            "image_size": image_size,
            "trial_seconds": seconds,
            "trials": trials,
            "build_seconds_per_trial": elapsed / trials,
            "csv_seconds_per_trial": sum(csv_seconds) / trials,
            "cache_mb_per_trial": megabytes / trials,
            "cache_mb_per_minute": megabytes / trials / (seconds / 60.0),
            "release_144_trials_gb": 144 * megabytes / trials / 1000.0,
            "release_144_trials_hours": 144 * elapsed / trials / 3600.0,
        })
        shutil.rmtree(work / f"cache{image_size}")
    shutil.rmtree(release.root)
    return rows


def probe_figures(work: Path, seconds: float, epochs: int, demo_encoder: bool) -> dict:
    """Fit and test the sequence probe on fold 1 of a 16-subject stand-in; time per epoch."""
    started = time.perf_counter()
    release = write_standin(
        work / "probe_release", subjects=tuple(range(1, 17)), activities=tuple(PROBE_CLASSES),
        seconds=seconds, fps=5.0, frame_size=16,
    )
    print(f"  stand-in written in {time.perf_counter() - started:.0f} s", flush=True)
    encoder = REPO / "configs" / ("demo" if demo_encoder else "hwu") / "encoder.yaml"
    common = [
        "--config", str(REPO / "configs" / "hwu" / "probe.yaml"),
        "--data.init_args.root", str(release.root),
        "--data.init_args.cache_dir", str(work / "probe_cache"),
        "--data.init_args.classes", "[" + ",".join(PROBE_CLASSES) + "]",
        "--data.init_args.windows.image_size", "16",
        "--data.init_args.num_workers", "0",
        "--data.init_args.progress", "false",
        "--model.init_args.encoder", str(encoder),
        "--model.init_args.encoder_checkpoint", "null",
        "--trainer.accelerator", "cpu",
        "--run_dir", str(work / "runs" / "hwu" / "probe"),  # not the config's runs/hwu/probe
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]
    module = HwuUspDataModule(root=str(release.root), cache_dir=str(work / "probe_cache"),
                              classes=PROBE_CLASSES, windows=WindowSettings(image_size=16), progress=False)
    started = time.perf_counter()
    module.prepare_data()
    prepare = time.perf_counter() - started
    started = time.perf_counter()
    fitted = run_stage(["fit", *common, "--trainer.max_epochs", str(epochs)], "hwu probe fit")
    fit = time.perf_counter() - started
    started = time.perf_counter()
    run_stage(["test", *common, "--ckpt_path", str(last_checkpoint(fitted, "hwu probe fit"))], "hwu probe test")
    test = time.perf_counter() - started
    return {
        "encoder": "demo (CPU-sized)" if demo_encoder else "paper",
        "trial_seconds": seconds,
        "train_trials": 12 * len(PROBE_CLASSES),
        "epochs_run": epochs,
        "prepare_seconds": prepare,
        "fit_seconds": fit,
        "seconds_per_epoch": fit / epochs,
        "fit_50_epochs_minutes": 50 * fit / epochs / 60.0,
        "test_seconds": test,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter trials, fewer epochs")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the cache-figure trials")
    parser.add_argument("--probe-seconds", type=float, default=60.0, help="length of the probe trials")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--demo-encoder", action="store_true", help="CPU-sized encoders for the probe")
    parser.add_argument("--only", choices=["cache", "probe"], default=None, help="run one part only")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "hwu.json"))
    args = parser.parse_args()
    if args.quick:
        args.trials, args.seconds, args.probe_seconds, args.epochs = 2, 30.0, 30.0, 1
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="bench_hwu_") as tmp:
        work = Path(tmp)
        cache = probe = None
        if args.only in (None, "cache"):
            print("1. cache build per trial", flush=True)
            cache = cache_figures(work, args.trials, args.seconds)
        if args.only in (None, "probe"):
            print("2. probe per fold on CPU", flush=True)
            probe = probe_figures(work, args.probe_seconds, args.epochs, args.demo_encoder)
    print()
    if cache is not None:
        source = "640x480 25 fps MPEG-4 2 Mbit/s, 50 Hz CSV"
        print(f"cache ({args.trials} trials of {args.seconds:.0f} s, {source})")
        print(f"{'pixels':>6} {'s/trial':>8} {'csv s':>6} {'MB/trial':>9} {'MB/min':>7} {'144 trials':>22}")
        for row in cache:
            print(
                f"{row['image_size']:>6} {row['build_seconds_per_trial']:>8.1f} "
                f"{row['csv_seconds_per_trial']:>6.2f} {row['cache_mb_per_trial']:>9.0f} "
                f"{row['cache_mb_per_minute']:>7.0f} {row['release_144_trials_gb']:>8.1f} GB "
                f"{row['release_144_trials_hours']:>6.2f} h"
            )
    if probe is not None:
        print(
            f"probe, fold 1 ({probe['train_trials']} training trials of {probe['trial_seconds']:.0f} s, "
            f"{probe['encoder']} encoders, {probe['threads']} threads): {probe['seconds_per_epoch']:.1f} "
            f"s/epoch -> {probe['fit_50_epochs_minutes']:.1f} min for 50 epochs; "
            f"test {probe['test_seconds']:.1f} s"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cache": cache, "probe": probe, "args": vars(args)}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
