"""Stage 2: frozen spatial encoders from stage 1, EMA rule, loss wiring, checkpoint hand-over errors."""

from __future__ import annotations

import dataclasses

import lightning.pytorch as pl
import pytest
import torch

from detach_pl.losses import info_nce
from detach_pl.modules import LinearProbeModule, SpatialGroundingModule, TemporalAlignmentModule
from helpers import cpu_trainer, tiny_datamodule, tiny_encoder


def quick_trainer(root, **kwargs) -> pl.Trainer:
    options = dict(max_epochs=1, limit_train_batches=2, limit_val_batches=0, enable_checkpointing=False)
    return cpu_trainer(1, **{**options, "default_root_dir": root, **kwargs})


@pytest.fixture(scope="module")
def stage1_checkpoint(tmp_path_factory):
    """A real stage-1 checkpoint after a few steps (and its module)."""
    root = tmp_path_factory.mktemp("stage1")
    datamodule = tiny_datamodule(root)
    module = SpatialGroundingModule(
        data_info=datamodule.data_info, encoder=tiny_encoder(), min_cluster_size=5,
        video_start_epoch=0, refine_start_epoch=5, lr=1e-3,
    )
    trainer = quick_trainer(root)
    trainer.fit(module, datamodule=datamodule)
    path = root / "stage1.ckpt"
    trainer.save_checkpoint(path)
    return path, module


def stage2(datamodule, checkpoint, **kwargs) -> TemporalAlignmentModule:
    return TemporalAlignmentModule(
        data_info=datamodule.data_info, encoder=kwargs.pop("encoder", tiny_encoder()),
        stage1_checkpoint=str(checkpoint), lr=1e-3, **kwargs,
    )


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


class EmaProbe(pl.Callback):
    """Checks θ'_new = m·θ'_old + (1 − m)·θ_new after every optimiser step."""

    def __init__(self) -> None:
        self.checked = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.before = {name: flat(module.ema[name]) for name in module.ema}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        m = module.hparams.ema_momentum
        for name in module.ema:
            expected = m * self.before[name] + (1 - m) * flat(module.encoders[name])
            torch.testing.assert_close(flat(module.ema[name]), expected, rtol=1e-6, atol=1e-7)
            self.checked += 1


def test_spatial_encoders_come_from_stage1_and_stay_frozen(tmp_path, stage1_checkpoint) -> None:
    path, trained = stage1_checkpoint
    datamodule = tiny_datamodule(tmp_path)
    module = stage2(datamodule, path, ema_momentum=0.9)
    probe = EmaProbe()
    temporal_before = flat(module.encoders["sensor_temporal"])
    quick_trainer(tmp_path, callbacks=[probe]).fit(module, datamodule=datamodule)
    for name in ("video_spatial", "sensor_spatial"):
        assert torch.equal(flat(module.encoders[name]), flat(trained.encoders[name])), name
        assert not any(p.requires_grad for p in module.encoders[name].parameters())
    assert not torch.equal(flat(module.encoders["sensor_temporal"]), temporal_before)
    assert probe.checked == 4  # 2 steps × 2 temporal encoders


@pytest.mark.parametrize("frozen_mode", ["train", "eval"])
def test_frozen_encoders_batchnorm_mode(tmp_path, stage1_checkpoint, frozen_mode: str) -> None:
    """Released: frozen spatial and EMA encoders run in training mode, so their BatchNorm running
    statistics keep moving (weights never do); "eval" keeps the stage-1 statistics."""
    path, trained = stage1_checkpoint
    datamodule = tiny_datamodule(tmp_path)
    module = stage2(datamodule, path, frozen_mode=frozen_mode)

    def running_stats(encoder: torch.nn.Module) -> torch.Tensor:
        return torch.cat([b.flatten() for n, b in encoder.named_buffers() if "running_mean" in n])

    quick_trainer(tmp_path).fit(module, datamodule=datamodule)
    for name in ("video_spatial", "sensor_spatial"):
        assert torch.equal(flat(module.encoders[name]), flat(trained.encoders[name])), name
        moved = not torch.equal(running_stats(module.encoders[name]), running_stats(trained.encoders[name]))
        assert moved == (frozen_mode == "train"), name


def test_without_both_weights_the_loss_is_symmetric_info_nce(tmp_path, stage1_checkpoint) -> None:
    path, _ = stage1_checkpoint
    datamodule = tiny_datamodule(tmp_path, purpose="alignment")
    datamodule.setup("fit")
    batch = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    module = stage2(datamodule, path, use_spatial_weight=False, use_temporal_weight=False).eval()
    loss, aligned, weights = module.alignment_loss(batch["video"], batch["sensor"], warp=False)
    expected = info_nce(aligned.u_v, aligned.u_s, module.hparams.temperature)
    torch.testing.assert_close(loss, expected)
    assert torch.equal(weights, 1 - torch.eye(weights.shape[0]))
    weighted = stage2(datamodule, path).eval()
    weighted.load_state_dict(module.state_dict())
    _, _, full = weighted.alignment_loss(batch["video"], batch["sensor"], warp=False)
    assert torch.all(full.diagonal() == 0) and not torch.equal(full, weights)


def test_missing_stage1_checkpoint_fails_before_training(tmp_path) -> None:
    datamodule = tiny_datamodule(tmp_path)
    module = stage2(datamodule, tmp_path / "nowhere" / "last.ckpt")
    with pytest.raises(FileNotFoundError, match=r"stage1_checkpoint: checkpoint .*nowhere.*last\.ckpt does not exist"):
        quick_trainer(tmp_path).fit(module, datamodule=datamodule)
    assert module.global_step == 0


def test_incompatible_checkpoint_is_named_with_the_mismatch(tmp_path, stage1_checkpoint) -> None:
    path, _ = stage1_checkpoint
    datamodule = tiny_datamodule(tmp_path)
    other = dataclasses.replace(tiny_encoder(), embed_dim=32)
    module = stage2(datamodule, path, encoder=other)
    expected = r"stage1\.ckpt was trained with another encoder architecture: embed_dim: checkpoint 64 vs config 32"
    with pytest.raises(ValueError, match=expected):
        quick_trainer(tmp_path).fit(module, datamodule=datamodule)


def test_probe_from_a_stage1_checkpoint_is_refused(tmp_path, stage1_checkpoint) -> None:
    path, _ = stage1_checkpoint
    datamodule = tiny_datamodule(tmp_path)
    probe = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder(), encoder_checkpoint=str(path))
    with pytest.raises(ValueError, match="has no 'sensor_temporal' encoder weights"):
        quick_trainer(tmp_path).fit(probe, datamodule=datamodule)


def test_not_a_checkpoint_is_refused(tmp_path) -> None:
    bogus = tmp_path / "notes.ckpt"
    bogus.write_text("hello")
    datamodule = tiny_datamodule(tmp_path)
    with pytest.raises(ValueError, match=r"notes\.ckpt \(5 bytes\) is not a readable checkpoint"):
        quick_trainer(tmp_path).fit(stage2(datamodule, bogus), datamodule=datamodule)
