"""Stage 1: spatial grounding by mutual supervision (docs/method.md, Stage 1).

Epochs [0, video_start_epoch): ODC clustering of the sensor spatial features only, on all windows.
Epochs [video_start_epoch, refine_start_epoch): clustering (on confident windows) + the video
spatial encoder learns the confident sensor pseudo-labels. Epochs [refine_start_epoch, …): the
video's confident predictions, computed without gradient, relabel the ambiguous sensor windows,
while L_video keeps training on the confident ones (released code; `video_in_refine: frozen` is
the paper text's frozen video branch).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from detach_pl.clustering import OdcMemory
from detach_pl.data.info import DataInfo
from detach_pl.distributed import (
    allow_unused_parameters,
    batch_sizes,
    broadcast_from_rank0,
    gather_no_grad,
    global_mean_factor,
    rank,
)
from detach_pl.losses.classification import (
    ClampMode,
    Reduction,
    class_balanced_cross_entropy,
    class_balanced_denominator,
    class_balanced_weights,
    masked_cross_entropy,
)
from detach_pl.metrics import cluster_quality
from detach_pl.modules.base import DetachModule
from detach_pl.nn import EncoderConfig
from detach_pl.seeding import batch_generator
from detach_pl.settings import at_least, check_settings, fraction, one_of, positive
from detach_pl.transforms import RELEASED_WARP_PHASE_END, sinusoidal_time_warp

Phase = Literal["cluster", "joint", "refine"]


class SpatialGroundingModule(DetachModule):
    """Stage 1: ODC on the sensor spatial encoder, mutual supervision with the video.

    Args:
        data_info: Linked from the DataModule.
        encoder: Encoder architecture (shared with later stages).
        num_clusters: K; None takes the dataset's number of places (7 for both datasets).
        prototype_temperature: T of p(k | z_s) = softmax(cos(z_s, c_k) / T) (0.1).
        memory_momentum: Weight of the old bank feature in the update (0.1: new = 0.1·old + 0.9·cur).
        confidence_quantile: Per-cluster distance quantile of confident windows (0.75).
        min_cluster_size: Clusters smaller than this are dissolved each epoch (100 Opp++, 30 HWU).
        balance_power: Class weights w_k ∝ 1/|C_k|^power (0.5).
        balance_max_ratio: Clamp of max/min class weight (10).
        balance_clamp: "raise_small" (released: weights below max/10 are raised to it) or
            "cap_large" (weights above 10·min are capped).
        cluster_loss_reduction: "weighted_mean" (released, `cross_entropy(weight=w)`:
            Σ w ℓ / Σ w) or "mean" (the paper's formula: Σ w ℓ / N).
        confident_windows: "step" (released: the batch's current z_s against its stored
            label's centroid, strictly below the cluster's 75th percentile of the bank's
            Euclidean distances, recomputed every step) or "epoch" (the bank row's distance,
            ≤ thresholds refreshed once per epoch).
        video_in_refine: "train" (released: L_video keeps training on confident windows during
            refinement; the refinement targets are its predictions without gradient) or
            "frozen" (the paper text: the video branch is frozen for those epochs).
        alpha: Weight of L_cluster in L_sensor (1.0).
        beta: Weight of L_refine in L_sensor (1.5).
        video_gate: Minimum softmax confidence of a video prediction used for refinement
            (0.90 Opp++, 0.99 HWU-USP; released code).
        video_start_epoch: First epoch of video learning (5).
        refine_start_epoch: First epoch of refinement (15); train for 25 epochs in total.
        cluster_loss_on: During the joint phases, L_cluster on "confident" windows (released
            code) or on "all" (a paper note).
        warp_start_epoch: First epoch with the sinusoidal time warp (2, released; the paper
            says "from the second clustering epoch on", 1).
        warp_sigma: Time-warp strength σ (0.2).
        warp_phase_end: End of the warp's sine phase (4·3.14 released, 4π the paper's formula).
        kmeans_metric: Initial k-means: "euclidean" on the raw z_s (released) or "cosine"
            (spherical, on L2-normalised z_s: the paper's reading).
        kmeans_inits: k-means++ initialisations; the lowest-inertia run is kept (10).
        kmeans_iters: Lloyd iterations of the initial k-means.
        kmeans_seed: Seed of the initial k-means.
        dissolve_small: Per-epoch handling of clusters below `min_cluster_size`: "cluster"
            (released: the whole cluster joins the most similar non-small centroid) or "members"
            (each member to its nearest non-small centroid).
        encode_batch_size: Batch size when encoding the training set for initialisation.
        lr: AdamW learning rate (1e-4).
        weight_decay: AdamW weight decay (1e-4).
        debug_checks: Validate labels, indices and features on the host at every training step
            (a device sync each step; False: on the first step only).
    """

    data_purpose = "alignment"

    def __init__(
        self,
        data_info: DataInfo | None = None,
        encoder: EncoderConfig = EncoderConfig(),  # noqa: B008 - never mutated: as_encoder_config copies it
        num_clusters: int | None = None,
        prototype_temperature: float = 0.1,
        memory_momentum: float = 0.1,
        confidence_quantile: float = 0.75,
        min_cluster_size: int = 100,
        balance_power: float = 0.5,
        balance_max_ratio: float = 10.0,
        balance_clamp: ClampMode = "raise_small",
        cluster_loss_reduction: Reduction = "weighted_mean",
        confident_windows: Literal["step", "epoch"] = "step",
        video_in_refine: Literal["train", "frozen"] = "train",
        alpha: float = 1.0,
        beta: float = 1.5,
        video_gate: float = 0.90,
        video_start_epoch: int = 5,
        refine_start_epoch: int = 15,
        cluster_loss_on: Literal["confident", "all"] = "confident",
        warp_start_epoch: int = 2,
        warp_sigma: float = 0.2,
        warp_phase_end: float = RELEASED_WARP_PHASE_END,
        kmeans_metric: Literal["euclidean", "cosine"] = "euclidean",
        kmeans_inits: int = 10,
        kmeans_iters: int = 50,
        kmeans_seed: int = 42,
        dissolve_small: Literal["cluster", "members"] = "cluster",
        encode_batch_size: int = 512,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        debug_checks: bool = False,
    ) -> None:
        super().__init__(data_info, encoder, ("video_spatial", "sensor_spatial"), lr, weight_decay)
        self.save_hyperparameters()
        check_settings([
            at_least("num_clusters", num_clusters, 1, null="the places"),
            positive("prototype_temperature", prototype_temperature),
            fraction("memory_momentum", memory_momentum, include_one=False),
            fraction("confidence_quantile", confidence_quantile),
            at_least("min_cluster_size", min_cluster_size, 0),
            at_least("balance_power", balance_power, 0),
            at_least("balance_max_ratio", balance_max_ratio, 1),
            one_of("balance_clamp", balance_clamp, get_args(ClampMode)),
            one_of("cluster_loss_reduction", cluster_loss_reduction, get_args(Reduction)),
            one_of("confident_windows", confident_windows, ("step", "epoch")),
            one_of("video_in_refine", video_in_refine, ("train", "frozen")),
            at_least("alpha", alpha, 0),
            at_least("beta", beta, 0),
            fraction("video_gate", video_gate),
            at_least("video_start_epoch", video_start_epoch, 0),
            ("refine_start_epoch", refine_start_epoch, refine_start_epoch >= video_start_epoch,
             f">= video_start_epoch ({video_start_epoch})"),
            one_of("cluster_loss_on", cluster_loss_on, ("confident", "all")),
            at_least("warp_start_epoch", warp_start_epoch, 0),
            at_least("warp_sigma", warp_sigma, 0),
            positive("warp_phase_end", warp_phase_end),
            one_of("kmeans_metric", kmeans_metric, ("euclidean", "cosine")),
            at_least("kmeans_inits", kmeans_inits, 1),
            at_least("kmeans_iters", kmeans_iters, 1),
            one_of("dissolve_small", dissolve_small, ("cluster", "members")),
            at_least("encode_batch_size", encode_batch_size, 1),
        ])
        self.num_clusters = num_clusters or self.data_info.num_places
        self.video_classifier = nn.Linear(self.encoder_config.embed_dim, self.num_clusters)
        self.memory: OdcMemory | None = None

    def setup(self, stage: str) -> None:
        """Under DDP, tolerate the video branch's idle epochs (see `allow_unused_parameters`)."""
        if stage == "fit":
            allow_unused_parameters(self.trainer)

    # ---- schedule ---------------------------------------------------------------------------

    def phase(self, epoch: int | None = None) -> Phase:
        """Schedule phase of an epoch (default: the current one)."""
        epoch = self.current_epoch if epoch is None else epoch
        if epoch < self.hparams.video_start_epoch:
            return "cluster"
        if epoch < self.hparams.refine_start_epoch:
            return "joint"
        return "refine"

    # ---- memory bank ------------------------------------------------------------------------

    @torch.no_grad()
    def encode_sensor(self, sensor: Tensor) -> Tensor:
        """z_s of many windows in batches (eval mode), for the memory initialisation."""
        encoder = self.encoders["sensor_spatial"]
        was_training = encoder.training
        encoder.eval()
        size = self.hparams.encode_batch_size
        features = [
            encoder(sensor[start : start + size].to(self.device))
            for start in range(0, sensor.shape[0], size)
        ]
        encoder.train(was_training)
        return torch.cat(features)

    def initialize_memory(self, train_sensor: Tensor) -> None:
        """Encode the training set, k-means it on rank 0, and give every rank the same bank."""
        memory = OdcMemory(
            train_sensor.shape[0],
            self.encoder_config.embed_dim,
            self.num_clusters,
            memory_momentum=self.hparams.memory_momentum,
            confidence_quantile=self.hparams.confidence_quantile,
            device=self.device,
        )
        features = self.encode_sensor(train_sensor)
        if rank() == 0:
            memory.initialize(
                features,
                seed=self.hparams.kmeans_seed,
                num_iters=self.hparams.kmeans_iters,
                metric=self.hparams.kmeans_metric,
                num_inits=self.hparams.kmeans_inits,
            )
        state = {key: broadcast_from_rank0(value.to(self.device)) for key, value in memory.state_dict().items()}
        state["initialized"] = torch.tensor(True)
        memory.load_state_dict(state)
        self.memory = memory

    @property
    def bank(self) -> OdcMemory:
        """The ODC memory bank, which `on_train_start` builds (or a resumed checkpoint restores)."""
        if self.memory is None:
            raise RuntimeError("stage 1: the ODC memory bank is used before on_train_start initialised it")
        return self.memory

    def on_train_start(self) -> None:
        """Initialise the memory bank (unless a resumed checkpoint restored it)."""
        training_set = self.attached_datamodule().alignment_training_set()
        train_sensor = training_set.sensor
        if self.memory is None:
            self.initialize_memory(train_sensor)
        elif self.memory.num_samples != train_sensor.shape[0]:
            raise ValueError(
                f"the checkpoint's memory bank holds {self.memory.num_samples} windows but the "
                f"training set has {train_sensor.shape[0]}: resume with the same data settings"
            )
        self.bank.to(self.device)
        self._train_places = training_set.place.to(self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the memory bank (features, labels, centroids, thresholds) in the checkpoint."""
        super().on_save_checkpoint(checkpoint)
        if self.memory is not None:
            checkpoint["odc_memory"] = {k: v.cpu() for k, v in self.memory.state_dict().items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the memory bank saved by `on_save_checkpoint`."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("odc_memory")
        if state is None:
            return
        memory = OdcMemory(
            state["features"].shape[0],
            state["features"].shape[1],
            state["centroids"].shape[0],
            memory_momentum=self.hparams.memory_momentum,
            confidence_quantile=self.hparams.confidence_quantile,
        )
        memory.load_state_dict(state)
        self.memory = memory

    # ---- training ---------------------------------------------------------------------------

    def cluster_loss(self, logits_s: Tensor, pseudo: Tensor, mask: Tensor, check: bool) -> Tensor:
        """α-free L_cluster with class-balanced weights, as this rank's share of the global loss."""
        hp = self.hparams
        weights = class_balanced_weights(
            self.bank.cluster_sizes(), hp.balance_power, hp.balance_max_ratio, clamp=hp.balance_clamp, check=check
        )
        reduction = hp.cluster_loss_reduction
        loss = class_balanced_cross_entropy(logits_s, pseudo, weights, mask, reduction, check=check)
        return loss * global_mean_factor(class_balanced_denominator(pseudo, weights, mask, reduction))

    def confident(self, indices: Tensor, z_s: Tensor, check: bool) -> Tensor:
        """m_i of the batch by the `confident_windows` rule (before the bank update)."""
        if self.hparams.confident_windows == "step":
            return self.bank.batch_confident_mask(indices, z_s.detach(), check=check)
        return self.bank.confident_mask(indices, check=check)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """L = α·L_cluster (+ L_video from the joint phase on) (+ β·L_refine in the refine phase).

        Inputs are validated on the first step of a run only: the checks read tensor values on
        the host, which would stall the device every step.
        """
        assert self.memory is not None, "memory bank is initialised in on_train_start"
        hp = self.hparams
        check = self.checks_due()
        phase = self.phase()
        indices = batch["index"]
        sensor = batch["sensor"]
        if self.current_epoch >= hp.warp_start_epoch:
            sensor = sinusoidal_time_warp(
                sensor, hp.warp_sigma, generator=batch_generator(self), phase_end=hp.warp_phase_end
            )
        z_s = self.encoders["sensor_spatial"](sensor)
        logits_s = self.memory.prototype_logits(z_s, hp.prototype_temperature)
        pseudo = self.memory.labels[indices]
        confident = self.confident(indices, z_s, check)
        use_confident = phase != "cluster" and hp.cluster_loss_on == "confident"
        cluster_mask = confident if use_confident else torch.ones_like(confident)
        loss_cluster = self.cluster_loss(logits_s, pseudo, cluster_mask, check)
        loss = hp.alpha * loss_cluster
        logs = {"train/loss_cluster": loss_cluster, "train/confident_share": confident.float().mean()}
        video_trains = phase == "joint" or (phase == "refine" and hp.video_in_refine == "train")
        if video_trains:
            logits_v = self.video_classifier(self.encoders["video_spatial"](batch["video"]))
            loss_video = masked_cross_entropy(logits_v, pseudo, confident, check=check)
            loss_video = loss_video * global_mean_factor(confident.sum())
            loss = loss + loss_video
            logs["train/loss_video"] = loss_video
            logs["train/video_agreement"] = (logits_v.argmax(1) == pseudo).float().mean()
        if phase == "refine":
            if video_trains:
                probs = logits_v.detach().softmax(1)
            else:
                with torch.no_grad():
                    self.encoders["video_spatial"].eval()
                    probs = self.video_classifier(self.encoders["video_spatial"](batch["video"])).softmax(1)
            confidence, video_label = probs.max(dim=1)
            refine_mask = ~confident & (confidence >= hp.video_gate)
            loss_refine = masked_cross_entropy(logits_s, video_label, refine_mask, check=check)
            loss_refine = loss_refine * global_mean_factor(refine_mask.sum())
            loss = loss + hp.beta * loss_refine
            logs["train/loss_refine"] = loss_refine
            logs["train/refined_share"] = refine_mask.float().mean()
        logs["train/loss"] = loss
        self.log_dict(logs, on_step=True, on_epoch=True, sync_dist=True, batch_size=indices.shape[0])
        sizes = batch_sizes(indices.shape[0])
        self.memory.update(gather_no_grad(indices, sizes), gather_no_grad(z_s.detach(), sizes), check=check)
        return loss

    def on_train_epoch_start(self) -> None:
        """Per-epoch centroid update for the epoch that just ended (see `update_clusters`).

        The phase is logged here, once per epoch: a host value logged in every step would be
        copied to the device (a synchronisation) at every step.
        """
        if self.current_epoch > 0:
            self.update_clusters()
        self.log("train/phase", float(("cluster", "joint", "refine").index(self.phase())), on_step=False, on_epoch=True)

    def on_train_end(self) -> None:
        """The last epoch's centroid update."""
        self.update_clusters()

    def update_clusters(self) -> None:
        """Centroids from the bank, small/empty-cluster handling, cluster-quality diagnostics.

        It runs at the start of the next epoch rather than at the end of the current one: a
        checkpoint written at the end of an epoch (by validation or epoch-end callbacks, in either
        order) then always holds the bank *before* the update, and a resumed run performs the
        update exactly once, as the uninterrupted run does.
        """
        assert self.memory is not None
        changes = self.memory.update_centroids(self.hparams.min_cluster_size, dissolve=self.hparams.dissolve_small)
        metrics = {f"cluster/{key}": float(value) for key, value in changes.items()}
        known = self._train_places >= 0
        if known.any():
            accuracy, nmi = cluster_quality(self.memory.labels[known], self._train_places[known])
            metrics["cluster/hungarian_accuracy"] = accuracy
            metrics["cluster/nmi"] = nmi
        if self._trainer is not None and self.trainer.logger is not None:
            self.trainer.logger.log_metrics(metrics, step=self.global_step)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Cluster the validation windows to the current centroids; compare with their places."""
        if self.memory is None or not self.memory.initialized:
            return
        logits = self.memory.prototype_logits(self.encoders["sensor_spatial"](batch["sensor"]))
        self._val_assign.append(gather_no_grad(logits.argmax(1)))
        self._val_place.append(gather_no_grad(batch["place"]))

    def on_validation_epoch_start(self) -> None:
        """Start collecting this epoch's cluster assignments and places."""
        self._val_assign: list[Tensor] = []
        self._val_place: list[Tensor] = []

    def on_validation_epoch_end(self) -> None:
        """Log cluster accuracy and NMI of the epoch's assignments against the places."""
        if not self._val_assign:
            return
        assign, place = torch.cat(self._val_assign), torch.cat(self._val_place)
        known = place >= 0
        if known.any():
            accuracy, nmi = cluster_quality(assign[known], place[known])
            self.log_dict({"val/cluster_accuracy": accuracy, "val/cluster_nmi": nmi}, rank_zero_only=True)
