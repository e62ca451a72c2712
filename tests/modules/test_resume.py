"""A stage-1 run stopped after an epoch and resumed from last.ckpt ends where an uninterrupted run does."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from helpers import tiny_datamodule, tiny_encoder
from lightning.pytorch.callbacks import ModelCheckpoint

from detach_pl.modules import SpatialGroundingModule


def run(root, epochs: int, ckpt_path=None) -> SpatialGroundingModule:
    pl.seed_everything(7)
    datamodule = tiny_datamodule(root / "cache")
    module = SpatialGroundingModule(
        data_info=datamodule.data_info, encoder=tiny_encoder(), min_cluster_size=5,
        video_start_epoch=1, refine_start_epoch=2, video_gate=0.0, lr=1e-3,
    )
    trainer = pl.Trainer(
        max_epochs=epochs, limit_train_batches=3, limit_val_batches=0, accelerator="cpu", logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
        callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, save_top_k=0)],
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return module


def test_resumed_stage1_equals_uninterrupted(tmp_path) -> None:
    # Time warp and video augmentation are on: the checkpoint must restore the random state too.
    uninterrupted = run(tmp_path / "a", epochs=3)
    run(tmp_path / "b", epochs=2)  # "killed" after epoch 2 (of 3): cluster → joint phases done
    stopped = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False)
    assert stopped["epoch"] == 2 and stopped["optimizer_states"] and "odc_memory" in stopped
    resumed = run(tmp_path / "b", epochs=3, ckpt_path=tmp_path / "b" / "checkpoints" / "last.ckpt")

    assert resumed.current_epoch == uninterrupted.current_epoch == 3
    for key, value in uninterrupted.memory.state_dict().items():
        assert torch.equal(resumed.memory.state_dict()[key], value), key
    for key, value in uninterrupted.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
