"""benchmarks/bench_labels.py: probes on fewer labelled runs, DETACH's encoders beside random ones."""

from __future__ import annotations

import importlib.util
import json
import sys

from helpers import DEMO, REPO, TINY_DATA

from detach_pl.cli import main as detach_main

SPEC = importlib.util.spec_from_file_location("bench_labels", REPO / "benchmarks" / "bench_labels.py")
bench_labels = importlib.util.module_from_spec(SPEC)
sys.modules["bench_labels"] = bench_labels
SPEC.loader.exec_module(bench_labels)

TWO_TRAINING_RUNS = [*TINY_DATA, "--data.init_args.train_runs", "[run00,run01]"]


def test_run_choices_are_seeded_subsets_of_each_size_then_all_runs() -> None:
    runs = [f"run{i:02d}" for i in range(6)]
    choices = bench_labels.run_choices(runs, [2, 1, 9], draws=3, seed=5)
    assert [count for count, _ in choices] == [1, 1, 1, 2, 2, 2, 6]  # 9 > 6 runs: only "all"
    assert all(len(chosen) == count == len(set(chosen)) and set(chosen) <= set(runs) for count, chosen in choices)
    assert choices[-1][1] == runs
    assert choices == bench_labels.run_choices(runs, [1, 2], draws=3, seed=5)
    assert choices != bench_labels.run_choices(runs, [1, 2], draws=3, seed=6)


def test_probes_on_one_labelled_run_and_on_all(tmp_path, monkeypatch) -> None:
    cache = ["--data.init_args.cache_dir", str(tmp_path / "cache")]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    detach_main(["fit", "--config", str(DEMO / "supervised.yaml"), *TWO_TRAINING_RUNS, *cache,
                 "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"])
    checkpoint = tmp_path / "runs" / "demo" / "supervised" / "checkpoints" / "last.ckpt"  # trained sensor encoders
    output = tmp_path / "labels.md"
    bench_labels.main(["--checkpoint", str(checkpoint), "--labelled-runs", "1", "--draws", "1",
                       "--work-dir", str(tmp_path / "work"), "--output", str(output),
                       "--", *TWO_TRAINING_RUNS, *cache, "--trainer.max_epochs", "1"])
    saved = json.loads(output.with_suffix(".json").read_text())
    assert [count for count, _ in saved["choices"]] == [1, 2]
    for encoders in ("DETACH", "floor"):
        one, both = saved["runs"][encoders]["1"][0], saved["runs"][encoders]["2"][0]
        assert 0 < one["windows"] < both["windows"]  # one run's labelled windows, then both runs'
        assert all(0.0 <= run[key] <= 1.0 for run in (one, both) for key in ("f1_weighted", "map", "accuracy"))
    assert saved["runs"]["DETACH"]["2"][0] != saved["runs"]["floor"]["2"][0]  # two different encoders
    lines = output.read_text().splitlines()
    assert any(line.startswith("| 1 | ") for line in lines) and any(line.startswith("| 2 | ") for line in lines)
