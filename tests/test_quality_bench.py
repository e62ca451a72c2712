"""benchmarks/bench_quality.py: step command lines, shared stages, and the --quick run end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks import bench_quality
from detach_pl.pipeline import run_detach
from helpers import REPO, TINY_DATA

CELL = re.compile(r"^\d\.\d{3} ± \d\.\d{3}$")


def table_cells(markdown: str, name: str) -> list[str]:
    """The cells of the first table line of row `name`."""
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def parse_step(args: list[str], folder: Path):
    """Build (without running) what a step's command line would train, its run folder in `folder`."""
    return run_detach([*args, "--run_dir", str(folder / "runs")], run=False)


def test_size_comes_before_overlays_and_seeds_reach_every_random_source(tmp_path) -> None:
    bench = bench_quality.Bench(REPO / "configs" / "demo", tmp_path, bench_quality.SIZES["demo-small"], [], False)
    args = bench.arguments(bench_quality.STAGE1_NO_REFINEMENT, 7, None)
    cli = parse_step(args, tmp_path)
    assert cli.model.hparams.refine_start_epoch == 1000000  # the overlay wins over the size
    assert cli.model.hparams.video_start_epoch == 3 and cli.trainer.max_epochs == 12  # the demo's
    assert cli.model.hparams.kmeans_seed == 7 and cli.datamodule.shuffle_seed == 7
    assert cli.datamodule.world.num_runs == 12 and cli.datamodule.num_workers == 0
    assert cli.datamodule.split("train_runs") == [f"run{i:02d}" for i in range(8)]  # the demo's
    assert cli.datamodule.split("test_runs") == [f"run{i:02d}" for i in range(9, 12)]
    assert cli.config["seed_everything"] == 7
    stage2 = bench_quality.stage2("stage2_no_spatial_weight")
    cli = parse_step(bench.arguments(stage2, 3, "/somewhere/last.ckpt"), tmp_path)
    assert cli.model.hparams.stage1_checkpoint == "/somewhere/last.ckpt"
    assert cli.model.hparams.use_spatial_weight is False and cli.trainer.max_epochs == 15
    probe = bench_quality.Step(("probe.yaml",), "probe")
    cli = parse_step(bench.arguments(probe, 3, None), tmp_path)
    assert cli.model.hparams.encoder_checkpoint is None and cli.trainer.max_epochs == 50


def test_default_size_runs_the_benchmark_configs_as_written_without_workers(tmp_path) -> None:
    bench = bench_quality.Bench(REPO / "configs" / "benchmark", tmp_path, bench_quality.SIZES["default"], [], False)
    cli = parse_step(bench.arguments(bench_quality.stage2(), 1, None), tmp_path)
    assert cli.trainer.max_epochs == 15 and cli.datamodule.num_workers == 0
    world = cli.datamodule.world
    assert world.num_runs == 12 and world.crosstalk > 0 and world.mounting_jitter > 0 and world.other_gesture_prob > 0
    assert cli.datamodule.split("train_runs") == [f"run{i:02d}" for i in range(8)]
    assert cli.datamodule.pretrain_windows == "labelled"
    variant = next(row for row in bench_quality.ROWS if row.key == "detach_all_windows")
    for step in variant.steps:
        assert parse_step(bench.arguments(step, 1, None), tmp_path).datamodule.pretrain_windows == "all"
    cli = parse_step(bench.arguments(bench_quality.Step(("baseline_global.yaml",), "baseline"), 1, None), tmp_path)
    assert cli.trainer.max_epochs == 12 + 15  # as many epochs as stage 1 + stage 2


def test_missing_configs_are_named_before_any_training(tmp_path) -> None:
    (tmp_path / "probe.yaml").write_text("{}")
    bench = bench_quality.Bench(tmp_path, tmp_path / "work", bench_quality.SIZES["quick"], [], False)
    with pytest.raises(FileNotFoundError, match=r"lacks .*ablations/stage1_no_refinement\.yaml.*stage1\.yaml.*--rows"):
        bench.check_configs(bench_quality.ROWS)
    bench.check_configs([row for row in bench_quality.ROWS if row.key == "floor"])


def test_every_row_config_exists_for_the_benchmark_and_for_the_demo() -> None:
    bench = bench_quality.Bench(REPO / "configs" / "benchmark", Path("unused"), bench_quality.SIZES["quick"], [], False)
    bench.check_configs(bench_quality.ROWS)
    assert len(set(bench_quality.ROW_KEYS)) == len(bench_quality.ROWS) == 11
    demo = bench_quality.rows_present(REPO / "configs" / "demo")
    assert [row.key for row in demo] == list(bench_quality.ROW_KEYS)
    assert bench_quality.parse_args([]).rows == list(bench_quality.ROW_KEYS)  # the harder kitchen by default


def test_paper_cells_parse_to_published_numbers() -> None:
    detach = next(row for row in bench_quality.ROWS if row.key == "detach")
    assert bench_quality.paper_value(detach.paper[0], "f1_weighted") == 0.73
    assert bench_quality.paper_value(detach.paper[0], "map") == 0.87
    assert bench_quality.paper_value("—", "map") is None
    assert bench_quality.mean_std([0.5, 0.7]) == pytest.approx((0.6, 0.1414213), abs=1e-6)
    assert bench_quality.mean_std([0.5]) == (0.5, 0.0)


