"""Linear probe: frozen encoders, the embedding memo, sequence pooling."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from detach_pl.modules import LinearProbeModule
from detach_pl.modules.probe import HOST_INDEX, EmbeddingMemo, FeatureStandardizer
from helpers import tiny_datamodule, tiny_encoder


def test_memo_computes_each_item_once_and_returns_what_compute_gave() -> None:
    memo, calls = EmbeddingMemo(), []
    table = torch.randn(10, 3)

    def compute_for(index):
        def compute(rows):
            calls.append(index[rows].tolist())
            return table[index[rows]]
        return compute

    for index in (torch.tensor([3, 1]), torch.tensor([1, 7, 3]), torch.tensor([7, 9, 0])):
        assert torch.equal(memo.lookup(index, compute_for(index)), table[index])
    assert calls == [[3, 1], [7], [9, 0]]


def test_probe_trains_only_its_linear_layer_and_memo_matches_direct_embedding(tmp_path) -> None:
    datamodule = tiny_datamodule(tmp_path)
    probe = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder())
    encoders_before = [p.clone() for p in probe.encoders.parameters()]
    classifier_before = [p.clone() for p in probe.classifier.parameters()]
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(probe, datamodule=datamodule)
    assert all(torch.equal(a, b) for a, b in zip(encoders_before, probe.encoders.parameters(), strict=True))
    classifier_after = probe.classifier.parameters()
    assert not all(torch.equal(a, b) for a, b in zip(classifier_before, classifier_after, strict=True))
    memo = probe._memos["train"]
    dataset = datamodule.datasets["train"]
    assert bool(memo.known.all()) and memo.known.numel() == len(dataset)
    direct = probe.embed(dataset.sensor[:16])
    torch.testing.assert_close(memo.values[:16], direct)


def test_standardised_probe_uses_training_set_statistics_and_plain_variant_is_linear(tmp_path) -> None:
    datamodule = tiny_datamodule(tmp_path)
    probe = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder(), standardize_features=True)
    standardize, linear = probe.classifier
    assert isinstance(standardize, FeatureStandardizer) and not bool(standardize.fitted)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(probe, datamodule=datamodule)
    # μ, σ are those of every embedded training window (the loader drops no window here).
    embeddings = probe._memos["train"].values.double()
    assert embeddings.shape[0] == len(datamodule.datasets["train"])
    torch.testing.assert_close(standardize.mean, embeddings.mean(0).float())
    torch.testing.assert_close(standardize.std, embeddings.std(0, unbiased=False).float(), rtol=1e-4, atol=1e-6)
    u_s = probe.embed(datamodule.datasets["test"].sensor[:8])
    reference = (u_s - embeddings.mean(0).float()) / embeddings.std(0, unbiased=False).float()
    torch.testing.assert_close(probe.classifier(u_s), reference @ linear.weight.T + linear.bias, rtol=1e-4, atol=1e-5)
    # A fitted standardiser travels in the state dict (a resumed or tested probe reuses it).
    restored = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder(), standardize_features=True)
    restored.load_state_dict(probe.state_dict())
    assert bool(restored.classifier[0].fitted) and torch.equal(restored.classifier[0].std, standardize.std)
    plain = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder())  # released default
    assert isinstance(plain.classifier[0], torch.nn.Identity)
    torch.testing.assert_close(plain.classifier(u_s), plain.classifier[1](u_s))


def test_released_probe_reads_the_unnormalised_joint_embedding(tmp_path) -> None:
    """Default u_s = [normalize(z_s), normalize(h_s)] (norm √2); normalize_embedding gives the paper's."""
    datamodule = tiny_datamodule(tmp_path)
    probe = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder()).eval()
    sensor = torch.randn(5, datamodule.data_info.num_channels, 128)
    z_s, h_s = probe.encoders["sensor_spatial"](sensor), probe.encoders["sensor_temporal"](sensor)
    expected = torch.cat([z_s / z_s.norm(dim=1, keepdim=True), h_s / h_s.norm(dim=1, keepdim=True)], dim=1)
    torch.testing.assert_close(probe.embed(sensor), expected)
    torch.testing.assert_close(probe.embed(sensor).norm(dim=1), torch.full((5,), 2.0).sqrt())
    paper = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder(), normalize_embedding=True).eval()
    paper.load_state_dict(probe.state_dict())
    torch.testing.assert_close(paper.embed(sensor), expected / 2.0**0.5)


def test_standardizer_centres_a_constant_dimension_and_refuses_an_empty_set() -> None:
    standardize = FeatureStandardizer(2)
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    standardize.fit(x.sum(0), x.square().sum(0), torch.tensor(2.0))
    torch.testing.assert_close(standardize(x), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="no embeddings"):
        standardize.fit(x.sum(0), x.square().sum(0), torch.tensor(0.0))


