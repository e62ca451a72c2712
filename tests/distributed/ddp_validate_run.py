"""Validate stage 2 on 51-s tiny-kitchen runs (49 validation windows) and dump what each rank saw.

Run as a script (Lightning's DDP launcher re-runs it once per extra rank):
    python ddp_validate_run.py --devices 2 --cache DIR --out DIR
Each rank writes DIR/rank<r>.pt with the dataset indices of its validation batches, in order, and
the logged validation metrics. Stage 2's validation step gathers the global batch (embeddings,
similarity inputs, labels) across ranks, so it runs the uneven gathers of the last step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

# A subprocess script (and DDP re-runs it per rank): tests/helpers.py builds on the repo's configs/, so it
# is not part of detach_pl.testing; the script puts tests/ on its path itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from detach_pl.data.synthetic import SyntheticKitchenConfig  # noqa: E402
from detach_pl.modules import TemporalAlignmentModule  # noqa: E402
from helpers import cpu_trainer, tiny_datamodule, tiny_encoder  # noqa: E402


class DumpValidation(pl.Callback):
    """Record the dataset indices of every validation batch; save them with the metrics."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.batches: list[list[int]] = []

    def on_validation_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.batches.append(batch["index"].tolist())

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
        torch.save({"batches": self.batches, "metrics": metrics}, self.out / f"rank{trainer.global_rank}.pt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(0)
    datamodule = tiny_datamodule(
        args.cache, world=SyntheticKitchenConfig(num_runs=3, run_seconds=51.0), augment_video=False
    )
    module = TemporalAlignmentModule(data_info=datamodule.data_info, encoder=tiny_encoder(), warp_sigma=0.0)
    trainer = cpu_trainer(args.devices, callbacks=[DumpValidation(args.out)])
    trainer.validate(module, datamodule=datamodule)


if __name__ == "__main__":
    main()
