"""Predict with a probe checkpoint on the tiny kitchen's run01 (7 windows) and dump each rank's rows.

Run as a script (Lightning's DDP launcher re-runs it once per extra rank):
    python ddp_predict_run.py --devices 2 --checkpoint PROBE.ckpt --cache DIR --out DIR
Each rank writes DIR/rank<r>.pt with the dataset index and class probabilities of every window it
predicted, in the order it predicted them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from detach_pl.modules import LinearProbeModule  # noqa: E402
from helpers import cpu_trainer, tiny_datamodule, tiny_encoder  # noqa: E402


class DumpPredictions(pl.Callback):
    """Collect (index, probs) of every predicted batch; save them at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.index: list[torch.Tensor] = []
        self.probs: list[torch.Tensor] = []

    def on_predict_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.index.append(batch["index"].cpu())
        self.probs.append(outputs["probs"].cpu())

    def on_predict_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        state = {"index": torch.cat(self.index), "probs": torch.cat(self.probs), "batches": len(self.index)}
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    datamodule = tiny_datamodule(args.cache, test_runs=["run01"])
    module = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder())
    module.load_state_dict(torch.load(args.checkpoint, weights_only=False)["state_dict"])
    trainer = cpu_trainer(args.devices, callbacks=[DumpPredictions(args.out)])
    trainer.predict(module, datamodule=datamodule, return_predictions=False)


if __name__ == "__main__":
    main()
