"""configs/csv_video through the `detach` CLI: own recordings → stage 1 → stage 2 → probe → test → predict."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from detach_pl.cli import main
from detach_pl.data.synthetic import SyntheticKitchenConfig
from detach_pl.testing.csv_video import write_csv_video_runs
from helpers import DEMO, REPO

OWN = REPO / "configs" / "csv_video"
SHORT = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
         "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "1"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own_cli") / "recordings"
    write_csv_video_runs(root, SyntheticKitchenConfig(num_runs=3, run_seconds=50.0, image_size=16))
    return root


def tiny(recordings: Path) -> list[str]:
    return [
        "--data.init_args.root", str(recordings), "--data.init_args.num_places", "7",
        "--data.init_args.time_unit", "ms", "--data.init_args.cache_dir", str(recordings.parent / "cache"),
        "--data.init_args.windows.image_size", "16", "--data.init_args.num_frames", "4",
        "--data.init_args.batch_size", "8", "--data.init_args.num_workers", "0", "--data.init_args.progress", "false",
        "--model.init_args.encoder", str(DEMO / "encoder.yaml"),
    ]


def test_own_recordings_train_every_stage_and_predict_from_their_csvs_alone(in_scratch: Path,
                                                                            recordings: Path) -> None:
    data = tiny(recordings)
    main(["fit", "--config", str(OWN / "stage1.yaml"), *data, *SHORT, "--model.init_args.min_cluster_size", "2",
          "--model.init_args.video_start_epoch", "1", "--model.init_args.refine_start_epoch", "1"])
    main(["fit", "--config", str(OWN / "stage2.yaml"), *data, *SHORT])
    main(["fit", "--config", str(OWN / "probe.yaml"), *data, *SHORT])
    probe = in_scratch / "runs/csv_video/probe/checkpoints/last.ckpt"
    main(["test", "--config", str(OWN / "probe.yaml"), *data, "--ckpt_path", str(probe),
          "--trainer.enable_progress_bar", "false"])
    (metrics,) = (in_scratch / "runs/csv_video/probe").rglob("test_metrics.json")
    assert 0.0 <= json.loads(metrics.read_text())["test/f1_weighted"] <= 1.0
    # The sensor CSVs alone, without their videos, through configs/csv_video/predict.yaml.
    sensors_only = in_scratch / "new"
    sensors_only.mkdir()
    (sensors_only / "run02.csv").write_bytes((recordings / "run02.csv").read_bytes())
    main(["predict", "--config", str(OWN / "predict.yaml"), "--ckpt_path", str(probe),
          "--data.root", str(sensors_only), "--data.time_unit", "ms", "--trainer.enable_progress_bar", "false"])
    with (in_scratch / "runs/csv_video/predict/run02.windows.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) > 30
    classes = [name[2:] for name in rows[0] if name.startswith("p_")]
    probabilities = np.array([[float(row[f"p_{name}"]) for name in classes] for row in rows])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert {row["predicted"] for row in rows} <= set(classes)
    # A sequence probe on the same stage-2 encoders: one prediction per run, each run's class configured.
    whole_runs = [*data, "--data.init_args.probe_unit", "sequence",
                  "--data.init_args.run_classes", "{run00: Breakfast, run01: Cleaning, run02: Breakfast}"]
    main(["fit", "--config", str(OWN / "probe.yaml"), *whole_runs, *SHORT, "--run_dir", "runs/csv_video/sequence"])
    sequence_probe = in_scratch / "runs/csv_video/sequence/checkpoints/last.ckpt"
    main(["predict", "--config", str(OWN / "predict.yaml"), "--ckpt_path", str(sequence_probe),
          "--data.root", str(sensors_only), "--data.time_unit", "ms", "--data.run_classes", "{run02: Breakfast}",
          "--trainer.enable_progress_bar", "false", "--trainer.callbacks.output_dir", "runs/csv_video/sequence/pred"])
    with (in_scratch / "runs/csv_video/sequence/pred/predictions.csv").open() as file:
        (row,) = list(csv.DictReader(file))
    assert row["recording"] == "run02" and row["truth"] == "Breakfast"
    assert {"p_Breakfast", "p_Cleaning"} <= set(row) and row["predicted"] in classes + ["Breakfast", "Cleaning"]


def test_the_config_asks_for_the_number_of_places(in_scratch: Path, recordings: Path) -> None:
    with pytest.raises(ValueError, match=r"^data.init_args.num_places=None must be >= 1: how many instrumented"):
        main(["fit", "--config", str(OWN / "stage1.yaml"), "--data.init_args.root", str(recordings)])
    assert not (in_scratch / "runs").exists()
