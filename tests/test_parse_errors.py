"""A misspelt or mistyped setting is answered in one line that names it, instead of jsonargparse's union dump."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from detach_pl import cli
from detach_pl.cli import main
from detach_pl.data.csv_video import CsvVideoDataModule
from detach_pl.parse_errors import (
    PlainErrorParser,
    SettingError,
    close_names,
    init_settings,
    plain_parse_error,
    yaml_error_text,
)
from detach_pl.pipeline.stages import StageFailed, run_stage
from helpers import DEMO

STAGE1 = ["fit", "--config", str(DEMO / "stage1.yaml")]

CASES = [
    (["--model.init_args.temprature", "0.1"],
     "model.init_args.temprature: SpatialGroundingModule has no setting 'temprature' (did you mean "
     "'prototype_temperature'?); `--model.help SpatialGroundingModule` lists them"),
    (["--model.init_args.video_gate", "high"],
     "model.init_args.video_gate='high': SpatialGroundingModule expects a number"),
    (["--data.init_args.batch_size", "abc"],
     "data.init_args.batch_size='abc': SyntheticKitchenDataModule expects an integer"),
    (["--data.init_args.probe_unit", "sequnce"],
     "data.init_args.probe_unit='sequnce': SyntheticKitchenDataModule expects one of 'window', 'sequence'"),
    (["--data.init_args.windows.image_sze", "4"],
     "data.init_args.windows.image_sze: WindowSettings (windows) has no setting 'image_sze' (did you mean "
     "'image_size'?); `--data.help SyntheticKitchenDataModule` lists them"),
    (["--data.init_args.world.sensor_nose", "1"],
     "data.init_args.world.sensor_nose: SyntheticKitchenConfig (world) has no setting 'sensor_nose' (did you mean "
     "'sensor_noise'?); `--data.help SyntheticKitchenDataModule` lists them"),
    (["--model.init_args.encoder.sensor.hidden", "3"],
     "model.init_args.encoder.sensor.hidden: EncoderConfig (encoder) has no setting 'sensor' (the settings starting "
     "with sensor_: sensor_spatial_style, sensor_spatial_channels, sensor_spatial_pool, sensor_spatial_groups, "
     "sensor_temporal_style, sensor_temporal_channels, sensor_temporal_dilations, sensor_temporal_groups); "
     "`--model.help SpatialGroundingModule` lists them"),
    (["--trainer.max_epochs", "many"], "trainer.max_epochs='many': expected null or an integer"),
    (["--model", "NoSuchModule"],
     "model='NoSuchModule' names no class: give a class name as configs/ do (e.g. SpatialGroundingModule, "
     "SyntheticKitchenDataModule) or its dotted import path"),
]


@pytest.mark.parametrize(("arguments", "message"), CASES, ids=[arguments[0] for arguments, _ in CASES])
def test_a_bad_setting_is_one_plain_line(in_scratch: Path, arguments: list[str], message: str) -> None:
    with pytest.raises(SettingError) as error:
        main([*STAGE1, *arguments])
    assert str(error.value) == message
    assert not (in_scratch / "runs").exists() and not (in_scratch / "data").exists()


def test_an_unknown_option_is_named_with_the_nearest_ones(in_scratch: Path) -> None:
    with pytest.raises(SettingError) as error:
        main([*STAGE1, "--trainer.max_epochx", "3", "--run_dri", "x", "--bogus=1"])
    assert re.fullmatch(
        r"unknown option\(s\) --trainer.max_epochx \(did you mean '--trainer.max_epochs' or "
        r"'--trainer.min_epochs'\?\); --run_dri \(did you mean '--run_dir'\?\); --bogus; "
        r"`\S+ fit --help` lists every option",
        str(error.value),
    ), str(error.value)


def test_a_misspelt_key_in_a_config_file_is_named(in_scratch: Path) -> None:
    (in_scratch / "mine.yaml").write_text("model:\n  init_args:\n    refine_start_epch: 3\n")
    with pytest.raises(SettingError, match=r"^model.init_args.refine_start_epch: SpatialGroundingModule has no "
                                           r"setting 'refine_start_epch' \(did you mean 'refine_start_epoch'\?\)"):
        main([*STAGE1, "--config", "mine.yaml"])


def test_a_yaml_error_is_named_by_the_line_and_column_where_the_parser_stopped() -> None:
    """Against PyYAML's own mark (0-based) and its words for the problem."""
    for text in ("a: [1, 2\n", "a:\n\tb: 1\n", "a: 1\n b: 2\n", "{a: 1\n"):
        with pytest.raises(yaml.MarkedYAMLError) as reference:
            yaml.safe_load(text)
        mark = reference.value.problem_mark
        described = yaml_error_text(reference.value)
        assert described.startswith(f"line {mark.line + 1}, column {mark.column + 1}: {reference.value.problem}")


