"""Small building blocks shared by the encoders, and the joint embedding u_x of docs/method.md."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CosineLinear(nn.Module):
    """Cosine-normalised linear layer: y = scale · normalize(x) @ normalize(W)ᵀ.

    Normalising both the input and each weight row makes the output depend on the direction of
    x only, not on its magnitude (the magnitude of a frame-difference feature mostly reflects how
    much pixels change, not which way the action goes). The released layer has no scale (1); an
    optional learnable ``scale`` restores a dynamic range for uses that read magnitudes.

    Args:
        in_features: Size of each input vector.
        out_features: Size of each output vector.
        init_scale: Initial value of a learnable scale, or None for none (released).
    """

    def __init__(self, in_features: int, out_features: int, init_scale: float | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.scale = None if init_scale is None else nn.Parameter(torch.tensor(float(init_scale)))

    def forward(self, x: Tensor) -> Tensor:
        """Map (..., in_features) to (..., out_features)."""
        out = F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=-1).t()
        return out if self.scale is None else self.scale * out


class SelfAttentionPooling(nn.Module):
    """Self-attention over time followed by a mean over time.

    out = mean_t softmax(q kᵀ / √d) v, with q, k, v linear projections of the input sequence.

    Args:
        dim: Feature size d of the sequence (kept by the projections).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.dim = dim

    def forward(self, sequence: Tensor) -> Tensor:
        """Pool a (B, L, d) sequence to (B, d)."""
        query, key, value = self.query(sequence), self.key(sequence), self.value(sequence)
        attention = torch.softmax(query @ key.transpose(1, 2) / math.sqrt(self.dim), dim=-1)
        return (attention @ value).mean(dim=1)


def joint_embedding(spatial: Tensor, temporal: Tensor, normalize_output: bool = True) -> Tensor:
    """Joint embedding of one modality: u_x = normalize([normalize(z_x), normalize(h_x)]).

    Args:
        spatial: z_x, shape (N, d_z).
        temporal: h_x, shape (N, d_h).
        normalize_output: The final normalisation (alignment). The released probe reads
            [normalize(z_s), normalize(h_s)] without it (norm √2).

    Returns:
        u_x, shape (N, d_z + d_h), unit L2 norm per row (√2 without the final normalisation).
    """
    if spatial.shape[:-1] != temporal.shape[:-1]:
        raise ValueError(
            "joint_embedding needs spatial and temporal embeddings with the same leading shape, "
            f"got {tuple(spatial.shape)} and {tuple(temporal.shape)}"
        )
    combined = torch.cat([F.normalize(spatial, dim=-1), F.normalize(temporal, dim=-1)], dim=-1)
    return F.normalize(combined, dim=-1) if normalize_output else combined
