"""`detach predict` on new recordings: the files it writes, and the same model input as training."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from helpers import DEMO, tiny_datamodule

from detach_pl.cli import main
from detach_pl.deploy.contract import load_probe
from detach_pl.data.synthetic import generate_run
from detach_pl.deploy.data import SyntheticRecordings
from detach_pl.deploy.readers import world_of
from detach_pl.deploy.events import merge_events
from detach_pl.deploy.export import probe_graph

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def predict(config: Path, ckpt: Path, *extra: str) -> None:
    main(["predict", "--config", str(config), "--ckpt_path", str(ckpt), *QUIET, *extra])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_windows_events_and_timeline_without_cache_or_training_data(probe_ckpt, predicted) -> None:
    out = predicted  # run in a folder without data/cache: only the checkpoint
    assert not (out.parents[2] / "data").exists()
    rows = read_csv(out / "run02.windows.csv")
    loaded = load_probe(probe_ckpt)
    names = loaded.contract.class_names
    time_ms = generate_run(world_of(loaded.contract.extra["source"]), 2).time_ms
    assert len(rows) == int((time_ms[-1] - time_ms[0] - 2000.0) // 1000.0) + 1  # 2-s windows every 1 s
    starts = np.array([float(r["start_s"]) for r in rows])
    np.testing.assert_allclose(np.diff(starts), 1.0, atol=1e-6)
    probs = np.array([[float(r[f"p_{name}"]) for name in names] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert [r["predicted"] for r in rows] == [names[k] for k in probs.argmax(1)]
    events = read_csv(out / "run02.events.csv")
    expected = merge_events(starts, starts + 2.0, probs)
    assert [e["label"] for e in events] == [names[e.label] for e in expected]
    np.testing.assert_allclose([float(e["end_s"]) for e in events], [e.end_s for e in expected], atol=1e-6)
    png = (out / "run02.timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_predicted_input_and_probabilities_equal_the_datamodules_test_windows(probe_ckpt, trained) -> None:
    """The deployed path (raw rows → contract preprocessing) gives the cached test windows' input."""
    cached = tiny_datamodule(trained / "data/cache", train_runs=["run00"], val_runs=["run01"],
                             test_runs=["run02"], purpose="alignment")
    cached.setup("test")
    test = cached.datasets["test"]
    cached_start = cached.cache.start_ms[test.windows]
    deployed = SyntheticRecordings(checkpoint=str(probe_ckpt), recordings=["run02"])
    deployed.setup("predict")
    (recording,) = deployed.prepared
    position = np.searchsorted(recording.windows.start_ms, cached_start)
    np.testing.assert_array_equal(recording.windows.start_ms[position], cached_start)
    assert len(cached_start) >= 0.9 * len(recording.windows.start_ms)
    # Same model input to float32 rounding (the same F(x), F(z) and standardisation).
    np.testing.assert_allclose(recording.windows.sensor[position], test.sensor.numpy(), rtol=0, atol=1e-5)
    graph = probe_graph(load_probe(probe_ckpt))
    with torch.no_grad():
        ours = graph(torch.from_numpy(recording.windows.sensor[position]))
        theirs = graph(test.sensor)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(recording.windows.label[position], cached.cache.label[test.windows])


def test_synthetic_world_overrides_replace_the_checkpoints_fields(probe_ckpt) -> None:
    data = SyntheticRecordings(checkpoint=str(probe_ckpt), world={"seed": 7})
    world = data.generator_settings()
    assert world.seed == 7 and world.run_seconds == data.source["run_seconds"] == 50.0
    import pytest

    with pytest.raises(ValueError, match=r"unknown SyntheticKitchenConfig field\(s\) \['colour'\]"):
        SyntheticRecordings(checkpoint=str(probe_ckpt), world={"colour": 1}).generator_settings()
