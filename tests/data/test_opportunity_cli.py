"""`configs/opp/*` through the `detach` CLI in-process, on a stand-in release at CPU size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detach_pl.cli import main
from detach_pl.testing.opportunity import StandinRelease, write_standin_release
from helpers import DEMO, REPO

OPP = REPO / "configs" / "opp"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> StandinRelease:
    """Five 30 s runs (2 train, 1 val, 2 test)."""
    return write_standin_release(tmp_path_factory.mktemp("opp_cli") / "Opportunity++")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the module: every stage reads the same prepared cache."""
    return tmp_path_factory.mktemp("opp_cache")


def tiny(release: StandinRelease, cache_dir: Path) -> list[str]:
    """CPU-sized overrides: the stand-in's runs, 16-pixel frames, 4 frames, the demo encoders."""
    return [
        "--data.init_args.root", str(release.root),
        "--data.init_args.cache_dir", str(cache_dir),
        "--data.init_args.windows.image_size", "16",
        "--data.init_args.num_frames", "4",
        "--data.init_args.batch_size", "4",
        "--data.init_args.num_workers", "0",
        "--data.init_args.progress", "false",
        "--data.init_args.train_runs", '["S1-ADL1", "S1-Drill"]',
        "--data.init_args.val_runs", '["S2-ADL3"]',
        "--data.init_args.test_runs", '["S2-ADL4", "S3-ADL4"]',
        "--model.init_args.encoder", str(DEMO / "encoder.yaml"),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]


def test_print_config_shows_the_inherited_data_options_and_the_paper_settings(in_scratch, capsys, release) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(OPP / "stage1.yaml"), "--data.root", str(release.root), "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for text in (
        "OpportunityDataModule", f"root: {release.root}", "label_track: ML_Both_Arms",
        "skip_incomplete_runs: false", "batch_size: 64", "num_frames: 20", "image_size: 224",
        "window_seconds: 2.0", "hop_seconds: 1.0", "pretrain_windows: all", "max_epochs: 25",
        "video_start_epoch: 5", "refine_start_epoch: 15", "min_cluster_size: 100", "video_gate: 0.9",
        "video_backbone: plain_cnn", "embed_dim: 256", "accelerator: auto", "devices: auto",
    ):
        assert text in printed, text


def test_stage_configs_hold_the_paper_settings() -> None:
    import yaml

    stage2 = yaml.safe_load((OPP / "stage2.yaml").read_text())
    probe = yaml.safe_load((OPP / "probe.yaml").read_text())
    assert stage2["trainer"]["max_epochs"] == 50 and probe["trainer"]["max_epochs"] == 50
    assert stage2["model"]["init_args"]["lr"] == 1e-4 and stage2["model"]["init_args"]["weight_decay"] == 1e-4
    assert probe["model"]["init_args"]["lr"] == 1e-3
    assert probe["model"]["class_path"].endswith("LinearProbeModule")


def test_fast_dev_run_of_stage1(in_scratch, release, cache_dir) -> None:
    main(["fit", "--config", str(OPP / "stage1.yaml"), *tiny(release, cache_dir), "--trainer.fast_dev_run", "1"])
    assert len(list(cache_dir.glob("opportunity-*.h5"))) == 1


def test_checkpoint_chain_stage1_stage2_probe_then_test(in_scratch, release, cache_dir) -> None:
    """fast_dev_run of stage 2 and the probe, and each stage for two training and two validation
    batches to write the checkpoint the next stage starts from (fast_dev_run writes none).

    (`limit_*_batches 1` would parse as the float 1.0, i.e. the whole epoch.)
    """
    args = tiny(release, cache_dir)
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2"]
    main(["fit", "--config", str(OPP / "stage1.yaml"), *args, *short, "--model.init_args.min_cluster_size", "2"])
    assert (in_scratch / "runs/opp/stage1/checkpoints/last.ckpt").is_file()
    main(["fit", "--config", str(OPP / "stage2.yaml"), *args, "--trainer.fast_dev_run", "1"])
    main(["fit", "--config", str(OPP / "stage2.yaml"), *args, *short])
    assert (in_scratch / "runs/opp/stage2/checkpoints/last.ckpt").is_file()
    main(["fit", "--config", str(OPP / "probe.yaml"), *args, "--trainer.fast_dev_run", "1"])
    main(["fit", "--config", str(OPP / "probe.yaml"), *args, *short])
    probe_checkpoint = in_scratch / "runs/opp/probe/checkpoints/last.ckpt"
    assert probe_checkpoint.is_file()
    main(["test", "--config", str(OPP / "probe.yaml"), *args, "--ckpt_path", str(probe_checkpoint)])
    results = sorted(in_scratch.rglob("test_metrics.json"))
    assert len(results) == 1
    metrics = json.loads(results[0].read_text())
    assert 0.0 <= metrics["test/f1_weighted"] <= 1.0
    assert len(metrics["confusion_matrix"]) == 14
    assert sum(map(sum, metrics["confusion_matrix"])) > 0
    assert len(list(cache_dir.glob("opportunity-*.h5"))) == 1


def test_prepare_command_builds_the_cache_that_training_uses(in_scratch, release, tmp_path, capsys) -> None:
    cache = tmp_path / "prepared"
    args = ["--config", str(OPP / "stage1.yaml"), *tiny(release, cache)]
    assert main(["prepare", *args]) is None
    printed = capsys.readouterr().out
    built = list(cache.glob("opportunity-*.h5"))
    assert len(built) == 1 and str(built[0]) in printed and "S2-ADL3: 28 windows" in printed
    assert "rows per class: {" in printed and built[0].with_suffix(".report.json").is_file()
    training = main(args, run=False)
    assert training.datamodule.cache_path == built[0]
    assert main(["prepare", *args]) is None
    assert "cache already prepared" in capsys.readouterr().out
    with pytest.raises(ValueError, match="neither a data config .* nor a stage config"):
        main(["prepare", "--config", str(OPP / "encoder.yaml")])


def test_prepare_command_reads_the_data_config_alone(in_scratch, release, tmp_path, capsys) -> None:
    """`--config configs/opp/data.yaml` gives the cache the stage config gives (model and trainer
    options of a `fit` command line are ignored)."""
    cache = tmp_path / "prepared"
    main(["prepare", "--config", str(OPP / "data.yaml"), *tiny(release, cache)])
    built = list(cache.glob("opportunity-*.h5"))
    assert len(built) == 1 and "cache already prepared" not in capsys.readouterr().out
    main(["prepare", "--config", str(OPP / "stage1.yaml"), *tiny(release, cache)])
    assert "cache already prepared" in capsys.readouterr().out
    assert list(cache.glob("opportunity-*.h5")) == built
