"""Linear probe on the frozen sensor encoders: the paper's downstream evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from detach_pl.data.info import DataInfo
from detach_pl.distributed import all_reduce_sum
from detach_pl.modules.sensor_classifier import SENSOR, FeatureStandardizer, SensorClassifierModule
from detach_pl.nn import EncoderConfig

__all__ = ["HOST_INDEX", "EmbeddingMemo", "FeatureStandardizer", "LinearProbeModule"]

#: Batch key of the item indices as a host (numpy) array, added before the transfer to the device.
HOST_INDEX = "index_on_host"


class EmbeddingMemo:
    """Embeddings of dataset items by index, computed the first time an item is seen.

    The probe's encoders are frozen, in eval mode, and see no augmentation, so an item's
    embedding is the same in every epoch: the 50 probe epochs then cost one pass of the encoders.

    Which items are known is kept on the host (`known`, a CPU tensor) and decided from the batch's
    host copy of its indices, so a lookup reads nothing back from the device: the known rows are a
    gather, the new ones an embedding of the rows the host picked. (A sequence batch selects its
    valid windows with its mask when it is first embedded; later epochs only gather.)
    """

    def __init__(self) -> None:
        self.values: Tensor | None = None
        self.known = torch.zeros(0, dtype=torch.bool)

    def lookup(
        self, index: Tensor, compute: Callable[[Tensor], Tensor], host_index: np.ndarray | None = None
    ) -> Tensor:
        """Embeddings of the batch items `index`; `compute(rows)` embeds the batch rows not yet known.

        Args:
            index: (B,) dataset indices of the batch items, on the device of the embeddings.
            compute: Maps batch positions (a 1-D long tensor on `index.device`) to their embeddings.
            host_index: The same indices on the host (the probe takes them from the loader's
                batch before the transfer); None reads `index` back (a device synchronisation).
        """
        if host_index is None:
            host_index = index.cpu().numpy()
        size = int(host_index.max()) + 1
        if self.known.numel() < size:
            grown = torch.zeros(size, dtype=torch.bool)
            grown[: self.known.numel()] = self.known
            self.known = grown
        known = self.known.numpy()
        missing = np.flatnonzero(~known[host_index])
        if missing.size:
            rows = torch.from_numpy(missing).to(index.device, non_blocking=True)
            fresh = compute(rows)
            if self.values is None or self.values.shape[0] < size:
                values = fresh.new_zeros(size, fresh.shape[1])
                if self.values is not None:
                    values[: self.values.shape[0]] = self.values
                self.values = values
            self.values[index[rows]] = fresh
            known[host_index[missing]] = True
        assert self.values is not None
        return self.values[index]


class LinearProbeModule(SensorClassifierModule):
    """Frozen sensor encoders → u_s (2·d) → one Linear layer; Adam (docs/method.md, downstream).

    Window batches are classified per window. Sequence batches (`sensor` of shape
    (B, W, C, L) with a `mask`) have their window embeddings mean-pooled over each run first.

    With `standardize_features` each dimension of u_s is standardised with the mean and standard
    deviation of the training embeddings (`FeatureStandardizer`, computed once before the first epoch) before the
    Linear layer. That is a fixed affine map, so the classifier stays linear in u_s; what it changes
    is the optimisation: u_s is a unit vector whose coordinates are ~1/sqrt(2d) in size, and with
    the paper's Adam budget a plain Linear layer stops far from its optimum on small training sets
    (the probe would then rank optimisation budgets, not features). The default is the released
    plain Linear layer on [normalize(z_s), normalize(h_s)] with batch 8 (`data.probe_batch_size`).

    The training step reads nothing back from the device (see `EmbeddingMemo`); its input checks
    (labels in range, finite embeddings) run on the first step, or on every step with
    `debug_checks`.

    Args:
        data_info: Linked from the DataModule (num_channels, num_classes, class names).
        encoder: Encoder architecture; must equal the source checkpoint's.
        encoder_checkpoint: Stage-2 (or any alignment) checkpoint holding the sensor encoders.
            None keeps the encoders randomly initialised: the floor of the comparison.
        lr: Adam learning rate (1e-3).
        weight_decay: Adam weight decay (0).
        standardize_features: Standardise u_s per dimension with the training set's statistics
            before the Linear layer (this project's improvement, see above), or feed u_s to it as
            is (default: the released plain probe).
        normalize_embedding: Normalise [normalize(z_s), normalize(h_s)] once more (the paper's
            u_s, norm 1) or not (released: norm √2).
        debug_checks: Check labels and embeddings on the host at every training step (a device
            sync each step; False: on the first step only).
    """

    def __init__(
        self,
        data_info: DataInfo | None = None,
        encoder: EncoderConfig = EncoderConfig(),  # noqa: B008 - never mutated: as_encoder_config copies it
        encoder_checkpoint: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        standardize_features: bool = False,
        normalize_embedding: bool = False,
        debug_checks: bool = False,
    ) -> None:
        super().__init__(data_info, encoder, lr, weight_decay, standardize_features, normalize_embedding)
        self.save_hyperparameters()
        self.freeze_encoders(SENSOR)

    def setup(self, stage: str) -> None:
        """Load the sensor encoders of the source checkpoint, frozen, before training."""
        super().setup(stage)
        self.freeze_encoders(SENSOR)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on the linear layer only."""
        return torch.optim.Adam(self.classifier.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    @torch.no_grad()
    def embed(self, sensor: Tensor, mask: Tensor | None = None) -> Tensor:
        """u_s of the frozen encoders, without a graph (nothing before the Linear layer trains)."""
        return super().embed(sensor, mask)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Keep the item indices on the host too (`HOST_INDEX`), then move the batch as usual.

        The memo decides on the host what to embed. This is the last hook that still sees the
        loader's batch on the host after the DataModule's `on_before_batch_transfer`; Lightning
        notes once that the module, not the DataModule, provides it (the DataModule has none).
        """
        if isinstance(batch, dict) and isinstance(batch.get("index"), Tensor):
            batch[HOST_INDEX] = batch["index"].numpy()
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _memoised_embeddings(self, batch: dict[str, Any], split: str) -> Tensor:
        mask = batch.get("mask")

        def compute(rows: Tensor) -> Tensor:
            return self.embed(batch["sensor"][rows], None if mask is None else mask[rows])

        return self._memos[split].lookup(batch["index"], compute, batch.get(HOST_INDEX))

    def _memoised_logits(self, batch: dict[str, Any], split: str) -> Tensor:
        return self.classifier(self._memoised_embeddings(batch, split))

    def reset_memos(self) -> None:
        """Empty training and validation memos (a new `fit` may load other encoder weights)."""
        self._memos = {"train": EmbeddingMemo(), "val": EmbeddingMemo()}

    def on_fit_start(self) -> None:
        """Fresh embedding memos (see `EmbeddingMemo`), then the standardiser's statistics."""
        super().on_fit_start()
        self.reset_memos()
        standardize = self.classifier[0]
        if isinstance(standardize, FeatureStandardizer) and not bool(standardize.fitted):
            self.fit_standardizer(standardize)

    def fit_standardizer(self, standardize: FeatureStandardizer) -> None:
        """Statistics of u_s over the training set, summed over ranks.

        Each rank embeds its shard once; the embeddings stay in the training memo, so the first
        epoch does not embed again.
        The batches reach the device as in a training step (the precision plugin, this module's
        and the DataModule's batch-transfer hooks).
        """
        trainer = self.trainer
        datamodule = self.attached_datamodule()
        if datamodule is None:
            raise ValueError(
                "model.init_args.standardize_features: the probe computes its statistics from the "
                "DataModule's training loader; pass one (trainer.fit(model, datamodule=...)) or set it false"
            )
        width = standardize.mean.numel()
        total = torch.zeros(width, dtype=torch.float64, device=self.device)
        squares = torch.zeros_like(total)
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        for batch in datamodule.train_dataloader():
            batch = trainer.precision_plugin.convert_input(batch)
            batch = self._on_before_batch_transfer(batch, dataloader_idx=0)
            batch = trainer.strategy.batch_to_device(batch, dataloader_idx=0)
            embeddings = self._memoised_embeddings(batch, "train").double()
            total += embeddings.sum(0)
            squares += embeddings.square().sum(0)
            count += embeddings.shape[0]
        summed = all_reduce_sum(torch.cat([total, squares, count.reshape(1)]))  # one collective
        standardize.fit(summed[:width], summed[width : 2 * width], summed[-1])

    def check_inputs(self, embeddings: Tensor, labels: Tensor) -> None:
        """Labels in [0, num_classes) and finite embeddings, with errors that say which (host reads)."""
        num_classes = self.data_info.num_classes
        if labels.numel() and not bool(((labels >= 0) & (labels < num_classes)).all()):
            raise ValueError(
                f"probe labels {sorted(set(labels.tolist()))} outside [0, {num_classes}): the DataModule's "
                "probe data must hold labelled items only, numbered as in data_info.class_names"
            )
        if not bool(torch.isfinite(embeddings).all()):
            raise ValueError(
                "probe embeddings are not finite (NaN or inf): check the sensor windows and the "
                "encoder checkpoint (model.init_args.encoder_checkpoint)"
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Cross-entropy of the classifier on the (memoised) embeddings of the batch."""
        embeddings = self._memoised_embeddings(batch, "train")
        if self.checks_due():
            self.check_inputs(embeddings, batch["label"])
        loss = nn.functional.cross_entropy(self.classifier(embeddings), batch["label"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=batch["label"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Validation loss and metrics; during `fit` the frozen embeddings come from the memo."""
        logits = self._memoised_logits(batch, "val") if self.trainer.state.fn == "fit" else self.batch_logits(batch)
        self.log_validation(logits, batch["label"])
