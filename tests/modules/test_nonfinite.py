"""A NaN or inf training loss stops the fit with the steps named, before its checkpoint is written."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from detach_pl.modules import LinearProbeModule, SpatialGroundingModule
from detach_pl.modules.nonfinite import NonFiniteLossCheck
from helpers import tiny_datamodule, tiny_encoder


class Regression(pl.LightningModule):
    """A linear regression whose loss is NaN from training step `nan_from` on (None: never)."""

    def __init__(self, nan_from: int | None) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1)
        self.nan_from = nan_from

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        if self.nan_from is not None and self.global_step >= self.nan_from:
            loss = loss * float("nan")
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(batches: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4 * batches, 3, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def trainer(tmp_path: Path, check: NonFiniteLossCheck, **kwargs: object) -> pl.Trainer:
    options: dict = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, max_epochs=2)
    options.update(kwargs)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    return pl.Trainer(callbacks=[checkpoint, check], **options)


def test_the_error_names_the_steps_and_no_checkpoint_is_written(tmp_path) -> None:
    fit = trainer(tmp_path, NonFiniteLossCheck(every_n_batches=2))
    with pytest.raises(FloatingPointError) as error:
        fit.fit(Regression(nan_from=0), loader(batches=6))
    # Step 0's NaN gradients make every later loss NaN too: both batches before the first check.
    assert "in 2 step(s) between global steps 0 and 2 (epoch 0)" in str(error.value)
    assert "lower model.init_args.lr" in str(error.value)
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))


def test_the_check_at_the_end_of_an_epoch_comes_before_the_epochs_checkpoint(tmp_path) -> None:
    fit = trainer(tmp_path, NonFiniteLossCheck(every_n_batches=100), max_epochs=3)
    with pytest.raises(FloatingPointError, match=r"in 1 step\(s\) between global steps 3 and 6 \(epoch 1\)"):
        fit.fit(Regression(nan_from=5), loader(batches=3))
    (saved,) = (tmp_path / "checkpoints").glob("epoch=*.ckpt")  # epoch 0's, written before the NaN
    assert saved.name.startswith("epoch=0-")
    state = torch.load(saved, weights_only=False)["state_dict"]
    assert all(bool(torch.isfinite(value).all()) for value in state.values())


def test_finite_losses_train_as_without_the_check(tmp_path) -> None:
    finals = []
    for callbacks in ([NonFiniteLossCheck(every_n_batches=1)], []):
        torch.manual_seed(0)
        module = Regression(nan_from=None)
        pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, max_epochs=2, callbacks=callbacks).fit(module, loader(batches=3))
        finals.append(module.layer.weight.detach().clone())
    torch.testing.assert_close(finals[0], finals[1], rtol=0, atol=0)


class DivergingProbe(LinearProbeModule):
    """The probe, its loss turned NaN from the third step on (as a diverged learning rate would)."""

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step >= 2 else loss


def test_every_detach_module_carries_the_check_and_a_diverged_probe_stops(tmp_path) -> None:
    datamodule = tiny_datamodule(tmp_path)
    stage1 = SpatialGroundingModule(data_info=datamodule.data_info, encoder=tiny_encoder())
    assert [type(callback) for callback in stage1.configure_callbacks()] == [NonFiniteLossCheck]
    probe = DivergingProbe(data_info=datamodule.data_info, encoder=tiny_encoder())
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    fit = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path, max_epochs=4, callbacks=[checkpoints])
    with pytest.raises(FloatingPointError, match=r"DivergingProbe: the training loss was NaN or inf") as error:
        fit.fit(probe, datamodule=datamodule)
    assert "model.init_args.debug_checks true" in str(error.value)
    for saved in (tmp_path / "checkpoints").glob("*.ckpt"):
        state = torch.load(saved, weights_only=False)["state_dict"]
        assert all(bool(torch.isfinite(value).all()) for value in state.values() if value.is_floating_point())


WORLD = 2


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    """Only rank 1 sees a NaN loss; both ranks must raise at the same check (no rank left waiting)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        check = NonFiniteLossCheck(every_n_batches=2)
        stand_in = SimpleNamespace(global_step=0, current_epoch=0)
        module = SimpleNamespace(device=torch.device("cpu"), hparams={})
        outcome = "no error"
        try:
            for batch_idx in range(4):
                loss = torch.tensor(float("nan") if rank == 1 and batch_idx == 0 else 1.0)
                stand_in.global_step = batch_idx + 1
                check.on_train_batch_end(stand_in, module, {"loss": loss}, None, batch_idx)  # type: ignore[arg-type]
        except FloatingPointError as error:
            outcome = f"{batch_idx}: {error}"
        (Path(out_dir) / f"rank{rank}.txt").write_text(outcome)
    finally:
        dist.destroy_process_group()


def test_a_nan_on_one_rank_stops_every_rank_at_the_same_check(tmp_path) -> None:
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        outcome = (tmp_path / f"rank{rank}.txt").read_text()
        assert outcome.startswith("1: SimpleNamespace: the training loss was NaN or inf in 1 step(s) between "
                                  "global steps 0 and 2"), outcome
