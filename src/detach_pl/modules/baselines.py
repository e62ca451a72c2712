"""Reference points of the comparison: global alignment (IMU2CLIP style) and a supervised ceiling.

- :class:`GlobalAlignmentModule` is what DETACH argues against (docs/method.md, "Why not global
  alignment"): one vector per clip and one per sensor window, pulled together by symmetric
  InfoNCE. For a fair comparison it trains DETACH's own four encoders (same capacity), jointly and
  from scratch, and pools each modality into u_x = joint_embedding(z_x, h_x), so the linear probe
  loads its sensor encoders exactly as it loads DETACH's.
- :class:`SupervisedSensorModule` trains the two sensor encoders and a linear head with the
  labels, end to end: the ceiling. It is the probe's sibling (both `SensorClassifierModule`); its
  checkpoint holds `encoders.sensor_spatial` / `encoders.sensor_temporal`, so the same frozen
  linear probe measures it.

Both are exported from :mod:`detach_pl.modules` (configs spell them `detach_pl.modules.X`);
`detach_pl.modules.baselines.X` stays importable for older configs and checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from detach_pl.data.info import DataInfo
from detach_pl.diagnostics import AlignmentDiagnostics, log_diagnostics
from detach_pl.distributed import batch_sizes, gather_no_grad, gather_with_grad, local_slice
from detach_pl.losses import info_nce
from detach_pl.modules.base import DetachModule
from detach_pl.modules.sensor_classifier import SensorClassifierModule
from detach_pl.nn import ENCODER_NAMES, EncoderConfig, joint_embedding
from detach_pl.seeding import batch_generator
from detach_pl.settings import at_least, check_settings, positive
from detach_pl.transforms import sinusoidal_time_warp


class GlobalAlignmentModule(DetachModule):
    """Global video–sensor alignment: u_v, u_s one vector each, symmetric InfoNCE, learnable τ.

    L = ½(CE over rows + CE over columns) of S_ij = cos(u_v_i, u_s_j)/τ (`losses.info_nce`),
    τ = exp(log τ) learnt (CLIP / IMU2CLIP), initialised to `initial_temperature` and kept at or
    above `min_temperature`; log τ has no weight decay.

    Args:
        data_info: Linked from the DataModule.
        encoder: Architecture of the four encoders (the same as DETACH's).
        initial_temperature: τ at the start (0.1).
        learn_temperature: Train τ (True) or keep it fixed.
        min_temperature: Lower bound of τ (0.01, CLIP's logit-scale cap of 100).
        gather_distributed: Negatives from the global batch across ranks (True) or local only.
        warp_sigma: σ of the sensor time warp on training windows (0.2, as in DETACH's stages).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay (not applied to log τ).
    """

    data_purpose = "alignment"

    def __init__(
        self,
        data_info: DataInfo | None = None,
        encoder: EncoderConfig = EncoderConfig(),  # noqa: B008 - never mutated: as_encoder_config copies it
        initial_temperature: float = 0.1,
        learn_temperature: bool = True,
        min_temperature: float = 0.01,
        gather_distributed: bool = True,
        warp_sigma: float = 0.2,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__(data_info, encoder, ENCODER_NAMES, lr, weight_decay)
        self.save_hyperparameters()
        check_settings([
            positive("min_temperature", min_temperature),
            ("initial_temperature", initial_temperature, initial_temperature >= min_temperature,
             f">= min_temperature ({min_temperature})"),
            at_least("warp_sigma", warp_sigma, 0),
        ])
        self.log_temperature = nn.Parameter(
            torch.tensor(math.log(initial_temperature)), requires_grad=learn_temperature
        )
        self.diagnostics = AlignmentDiagnostics()

    @property
    def temperature(self) -> Tensor:
        """τ = max(exp(log τ), min_temperature), differentiable in log τ above the bound."""
        return self.log_temperature.exp().clamp(min=self.hparams.min_temperature)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW; the encoders decay, log τ does not."""
        encoders = [p for p in self.encoders.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": encoders}]
        if self.log_temperature.requires_grad:
            groups.append({"params": [self.log_temperature], "weight_decay": 0.0})
        return torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)

    def embed(self, video: Tensor, sensor: Tensor) -> tuple[Tensor, Tensor]:
        """u_v = joint_embedding(f_v(v), g_v(v)) and u_s = joint_embedding(f_s(s), g_s(s))."""
        u_v = joint_embedding(self.encoders["video_spatial"](video), self.encoders["video_temporal"](video))
        u_s = joint_embedding(self.encoders["sensor_spatial"](sensor), self.encoders["sensor_temporal"](sensor))
        return u_v, u_s

    def gather(self, u_v: Tensor, u_s: Tensor) -> tuple[Tensor, Tensor, slice]:
        """The (global) batch with gradients, and this rank's anchor rows."""
        if not self.hparams.gather_distributed:
            return u_v, u_s, slice(0, u_v.shape[0])
        sizes = batch_sizes(u_v.shape[0])
        return gather_with_grad(u_v, sizes), gather_with_grad(u_s, sizes), local_slice(u_v.shape[0], sizes)

    def alignment_loss(self, video: Tensor, sensor: Tensor) -> tuple[Tensor, Tensor, Tensor, slice]:
        """Symmetric InfoNCE of one local batch against the (global) batch; also u_v, u_s, anchors."""
        u_v, u_s, anchors = self.gather(*self.embed(video, sensor))
        return info_nce(u_v, u_s, self.temperature, anchors=anchors), u_v, u_s, anchors

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Symmetric InfoNCE on the batch, the sensor windows time-warped."""
        sensor = batch["sensor"]
        if self.hparams.warp_sigma > 0:
            sensor = sinusoidal_time_warp(sensor, self.hparams.warp_sigma, generator=batch_generator(self))
        loss, _, _, _ = self.alignment_loss(batch["video"], sensor)
        self.log_dict(
            {"train/loss": loss, "train/temperature": self.temperature.detach()},
            on_step=True,
            on_epoch=True,
            sync_dist=True,
            batch_size=sensor.shape[0],
        )
        return loss

    def on_validation_epoch_start(self) -> None:
        """Start collecting this epoch's validation embeddings."""
        self.diagnostics.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Validation loss, video→sensor retrieval within the batch, embeddings for ΔS."""
        loss, u_v, u_s, anchors = self.alignment_loss(batch["video"], batch["sensor"])
        similarity = u_v[anchors] @ u_s.T
        targets = torch.arange(similarity.shape[0], device=similarity.device) + anchors.start
        accuracy = (similarity.argmax(1) == targets).float().mean()
        self.log_dict(
            {"val/loss": loss, "val/retrieval_top1": accuracy},
            sync_dist=True,
            batch_size=batch["sensor"].shape[0],
        )
        labels, places = batch["label"], batch["place"]
        if self.hparams.gather_distributed:
            labels, places = gather_no_grad(labels), gather_no_grad(places)
        self.diagnostics.add_embeddings(u_v, u_s, labels, places)

    def on_validation_epoch_end(self) -> None:
        """Log the alignment diagnostics of the epoch's embeddings."""
        log_diagnostics(self, self.diagnostics)
        self.diagnostics.reset()


class SupervisedSensorModule(SensorClassifierModule):
    """The supervised ceiling: the sensor encoders and the linear head trained with the labels.

    The probe's model (u_s → Linear, `SensorClassifierModule`, its sibling `LinearProbeModule`),
    but every parameter trains (AdamW) end to end, on the probe data (labelled windows, or runs
    pooled per sequence). No feature standardisation: the embeddings move while the encoders
    train, and AdamW on the whole network needs none. Probe its checkpoint with
    `LinearProbeModule` (encoder_checkpoint) for the ceiling row, or `detach test` it directly.

    Args:
        data_info: Linked from the DataModule.
        encoder: Sensor encoder architecture (the same as DETACH's).
        encoder_checkpoint: Optional checkpoint to start the sensor encoders from (fine-tuning);
            None trains from scratch (the ceiling).
        warp_sigma: σ of the sensor time warp on training windows (0.2, as in DETACH's stages).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        normalize_embedding: Normalise u_s to norm 1 (the paper) or not (released: norm √2).
    """

    def __init__(
        self,
        data_info: DataInfo | None = None,
        encoder: EncoderConfig = EncoderConfig(),  # noqa: B008 - never mutated: as_encoder_config copies it
        encoder_checkpoint: str | None = None,
        warp_sigma: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        normalize_embedding: bool = False,
    ) -> None:
        super().__init__(
            data_info, encoder, lr, weight_decay, standardize_features=False, normalize_embedding=normalize_embedding
        )
        self.save_hyperparameters()
        check_settings([at_least("warp_sigma", warp_sigma, 0)])
        self.warp_sigma = warp_sigma

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Cross-entropy on the labels, the sensor windows time-warped.

        No embedding memo: the encoders train.
        """
        sensor = batch["sensor"]
        if self.warp_sigma > 0:
            warped = sinusoidal_time_warp(
                sensor.reshape(-1, *sensor.shape[-2:]), self.warp_sigma, generator=batch_generator(self)
            )
            sensor = warped.reshape(sensor.shape)
        loss = nn.functional.cross_entropy(self(sensor, batch.get("mask")), batch["label"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=batch["label"].shape[0])
        return loss
