"""Stage 2: temporal alignment with the spatio-temporally weighted contrastive loss (docs/method.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

from detach_pl import losses
from detach_pl.data.info import DataInfo
from detach_pl.diagnostics import AlignmentDiagnostics, log_diagnostics
from detach_pl.distributed import batch_sizes, gather_no_grad, gather_with_grad, local_slice
from detach_pl.losses import GramDtype, TemporalMode
from detach_pl.modules.base import DetachModule, copy_encoder_weights, load_stage_checkpoint
from detach_pl.nn import EncoderConfig, joint_embedding, make_ema_copy, update_ema
from detach_pl.seeding import batch_generator
from detach_pl.settings import at_least, check_settings, fraction, one_of, positive
from detach_pl.transforms import RELEASED_WARP_PHASE_END, sinusoidal_time_warp

SPATIAL = ("video_spatial", "sensor_spatial")
TEMPORAL = ("video_temporal", "sensor_temporal")


@dataclass
class AlignmentBatch:
    """Everything the weighted loss needs, gathered over ranks when negatives are global."""

    u_v: Tensor
    u_s: Tensor
    z_v: Tensor
    z_s: Tensor
    h_v_ema: Tensor
    h_s_ema: Tensor
    anchors: slice


class TemporalAlignmentModule(DetachModule):
    """Stage 2: frozen spatial encoders from stage 1; g_v, g_s learn with L_CL.

    Args:
        data_info: Linked from the DataModule.
        encoder: Encoder architecture; must equal the stage-1 checkpoint's.
        stage1_checkpoint: Stage-1 checkpoint whose spatial encoders are loaded and frozen.
        temperature: τ of the logits S_ij = cos(u_v_i, u_s_j)/τ (0.10).
        lambda_hard: λ_hard of W^sp = 1 + (λ_hard − 1)·S^sp (3.0).
        ema_momentum: m of the EMA temporal encoders (0.999), updated after every optimiser step.
        temporal_similarity: "within" (released code, default) or "cross" (paper text).
        use_spatial_weight: W^sp on (False: the "w/o W_spatial" ablation).
        use_temporal_weight: W^tm on (False: "w/o W_temporal"); both False: plain InfoNCE.
        gather_distributed: Negatives from the global batch across ranks (True) or local only.
        warp_sigma: σ of the time warp seen by the online sensor encoders (0.2).
        warp_phase_end: End of the warp's sine phase (4·3.14 released, 4π the paper's formula).
        frozen_mode: Mode of the frozen spatial encoders and the EMA temporal encoders: "train"
            (released: BatchNorm uses batch statistics and its running statistics keep updating)
            or "eval" (fixed statistics; the features of a window do not depend on its batch).
        lr: AdamW learning rate (1e-4).
        weight_decay: AdamW weight decay (1e-4).
        debug_checks: Validate W and τ on the host at every training step (a device sync each
            step; False: on the first step only).
        weights_gram_dtype: dtype of the four Gram products behind W in the training step:
            "float32" (released) or "bfloat16" (a throughput option; W within 2e-2, the loss
            within 1e-3 relative: tests/losses/test_fast_paths.py).
    """

    data_purpose = "alignment"
    stage_checkpoint_settings: ClassVar[dict[str, bool]] = {"stage1_checkpoint": True}

    def __init__(
        self,
        data_info: DataInfo | None = None,
        encoder: EncoderConfig = EncoderConfig(),  # noqa: B008 - never mutated: as_encoder_config copies it
        stage1_checkpoint: str | None = None,
        temperature: float = 0.1,
        lambda_hard: float = 3.0,
        ema_momentum: float = 0.999,
        temporal_similarity: TemporalMode = "within",
        use_spatial_weight: bool = True,
        use_temporal_weight: bool = True,
        gather_distributed: bool = True,
        warp_sigma: float = 0.2,
        warp_phase_end: float = RELEASED_WARP_PHASE_END,
        frozen_mode: Literal["train", "eval"] = "train",
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        debug_checks: bool = False,
        weights_gram_dtype: GramDtype = "float32",
    ) -> None:
        super().__init__(data_info, encoder, SPATIAL + TEMPORAL, lr, weight_decay)
        self.save_hyperparameters()
        check_settings([
            positive("temperature", temperature),
            at_least("lambda_hard", lambda_hard, 1),
            fraction("ema_momentum", ema_momentum, include_one=False),
            one_of("temporal_similarity", temporal_similarity, get_args(TemporalMode)),
            at_least("warp_sigma", warp_sigma, 0),
            positive("warp_phase_end", warp_phase_end),
            one_of("frozen_mode", frozen_mode, ("train", "eval")),
            one_of("weights_gram_dtype", weights_gram_dtype, get_args(GramDtype)),
        ])
        self.freeze_encoders(SPATIAL)
        self.ema = nn.ModuleDict({name: make_ema_copy(self.encoders[name]) for name in TEMPORAL})
        self.diagnostics = AlignmentDiagnostics()

    def frozen_parts(self) -> list[nn.Module]:
        """Modules kept in eval mode: the frozen spatial encoders and EMA copies with `frozen_mode: eval`."""
        if self.hparams.frozen_mode == "train":
            return []
        return super().frozen_parts() + list(self.ema.values())

    def setup(self, stage: str) -> None:
        """Load and freeze the stage-1 spatial encoders before training starts."""
        if stage == "fit":
            path = self.hparams.stage1_checkpoint
            checkpoint = load_stage_checkpoint(path, "model.init_args.stage1_checkpoint")
            copy_encoder_weights(self, checkpoint, SPATIAL, "model.init_args.stage1_checkpoint", path)
            self.freeze_encoders(SPATIAL)
            if self.hparams.frozen_mode == "train":  # Lightning keeps each module's mode from here
                for module in [*(self.encoders[name] for name in SPATIAL), *self.ema.values()]:
                    module.train()

    def embed(self, video: Tensor, sensor: Tensor, sensor_online: Tensor) -> dict[str, Tensor]:
        """Spatial (frozen), temporal (online) and EMA temporal features of one local batch."""
        with torch.no_grad():
            z_v = self.encoders["video_spatial"](video)
            z_s = self.encoders["sensor_spatial"](sensor_online)
            h_v_ema = self.ema["video_temporal"](video)
            h_s_ema = self.ema["sensor_temporal"](sensor)
        h_v = self.encoders["video_temporal"](video)
        h_s = self.encoders["sensor_temporal"](sensor_online)
        return {
            "u_v": joint_embedding(z_v, h_v),
            "u_s": joint_embedding(z_s, h_s),
            "z_v": z_v,
            "z_s": z_s,
            "h_v_ema": h_v_ema,
            "h_s_ema": h_s_ema,
        }

    def gather(self, features: dict[str, Tensor]) -> AlignmentBatch:
        """Global batch: embeddings with gradients, similarity inputs without; local anchors."""
        batch_size = features["u_v"].shape[0]
        if not self.hparams.gather_distributed:
            return AlignmentBatch(**features, anchors=slice(0, batch_size))
        sizes = batch_sizes(batch_size)  # one exchange for every gather of this step
        gathered = {
            key: gather_with_grad(value, sizes) if key in ("u_v", "u_s") else gather_no_grad(value, sizes)
            for key, value in features.items()
        }
        return AlignmentBatch(**gathered, anchors=local_slice(batch_size, sizes))

    def weights(self, batch: AlignmentBatch) -> tuple[Tensor, Tensor, Tensor]:
        """(W, S^sp, S^tm) of docs/method.md for the (global) batch, all without gradient."""
        s_sp = losses.spatial_similarity(batch.z_v, batch.z_s)
        s_tm = losses.temporal_similarity(batch.h_v_ema, batch.h_s_ema, self.hparams.temporal_similarity)
        weights = losses.alignment_weights(
            s_sp,
            s_tm,
            self.hparams.lambda_hard,
            use_spatial=self.hparams.use_spatial_weight,
            use_temporal=self.hparams.use_temporal_weight,
        )
        return weights, s_sp, s_tm

    def alignment_loss(
        self, video: Tensor, sensor: Tensor, *, warp: bool, check: bool = True
    ) -> tuple[Tensor, AlignmentBatch, Tensor]:
        """L_CL of one local batch against the (global) batch; returns the loss, batch and W.

        `check` validates W and the temperature on the host (see `first_training_step`).
        """
        hp = self.hparams
        online = (
            sinusoidal_time_warp(sensor, hp.warp_sigma, generator=batch_generator(self), phase_end=hp.warp_phase_end)
            if warp
            else sensor
        )
        batch = self.gather(self.embed(video, sensor, online))
        hp = self.hparams
        weights = losses.pair_weights(
            batch.z_v, batch.z_s, batch.h_v_ema, batch.h_s_ema, hp.lambda_hard, hp.temporal_similarity,
            hp.use_spatial_weight, hp.use_temporal_weight, hp.weights_gram_dtype,
        )
        loss = losses.weighted_info_nce(
            batch.u_v, batch.u_s, weights, self.hparams.temperature, anchors=batch.anchors, check=check
        )
        return loss, batch, weights

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """L_CL = ½(L_v2s + L_s2v) with the weights W of docs/method.md."""
        loss, _, weights = self.alignment_loss(
            batch["video"], batch["sensor"], warp=True, check=self.checks_due()
        )
        pairs = weights.shape[0]
        weight_mean = weights.sum() / max(pairs * (pairs - 1), 1)  # W_ii = 0: the off-diagonal mean, no mask
        self.log_dict(
            {"train/loss": loss, "train/weight_mean": weight_mean},
            on_step=True,
            on_epoch=True,
            sync_dist=True,
            batch_size=batch["sensor"].shape[0],
        )
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Optimiser step, then the EMA update θ' ← m·θ' + (1 − m)·θ of both temporal encoders."""
        super().optimizer_step(*args, **kwargs)
        for name in TEMPORAL:
            update_ema(self.ema[name], self.encoders[name], self.hparams.ema_momentum)

    def gather_targets(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Class and place ids of the (global) batch, in the row order of `gather`."""
        if not self.hparams.gather_distributed:
            return batch["label"], batch["place"]
        return gather_no_grad(batch["label"]), gather_no_grad(batch["place"])

    def on_validation_epoch_start(self) -> None:
        """Start collecting this epoch's validation embeddings."""
        self.diagnostics.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Validation L_CL (no warp), retrieval accuracy video→sensor within the batch, diagnostics.

        Diagnostics (`detach_pl.diagnostics`): the factors W^sp = 1 + (λ_hard − 1)·S^sp and
        W^tm = 1 − S^sp·S^tm (whether or not this run uses them) and the W of the loss, split by
        ground-truth negative type (easy / hard / false), and the embeddings for ΔS.
        """
        loss, aligned, _ = self.alignment_loss(batch["video"], batch["sensor"], warp=False)
        similarity = aligned.u_v[aligned.anchors] @ aligned.u_s.T
        targets = torch.arange(similarity.shape[0], device=similarity.device) + aligned.anchors.start
        accuracy = (similarity.argmax(1) == targets).float().mean()
        self.log_dict(
            {"val/loss": loss, "val/retrieval_top1": accuracy},
            sync_dist=True,
            batch_size=batch["sensor"].shape[0],
        )
        labels, places = self.gather_targets(batch)
        weights, s_sp, s_tm = self.weights(aligned)
        factors = {
            "W_sp": losses.hard_negative_weights(s_sp, self.hparams.lambda_hard),
            "W_tm": losses.false_negative_weights(s_sp, s_tm),
            "W": weights,
        }
        self.diagnostics.add_pair_matrices(factors, labels, places)
        self.diagnostics.add_embeddings(aligned.u_v, aligned.u_s, labels, places)

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's diagnostics (scalars, and histograms on TensorBoard)."""
        log_diagnostics(self, self.diagnostics)
        self.diagnostics.reset()
