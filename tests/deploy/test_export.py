"""`detach export`: ONNX (checked with onnxruntime) and TorchScript give the eager probabilities."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from detach_pl.deploy.contract import CONTRACT_KEY, PreprocessingContract, load_probe
from detach_pl.deploy.export import export_model, probe_graph
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
    model, description = export_model(probe_ckpt, tmp_path / "model.pt", "torchscript")
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
