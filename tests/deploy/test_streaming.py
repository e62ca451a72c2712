"""Streaming: random-sized chunks give exactly the windows and probabilities of `detach predict`."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from detach_pl.data.synthetic import generate_run
from detach_pl.deploy import StreamingRecognizer
from detach_pl.deploy.contract import load_probe
from detach_pl.deploy.data import SyntheticRecordings
from detach_pl.deploy.export import probe_graph
from detach_pl.deploy.readers import world_of


def recording(probe_ckpt):
    contract = load_probe(probe_ckpt).contract
    return generate_run(world_of(contract.extra["source"]), 2), contract


def push_in_chunks(recognizer, time_ms, sensor, seed: int):
    """Push the rows in chunks of 1 to 200 rows; concatenate what comes back."""
    rng = np.random.default_rng(seed)
    starts, probs, position = [], [], 0
    while position < time_ms.size:
        size = int(rng.integers(1, 200))
        out = recognizer.push(time_ms[position : position + size], sensor[position : position + size])
        starts.append(out.start_ms)
        probs.append(out.probs)
        position += size
    return np.concatenate(starts), np.concatenate(probs)


def test_random_chunks_give_the_windows_and_probabilities_of_detach_predict(probe_ckpt, predicted) -> None:
    run, contract = recording(probe_ckpt)
    start_ms, probs = push_in_chunks(StreamingRecognizer.from_checkpoint(probe_ckpt), run.time_ms, run.sensor, 0)
    with (predicted / "run02.windows.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    np.testing.assert_array_equal(np.round(start_ms / 1000.0, 6), [float(r["start_s"]) for r in rows])
    written = np.array([[float(r[f"p_{name}"]) for name in contract.class_names] for r in rows])
    np.testing.assert_allclose(probs, written, rtol=0, atol=6e-7)  # the CSV's 6 decimals
    deployed = SyntheticRecordings(checkpoint=str(probe_ckpt), recordings=["run02"])
    deployed.setup("predict")
    (prepared,) = deployed.prepared
    np.testing.assert_array_equal(start_ms, prepared.windows.start_ms)  # the same windows, exactly
    graph_probs = probe_graph(load_probe(probe_ckpt))
    import torch

    with torch.no_grad():
        reference = graph_probs(torch.from_numpy(prepared.windows.sensor)).numpy()
    np.testing.assert_allclose(probs, reference, rtol=0, atol=1e-6)  # batch-size rounding only


def written_windows(predicted, class_names):
    """Window starts (ms) and probabilities of `detach predict`'s run02.windows.csv."""
    with (predicted / "run02.windows.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    starts = np.array([1000.0 * float(r["start_s"]) for r in rows])
    return starts, np.array([[float(r[f"p_{name}"]) for name in class_names] for r in rows])


def test_streaming_on_the_exported_onnx_model_and_named_channels(probe_ckpt, exported, predicted) -> None:
    run, contract = recording(probe_ckpt)
    eager_start, eager_probs = written_windows(predicted, contract.class_names)
    order = np.random.default_rng(3).permutation(len(contract.channel_names))
    names = [contract.channel_names[i] for i in order]
    onnx = StreamingRecognizer.from_export(exported, channel_names=names)
    start_ms, probs = push_in_chunks(onnx, run.time_ms, run.sensor[:, order], 4)
    np.testing.assert_allclose(start_ms, eager_start, rtol=0, atol=1e-3)  # the CSV's 6 decimals of s
    np.testing.assert_allclose(probs, eager_probs, rtol=0, atol=1.1e-5)  # ONNX 1e-5 + CSV rounding
    assert onnx.push(run.time_ms[:0], run.sensor[:0]).probs.shape == (0, len(contract.class_names))


def test_streaming_refuses_backwards_time_bad_shapes_and_another_rate(probe_ckpt) -> None:
    run, _ = recording(probe_ckpt)
    recognizer = StreamingRecognizer.from_checkpoint(probe_ckpt)
    recognizer.push(run.time_ms[:10], run.sensor[:10])
    with pytest.raises(ValueError, match="strictly increasing, also across pushes"):
        recognizer.push(run.time_ms[5:8], run.sensor[5:8])
    with pytest.raises(ValueError, match="samples of shape"):
        recognizer.push(run.time_ms[10:12], run.sensor[10:12, :3])
    slow = StreamingRecognizer.from_checkpoint(probe_ckpt)
    with pytest.raises(ValueError, match=r"arrive at 15\.\d+ Hz, the model was trained at 30\.\d+ Hz"):
        slow.push(run.time_ms * 2.0, run.sensor)


def test_an_export_without_its_model_or_with_a_foreign_json_is_named(exported, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^model .*gone\.onnx: no such exported model"):
        StreamingRecognizer.from_export(tmp_path / "gone.onnx")
    with pytest.raises(FileNotFoundError, match=r"^description .*gone\.json: no such model\.json"):
        StreamingRecognizer.from_export(exported, tmp_path / "gone.json")
    cut = tmp_path / "cut.json"
    cut.write_text(exported.with_suffix(".json").read_text()[:40])
    with pytest.raises(ValueError, match=r"^description .*cut\.json is not a model\.json written by detach export: "
                                         r".*line \d+ column \d+"):
        StreamingRecognizer.from_export(exported, cut)
    other = tmp_path / "other.json"
    other.write_text('{"format": "onnx"}')
    with pytest.raises(ValueError, match=r"other\.json: no 'preprocessing_contract' entry"):
        StreamingRecognizer.from_export(exported, other)
