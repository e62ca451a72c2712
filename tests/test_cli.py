"""The `detach` command in-process: every demo config, the checkpoint chain, and `test`."""

from __future__ import annotations

import importlib
import inspect
import json

import pytest
import yaml

from detach_pl.cli import DEFAULT_DATA, main, with_default_data
from helpers import DEMO, TINY_DATA


def run(*args: str) -> None:
    main([*args, *TINY_DATA])


def test_print_config_shows_model_data_and_trainer(in_scratch, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(DEMO / "stage1.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for key in ("SpatialGroundingModule", "refine_start_epoch", "SyntheticKitchenDataModule", "image_size",
                "max_epochs"):
        assert key in printed


@pytest.mark.parametrize("stage", ["stage1", "probe_random"])
def test_fast_dev_run_of_configs_that_need_no_checkpoint(in_scratch, stage) -> None:
    run("fit", "--config", str(DEMO / f"{stage}.yaml"), "--trainer.fast_dev_run", "1")


def test_checkpoint_chain_stage1_stage2_probe_test(in_scratch) -> None:
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2"]
    run("fit", "--config", str(DEMO / "stage1.yaml"), *short, "--model.init_args.min_cluster_size", "5")
    assert (in_scratch / "runs/demo/stage1/checkpoints/last.ckpt").is_file()
    run("fit", "--config", str(DEMO / "stage2.yaml"), "--trainer.fast_dev_run", "1")
    run("fit", "--config", str(DEMO / "stage2.yaml"), *short)
    assert (in_scratch / "runs/demo/stage2/checkpoints/last.ckpt").is_file()
    run("fit", "--config", str(DEMO / "probe.yaml"), *short)
    probe_ckpt = in_scratch / "runs/demo/probe/checkpoints/last.ckpt"
    run("test", "--config", str(DEMO / "probe.yaml"), "--ckpt_path", str(probe_ckpt))
    results = sorted((in_scratch / "runs/demo/probe").rglob("test_metrics.json"))
    assert len(results) == 1
    metrics = json.loads(results[0].read_text())
    for key in ("test/f1_weighted", "test/map", "test/accuracy", "test/f1_macro"):
        assert 0.0 <= metrics[key] <= 1.0
    matrix = metrics["confusion_matrix"]
    assert len(matrix) == 14 and sum(map(sum, matrix)) > 0
    assert (results[0].parent / "confusion_matrix.png").is_file()


def test_stage2_with_missing_checkpoint_names_the_setting_before_the_cache_is_built(in_scratch) -> None:
    missing = "stage1_checkpoint: checkpoint runs/demo/stage1/checkpoints/last.ckpt does not exist"
    with pytest.raises(FileNotFoundError, match=missing):
        run("fit", "--config", str(DEMO / "stage2.yaml"), "--trainer.fast_dev_run", "1")
    assert not (in_scratch / "data").exists()


@pytest.mark.parametrize(("config", "flag", "value", "error", "message"), [
    ("probe.yaml", "--model.init_args.encoder_checkpoint", "no/stage2.ckpt", FileNotFoundError,
     "model.init_args.encoder_checkpoint: checkpoint no/stage2.ckpt does not exist"),
    ("stage2.yaml", "--model.init_args.stage1_checkpoint", "null", ValueError,
     "model.init_args.stage1_checkpoint is not set"),
])
def test_a_missing_stage_checkpoint_fails_before_the_cache_is_built(in_scratch, config: str, flag: str, value: str,
                                                                     error: type[Exception], message: str) -> None:
    with pytest.raises(error) as raised:
        run("fit", "--config", str(DEMO / config), flag, value, "--trainer.fast_dev_run", "1")
    assert str(raised.value).startswith(message)
    assert not (in_scratch / "data").exists()


def test_logged_run_has_plain_hparams_no_hp_metric_and_a_learning_rate(in_scratch) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    run("fit", "--config", str(DEMO / "probe_random.yaml"), *short, "--trainer.log_every_n_steps", "1")
    (hparams,) = (in_scratch / "runs/demo/probe_random/tensorboard").rglob("hparams.yaml")
    saved = yaml.safe_load(hparams.read_text())
    assert saved["data_info"]["num_classes"] == 14 and isinstance(saved["encoder"], dict)
    events = EventAccumulator(str(hparams.parent))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert "hp_metric" not in scalars
    assert any(tag.startswith("lr-") for tag in scalars)


def own_defaults(class_path: str) -> dict[str, object]:
    """The plain defaults a class's constructor (and, through **kwargs, its parents') states."""
    module, _, name = class_path.rpartition(".")
    defaults: dict[str, object] = {}
    for klass in getattr(importlib.import_module(module), name).__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters.values()
        for parameter in parameters:
            plain = parameter.default is None or isinstance(parameter.default, (bool, int, float, str))
            if parameter.default is not parameter.empty and plain:
                defaults.setdefault(parameter.name, parameter.default)
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
            break
    return defaults


@pytest.mark.parametrize(("subcommand", "class_path", "required"), [
    ("predict", "detach_pl.deploy.data.CsvRecordings", {"root": "new"}),
    ("predict", "detach_pl.deploy.data.HwuRecordings", {"root": "new"}),
    ("predict", "detach_pl.deploy.data.OpportunityRecordings", {"root": "new"}),
    ("predict", "detach_pl.deploy.data.SyntheticRecordings", {}),
    ("fit", "detach_pl.data.csv_video.CsvVideoDataModule", {"root": "own", "num_places": 3}),
    ("fit", "detach_pl.data.hwu_usp.HwuUspDataModule", {"root": "hwu"}),
    ("fit", "detach_pl.data.opportunity.OpportunityDataModule", {"root": "opp"}),
], ids=lambda value: value.rpartition(".")[2] if isinstance(value, str) else None)
def test_a_data_class_a_config_names_gets_its_own_defaults(in_scratch, capsys, subcommand: str, class_path: str,
                                                           required: dict[str, object]) -> None:
    """Not the built-in synthetic kitchen's, which jsonargparse would hand on were it the parser's default."""
    model = "LinearProbeModule" if subcommand == "predict" else "SpatialGroundingModule"
    encoder = {"encoder": str(DEMO / "encoder.yaml")}
    config = {"model": {"class_path": f"detach_pl.modules.{model}", "init_args": encoder},
              "data": {"class_path": class_path, "init_args": required}}
    (in_scratch / "mine.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--config", "mine.yaml", "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)["data"]
    assert printed["class_path"] == class_path
    expected = {**own_defaults(class_path), **required}
    assert {name: printed["init_args"][name] for name in expected} == expected


def test_without_a_data_class_the_synthetic_kitchen_is_used(in_scratch, capsys) -> None:
    arguments = ["--model", "detach_pl.modules.SpatialGroundingModule", "--model.init_args.encoder",
                 str(DEMO / "encoder.yaml"), "--data.init_args.batch_size", "8", "--print_config"]
    with pytest.raises(SystemExit):
        main(["fit", *arguments])
    printed = yaml.safe_load(capsys.readouterr().out)["data"]
    assert printed["class_path"] == "detach_pl.data.synthetic.SyntheticKitchenDataModule"
    assert printed["init_args"]["batch_size"] == 8


def test_the_default_data_goes_after_the_subcommand_only_when_nothing_names_data(tmp_path) -> None:
    with_data = tmp_path / "with.yaml"
    with_data.write_text("data: data.yaml\n")
    without = tmp_path / "without.yaml"
    without.write_text("trainer: {max_epochs: 1}\n")
    subcommands = ["fit", "test"]
    for named in (["fit", "--config", str(with_data)], ["fit", f"--config={with_data}"], ["fit", "-c", str(with_data)],
                  ["fit", "--data", "x.yaml"], ["fit", "--data=x.yaml"]):
        assert with_default_data(named, subcommands) == named
    assert with_default_data(["fit", "--config", str(without), "--data.init_args.batch_size", "8"], subcommands) == [
        "fit", "--data", DEFAULT_DATA, "--config", str(without), "--data.init_args.batch_size", "8"]
    assert with_default_data(["--config", str(without)], None) == ["--data", DEFAULT_DATA, "--config", str(without)]
    assert with_default_data(["--help"], subcommands) == ["--help"]  # no subcommand: the parser answers
    assert with_default_data(["fit", "--config", str(tmp_path / "missing.yaml")], subcommands)[1:3] == [
        "--data", DEFAULT_DATA]  # an unreadable config is left to the parser, which names it
