"""Alignment diagnostics: negative types, weight statistics per type, the inversion score ΔS.

The paper's evidence that DETACH fixes P2 (docs/method.md) is about *which* negatives a pair (i, j)
is, judged with ground truth that training never sees:

- **false** negative: same class (the same action at the same place);
- **hard** negative: same place, other class (other motion: "close cabinet 1" for "open cabinet 1");
- **easy** negative: other place ("open cabinet 2").

W^sp should be large on hard negatives, W^tm small on false ones, and the inversion score
ΔS = sim(v, hard) − sim(v, easy) says whether the embedding groups by place (ΔS > 0) or by shared
motion (ΔS < 0: the P2 inversion, where an easy negative looks more like the anchor than a hard
one). Pairs whose class or place is unknown (−1) belong to no type.

The functions are pure (tensors in, tensors out); :class:`AlignmentDiagnostics` collects them over
a validation epoch and :func:`log_diagnostics` hands the result to a LightningModule's loggers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor

NEGATIVE_TYPES: tuple[str, ...] = ("easy", "hard", "false")


def _check_targets(labels: Tensor, places: Tensor) -> None:
    """Raise ValueError unless labels and places are matching 1-D tensors."""
    if labels.dim() != 1 or places.shape != labels.shape:
        raise ValueError(
            f"labels and places must be 1-D tensors of the same length, got {tuple(labels.shape)} "
            f"and {tuple(places.shape)}"
        )


def negative_type_masks(labels: Tensor, places: Tensor, rows: slice | None = None) -> dict[str, Tensor]:
    """Boolean masks of the negative types of pairs (i, j), i in `rows`, j in all N, i ≠ j.

    false_ij = (y_i = y_j ≥ 0); hard_ij = (p_i = p_j ≥ 0) ∧ (y_i ≠ y_j) ∧ (y_i, y_j ≥ 0);
    easy_ij = (p_i ≠ p_j) ∧ (p_i, p_j ≥ 0). The pair of a window with itself is in no mask.

    Args:
        labels: (N,) class ids, −1 unknown/null.
        places: (N,) place ids, −1 unknown.
        rows: the anchor rows (e.g. one chunk, or this rank's slice); None means all N.

    Returns:
        {"easy", "hard", "false"} → (R, N) boolean masks, R the number of rows.
    """
    _check_targets(labels, places)
    num_pairs = labels.shape[0]
    selected = range(num_pairs)[rows if rows is not None else slice(None)]
    row_index = torch.arange(selected.start, selected.stop, selected.step, device=labels.device)
    row_labels, row_places = labels[row_index, None], places[row_index, None]
    col_labels, col_places = labels[None, :], places[None, :]
    not_self = row_index[:, None] != torch.arange(num_pairs, device=labels.device)[None, :]
    both_labelled = (row_labels >= 0) & (col_labels >= 0)
    both_placed = (row_places >= 0) & (col_places >= 0)
    same_class = both_labelled & (row_labels == col_labels)
    return {
        "easy": not_self & both_placed & (row_places != col_places),
        "hard": not_self & both_placed & both_labelled & (row_places == col_places) & ~same_class,
        "false": not_self & same_class,
    }


def values_by_type(matrix: Tensor, masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The entries of an (R, N) pair matrix (e.g. W) that fall in each negative type's mask."""
    for name, mask in masks.items():
        if mask.shape != matrix.shape:
            raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)}, the matrix {tuple(matrix.shape)}")
    return {name: matrix.detach()[mask] for name, mask in masks.items()}


