"""Stage-2 step time with 1 vs 2 CPU processes at the same global batch (the cost of DDP + gathers).

    python -m benchmarks.bench_ddp [--global-batch 32] [--steps 12] [--image-size 32]

Prepares a small synthetic kitchen, trains stage 1 for one short epoch to get a checkpoint, then
times stage 2 (demo encoders) in one process with the whole batch and in two gloo processes with
half the batch each. Prints the median step time of each and their ratio. Each configuration runs
in its own subprocess (Lightning's DDP launcher re-runs this script for rank 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


class StepTimer(pl.Callback):
    """Wall time of every training step (forward, backward, all-reduce, optimiser, EMA)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self.start)


def datamodule(cache: Path, batch_size: int, image_size: int):
    from detach_pl.data.synthetic import SyntheticKitchenConfig, SyntheticKitchenDataModule
    from detach_pl.data.windows import WindowSettings

    return SyntheticKitchenDataModule(
        cache_dir=str(cache), world=SyntheticKitchenConfig(num_runs=4, run_seconds=120.0),
        windows=WindowSettings(image_size=image_size), num_frames=8, batch_size=batch_size,
        num_workers=0, progress=False,
    )


def encoder():
    from detach_pl.nn import EncoderConfig

    return EncoderConfig(**yaml.safe_load((REPO / "configs/demo/encoder.yaml").read_text()))


def worker(args: argparse.Namespace) -> None:
    """One configuration: stage 1 checkpoint (if asked) or a timed stage-2 run."""
    from detach_pl.modules import SpatialGroundingModule, TemporalAlignmentModule

    pl.seed_everything(0)
    data = datamodule(args.work / "cache", args.global_batch // max(args.devices, 1), args.image_size)
    if args.devices == 0:
        stage1 = SpatialGroundingModule(data_info=data.data_info, encoder=encoder(), min_cluster_size=5)
        trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
        trainer.fit(stage1, datamodule=data)
        trainer.save_checkpoint(args.work / "stage1.ckpt")
        return
    module = TemporalAlignmentModule(data_info=data.data_info, encoder=encoder(),
                                     stage1_checkpoint=str(args.work / "stage1.ckpt"))
    timer = StepTimer()
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=args.steps, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto",
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=data)
    if trainer.global_rank == 0:
        steady = timer.times[2:]
        (args.work / f"steps{args.devices}.json").write_text(json.dumps(steady))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--devices", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.devices is not None:
        worker(args)
        return
    work = Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    base = [sys.executable, __file__, "--global-batch", str(args.global_batch), "--steps", str(args.steps),
            "--image-size", str(args.image_size), "--work", str(work)]
    for devices in (0, 1, 2):
        subprocess.run([*base, "--devices", str(devices)], check=True, env=env, capture_output=True)
    one = statistics.median(json.loads((work / "steps1.json").read_text()))
    two = statistics.median(json.loads((work / "steps2.json").read_text()))
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"stage 2, demo encoders, {args.image_size}px, 8 frames, global batch {args.global_batch}")
    print("| processes | per-process batch | median step (s) |\n|---|---|---|")
    print(f"| 1 | {args.global_batch} | {one:.3f} |")
    print(f"| 2 (gloo) | {args.global_batch // 2} | {two:.3f} |")
    print(f"ratio 2-process / 1-process: {two / one:.2f}")


if __name__ == "__main__":
    main()
