"""benchmarks/bench_labels.py: every row of the table probed on k labelled runs, end to end at a tiny size."""

from __future__ import annotations

import json
import math
import re

import pytest

from benchmarks import bench_labels
from detach_pl.pipeline.table import ROWS
from helpers import REPO, TINY_DATA

# Four short runs: two train (so k = 1 and all = 2), one validation, one test; one batch per step.
TINY = [
    *TINY_DATA,
    "--data.init_args.world.num_runs", "4", "--data.init_args.world.run_seconds", "80",
    "--data.init_args.train_runs", "[run00,run01]", "--data.init_args.val_runs", "[run02]",
    "--data.init_args.test_runs", "[run03]",
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
]
CELL = re.compile(r"^\d\.\d{3} ± \d\.\d{3}$")


def test_run_choices_are_seeded_subsets_of_each_size_then_all_runs() -> None:
    runs = [f"run{i:02d}" for i in range(6)]
    choices = bench_labels.run_choices(runs, [2, 1, 9], draws=3, seed=5)
    assert [count for count, _ in choices] == [1, 1, 1, 2, 2, 2, 6]  # 9 > 6 runs: only "all"
    assert all(len(chosen) == count == len(set(chosen)) and set(chosen) <= set(runs) for count, chosen in choices)
    assert choices[-1][1] == runs
    assert choices == bench_labels.run_choices(runs, [1, 2], draws=3, seed=5)
    assert choices != bench_labels.run_choices(runs, [1, 2], draws=3, seed=6)


@pytest.mark.slow  # about 40 in-process steps and probes: 5 CPU minutes; run by `make test-slow`
def test_every_row_on_one_labelled_run_and_on_all(tmp_path) -> None:
    output = tmp_path / "labels.md"
    results = bench_labels.main(
        ["--quick", "--config-dir", str(REPO / "configs" / "benchmark"), "--work-dir", str(tmp_path / "work"),
         "--cache-dir", str(tmp_path / "cache"), "--output", str(output), "--", *TINY]
    )
    assert set(results) == {row.key for row in ROWS}  # every row, the all-windows variant included
    for key, per_count in results.items():
        assert sorted(per_count) == [1, 2], key
        for runs in per_count.values():
            assert len(runs) == 1 and all(0.0 <= runs[0][m] <= 1.0 and math.isfinite(runs[0][m])
                                          for m in ("f1_weighted", "map", "accuracy")), key
    saved = json.loads(output.with_suffix(".json").read_text())
    assert [count for count, _ in saved["choices"]["1"]] == [1, 2]
    one_run = saved["choices"]["1"][0][1]
    work = tmp_path / "work"
    # The supervised ceiling trained on the probe's single labelled run, not on both training runs.
    config = next((work / "choice0" / "seed1" / "supervised").rglob("config.yaml")).read_text()
    assert re.search(rf"probe_train_runs:\s*\n\s*- {one_run[0]}\s*\n\s*[a-z]", config), config
    markdown = output.read_text()
    for row in ROWS:
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {row.name} |"))
        cells = [cell.strip() for cell in line.strip("|").split("|")][1:]
        assert len(cells) == 2 and all(CELL.match(cell) for cell in cells), (row.name, cells)
    assert output.with_suffix(".png").stat().st_size > 0