def test_a_config_file_that_is_missing_a_folder_or_not_yaml_is_named(in_scratch: Path) -> None:
    (in_scratch / "cut.yaml").write_text("model:\n  class_path: SpatialGroundingModule\n  init_args: [1, 2\n")
    (in_scratch / "tabs.yaml").write_text("trainer:\n\tmax_epochs: 2\n")
    (in_scratch / "binary.yaml").write_bytes(b"\xff\xfe\x00weights")
    (in_scratch / "folder").mkdir()
    cases = [
        ("cut.yaml", r"--config cut\.yaml is not valid YAML: line 4, column 1: expected ',' or '\]', but got "
                     r"'<stream end>' \(parsing a flow sequence started at line 3, column 14\)"),
        ("tabs.yaml", r"--config tabs\.yaml is not valid YAML: line 2, column 1: found character '\\t' that cannot "
                      r"start any token"),
        ("binary.yaml", r"--config binary\.yaml is not a config file \(not UTF-8 text: invalid start byte\)"),
        ("folder", r"--config \S*folder is a folder, not a config file"),
        ("missing.yaml", r"--config \S*missing\.yaml: no such config file"),
    ]
    for name, message in cases:
        with pytest.raises(SettingError, match=f"^{message}$"):
            main([*STAGE1, "--config", name])
    with pytest.raises(SettingError, match=r"^--config tabs\.yaml is not valid YAML: line 2, column 1"):
        main(["fit", "--config=tabs.yaml"])
    assert not (in_scratch / "runs").exists()


def test_a_config_file_named_inside_a_config_or_as_a_setting_is_named(in_scratch: Path) -> None:
    (in_scratch / "cut_data.yaml").write_text("class_path: SyntheticKitchenDataModule\ninit_args: {batch_size: 4\n")
    (in_scratch / "uses_cut.yaml").write_text("data: cut_data.yaml\n")
    (in_scratch / "uses_missing.yaml").write_text("data: no_data.yaml\n")
    relative = r" \(a file named in a config is relative to that config's folder, one on the command line to the "
    relative += r"working directory\)$"
    with pytest.raises(SettingError, match=r"^data cut_data\.yaml is not valid YAML: line 3, column 1: expected ','"):
        main([*STAGE1, "--config", "uses_cut.yaml"])
    with pytest.raises(SettingError, match=r"^data no_data\.yaml: no such config file" + relative):
        main([*STAGE1, "--config", "uses_missing.yaml"])
    with pytest.raises(SettingError, match=r"^data other\.yaml: no such config file" + relative):
        main([*STAGE1, "--data", "other.yaml"])
    with pytest.raises(SettingError, match=r"^model\.init_args\.encoder cut_data\.yaml is not valid YAML: line 3"):
        main([*STAGE1, "--model.init_args.encoder", "cut_data.yaml"])
    with pytest.raises(SettingError, match=r"^model\.init_args\.encoder \S*/no_encoder\.yaml: no such config file$"):
        main([*STAGE1, "--model.init_args.encoder", str(in_scratch / "no_encoder.yaml")])


def test_a_command_without_a_model_says_what_to_give(in_scratch: Path) -> None:
    def expected(command: str, example: str) -> str:
        return (rf"^\S+ {command} has no model: give a config that names one \(e\.g\. --config {re.escape(example)}\) "
                r"or --model <class> \(e\.g\. SpatialGroundingModule\)$")

    with pytest.raises(SettingError, match=expected("fit", "configs/demo/stage1.yaml")):
        main(["fit"])
    with pytest.raises(SettingError, match=expected("fit", "configs/demo/stage1.yaml")):
        main(["fit", "--config", "{trainer: {max_epochs: 1}}"])  # inline YAML is still accepted as a config
    with pytest.raises(SettingError, match=expected("predict", "configs/demo/predict.yaml")):
        main(["predict"])


def test_detach_export_names_a_missing_misspelt_or_unknown_option(in_scratch: Path) -> None:
    with pytest.raises(SettingError, match=r"^detach export needs --ckpt_path: probe checkpoint \(runs/<dataset>/"):
        main(["export"])
    with pytest.raises(SettingError, match=r"^unknown option\(s\) --ckpt_pth \(did you mean '--ckpt_path'\?\); "
                                           r"`detach export --help` lists every option$"):
        main(["export", "--ckpt_pth", "probe.ckpt"])
    with pytest.raises(SettingError, match=r"^--format='onx': expected one of 'onnx', 'torchscript' \(did you mean "
                                           r"'onnx'\?\)$"):
        main(["export", "--ckpt_path", "probe.ckpt", "--format", "onx"])
    assert not (in_scratch / "model.onnx").exists() and not (in_scratch / "model.json").exists()


