"""`detach predict` on new recordings: the files it writes, and the same model input as training."""

from __future__ import annotations

import csv
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from detach_pl.cli import main
from detach_pl.data.synthetic import generate_run
from detach_pl.deploy.contract import load_probe
from detach_pl.deploy.data import SensorRecordingsDataModule, SyntheticRecordings
from detach_pl.deploy.events import merge_events
from detach_pl.deploy.export import probe_graph
from detach_pl.deploy.readers import world_of
from detach_pl.deploy.writer import csv_text, windows_csv_text
from helpers import REPO, tiny_datamodule

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
    with pytest.raises(ValueError, match=r"unknown SyntheticKitchenConfig field\(s\) \['colour'\]"):
        SyntheticRecordings(checkpoint=str(probe_ckpt), world={"colour": 1}).generator_settings()


def test_windows_csv_text_equals_a_csv_writer_row_per_window() -> None:
    """The one-format-per-row windows.csv is the text `csv.writer` gives row by row (quoted names too)."""
    rng = np.random.default_rng(0)
    names = ["idle", "open, door", 'say "hi"', "p"]
    probs = rng.dirichlet(np.ones(len(names)), size=50).astype(np.float32)
    probs[3] = [0.25, 0.25, 0.25, 0.25]  # a tie: the first class wins, as argmax says
    probs[5] = [0.1, 0.7, 0.1, 0.1]  # a predicted name holding a comma: quoted
    start_s = np.arange(50) * 1.0 + 1e-7
    end_s = start_s + 2.0
    header = ["start_s", "end_s", "predicted", "probability", *(f"p_{name}" for name in names)]
    rows = [[float(a), float(b), names[int(p.argmax())], float(p.max()), *map(float, p)]
            for a, b, p in zip(start_s, end_s, probs, strict=True)]
    assert windows_csv_text(start_s, end_s, probs, names) == csv_text(header, rows)
    assert windows_csv_text(start_s, end_s, probs, names).splitlines()[6].startswith('5.000000,7.000000,"open, door",')


@pytest.mark.parametrize(("config", "data_class"), [
    ("demo", None), ("opp", None), ("hwu", None), ("csv_video", None), ("opp", "detach_pl.deploy.data.CsvRecordings"),
])
def test_predict_configs_keep_their_own_batch_size(config: str, data_class: str | None, capsys) -> None:
    """The resolved data settings are the config's, also when `--data` names another reader as
    bench_predict does (jsonargparse hands the config's values on to it)."""
    path = REPO / "configs" / config / "predict.yaml"
    switch = [] if data_class is None else ["--data", data_class]
    with pytest.raises(SystemExit):
        main(["predict", "--config", str(path), *switch, "--print_config"])
    resolved = yaml.safe_load(capsys.readouterr().out)["data"]
    stated = yaml.safe_load(path.read_text())["data"]["init_args"]
    assert resolved["class_path"] == (data_class or yaml.safe_load(path.read_text())["data"]["class_path"])
    assert resolved["init_args"]["batch_size"] == stated["batch_size"]
    assert resolved["init_args"]["num_workers"] == stated["num_workers"] == 0
    if config != "hwu":  # windows per batch, the DataModule's default; HWU-USP's sequence probe batches trials
        assert stated["batch_size"] == inspect.signature(SensorRecordingsDataModule).parameters["batch_size"].default
