"""Global-alignment baseline and supervised ceiling: loss, temperature, probe hand-over (DDP negatives:
tests/distributed/test_ddp_baselines.py)."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from baseline_inputs import CHANNELS, baseline, fake_batch
from detach_pl.data.info import DataInfo
from detach_pl.modules import LinearProbeModule
from detach_pl.modules.baselines import GlobalAlignmentModule, SupervisedSensorModule
from helpers import tiny_datamodule, tiny_encoder


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One tiny synthetic cache for the module's training tests."""
    return tmp_path_factory.mktemp("cache")


def quick_trainer(root, **kwargs) -> pl.Trainer:
    options = dict(
        max_epochs=1, limit_train_batches=2, limit_val_batches=0, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root,
    )
    options.update(kwargs)
    return pl.Trainer(**options)


def reference_info_nce(u_v: torch.Tensor, u_s: torch.Tensor, tau: float) -> torch.Tensor:
    """½(mean_i −log softmax_j S_ij at j=i + mean_j −log softmax_i S_ij at i=j), in loops."""
    n = u_v.shape[0]
    s = [[F.cosine_similarity(u_v[i], u_s[j], dim=0) / tau for j in range(n)] for i in range(n)]
    v2s = sum(-(s[i][i] - torch.logsumexp(torch.stack([s[i][j] for j in range(n)]), 0)) for i in range(n)) / n
    s2v = sum(-(s[j][j] - torch.logsumexp(torch.stack([s[i][j] for i in range(n)]), 0)) for j in range(n)) / n
    return 0.5 * (v2s + s2v)


def test_loss_is_symmetric_info_nce_with_the_learnt_temperature() -> None:
    module = baseline().eval()
    with torch.no_grad():
        module.log_temperature.fill_(math.log(0.07))
    video, sensor = fake_batch()
    loss, u_v, u_s, anchors = module.alignment_loss(video, sensor)
    assert anchors == slice(0, 6) and u_v.shape == (6, 128) == u_s.shape
    torch.testing.assert_close(loss, reference_info_nce(u_v.detach(), u_s.detach(), 0.07))
    loss.backward()
    # dL/dlogτ against a central finite difference of the reference.
    eps = 1e-3
    finite = (
        reference_info_nce(u_v.detach(), u_s.detach(), math.exp(math.log(0.07) + eps))
        - reference_info_nce(u_v.detach(), u_s.detach(), math.exp(math.log(0.07) - eps))
    ) / (2 * eps)
    assert module.log_temperature.grad == pytest.approx(float(finite), rel=1e-3)
    assert all(p.grad is not None for p in module.encoders.parameters() if p.requires_grad)


def test_temperature_starts_at_0_1_is_bounded_and_not_decayed() -> None:
    module = baseline(min_temperature=0.05)
    assert float(module.temperature.detach()) == pytest.approx(0.1)
    with torch.no_grad():
        module.log_temperature.fill_(math.log(0.001))
    assert float(module.temperature.detach()) == pytest.approx(0.05)
    groups = module.configure_optimizers().param_groups
    assert groups[1]["params"] == [module.log_temperature] and groups[1]["weight_decay"] == 0.0
    assert groups[0]["weight_decay"] == pytest.approx(1e-4)
    fixed = baseline(learn_temperature=False)
    assert len(fixed.configure_optimizers().param_groups) == 1
    with pytest.raises(ValueError, match="min_temperature"):
        baseline(initial_temperature=0.01, min_temperature=0.02)


def test_training_moves_all_four_encoders_and_the_probe_loads_the_sensor_pair(tmp_path, cache) -> None:
    datamodule = tiny_datamodule(cache)
    module = GlobalAlignmentModule(data_info=datamodule.data_info, encoder=tiny_encoder(), lr=1e-3)
    before = {name: [p.detach().clone() for p in enc.parameters()] for name, enc in module.encoders.items()}
    tau_before = float(module.log_temperature)
    trainer = quick_trainer(tmp_path, limit_val_batches=1)
    trainer.fit(module, datamodule=datamodule)
    for name, encoder in module.encoders.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], encoder.parameters(), strict=True)), name
    assert float(module.log_temperature) != tau_before
    for key in ("val/loss", "val/retrieval_top1", "diag/sim/positive"):
        assert key in trainer.callback_metrics, key
    path = tmp_path / "global.ckpt"
    trainer.save_checkpoint(path)
    probe = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder(), encoder_checkpoint=str(path))
    quick_trainer(tmp_path).fit(probe, datamodule=tiny_datamodule(cache))
    for name in ("sensor_spatial", "sensor_temporal"):
        ours_state, theirs_state = probe.encoders[name].state_dict(), module.encoders[name].state_dict()
        for ours, theirs in zip(ours_state.values(), theirs_state.values(), strict=True):
            assert torch.equal(ours, theirs)


def test_supervised_ceiling_trains_the_sensor_encoders_and_hands_them_to_the_probe(tmp_path, cache) -> None:
    datamodule = tiny_datamodule(cache)
    module = SupervisedSensorModule(data_info=datamodule.data_info, encoder=tiny_encoder())
    assert module.data_purpose == "probe" and module.hparams.warp_sigma == 0.2
    before = [p.detach().clone() for p in module.encoders.parameters()]
    trainer = quick_trainer(tmp_path, max_epochs=2, limit_val_batches=1)  # several steps, then validation
    trainer.fit(module, datamodule=datamodule)
    assert "val/f1_weighted" in trainer.callback_metrics
    assert all(p.requires_grad for p in module.encoders.parameters())
    after = module.encoders.parameters()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert changed == len(before)
    optimiser = module.configure_optimizers()
    assert isinstance(optimiser, torch.optim.AdamW)
    assert sum(len(g["params"]) for g in optimiser.param_groups) == len(list(module.parameters()))
    path = tmp_path / "supervised.ckpt"
    trainer.save_checkpoint(path)
    probe = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder(), encoder_checkpoint=str(path))
    quick_trainer(tmp_path).fit(probe, datamodule=tiny_datamodule(cache))
    assert torch.equal(
        next(iter(probe.encoders["sensor_temporal"].parameters())),
        next(iter(module.encoders["sensor_temporal"].parameters())),
    )


def test_supervised_embedding_of_sequences_carries_gradients() -> None:
    torch.manual_seed(0)
    # Eval mode: BatchNorm uses its running statistics, so a window's embedding does not depend on
    # the other windows of its batch (the pooled sequence is compared with one window alone).
    module = SupervisedSensorModule(DataInfo(CHANNELS, 5, 7), tiny_encoder()).eval()
    sensor = torch.randn(2, 3, CHANNELS, 128)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    logits = module(sensor, mask)
    logits.sum().backward()
    assert logits.shape == (2, 5)
    assert all(p.grad is not None for p in module.encoders.parameters())
    with torch.no_grad():
        single = module.classifier(module.embed(sensor[1, :1]))
    torch.testing.assert_close(logits[1].detach(), single[0])
