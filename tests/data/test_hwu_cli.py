"""configs/hwu through the `detach` CLI, and the all-folds runner, on a small HWU-USP stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from detach_pl.cli import main
from detach_pl.data.hwu_usp import HwuUspDataModule
from detach_pl.folds import main as folds_main
from detach_pl.folds import place_in_fold, resolve_config, summarize
from detach_pl.testing.hwu_usp import StandinRelease, write_standin
from helpers import DEMO, REPO

HWU = REPO / "configs" / "hwu"
CLASSES = "[cereals,tea]"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> StandinRelease:
    """4 subjects × 2 activities × 12 s: two leave-two-subjects-out folds."""
    root = tmp_path_factory.mktemp("hwu_cli") / "release"
    return write_standin(root, subjects=(1, 2, 3, 4), activities=("cereals", "tea"), seconds=12.0)


@pytest.fixture(scope="module")
def tiny(release: StandinRelease) -> list[str]:
    """Overrides that shrink every configs/hwu stage to CPU-test size."""
    return [
        "--data.init_args.root", str(release.root),
        "--data.init_args.cache_dir", str(release.root.parent / "cache"),
        "--data.init_args.classes", CLASSES,
        "--data.init_args.num_folds", "2",
        "--data.init_args.val_rule", "test_fold",
        "--data.init_args.windows.image_size", "16",
        "--data.init_args.num_frames", "4",
        "--data.init_args.batch_size", "8",
        "--data.init_args.trials_per_batch", "2",
        "--data.init_args.num_workers", "0",
        "--data.init_args.progress", "false",
        "--model.init_args.encoder", str(DEMO / "encoder.yaml"),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]


# `limit_val_batches 1` would parse as the float 1.0 (= all batches): use 0 or >= 2.
SHORT = [
    "--trainer.max_epochs", "1",
    "--trainer.limit_train_batches", "2",
    "--trainer.limit_val_batches", "0",
    "--trainer.num_sanity_val_steps", "0",
]


@pytest.fixture(scope="module")
def folds_result(release: StandinRelease, tiny: list[str]) -> tuple[dict, Path]:
    """Both folds, stage 1 → stage 2 → probe → test, through `python -m detach_pl.folds`."""
    out = release.root.parent / "folds"
    result = folds_main([
        "--stage1", str(HWU / "stage1.yaml"),
        "--stage2", str(HWU / "stage2.yaml"),
        "--probe", str(HWU / "probe.yaml"),
        "--out", str(out),
        "--stage1-args", "--model.init_args.min_cluster_size 2",
        *tiny,
        *SHORT,
        "--trainer.logger", "false",
    ])
    return result, out


def test_print_config_shows_dataset_and_inherited_options(
    in_scratch: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(HWU / "stage1.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    data = printed["data"]
    assert data["class_path"] == "detach_pl.data.hwu_usp.HwuUspDataModule"
    for inherited in ("cache_dir", "windows", "batch_size", "num_frames", "train_runs", "probe_unit"):
        assert inherited in data["init_args"], inherited
    assert data["init_args"]["num_folds"] == 8 and data["init_args"]["probe_unit"] == "sequence"
    assert len(data["init_args"]["classes"]) == 9 and len(data["init_args"]["channels"]) == 6
    model = printed["model"]["init_args"]
    assert (model["min_cluster_size"], model["video_gate"]) == (30, 0.99)
    assert (model["video_start_epoch"], model["refine_start_epoch"]) == (5, 15)
    assert printed["trainer"]["max_epochs"] == 25
    assert model["encoder"]["embed_dim"] == 256 and model["encoder"]["video_backbone"] == "plain_cnn"


def test_stage1_fast_dev_run(in_scratch: Path, tiny: list[str]) -> None:
    main(["fit", "--config", str(HWU / "stage1.yaml"), *tiny, "--trainer.fast_dev_run", "1"])


def test_all_folds_runner_reports_mean_and_std(
    folds_result: tuple[dict, Path], release: StandinRelease
) -> None:
    result, out = folds_result
    assert sorted(result["folds"]) == [1, 2]
    for fold, metrics in result["folds"].items():
        for key in ("f1_weighted", "map", "accuracy", "f1_macro"):
            assert 0.0 <= metrics[key] <= 1.0
        assert json.loads((out / f"fold{fold}" / "test_metrics.json").read_text()) == metrics
        for stage in ("stage1", "stage2", "probe"):
            config = yaml.safe_load((out / f"fold{fold}" / f"{stage}.yaml").read_text())
            assert config["data"]["init_args"]["fold"] == fold
            assert config["trainer"]["default_root_dir"] == str(out / f"fold{fold}" / stage)
            assert (out / f"fold{fold}" / stage / "checkpoints" / "last.ckpt").is_file()
        handovers = (("stage2", "stage1_checkpoint", "stage1"), ("probe", "encoder_checkpoint", "stage2"))
        for stage, setting, source in handovers:
            chained = yaml.safe_load((out / f"fold{fold}" / f"{stage}.yaml").read_text())["model"]["init_args"]
            assert chained[setting] == str(out / f"fold{fold}" / source / "checkpoints" / "last.ckpt")
    saved = json.loads((out / "summary.json").read_text())
    values = [result["folds"][fold]["f1_weighted"] for fold in (1, 2)]
    mean = sum(values) / 2
    assert saved["summary"]["f1_weighted"]["mean"] == pytest.approx(mean)
    assert saved["summary"]["f1_weighted"]["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    # each fold tested its own two subjects and trained on the others
    for fold in (1, 2):
        module = HwuUspDataModule(
            root=str(release.root), classes=["cereals", "tea"], fold=fold, num_folds=2, val_rule="test_fold"
        )
        subjects = {name: truth.subject for name, truth in release.trials.items()}
        tested = {subjects[name] for name in module.split("test_runs")}
        trained = {subjects[name] for name in module.split("train_runs")}
        assert tested == {2 * fold - 1, 2 * fold} and not tested & trained


def test_fold_config_writes_only_inside_its_run_folder(tmp_path: Path) -> None:
    resolved = {
        "trainer": {
            "default_root_dir": "runs/hwu/stage2",
            "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                       "init_args": {"save_dir": "runs/hwu/stage2", "name": "tensorboard"}},
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"dirpath": "runs/hwu/stage2/checkpoints", "save_last": True}},
                {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor", "init_args": {}},
            ],
        },
        "model": {"class_path": "detach_pl.modules.TemporalAlignmentModule",
                  "init_args": {"stage1_checkpoint": "runs/hwu/stage1/checkpoints/last.ckpt"}},
        "data": {"class_path": "detach_pl.data.hwu_usp.HwuUspDataModule", "init_args": {"fold": 1}},
    }
    run_dir = tmp_path / "fold3" / "stage2"
    placed = place_in_fold(resolved, 3, run_dir, ("stage1_checkpoint", tmp_path / "s1.ckpt"))
    assert placed["data"]["init_args"]["fold"] == 3
    assert placed["trainer"]["default_root_dir"] == str(run_dir)
    assert placed["trainer"]["logger"]["init_args"]["save_dir"] == str(run_dir)
    checkpoint_args = placed["trainer"]["callbacks"][0]["init_args"]
    assert checkpoint_args == {"dirpath": str(run_dir / "checkpoints"), "save_last": True}
    assert placed["trainer"]["callbacks"][1]["init_args"] == {}
    assert placed["model"]["init_args"]["stage1_checkpoint"] == str(tmp_path / "s1.ckpt")
    assert resolved["data"]["init_args"]["fold"] == 1  # the resolved config is not modified
    del resolved["data"]["init_args"]["fold"]
    with pytest.raises(ValueError, match="has no 'fold' setting"):
        place_in_fold(resolved, 1, tmp_path)


def test_runner_reports_an_invalid_configuration() -> None:
    expected = r"configs/hwu/stage1\.yaml .* is invalid: data.init_args.fold='first': HwuUspDataModule expects an "
    expected += "integer$"
    with pytest.raises(ValueError, match=expected):
        resolve_config("fit", str(HWU / "stage1.yaml"), ["--data.init_args.fold", "first"])


def test_summary_of_one_fold_has_no_std() -> None:
    summary = summarize({3: {"f1_weighted": 0.5, "map": 0.25}})
    assert summary["f1_weighted"] == {"mean": 0.5, "std": None, "folds": 1, "values": [0.5]}
    assert "accuracy" not in summary


def test_stage2_and_probe_fast_dev_run_from_fold_checkpoints(
    in_scratch: Path, folds_result: tuple[dict, Path], tiny: list[str]
) -> None:
    _, out = folds_result
    stage1 = out / "fold1" / "stage1" / "checkpoints" / "last.ckpt"
    stage2 = out / "fold1" / "stage2" / "checkpoints" / "last.ckpt"
    main(["fit", "--config", str(HWU / "stage2.yaml"), *tiny, "--trainer.fast_dev_run", "1",
          "--model.init_args.stage1_checkpoint", str(stage1)])
    main(["fit", "--config", str(HWU / "probe.yaml"), *tiny, "--trainer.fast_dev_run", "1",
          "--model.init_args.encoder_checkpoint", str(stage2)])


def test_runner_resume_reuses_finished_folds(folds_result: tuple[dict, Path], tiny: list[str]) -> None:
    result, out = folds_result
    again = folds_main([
        "--stage1", str(HWU / "stage1.yaml"), "--stage2", str(HWU / "stage2.yaml"),
        "--probe", str(HWU / "probe.yaml"), "--out", str(out), "--resume", "--folds", "2", *tiny, *SHORT,
    ])
    assert again["folds"] == {2: result["folds"][2]}