def test_detach_prepare_names_a_misspelt_data_setting(in_scratch: Path) -> None:
    with pytest.raises(SettingError, match=r"^data.init_args.batch_sze: SyntheticKitchenDataModule has no setting "
                                           r"'batch_sze' \(did you mean 'batch_size'\?\)"):
        main(["prepare", "--config", str(DEMO / "data.yaml"), "--data.init_args.batch_sze", "3"])
    assert not (in_scratch / "data").exists()


def test_the_console_script_prints_the_line_without_usage_or_traceback(in_scratch, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.argv", ["detach", *STAGE1, "--data.init_args.batch_size", "abc"])
    monkeypatch.delenv(cli.TRACEBACK_VARIABLE, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.console_main()
    assert exit_info.value.code == 2
    printed = capsys.readouterr()
    expected = "data.init_args.batch_size='abc': SyntheticKitchenDataModule expects an integer"
    assert printed.err == f"detach: error: {expected}\n"
    assert printed.out == ""


def test_an_error_it_does_not_recognise_keeps_jsonargparses_handling(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = PlainErrorParser(prog="detach fit", exit_on_error=False)
    parser.add_argument("--epochs", type=int)
    assert plain_parse_error("Something else went wrong", parser) is None
    with pytest.raises(argparse.ArgumentError):  # a parser that does not exit: jsonargparse tries options with it
        parser.parse_args(["--epochs", "many"])
    with pytest.raises(argparse.ArgumentError, match="Unrecognized arguments"):
        parser.parse_args(["--epoch", "3", "stray"])
    exiting = PlainErrorParser(prog="detach fit")
    exiting.add_argument("--epochs", type=int)
    with pytest.raises(SettingError, match=r"^unknown option\(s\) --epoks \(did you mean '--epochs'\?\)"):
        exiting.parse_args(["--epoks", "3"])
    with pytest.raises(SystemExit):  # a stray word names no option: jsonargparse's own message and usage
        exiting.parse_args(["stray"])
    monkeypatch.setenv("JSONARGPARSE_DEBUG", "true")  # jsonargparse's debug mode: its own errors, raised
    with pytest.raises(argparse.ArgumentError, match="Unrecognized arguments: --epoks"):
        exiting.parse_args(["--epoks", "3"])


def test_settings_follow_kwargs_into_the_parent_constructors() -> None:
    settings = init_settings(CsvVideoDataModule)
    assert {"root", "num_places", "run_classes", "batch_size", "windows", "cache_dir"} <= set(settings)
    assert "kwargs" not in settings and "self" not in settings
    assert close_names("num_place", list(settings)) == " (did you mean 'num_places'?)"
    assert close_names("zzz", list(settings)) == ""
    assert close_names("video", ["embed_dim", "video_backbone", "video_cnn_channels"]) == (
        " (the settings starting with video_: video_backbone, video_cnn_channels)")


def test_a_missing_or_misspelt_subcommand_names_every_subcommand(in_scratch: Path, capsys) -> None:
    every = r"give one of fit, validate, test, predict, prepare, export \(`\S+ <subcommand> --help` shows its "
    every += r"options\)$"
    with pytest.raises(SettingError, match=r"^no subcommand: " + every):
        main([])
    with pytest.raises(SettingError, match=r"^'fitt' is not a subcommand \(did you mean 'fit'\?\): " + every):
        main(["fitt", "--config", str(DEMO / "stage1.yaml")])
    with pytest.raises(SystemExit):
        main(["--help"])
    helped = " ".join(capsys.readouterr().out.split())
    assert "DETACH: align a fixed camera with ambient sensors" in helped
    assert "`detach prepare --config <data or stage config>`" in helped and "`detach export --ckpt_path" in helped


def test_a_stage_of_the_pipeline_with_a_bad_setting_fails_naming_the_stage_and_the_setting(in_scratch: Path) -> None:
    with pytest.raises(StageFailed, match=r"^stage 1: the `detach` command line was refused \(model.init_args."
                                          r"refine_start_epch: SpatialGroundingModule has no setting"):
        run_stage([*STAGE1, "--model.init_args.refine_start_epch", "3"], "stage 1")
