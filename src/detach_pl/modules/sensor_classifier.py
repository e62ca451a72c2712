"""What the linear probe and the supervised ceiling share: sensor encoders → u_s → standardiser → Linear.

:class:`SensorClassifierModule` is the common base of two siblings that differ only in what
trains: :class:`~detach_pl.modules.probe.LinearProbeModule` (frozen encoders, embeddings under
`no_grad`, Adam on the Linear layer) and :class:`~detach_pl.modules.baselines.SupervisedSensorModule`
(everything trains, AdamW). The base holds the model, its evaluation (validation metrics, test
metrics, the confusion matrix, `test_metrics.json`) and prediction; neither sibling undoes any of it.
The state-dict keys are those of the probe before the split (`encoders.sensor_*`,
`classifier.0.*` for the standardiser, `classifier.1.*` for the Linear layer), so older
checkpoints of both load unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

from detach_pl.data.info import DataInfo
from detach_pl.io import write_atomically
from detach_pl.metrics import probe_metrics
from detach_pl.modules.base import DetachModule, copy_encoder_weights, load_stage_checkpoint
from detach_pl.nn import EncoderConfig, joint_embedding
from detach_pl.plots import confusion_figure

SENSOR = ("sensor_spatial", "sensor_temporal")


def sensor_embedding(
    encoders: nn.ModuleDict, sensor: Tensor, mask: Tensor | None = None, normalize_output: bool = False
) -> Tensor:
    """u_s = joint_embedding(f_s(s), g_s(s)) per window (B, 2d), or mean-pooled per sequence.

    Args:
        encoders: Holds `sensor_spatial` (f_s) and `sensor_temporal` (g_s).
        sensor: Windows (B, C, L), or sequences of windows (B, W, C, L) with `mask`.
        mask: (B, W) valid windows of each sequence; None for window batches.
        normalize_output: Normalise [normalize(z_s), normalize(h_s)] once more (the paper's u_s)
            or not (released: norm √2).
    """
    if mask is None:
        return joint_embedding(
            encoders["sensor_spatial"](sensor), encoders["sensor_temporal"](sensor), normalize_output=normalize_output
        )
    batch, windows = mask.shape
    embedded = sensor_embedding(encoders, sensor[mask], normalize_output=normalize_output)
    pooled = torch.zeros(batch, windows, embedded.shape[1], device=sensor.device, dtype=embedded.dtype)
    pooled[mask] = embedded
    counts = mask.sum(1, keepdim=True).clamp(min=1).to(embedded.dtype)
    return pooled.sum(1) / counts


class FeatureStandardizer(nn.Module):
    """x → (x − μ) / σ per dimension, with μ, σ of the training embeddings (fixed buffers).

    The statistics are set once by `fit` from sums over the whole training set (all ranks), so
    the map does not depend on batches, batch size or their order, and is stored in checkpoints.
    Until fitted it is the identity.

    Args:
        width: Embedding size.
        eps: Floor of σ (a constant dimension is centred, not blown up).
    """

    mean: Tensor
    std: Tensor
    fitted: Tensor

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


class SensorClassifierModule(DetachModule):
    """Sensor windows → u_s (2·d) → optional standardiser → one Linear layer, and its evaluation.

    Window batches are classified per window. Sequence batches (`sensor` of shape
    (B, W, C, L) with a `mask`) have their window embeddings mean-pooled over each run first.
    Subclasses say what trains (`configure_optimizers`, `training_step`); `embed` carries
    gradients here.

    Args:
        data_info: Linked from the DataModule (num_channels, num_classes, class names).
        encoder: Sensor encoder architecture; must equal a source checkpoint's.
        lr: Learning rate.
        weight_decay: Weight decay.
        standardize_features: Put a `FeatureStandardizer` before the Linear layer (classifier.0),
            or the identity.
        normalize_embedding: Normalise u_s to norm 1 (the paper) or not (released: norm √2).
    """

    data_purpose = "probe"
    stage_checkpoint_settings: ClassVar[dict[str, bool]] = {"encoder_checkpoint": False}

    def __init__(
        self,
        data_info: DataInfo | dict | None,
        encoder: EncoderConfig | dict,
        lr: float,
        weight_decay: float,
        standardize_features: bool,
        normalize_embedding: bool,
    ) -> None:
        super().__init__(data_info, encoder, SENSOR, lr, weight_decay)
        self.normalize_embedding = normalize_embedding
        num_classes = self.data_info.num_classes
        width = 2 * self.encoder_config.embed_dim
        standardize = FeatureStandardizer(width) if standardize_features else nn.Identity()
        self.classifier = nn.Sequential(standardize, nn.Linear(width, num_classes))
        self.val_metrics = probe_metrics(num_classes, "val/")
        self.test_metrics = probe_metrics(num_classes, "test/")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def setup(self, stage: str) -> None:
        """Load the sensor encoders of `encoder_checkpoint` (when given) before training."""
        path = self.hparams.get("encoder_checkpoint")
        if stage == "fit" and path is not None:
            setting = "model.init_args.encoder_checkpoint"
            copy_encoder_weights(self, load_stage_checkpoint(path, setting), SENSOR, setting, path)

    def embed(self, sensor: Tensor, mask: Tensor | None = None) -> Tensor:
        """u_s per window (B, 2d), or mean-pooled over each run's valid windows (sequence batch)."""
        return sensor_embedding(self.encoders, sensor, mask, normalize_output=self.normalize_embedding)

    def forward(self, sensor: Tensor, mask: Tensor | None = None) -> Tensor:
        """Class logits from sensor windows alone (deployment: no video)."""
        return self.classifier(self.embed(sensor, mask))

    def batch_logits(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits of a batch's sensor windows (or sequences, with their mask)."""
        return self(batch["sensor"], batch.get("mask"))

    def log_validation(self, logits: Tensor, labels: Tensor) -> None:
        """Validation loss and the probe metrics' update from one batch of logits."""
        self.log("val/loss", nn.functional.cross_entropy(logits, labels), batch_size=logits.shape[0])
        self.val_metrics.update(logits.softmax(1), labels)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Validation loss and probe metrics of the current model."""
        self.log_validation(self.batch_logits(batch), batch["label"])

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's validation metrics."""
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate the test metrics and the confusion matrix."""
        probs = self.batch_logits(batch).softmax(1)
        self.test_metrics.update(probs, batch["label"])
        self.test_confusion.update(probs.argmax(1), batch["label"])

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Predicted class and its probabilities, from sensors only."""
        probs = self.batch_logits(batch).softmax(1)
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
            f1 = metrics.get("test/f1_weighted", float("nan"))
            title = f"{type(self).__name__} on {source}: weighted F1 {f1:.3f}"
            figure = confusion_figure(matrix.cpu(), self.data_info.class_names, title=title)
            figure.savefig(folder / "confusion_matrix.png", dpi=120, bbox_inches="tight")
            experiment = getattr(self.logger, "experiment", None)
            if experiment is not None and hasattr(experiment, "add_figure"):
                experiment.add_figure("test/confusion_matrix", figure, self.global_step)
            write_atomically(
                folder / "test_metrics.json",
                json.dumps({**metrics, "confusion_matrix": matrix.tolist()}, indent=2),
            )
