"""Train stage 1, stage 2 or the probe (3) on the tiny synthetic kitchen and dump each rank's state.

Run as a script (Lightning's DDP launcher re-runs it once per extra rank):
    python ddp_stage_run.py --stage 1 --devices 2 --batch-size 8 --out DIR
Each rank writes DIR/rank<r>.pt with the ODC memory (stage 1) or the EMA and temporal encoders
(stage 2) or the probe's standardiser (3), plus every parameter. Randomness that differs per rank by
design (time warp, video augmentation) is switched off so that R processes with batch B can be
compared with one process with batch R·B on the same global batches. For the same reason the
sensor encoders are the BatchNorm-free "paper" style: BatchNorm normalises with each rank's own
batch (SyncBatchNorm runs on GPUs only), so the released sensor encoders legitimately differ
from one process on CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

# A subprocess script (and DDP re-runs it per rank): tests/helpers.py builds on the repo's configs/, so it
# is not part of detach_pl.testing; the script puts tests/ on its path itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from detach_pl.modules import LinearProbeModule, SpatialGroundingModule, TemporalAlignmentModule  # noqa: E402
from helpers import cpu_trainer, tiny_datamodule, tiny_encoder  # noqa: E402


class DumpState(pl.Callback):
    """Save this rank's final state."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        state = {"params": {k: v.detach().cpu() for k, v in module.state_dict().items()}}
        if isinstance(module, SpatialGroundingModule):
            state["memory"] = {k: v.cpu() for k, v in module.memory.state_dict().items()}
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", type=int, choices=(1, 2, 3), required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stage1-checkpoint", type=str, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(0)
    datamodule = tiny_datamodule(args.cache, batch_size=args.batch_size, augment_video=False)
    encoder = dataclasses.replace(tiny_encoder(), sensor_spatial_style="paper", sensor_temporal_style="paper")
    if args.stage == 1:
        module = SpatialGroundingModule(
            data_info=datamodule.data_info, encoder=encoder, min_cluster_size=5,
            video_start_epoch=1, refine_start_epoch=2, video_gate=0.0, warp_start_epoch=99, lr=1e-3,
            # The refinement targets are video predictions; a video encoder that keeps training (the
            # released default) predicts from each rank's own BatchNorm batch statistics, so one
            # process is matched only with the video in eval mode during refinement.
            video_in_refine="frozen",
        )
    elif args.stage == 2:
        module = TemporalAlignmentModule(
            data_info=datamodule.data_info, encoder=encoder, stage1_checkpoint=args.stage1_checkpoint,
            warp_sigma=0.0, ema_momentum=0.9, lr=1e-3,
        )
    else:
        module = LinearProbeModule(data_info=datamodule.data_info, encoder=encoder, standardize_features=True)
    trainer = cpu_trainer(
        args.devices,
        max_epochs=args.epochs,
        limit_train_batches=args.batches,
        limit_val_batches=0,
        enable_checkpointing=args.stage == 1,
        default_root_dir=args.out,
        callbacks=[DumpState(args.out)],
    )
    trainer.fit(module, datamodule=datamodule)
    if args.stage == 1:  # a collective: every rank calls it, rank 0 writes
        trainer.save_checkpoint(args.out / "stage1.ckpt")


if __name__ == "__main__":
    main()
