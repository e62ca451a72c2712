"""Linear probe on the frozen sensor encoders: the paper's downstream evaluation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from detach_pl.data.info import DataInfo
from torchmetrics.classification import MulticlassConfusionMatrix

from detach_pl.distributed import all_reduce_sum
from detach_pl.io import write_atomically
from detach_pl.metrics import probe_metrics
from detach_pl.modules.base import DetachModule, copy_encoder_weights, load_stage_checkpoint
from detach_pl.nn import EncoderConfig, joint_embedding
from detach_pl.plots import confusion_figure

SENSOR = ("sensor_spatial", "sensor_temporal")


class EmbeddingMemo:
    """Embeddings of dataset items by index, computed the first time an item is seen.

    The probe's encoders are frozen, in eval mode, and see no augmentation, so an item's
    embedding is the same in every epoch: the 50 probe epochs then cost one pass of the encoders.
    """

    def __init__(self) -> None:
        self.values: Tensor | None = None
        self.known: Tensor | None = None

    def lookup(self, index: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """Embeddings of the batch items `index`; `compute(rows)` embeds the batch rows not yet known."""
        size = int(index.max()) + 1
        if self.known is None or self.known.numel() < size:
            known = torch.zeros(size, dtype=torch.bool, device=index.device)
            if self.known is not None:
                known[: self.known.numel()] = self.known
            self.known = known
        missing = ~self.known[index]
        if missing.any():
            fresh = compute(missing)
            if self.values is None or self.values.shape[0] < size:
                values = fresh.new_zeros(size, fresh.shape[1])
                if self.values is not None:
                    values[: self.values.shape[0]] = self.values
                self.values = values
            self.values[index[missing]] = fresh
            self.known[index[missing]] = True
        assert self.values is not None
        return self.values[index]


class FeatureStandardizer(nn.Module):
    """x → (x − μ) / σ per dimension, with μ, σ of the training embeddings (fixed buffers).

    The statistics are set once by `fit` from sums over the whole training set (all ranks), so
    the map does not depend on batches, batch size or their order, and is stored in checkpoints.
    Until fitted it is the identity.

    Args:
        width: Embedding size.
        eps: Floor of σ (a constant dimension is centred, not blown up).
    """

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, total: Tensor, total_of_squares: Tensor, count: Tensor) -> None:
        """Set μ = Σx / n and σ = sqrt(Σx² / n − μ²) (floored at eps) from per-dimension sums."""
        if float(count) < 1:
            raise ValueError("FeatureStandardizer.fit: the training set holds no embeddings")
        mean = total.double() / count.double()
        variance = (total_of_squares.double() / count.double() - mean.square()).clamp(min=0.0)
        self.mean.copy_(mean)
        self.std.copy_(variance.sqrt().clamp(min=self.eps))
        self.fitted.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        """Standardise (..., width) embeddings."""
        return (x - self.mean) / self.std


class LinearProbeModule(DetachModule):
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
    """

    data_purpose = "probe"

    def __init__(
        self,
        data_info: DataInfo | None = None,
        encoder: EncoderConfig = EncoderConfig(),
        encoder_checkpoint: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        standardize_features: bool = False,
        normalize_embedding: bool = False,
    ) -> None:
        super().__init__(data_info, encoder, SENSOR, lr, weight_decay)
        self.save_hyperparameters()
        self.freeze_encoders(SENSOR)
        self.normalize_embedding = normalize_embedding
        num_classes = self.data_info.num_classes
        width = 2 * self.encoder_config.embed_dim
        standardize = FeatureStandardizer(width) if standardize_features else nn.Identity()
        self.classifier = nn.Sequential(standardize, nn.Linear(width, num_classes))
        self.val_metrics = probe_metrics(num_classes, "val/")
        self.test_metrics = probe_metrics(num_classes, "test/")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def setup(self, stage: str) -> None:
        """Load the sensor encoders of the source checkpoint before training."""
        if stage == "fit" and self.hparams.encoder_checkpoint is not None:
            path = self.hparams.encoder_checkpoint
            setting = "model.init_args.encoder_checkpoint"
            copy_encoder_weights(self, load_stage_checkpoint(path, setting), SENSOR, setting, path)
            self.freeze_encoders(SENSOR)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on the linear layer only."""
        return torch.optim.Adam(self.classifier.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    @torch.no_grad()
    def embed(self, sensor: Tensor, mask: Tensor | None = None) -> Tensor:
        """u_s per window (B, 2d), or mean-pooled over each run's valid windows (sequence batch)."""
        if mask is None:
            return joint_embedding(
                self.encoders["sensor_spatial"](sensor),
                self.encoders["sensor_temporal"](sensor),
                normalize_output=self.normalize_embedding,
            )
        batch, windows = mask.shape
        flat = sensor[mask]
        embedded = self.embed(flat)
        pooled = torch.zeros(batch, windows, embedded.shape[1], device=sensor.device, dtype=embedded.dtype)
        pooled[mask] = embedded
        counts = mask.sum(1, keepdim=True).clamp(min=1).to(embedded.dtype)
        return pooled.sum(1) / counts

    def forward(self, sensor: Tensor, mask: Tensor | None = None) -> Tensor:
        """Class logits from sensor windows alone (deployment: no video)."""
        return self.classifier(self.embed(sensor, mask))

    def _logits(self, batch: dict[str, Tensor]) -> Tensor:
        return self(batch["sensor"], batch.get("mask"))

    def _memoised_embeddings(self, batch: dict[str, Tensor], split: str) -> Tensor:
        mask = batch.get("mask")

        def compute(rows: Tensor) -> Tensor:
            return self.embed(batch["sensor"][rows], None if mask is None else mask[rows])

        return self._memos[split].lookup(batch["index"], compute)

    def _memoised_logits(self, batch: dict[str, Tensor], split: str) -> Tensor:
        return self.classifier(self._memoised_embeddings(batch, split))

    def on_fit_start(self) -> None:
        """Fresh embedding memos (see `EmbeddingMemo`), then the standardiser's statistics."""
        super().on_fit_start()
        self._memos = {"train": EmbeddingMemo(), "val": EmbeddingMemo()}
        standardize = self.classifier[0]
        if isinstance(standardize, FeatureStandardizer) and not bool(standardize.fitted):
            self.fit_standardizer(standardize)

    def fit_standardizer(self, standardize: FeatureStandardizer) -> None:
        """Statistics of u_s over the training set, summed over ranks (each embeds its shard once;
        the embeddings stay in the training memo, so the first epoch does not embed again)."""
        datamodule = self.trainer.datamodule
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
            batch = {key: value.to(self.device) for key, value in batch.items() if isinstance(value, Tensor)}
            embeddings = self._memoised_embeddings(batch, "train").double()
            total += embeddings.sum(0)
            squares += embeddings.square().sum(0)
            count += embeddings.shape[0]
        summed = all_reduce_sum(torch.cat([total, squares, count.reshape(1)]))  # one collective
        standardize.fit(summed[:width], summed[width : 2 * width], summed[-1])

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = nn.functional.cross_entropy(self._memoised_logits(batch, "train"), batch["label"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=batch["label"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits = self._memoised_logits(batch, "val") if self.trainer.state.fn == "fit" else self._logits(batch)
        self.log("val/loss", nn.functional.cross_entropy(logits, batch["label"]), batch_size=logits.shape[0])
        self.val_metrics.update(logits.softmax(1), batch["label"])

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        probs = self._logits(batch).softmax(1)
        self.test_metrics.update(probs, batch["label"])
        self.test_confusion.update(probs.argmax(1), batch["label"])

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Predicted class and its probabilities, from sensors only."""
        probs = self._logits(batch).softmax(1)
        return {"label": probs.argmax(1), "probs": probs, "sequence": batch["sequence"]}

    def on_test_epoch_end(self) -> None:
        """Log the metrics, the confusion matrix figure, and write `test_metrics.json`."""
        metrics = {key: float(value) for key, value in self.test_metrics.compute().items()}
        self.test_metrics.reset()
        self.log_dict(metrics)
        matrix = self.test_confusion.compute()
        self.test_confusion.reset()
        log_dir = self.trainer.log_dir  # a broadcast under DDP: every rank must ask
        if self.trainer.is_global_zero and log_dir is not None:
            folder = Path(log_dir)
            folder.mkdir(parents=True, exist_ok=True)
            source = self.hparams.get("encoder_checkpoint") or "random encoders"
            title = f"{type(self).__name__} on {source}: weighted F1 {metrics.get('test/f1_weighted', float('nan')):.3f}"
            figure = confusion_figure(matrix.cpu(), self.data_info.class_names, title=title)
            figure.savefig(folder / "confusion_matrix.png", dpi=120, bbox_inches="tight")
            experiment = getattr(self.logger, "experiment", None)
            if hasattr(experiment, "add_figure"):
                experiment.add_figure("test/confusion_matrix", figure, self.global_step)
            write_atomically(
                folder / "test_metrics.json",
                json.dumps({**metrics, "confusion_matrix": matrix.tolist()}, indent=2),
            )
