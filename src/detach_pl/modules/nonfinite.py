"""Stop a fit whose training loss became NaN or inf, before a checkpoint of its weights is written.

A diverged run (a learning rate too high for the batch, bf16 overflow, a broken recording) would
otherwise train on for hours, log NaN and hand NaN encoders to the next stage. Each step adds the
number of non-finite losses to a counter on the device, which costs no host–device
synchronisation; the counter is read on the host, summed over the ranks, only where Lightning
reads the logged values anyway (every `log_every_n_steps` batches), before validation and at the
end of each training epoch. Lightning runs checkpoint callbacks after every other callback, so
the error comes before any `ModelCheckpoint` of that epoch is saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from detach_pl.distributed import all_reduce_sum


class NonFiniteLossCheck(Callback):
    """Raise FloatingPointError, naming the steps, once a training loss was NaN or inf.

    Args:
        every_n_batches: Read the counter every this many training batches; None: the trainer's
            `log_every_n_steps` (0, logging off: only before validation and at the epoch's end).
    """

    def __init__(self, every_n_batches: int | None = None) -> None:
        if every_n_batches is not None and every_n_batches < 1:
            raise ValueError(f"NonFiniteLossCheck: every_n_batches={every_n_batches} must be >= 1 (or None)")
        self.every_n_batches = every_n_batches
        self._count: Tensor | None = None
        self._checked_step = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Count this step's non-finite loss on the device; read the count every `every_n_batches`."""
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, Tensor):
            bad = (~torch.isfinite(loss.detach())).sum()
            self._count = bad if self._count is None else self._count + bad
        every = self.every_n_batches or getattr(trainer, "log_every_n_steps", 0)  # set by Lightning, undeclared
        if every and (batch_idx + 1) % every == 0:
            self._check(trainer, pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check before a validation inside `fit` (its end is where checkpoints are saved)."""
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check at the end of every training epoch, before the epoch-end checkpoints."""
        self._check(trainer, pl_module)

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Sum the counter over the ranks (every rank calls this at the same batches) and raise if > 0."""
        count = self._count if self._count is not None else torch.zeros((), dtype=torch.int64, device=pl_module.device)
        bad = int(all_reduce_sum(count.to(torch.int64)).item())
        first, last = self._checked_step, trainer.global_step
        self._count, self._checked_step = None, last
        if bad:
            hints = ["lower model.init_args.lr", "train with trainer.precision 32 if it was bf16"]
            if "debug_checks" in getattr(pl_module, "hparams", {}):
                hints.append("look for broken inputs with model.init_args.debug_checks true")
            raise FloatingPointError(
                f"{type(pl_module).__name__}: the training loss was NaN or inf in {bad} step(s) between "
                f"global steps {first} and {last} (epoch {trainer.current_epoch}); training stopped before "
                f"a checkpoint of these weights was written: {'; '.join(hints)}"
            )
