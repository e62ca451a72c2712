"""Momentum (EMA) copies of encoders, used by stage 2 for stable temporal similarities.

Kept rather than `torch.optim.swa_utils.AveragedModel` + `get_ema_multi_avg_fn` or Lightning's
weight-averaging callback: the update here (docs/method.md, stage 2: m = 0.999 after every
optimiser step) is θ' ← m·θ' + (1 − m)·θ from the first step on, with BatchNorm buffers *copied*
from the online encoder, and the copy is
an ordinary sub-module whose checkpoint keys are the encoder's own (`ema.sensor_temporal.*`).
AveragedModel copies θ on its first update instead of averaging, either averages buffers
(`use_buffers=True`) or leaves them untouched, and nests the weights under `module.` next to an
`n_averaged` counter (new checkpoint keys); Lightning's callback averages the whole model for its
final weights, not a teacher read inside the loss.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema_copy(module: nn.Module) -> nn.Module:
    """Return a frozen deep copy of ``module`` (no gradients, eval mode) to track it by EMA."""
    ema = copy.deepcopy(module)
    ema.requires_grad_(False)
    return ema.eval()


@torch.no_grad()
def update_ema(ema: nn.Module, online: nn.Module, momentum: float) -> None:
    """Move ``ema`` towards ``online`` in place: θ' ← m·θ' + (1 − m)·θ; buffers are copied.

    Args:
        ema: The momentum copy (from :func:`make_ema_copy`).
        online: The trained module with the same structure.
        momentum: m in [0, 1] (0.999 in the paper).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must lie in [0, 1], got {momentum}")
    ema_parameters = dict(ema.named_parameters())
    online_parameters = dict(online.named_parameters())
    ema_buffers = dict(ema.named_buffers())
    online_buffers = dict(online.named_buffers())
    if (
        ema_parameters.keys() != online_parameters.keys()
        or ema_buffers.keys() != online_buffers.keys()
    ):
        raise ValueError(
            "update_ema needs an EMA copy with the same parameters and buffers as the online module"
        )
    for name, ema_parameter in ema_parameters.items():
        ema_parameter.mul_(momentum).add_(online_parameters[name].detach(), alpha=1.0 - momentum)
    for name, ema_buffer in ema_buffers.items():
        ema_buffer.copy_(online_buffers[name])
