"""Stage 1: schedule, frozen/learning parts per phase, memory bank in checkpoints."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from detach_pl.modules import SpatialGroundingModule
from helpers import cpu_trainer, tiny_datamodule, tiny_encoder


class RecordingStage1(SpatialGroundingModule):
    """Stage 1 that records which losses each epoch logged."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.logged: dict[int, set[str]] = {}

    def log_dict(self, metrics, *args, **kwargs) -> None:  # type: ignore[override]
        self.logged.setdefault(self.current_epoch, set()).update(metrics)
        super().log_dict(metrics, *args, **kwargs)


class ParameterSnapshots(pl.Callback):
    """Video-encoder parameters at the start and end of every training epoch."""

    def __init__(self) -> None:
        self.start: dict[int, torch.Tensor] = {}
        self.end: dict[int, torch.Tensor] = {}

    @staticmethod
    def _flat(module: SpatialGroundingModule) -> torch.Tensor:
        return torch.cat([p.detach().flatten().clone() for p in module.encoders["video_spatial"].parameters()])

    def on_train_epoch_start(self, trainer: pl.Trainer, module: SpatialGroundingModule) -> None:
        self.start[trainer.current_epoch] = self._flat(module)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: SpatialGroundingModule) -> None:
        self.end[trainer.current_epoch] = self._flat(module)


def make_module(datamodule, **kwargs) -> RecordingStage1:
    options = dict(
        data_info=datamodule.data_info,
        encoder=tiny_encoder(),
        min_cluster_size=5,
        video_start_epoch=1,
        refine_start_epoch=2,
        video_gate=0.0,
        lr=1e-3,
    )
    options.update(kwargs)
    return RecordingStage1(**options)


def trainer(tmp_path, epochs: int, callbacks=()) -> pl.Trainer:
    return cpu_trainer(
        1, max_epochs=epochs, limit_train_batches=3, limit_val_batches=0, enable_checkpointing=False,
        callbacks=list(callbacks), default_root_dir=tmp_path,
    )


def test_phase_boundaries_follow_the_configuration(tmp_path) -> None:
    module = make_module(tiny_datamodule(tmp_path), video_start_epoch=5, refine_start_epoch=15)
    phases = [module.phase(epoch) for epoch in range(25)]
    assert phases == ["cluster"] * 5 + ["joint"] * 10 + ["refine"] * 10


def test_invalid_schedule_is_rejected(tmp_path) -> None:
    with pytest.raises(ValueError, match="video_start_epoch"):
        make_module(tiny_datamodule(tmp_path), video_start_epoch=6, refine_start_epoch=3)


@pytest.mark.parametrize("video_in_refine", ["train", "frozen"])
def test_each_phase_trains_what_the_schedule_says(tmp_path, video_in_refine: str) -> None:
    """Cluster only; + video; + refinement, with L_video still training (released) or frozen (paper)."""
    datamodule = tiny_datamodule(tmp_path)
    module = make_module(datamodule, video_in_refine=video_in_refine)
    snapshots = ParameterSnapshots()
    trainer(tmp_path, epochs=3, callbacks=[snapshots]).fit(module, datamodule=datamodule)

    assert "train/loss_video" not in module.logged[0] and "train/loss_refine" not in module.logged[0]
    assert "train/loss_video" in module.logged[1] and "train/loss_refine" not in module.logged[1]
    assert "train/loss_refine" in module.logged[2]
    assert ("train/loss_video" in module.logged[2]) == (video_in_refine == "train")
    # The video branch is idle while clustering, learns in the joint phase, and in the refinement
    # phase only when it keeps training.
    assert torch.equal(snapshots.start[0], snapshots.end[0])
    assert not torch.equal(snapshots.start[1], snapshots.end[1])
    assert torch.equal(snapshots.start[2], snapshots.end[2]) == (video_in_refine == "frozen")


def test_memory_bank_is_initialised_by_kmeans_and_saved_in_checkpoints(tmp_path) -> None:
    datamodule = tiny_datamodule(tmp_path)
    module = make_module(datamodule)
    fit = trainer(tmp_path, epochs=1)
    fit.fit(module, datamodule=datamodule)
    memory = module.memory
    assert memory is not None and memory.initialized
    assert memory.num_samples == len(datamodule.datasets["train"])
    assert (memory.cluster_sizes() > 0).all()
    path = tmp_path / "stage1.ckpt"
    fit.save_checkpoint(path)

    restored = SpatialGroundingModule.load_from_checkpoint(path, weights_only=False)
    assert restored.memory is not None
    for key, value in memory.state_dict().items():
        assert torch.equal(restored.memory.state_dict()[key], value.cpu()), key
