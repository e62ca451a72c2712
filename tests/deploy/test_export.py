"""`detach export`: ONNX (checked with onnxruntime) and TorchScript give the eager probabilities."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from detach_pl.cli import main
from detach_pl.deploy.contract import CONTRACT_KEY, PreprocessingContract, load_probe
from detach_pl.deploy.export import export_model, exported_difference, probe_graph
from detach_pl.nn import joint_embedding

#: Largest difference of a probability, exported vs eager (float32 reassociation only).
TOLERANCE = 1e-5


def eager_reference(probe_ckpt, windows: torch.Tensor) -> torch.Tensor:
    """softmax(Linear(standardise(u_s))) written out from the probe's own modules."""
    from detach_pl.deploy.export import build_probe

    probe = build_probe(load_probe(probe_ckpt))
    with torch.no_grad():
        spatial, temporal = probe.encoders["sensor_spatial"](windows), probe.encoders["sensor_temporal"](windows)
        u_s = joint_embedding(spatial, temporal, normalize_output=probe.normalize_embedding)
        return probe.classifier(u_s).softmax(1)


def test_onnx_export_matches_eager_on_onnxruntime_and_carries_the_contract(probe_ckpt, exported) -> None:
    contract = load_probe(probe_ckpt).contract
    # one model file, the weights inside it
    assert sorted(path.name for path in exported.parent.iterdir()) == ["model.json", "model.onnx"]
    description = json.loads(exported.with_suffix(".json").read_text())
    assert PreprocessingContract.from_dict(description[CONTRACT_KEY]) == contract
    assert description["class_names"] == contract.class_names and description["format"] == "onnx"
    assert description["input"]["shape"][1:] == [len(contract.channel_names), contract.settings.sensor_length]
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    for batch in (1, 7):  # the batch axis is dynamic
        windows = torch.randn(batch, len(contract.channel_names), contract.settings.sensor_length, generator=generator)
        probs = session.run(["probs"], {"sensor": windows.numpy()})[0]
        reference = eager_reference(probe_ckpt, windows).numpy()
        np.testing.assert_allclose(probs, reference, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_torchscript_export_matches_eager(probe_ckpt, tmp_path) -> None:
    model, description, _ = export_model(probe_ckpt, tmp_path / "model.pt", "torchscript")
    assert json.loads(description.read_text())["format"] == "torchscript"
    loaded = torch.jit.load(str(model))
    contract = load_probe(probe_ckpt).contract
    windows = torch.randn(5, len(contract.channel_names), contract.settings.sensor_length)
    with torch.no_grad():
        torch.testing.assert_close(loaded(windows), eager_reference(probe_ckpt, windows), rtol=0, atol=TOLERANCE)
        torch.testing.assert_close(probe_graph(load_probe(probe_ckpt))(windows), eager_reference(probe_ckpt, windows))


def test_export_refuses_a_stage_checkpoint(probe_ckpt, tmp_path) -> None:
    checkpoint = torch.load(probe_ckpt, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "detach_pl.modules.TemporalAlignmentModule"
    torch.save(checkpoint, tmp_path / "stage2.ckpt")
    with pytest.raises(ValueError, match="stage-2"):
        export_model(tmp_path / "stage2.ckpt", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_export_checks_the_written_graph_on_its_runtime_and_keeps_torchs_notes_quiet(probe_ckpt, tmp_path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _, difference = export_model(probe_ckpt, tmp_path / "model.pt", "torchscript")
    assert 0.0 <= difference <= 1e-5
    notes = [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, torch.jit.TracerWarning))]
    assert notes == []
    # The check can fail: the same file against a model with other weights is far away.
    other = probe_graph(load_probe(probe_ckpt))
    with torch.no_grad():
        other.classifier[-1].weight.mul_(-1.0)
    example = torch.zeros(2, *json.loads((tmp_path / "model.json").read_text())["input"]["shape"][1:])
    assert exported_difference(other, model, "torchscript", example) > 0.01


def test_a_graph_outside_the_tolerance_is_not_written(probe_ckpt, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("detach_pl.deploy.export.EXPORT_TOLERANCE", 0.0)
    with pytest.raises(ValueError, match=r"the onnx graph for .*model\.onnx gives probabilities up to .* away from "
                                         r"the checkpoint's model on its runtime \(accepted: 0\); nothing was written"):
        export_model(probe_ckpt, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_the_cli_says_how_close_the_export_is(probe_ckpt, tmp_path, capsys) -> None:
    main(["export", "--ckpt_path", str(probe_ckpt), "--output", str(tmp_path / "model.pt")])
    printed = capsys.readouterr().out
    assert re.search(r"on torch\.jit\.load, 1 and 5 windows give the checkpoint's probabilities within \d\.\de-\d\d",
                     printed), printed


def test_export_of_a_file_that_is_no_checkpoint_names_it_and_writes_nothing(tmp_path) -> None:
    notes = tmp_path / "README.md"
    notes.write_text("# not weights\n")
    with pytest.raises(ValueError, match=r"^--ckpt_path .*README\.md \(14 bytes\) is not a readable checkpoint"):
        main(["export", "--ckpt_path", str(notes), "--output", str(tmp_path / "model.onnx")])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["README.md"]
