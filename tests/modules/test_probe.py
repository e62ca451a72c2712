"""Linear probe: frozen encoders, the embedding memo, sequence pooling."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from helpers import tiny_datamodule, tiny_encoder

from detach_pl.modules import LinearProbeModule
from detach_pl.modules.probe import EmbeddingMemo


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
    assert all(torch.equal(a, b) for a, b in zip(encoders_before, probe.encoders.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(classifier_before, probe.classifier.parameters()))
    memo = probe._memos["train"]
    dataset = datamodule.datasets["train"]
    assert bool(memo.known.all()) and memo.known.numel() == len(dataset)
    direct = probe.embed(dataset.sensor[:16])
    torch.testing.assert_close(memo.values[:16], direct)