def test_work_units_keep_rows_that_share_a_stage1_together() -> None:
    units = bench_quality.work_units(bench_quality.ROWS)
    keys = [[row.key for row in unit] for unit in units]
    assert keys[0] == ["detach", "no_spatial_weight", "no_temporal_weight", "refinement_plain", "cross_temporal"]
    assert keys[1] == ["no_refinement_plain", "no_refinement_weighted"]
    assert ["detach_all_windows"] in keys
    assert sorted(key for unit in keys for key in unit) == sorted(bench_quality.ROW_KEYS)
    for unit in units:  # no step is shared between two units
        others = {step for other in units if other is not unit for row in other for step in row.steps}
        assert not others & {step for row in unit for step in row.steps}


def test_free_machine_estimate_schedules_seeds_on_the_first_free_slot() -> None:
    minutes = [600.0, 600.0, 600.0]  # CPU seconds per seed
    assert bench_quality.free_machine_minutes(minutes, jobs=2, threads=1) == pytest.approx(20.0)
    assert bench_quality.free_machine_minutes(minutes, jobs=1, threads=2) == pytest.approx(15.0)
    assert bench_quality.free_machine_minutes([900.0, 300.0, 300.0], jobs=2, threads=1) == pytest.approx(15.0)


def run_bench(tmp_path: Path, *args: str) -> dict:
    return bench_quality.main(
        [
            "--quick", "--work-dir", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"),
            "--output", str(tmp_path / "quality.md"), *args, "--", *TINY_DATA,
            "--data.init_args.world.run_seconds", "80",  # the harder kitchen's longer gestures need it
        ]
    )


def test_quick_run_of_a_few_rows_shares_stage1_logs_diagnostics_and_resumes(tmp_path) -> None:
    rows = ("floor", "detach", "no_spatial_weight")
    summary = run_bench(tmp_path, "--rows", *rows)
    assert set(summary) == set(rows)
    markdown = (tmp_path / "quality.md").read_text()
    for row in bench_quality.ROWS:
        if row.key in rows:
            assert all(CELL.match(cell) for cell in table_cells(markdown, row.name)[1:5]), row.name
    assert (tmp_path / "quality.png").stat().st_size > 0
    seed = tmp_path / "work" / "seed1"
    assert sorted(path.name for path in seed.iterdir()) == ["probe", "stage1"]  # stage 1 ran once
    assert sorted(path.name for path in (seed / "stage1").iterdir() if path.is_dir()) == [
        "runs", "stage2", "stage2+stage2_no_spatial_weight",
    ]
    tags = event_tags(seed / "stage1")
    for tag in ("cluster/hungarian_accuracy", "cluster/nmi", "train/confident_share_epoch", "val/cluster_accuracy"):
        assert tag in tags["scalars"], tag
    stage2_tags = event_tags(seed / "stage1" / "stage2")
    assert "diag/sim/positive" in stage2_tags["scalars"]
    assert any(tag.startswith("diag/W_sp/") for tag in stage2_tags["histograms"])
    probe_folder = seed / "stage1" / "stage2" / "probe"
    assert "test/confusion_matrix" in event_tags(probe_folder)["images"]
    runs = json.loads((tmp_path / "quality.json").read_text())["runs"]
    # Resuming reuses every finished step and probe: same numbers, nothing retrained.
    mtime = (probe_folder / "probe.json").stat().st_mtime
    again = run_bench(tmp_path, "--rows", *rows, "--resume")
    assert again == summary and (probe_folder / "probe.json").stat().st_mtime == mtime
    assert json.loads((tmp_path / "quality.json").read_text())["runs"] == runs


def event_tags(folder: Path) -> dict[str, set[str]]:
    """Scalar, histogram and image tags of the TensorBoard events of one step folder's own runs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: dict[str, set[str]] = {"scalars": set(), "histograms": set(), "images": set()}
    for events in (folder / "runs").rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"histograms": 0, "scalars": 0, "images": 0})
        accumulator.Reload()
        available = accumulator.Tags()
        for kind in tags:
            tags[kind].update(available.get(kind, []))
    return tags


@pytest.mark.slow
def test_quick_run_of_every_row_writes_a_numeric_table(tmp_path) -> None:
    summary = run_bench(tmp_path, "--seeds", "1", "2", "--jobs", "2")  # subprocesses, as the default size
    assert set(summary) == set(bench_quality.ROW_KEYS)
    markdown = (tmp_path / "quality.md").read_text()
    for row in bench_quality.ROWS:
        cells = table_cells(markdown, row.name)
        assert all(CELL.match(cell) for cell in cells[1:5]), (row.name, cells)
        assert cells[5:7] == list(row.paper)
    assert "DETACH − global alignment, weighted F1" in markdown
    assert (tmp_path / "quality.png").stat().st_size > 0
    runs = json.loads((tmp_path / "quality.json").read_text())["runs"]
    assert all(len(runs[key]) == 2 for key in bench_quality.ROW_KEYS)
