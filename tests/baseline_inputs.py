"""Inputs shared by the baseline tests (one process and DDP): a seeded global-alignment module, fake batches."""

from __future__ import annotations

import torch

from detach_pl.data.info import DataInfo
from detach_pl.modules import GlobalAlignmentModule
from helpers import tiny_encoder

CHANNELS = 41


def baseline(**kwargs) -> GlobalAlignmentModule:
    """GlobalAlignmentModule on the tiny encoders, initialised from seed 0 (equal on every rank)."""
    torch.manual_seed(0)
    return GlobalAlignmentModule(DataInfo(CHANNELS, 14, 7), tiny_encoder(), lr=1e-3, **kwargs)


def fake_batch(size: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded clips (size, 4, 3, 16, 16) and sensor windows (size, CHANNELS, 128)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(size, 4, 3, 16, 16, generator=generator), torch.randn(size, CHANNELS, 128, generator=generator)
