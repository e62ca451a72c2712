"""Tests of the EMA helper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detach_pl.nn import make_ema_copy, update_ema


def small_module() -> nn.Module:
    """A module with parameters and BatchNorm buffers."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_ema_copy_is_frozen_independent_and_in_eval_mode() -> None:
    online = small_module()
    ema = make_ema_copy(online)
    assert not ema.training
    assert all(not p.requires_grad for p in ema.parameters())
    assert all(p.requires_grad for p in online.parameters())
    with torch.no_grad():
        online[0].weight.add_(1.0)
    assert not torch.equal(ema[0].weight, online[0].weight)


def test_ema_update_matches_the_formula() -> None:
    online = small_module()
    ema = make_ema_copy(online)
    with torch.no_grad():
        for parameter in online.parameters():
            parameter.add_(torch.randn_like(parameter))
    online.train()(torch.randn(8, 3))  # changes the BatchNorm running statistics
    before = {name: p.clone() for name, p in ema.named_parameters()}
    update_ema(ema, online, momentum=0.9)
    online_parameters = dict(online.named_parameters())
    for name, parameter in ema.named_parameters():
        expected = 0.9 * before[name] + 0.1 * online_parameters[name].detach()
        torch.testing.assert_close(parameter, expected)
        assert not parameter.requires_grad
    online_buffers = dict(online.named_buffers())
    for name, buffer in ema.named_buffers():
        assert torch.equal(buffer, online_buffers[name]), name


def test_ema_momentum_extremes() -> None:
    online = small_module()
    ema = make_ema_copy(online)
    with torch.no_grad():
        online[2].bias.fill_(3.0)
    old_bias = ema[2].bias.clone()
    update_ema(ema, online, momentum=1.0)
    assert torch.equal(ema[2].bias, old_bias)
    update_ema(ema, online, momentum=0.0)
    assert torch.equal(ema[2].bias, online[2].bias)


def test_ema_update_builds_no_graph() -> None:
    online = small_module()
    ema = make_ema_copy(online)
    update_ema(ema, online, momentum=0.5)
    assert all(p.grad_fn is None for p in ema.parameters())


def test_ema_rejects_bad_momentum_and_mismatched_modules() -> None:
    online = small_module()
    ema = make_ema_copy(online)
    with pytest.raises(ValueError, match="momentum"):
        update_ema(ema, online, momentum=1.5)
    with pytest.raises(ValueError, match="same parameters"):
        update_ema(make_ema_copy(nn.Linear(3, 4)), online, momentum=0.9)