def test_standardised_probe_without_a_datamodule_names_the_setting(tmp_path) -> None:
    datamodule = tiny_datamodule(tmp_path, purpose="probe")
    datamodule.prepare_data()
    datamodule.setup("fit")
    probe = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder(), standardize_features=True)
    loader = torch.utils.data.DataLoader(datamodule.datasets["train"], batch_size=4)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=r"model\.init_args\.standardize_features.*DataModule"):
        trainer.fit(probe, train_dataloaders=loader)


def test_probe_trains_on_probe_train_runs_with_the_alignment_runs_statistics(tmp_path) -> None:
    runs = dict(train_runs=["run00", "run01"], val_runs=["run01"], test_runs=["run02"])
    full = tiny_datamodule(tmp_path, purpose="probe", **runs)
    full.prepare_data()
    full.setup("fit")
    few = tiny_datamodule(tmp_path, purpose="probe", probe_train_runs=["run01"], **runs)
    few.setup("fit")
    run01 = few.cache.run_indices(["run01"])[0]
    train = few.datasets["train"]
    assert len(train) > 0 and bool((train.sequence == run01).all()) and bool((train.label >= 0).all())
    assert len(train) < len(full.datasets["train"])
    np.testing.assert_array_equal(few.mean, full.mean)  # the encoders' input is unchanged
    np.testing.assert_array_equal(few.std, full.std)
    aligned = tiny_datamodule(tmp_path, purpose="alignment", probe_train_runs=["run01"], **runs)
    aligned.setup("fit")
    assert set(aligned.datasets["train"].sequence.tolist()) == set(few.cache.run_indices(["run00", "run01"]).tolist())
    wrong = tiny_datamodule(tmp_path, purpose="probe", probe_train_runs=["run07"], **runs)
    with pytest.raises(ValueError, match=r"data\.probe_train_runs: unknown run\(s\) \['run07'\]"):
        wrong.setup("fit")


def test_probe_batches_hold_eight_windows_as_released(tmp_path) -> None:
    """data.probe_batch_size (8 by default) serves the probe; alignment keeps data.batch_size."""
    probe_data = tiny_datamodule(tmp_path, purpose="probe", batch_size=16)
    probe_data.prepare_data()
    probe_data.setup("fit")
    assert probe_data.batch_size == 8
    small = tiny_datamodule(tmp_path, purpose="probe", batch_size=16, probe_batch_size=3)
    small.setup("fit")
    assert len(small.datasets["train"]) > 3
    assert next(iter(small.train_dataloader()))["sensor"].shape[0] == 3
    alignment = tiny_datamodule(tmp_path, purpose="alignment", batch_size=16)
    alignment.setup("fit")
    assert alignment.batch_size == 16
    kept = tiny_datamodule(tmp_path, purpose="probe", batch_size=16, probe_batch_size=None)
    kept.setup("fit")
    assert kept.batch_size == 16
    with pytest.raises(ValueError, match="probe_batch_size"):
        tiny_datamodule(tmp_path, probe_batch_size=0)


def test_standardiser_batches_reach_the_device_through_the_datamodule_transfer_hooks(tmp_path) -> None:
    """The pre-pass of the standardiser sees batches as training steps do (on_after_batch_transfer)."""
    base = type(tiny_datamodule(tmp_path))

    class Doubling(base):
        def on_after_batch_transfer(self, batch, dataloader_idx):
            batch = super().on_after_batch_transfer(batch, dataloader_idx)
            batch["sensor"] = 2.0 * batch["sensor"]
            return batch

    datamodule = tiny_datamodule(tmp_path)
    datamodule.__class__ = Doubling  # the tiny DataModule with one more on-device step
    probe = LinearProbeModule(data_info=datamodule.data_info, encoder=tiny_encoder(), standardize_features=True)
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=0, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(probe, datamodule=datamodule)
    reference = probe.embed(2.0 * datamodule.datasets["train"].sensor).double()
    torch.testing.assert_close(probe.classifier[0].mean, reference.mean(0).float(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(probe._memos["train"].values, reference.float(), rtol=1e-4, atol=1e-6)


def test_training_batches_carry_the_host_copy_of_their_indices_through_the_trainer(tmp_path) -> None:
    """The DataModule has its own batch hooks; the probe's host index still reaches every step."""
    seen = []

    class Recording(LinearProbeModule):
        def training_step(self, batch, batch_idx):
            seen.append(("train", batch[HOST_INDEX].tolist() == batch["index"].tolist()))
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            seen.append(("val", batch[HOST_INDEX].tolist() == batch["index"].tolist()))
            return super().validation_step(batch, batch_idx)

    datamodule = tiny_datamodule(tmp_path)
    probe = Recording(data_info=datamodule.data_info, encoder=tiny_encoder())
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=2, num_sanity_val_steps=0,
                         accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(probe, datamodule=datamodule)
    assert {split for split, _ in seen} == {"train", "val"} and all(same for _, same in seen)
