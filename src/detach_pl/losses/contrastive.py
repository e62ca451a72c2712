"""Stage-2 contrastive losses: the spatio-temporally weighted InfoNCE and plain symmetric InfoNCE.

Pure functions. Under DDP pass the *global* (gathered) embeddings and weights and select this
rank's rows as `anchors` (see `detach_pl.distributed.local_slice`); the mean is over the anchors,
which is what `detach_pl.distributed.gather_with_grad` expects.

Checks of tensor values (weights finite and ≥ 0, a tensor τ > 0) need the values on the host and
force a device synchronisation. They run when ``check=True`` (the default, for direct users); a
training step whose weights come from `detach_pl.losses.alignment_weights` (finite and ≥ 0 by
construction) passes ``check=False`` and stays sync-free. Shape checks always run (they cost nothing).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

_MAX_LOGIT_RANGE = 60.0
"""Largest 2/τ of the bounded fast path: exp(S − 1/τ) ≥ e^−60 stays a normal float32."""


_NORMALIZE_EPS = 1e-12
"""The eps of `F.normalize`: rows are divided by max(‖x‖, eps)."""


def _unit_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """`F.normalize(x, dim=1)` and the row norms ‖x_i‖ (kept for backward)."""
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / norms.clamp_min(_NORMALIZE_EPS), norms


def _unit_rows_backward(grad_unit: Tensor, unit: Tensor, norms: Tensor) -> Tensor:
    """∂L/∂x of u = x / max(‖x‖, eps) from ∂L/∂u: (∂L/∂u − u (u·∂L/∂u)) / max(‖x‖, eps).

    Where ‖x‖ < eps the denominator is the constant eps, so the projection term is dropped (the
    mask ‖x‖ ≥ eps is that of autograd's `clamp_min`). `grad_unit` is a fresh tensor, overwritten.
    """
    projection = torch.linalg.vecdot(unit, grad_unit, dim=1).unsqueeze(1)
    projection.mul_(norms >= _NORMALIZE_EPS)
    return grad_unit.addcmul_(unit, projection, value=-1.0).div_(norms.clamp_min(_NORMALIZE_EPS))


class _BoundedWeightedInfoNce(torch.autograd.Function):
    """L_CL from the raw embeddings, using that S = C/τ is bounded by 1/τ (|cos| ≤ 1).

    Forward: u = x / max(‖x‖, eps) per row (as `F.normalize`), C = u_v u_sᵀ, and with
    E_ij = W'_ij exp(S_ij − 1/τ) (W' = W with its diagonal set to 1) every row and column
    log-sum-exp is 1/τ + log Σ E: one exp pass shared by both directions, no max pass, no log of W.
    The diagonal term is ≥ e^(−2/τ), so the sums never vanish while 2/τ ≤ 60 (float32 keeps
    e^−60 normal). `weights` None means W ≡ 1 (plain InfoNCE: no multiply).

    Backward in closed form, two N×N passes and the two matmuls: ∂L/∂S = ½/|A| (E_rows/Σrow +
    E_cols/Σcol) − 1/|A| on the anchors' diagonal, ∂L/∂C = ∂L/∂S / τ, ∂L/∂u_v = ∂L/∂C u_s,
    ∂L/∂u_s = ∂L/∂Cᵀ u_v, then the normalisation's backward (`_unit_rows_backward`). The matmuls
    run in the dtype C had (bfloat16 under autocast, as autograd would). Equal to the autograd of
    the log-sum-exp form up to rounding.
    """

    @staticmethod
    def forward(  # noqa: D102
        ctx: Any,
        video_emb: Tensor,
        sensor_emb: Tensor,
        weights: Tensor | None,
        temperature: float,
        anchors: slice | Tensor,
    ) -> Tensor:
        unit_v, norms_v = _unit_rows(video_emb)
        unit_s, norms_s = _unit_rows(sensor_emb)
        cosines = unit_v @ unit_s.T
        dtype = torch.promote_types(cosines.dtype, torch.float32)
        inv_tau = 1.0 / temperature
        shifted = cosines.to(dtype).mul_(inv_tau).sub_(inv_tau)  # S − 1/τ (a fresh tensor: in place)
        log_positives = shifted.diagonal()[anchors].clone()
        exps = shifted.exp_()
        if weights is not None:
            positives = exps.diagonal().clone()
            exps.mul_(weights.to(dtype)).diagonal().copy_(positives)
        full = anchors == slice(0, exps.shape[0], 1)
        row_sums = exps.sum(dim=1) if full else exps[anchors, :].sum(dim=1)
        col_sums = exps.sum(dim=0) if full else exps[:, anchors].sum(dim=0)
        loss = 0.5 * ((row_sums.log() - log_positives).mean() + (col_sums.log() - log_positives).mean())
        ctx.save_for_backward(unit_v, unit_s, norms_v, norms_s, exps, row_sums, col_sums)
        ctx.anchors, ctx.full, ctx.inv_tau, ctx.mm_dtype = anchors, full, inv_tau, cosines.dtype
        return loss.to(cosines.dtype)

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:  # noqa: D102
        unit_v, unit_s, norms_v, norms_s, exps, row_sums, col_sums = ctx.saved_tensors
        anchors = ctx.anchors
        scale = grad_loss.to(exps.dtype) * (0.5 * ctx.inv_tau / row_sums.shape[0])
        if ctx.full:
            grad = exps * (scale / row_sums)[:, None]
            grad.addcmul_(exps, (scale / col_sums)[None, :])
        else:
            grad = torch.zeros_like(exps)
            grad[anchors, :] = exps[anchors, :] * (scale / row_sums)[:, None]
            grad[:, anchors] += exps[:, anchors] * (scale / col_sums)[None, :]
        grad.diagonal()[anchors] -= 2.0 * scale
        grad = grad.to(ctx.mm_dtype)
        grad_video = grad_sensor = None
        if ctx.needs_input_grad[0]:
            grad_unit_v = (grad @ unit_s.to(ctx.mm_dtype)).to(unit_v.dtype)
            grad_video = _unit_rows_backward(grad_unit_v, unit_v, norms_v)
        if ctx.needs_input_grad[1]:
            grad_unit_s = (grad.T @ unit_v.to(ctx.mm_dtype)).to(unit_s.dtype)
            grad_sensor = _unit_rows_backward(grad_unit_s, unit_s, norms_s)
        return grad_video, grad_sensor, None, None, None


def _anchor_indices(anchors: slice | None, num_pairs: int) -> range:
    """Validate `anchors` and return the anchor indices it selects out of `num_pairs` pairs."""
    if anchors is None:
        return range(num_pairs)
    if not isinstance(anchors, slice):
        raise ValueError(f"anchors must be a slice or None, got {type(anchors).__name__}")
    selected = range(num_pairs)[anchors]
    if len(selected) == 0:
        raise ValueError(f"anchors {anchors} selects no pair out of a batch of {num_pairs}")
    return selected


def _validate_inputs(
    video_emb: Tensor, sensor_emb: Tensor, temperature: float | Tensor, check: bool = True
) -> None:
    """Raise ValueError unless both embeddings are matching (N, d) matrices and τ > 0.

    A tensor τ is only checked when `check` is True (reading it synchronises the device).
    """
    if video_emb.dim() != 2 or sensor_emb.dim() != 2:
        raise ValueError(
            "video_emb and sensor_emb must be (N, d) matrices, got shapes "
            f"{tuple(video_emb.shape)} and {tuple(sensor_emb.shape)}"
        )
    if video_emb.shape != sensor_emb.shape:
        raise ValueError(
            "video_emb and sensor_emb must have the same shape (N pairs, same d), got "
            f"{tuple(video_emb.shape)} and {tuple(sensor_emb.shape)}"
        )
    if video_emb.shape[0] == 0:
        raise ValueError("video_emb and sensor_emb hold no pair (N = 0)")
    if isinstance(temperature, Tensor) and not check:
        return
    value = temperature.detach() if isinstance(temperature, Tensor) else temperature
    if not float(value) > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def weighted_info_nce(
    video_emb: Tensor,
    sensor_emb: Tensor,
    weights: Tensor,
    temperature: float | Tensor,
    *,
    anchors: slice | None = None,
    check: bool = True,
) -> Tensor:
    """Symmetric InfoNCE whose negatives are re-weighted by W (docs/method.md, Stage 2).

    S_ij = cos(u_v_i, u_s_j) / τ (the embeddings are L2-normalised here),

        L_v2s = −(1/|A|) Σ_{i∈A} log( exp(S_ii) / (exp(S_ii) + Σ_{j≠i} W_ij exp(S_ij)) ),
        L_s2v = −(1/|A|) Σ_{j∈A} log( exp(S_jj) / (exp(S_jj) + Σ_{i≠j} W_ij exp(S_ij)) ),
        L_CL  = ½ (L_v2s + L_s2v),

    with A the anchors (all N pairs by default). The s2v term anchors sensor j and uses the same
    W_ij over the video keys i. A float τ with 2/τ ≤ 60 takes the one-exp closed-form path of
    `_BoundedWeightedInfoNce` (normalisation, cosines, loss and backward fused); otherwise it is
    computed as logsumexp of S_ij + log W_ij (log 0 = −inf, the diagonal taken as log 1). Both are
    stable for small τ and zero weights.

    Args:
        video_emb: (N, d) video embeddings u_v (need not be normalised).
        sensor_emb: (N, d) sensor embeddings u_s; row i pairs with video row i.
        weights: (N, N) non-negative weights W of the negatives; used detached, diagonal ignored.
        temperature: τ > 0 (a float, or a 0-d tensor when τ is learnt).
        anchors: rows (v2s) and columns (s2v) used as anchors; under DDP, this rank's rows of the
            gathered batch. None means all N.
        check: verify that W is finite and ≥ 0 and a tensor τ is > 0 (a device sync); pass False
            in a per-step training loss whose W comes from `alignment_weights`.

    Returns:
        Scalar loss, differentiable w.r.t. both embeddings only.

    Raises:
        ValueError: on mismatched shapes, τ ≤ 0, an empty anchor selection, or (when checked)
            weights that are negative or not finite.
    """
    _validate_inputs(video_emb, sensor_emb, temperature, check)
    num_pairs = video_emb.shape[0]
    if weights.shape != (num_pairs, num_pairs):
        raise ValueError(
            f"weights must be (N, N) = ({num_pairs}, {num_pairs}) to match the embeddings, "
            f"got {tuple(weights.shape)}"
        )
    weights = weights.detach()
    if check and not bool(((weights >= 0) & torch.isfinite(weights)).all()):
        raise ValueError("weights must be finite and non-negative")
    return _symmetric_info_nce(video_emb, sensor_emb, weights, temperature, anchors)


def _symmetric_info_nce(
    video_emb: Tensor, sensor_emb: Tensor, weights: Tensor | None, temperature: float | Tensor, anchors: slice | None
) -> Tensor:
    """L_CL of validated inputs; `weights` None means W ≡ 1 (plain InfoNCE, no weight pass)."""
    selected = _anchor_indices(anchors, video_emb.shape[0])
    anchor_idx: slice | Tensor = slice(selected.start, selected.stop, selected.step)
    if selected.step < 0:  # tensors take no negative steps: an index built on the device (no host copy)
        anchor_idx = torch.arange(
            selected.start, selected.stop, selected.step, dtype=torch.long, device=video_emb.device
        )

    if isinstance(temperature, float | int) and 2.0 / temperature <= _MAX_LOGIT_RANGE:
        return _BoundedWeightedInfoNce.apply(video_emb, sensor_emb, weights, float(temperature), anchor_idx)
    logits = F.normalize(video_emb, dim=1) @ F.normalize(sensor_emb, dim=1).T / temperature
    weighted_logits = logits
    if weights is not None:
        log_weights = weights.to(logits.dtype).log()
        log_weights.fill_diagonal_(0.0)
        weighted_logits = logits + log_weights
    positives = logits.diagonal()[anchor_idx]

    loss_v2s = (torch.logsumexp(weighted_logits[anchor_idx, :], dim=1) - positives).mean()
    loss_s2v = (torch.logsumexp(weighted_logits[:, anchor_idx], dim=0) - positives).mean()
    return 0.5 * (loss_v2s + loss_s2v)


def info_nce(
    video_emb: Tensor,
    sensor_emb: Tensor,
    temperature: float | Tensor,
    *,
    anchors: slice | None = None,
    check: bool = True,
) -> Tensor:
    """Plain symmetric InfoNCE: `weighted_info_nce` with W ≡ 1 (the "no weighting" ablation).

    Args:
        video_emb: (N, d) video embeddings.
        sensor_emb: (N, d) sensor embeddings; row i pairs with video row i.
        temperature: τ > 0, a float or a 0-d tensor.
        anchors: as in `weighted_info_nce`.
        check: verify a tensor τ > 0 (a device sync); W ≡ 1 needs no check.

    Returns:
        Scalar loss ½(CE(S, I) over rows + CE(S, I) over columns).
    """
    _validate_inputs(video_emb, sensor_emb, temperature, check)
    return _symmetric_info_nce(video_emb, sensor_emb, None, temperature, anchors)