def similarity_by_type(
    u_v: Tensor, u_s: Tensor, labels: Tensor, places: Tensor, chunk_size: int = 1024
) -> dict[str, float]:
    """Cross-modal similarity of a video anchor to its positive and to each negative type, and ΔS.

    With S_ij = cos(u_v_i, u_s_j) and T_i the sensor windows of type T for anchor i,
    sim(v, T) = mean_i mean_{j∈T_i} S_ij over the anchors with at least one such j, and

        ΔS = mean_{i∈A} [ mean_{j∈hard_i} S_ij − mean_{j∈easy_i} S_ij ],

    A the anchors that have both a hard and an easy negative. Computed in chunks of anchors, so
    the whole validation set fits without an N×N matrix.

    Args:
        u_v: (N, d) video embeddings; row i pairs with sensor row i.
        u_s: (N, d) sensor embeddings.
        labels: (N,) class ids (−1 unknown).
        places: (N,) place ids (−1 unknown).
        chunk_size: anchors per chunk.

    Returns:
        {"positive", "easy", "hard", "false", "delta"}: floats, NaN where no anchor qualifies.
    """
    if u_v.dim() != 2 or u_v.shape != u_s.shape:
        raise ValueError(f"u_v and u_s must be matching (N, d) matrices, got {tuple(u_v.shape)} and {tuple(u_s.shape)}")
    _check_targets(labels, places)
    if labels.shape[0] != u_v.shape[0]:
        raise ValueError(f"labels ({labels.shape[0]}) and embeddings ({u_v.shape[0]}) differ in N")
    video = F.normalize(u_v.detach().float(), dim=1)
    sensor = F.normalize(u_s.detach().float(), dim=1)
    sums = {name: 0.0 for name in (*NEGATIVE_TYPES, "delta")}
    counts = dict.fromkeys(sums, 0)
    positive = float((video * sensor).sum(1).mean()) if u_v.shape[0] else math.nan
    for start in range(0, u_v.shape[0], chunk_size):
        rows = slice(start, min(start + chunk_size, u_v.shape[0]))
        similarity = video[rows] @ sensor.T
        masks = negative_type_masks(labels, places, rows)
        anchor_means = {}
        for name, mask in masks.items():
            count = mask.sum(1)
            means = (similarity * mask).sum(1) / count.clamp(min=1)
            anchor_means[name] = (means, count > 0)
            sums[name] += float(means[count > 0].sum())
            counts[name] += int((count > 0).sum())
        (hard, has_hard), (easy, has_easy) = anchor_means["hard"], anchor_means["easy"]
        both = has_hard & has_easy
        sums["delta"] += float((hard - easy)[both].sum())
        counts["delta"] += int(both.sum())
    result = {name: sums[name] / counts[name] if counts[name] else math.nan for name in sums}
    result["positive"] = positive
    return result


class AlignmentDiagnostics:
    """Collects one validation epoch: embeddings for ΔS, pair-matrix entries split by type.

    Call :meth:`reset` at the epoch start, :meth:`add_embeddings` / :meth:`add_pair_matrices` per
    batch, then :meth:`summary` (means) and :meth:`histograms` (all values) at the epoch end.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything collected."""
        self._embeddings: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        self._values: dict[str, dict[str, list[Tensor]]] = {}

    def add_embeddings(self, u_v: Tensor, u_s: Tensor, labels: Tensor, places: Tensor) -> None:
        """Keep one batch of paired embeddings (on the CPU) for the epoch's ΔS."""
        _check_targets(labels, places)
        self._embeddings.append(
            (u_v.detach().float().cpu(), u_s.detach().float().cpu(), labels.cpu(), places.cpu())
        )

    def add_pair_matrices(self, matrices: Mapping[str, Tensor], labels: Tensor, places: Tensor) -> None:
        """Keep the entries of each (N, N) pair matrix (e.g. "W_sp", "W_tm", "W") by negative type."""
        masks = negative_type_masks(labels, places)
        for name, matrix in matrices.items():
            per_type = self._values.setdefault(name, {kind: [] for kind in NEGATIVE_TYPES})
            for kind, values in values_by_type(matrix, masks).items():
                per_type[kind].append(values.float().cpu())

    def _collected(self) -> dict[str, dict[str, Tensor]]:
        return {
            name: {kind: torch.cat(chunks) for kind, chunks in per_type.items()}
            for name, per_type in self._values.items()
        }

    def summary(self, prefix: str = "diag/") -> dict[str, float]:
        """Means per matrix and type, similarities per type and ΔS; empty groups are left out."""
        result: dict[str, float] = {}
        for name, per_type in self._collected().items():
            for kind, values in per_type.items():
                if values.numel():
                    result[f"{prefix}{name}/{kind}"] = float(values.mean())
        if self._embeddings:
            u_v, u_s, labels, places = (torch.cat(parts) for parts in zip(*self._embeddings, strict=True))
            similarities = similarity_by_type(u_v, u_s, labels, places)
            delta = similarities.pop("delta")
            result.update(
                {f"{prefix}sim/{kind}": value for kind, value in similarities.items() if math.isfinite(value)}
            )
            if math.isfinite(delta):
                result[f"{prefix}delta_s"] = delta
        return result

    def histograms(self, prefix: str = "diag/") -> dict[str, Tensor]:
        """All collected values per matrix and type (tags like "diag/W/hard"), non-empty only."""
        return {
            f"{prefix}{name}/{kind}": values
            for name, per_type in self._collected().items()
            for kind, values in per_type.items()
            if values.numel()
        }


def log_diagnostics(module: pl.LightningModule, diagnostics: AlignmentDiagnostics) -> None:
    """Log the epoch's means as scalars and, on a TensorBoard logger, the values as histograms.

    Every rank logs (the scalars are averaged over ranks); histograms are written by rank 0.
    """
    summary = diagnostics.summary()
    if summary:
        module.log_dict(summary, sync_dist=True)
    if module.trainer.sanity_checking or not module.trainer.is_global_zero:
        return
    experiment = getattr(module.logger, "experiment", None)
    if experiment is None or not hasattr(experiment, "add_histogram"):
        return
    for tag, values in diagnostics.histograms().items():
        experiment.add_histogram(tag, values, module.global_step)
