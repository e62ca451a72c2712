"""`detach prepare` on the synthetic kitchen: builds the cache once, prints and stores its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detach_pl.cli import main
from detach_pl.parse_errors import SettingError
from helpers import DEMO

#: The demo data config shrunk to three 50-s runs at 16 pixels (no training options: data only).
TINY_WORLD = [
    "--data.init_args.world.num_runs", "3",
    "--data.init_args.world.run_seconds", "50",
    "--data.init_args.train_runs", "[run00]",
    "--data.init_args.val_runs", "[run01]",
    "--data.init_args.test_runs", "[run02]",
    "--data.init_args.windows.image_size", "16",
    "--data.init_args.progress", "false",
]


def test_prepare_builds_the_synthetic_cache_once_and_prints_its_report(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    args = ["prepare", "--config", str(DEMO / "data.yaml"), "--data.init_args.cache_dir", str(cache), *TINY_WORLD]
    main(args)
    printed = capsys.readouterr().out
    built = sorted(cache.glob("synthetic-*.h5"))
    assert len(built) == 1 and f"cache: {built[0]}" in printed
    report = json.loads(built[0].with_suffix(".report.json").read_text())
    assert [run["name"] for run in report["runs"]] == ["run00", "run01", "run02"]
    for run in report["runs"]:
        assert f"  {run['name']}: {run['windows']} windows, sensor {run['sensor_seconds']:.1f} s" in printed
        assert run["windows"] == 48  # 50 s of 2-s windows every second, the last one complete
    modified = built[0].stat().st_mtime_ns
    main(args)
    again = capsys.readouterr().out
    assert again.startswith("cache already prepared\n") and "run02: 48 windows" in again
    assert built[0].stat().st_mtime_ns == modified and sorted(cache.glob("synthetic-*.h5")) == built


def test_prepare_with_a_stage_config_prepares_the_cache_fit_uses(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    overrides = ["--data.init_args.cache_dir", str(cache), *TINY_WORLD]
    main(["prepare", "--config", str(DEMO / "stage1.yaml"), *overrides, "--trainer.max_epochs", "3"])
    training = main(["--config", str(DEMO / "stage1.yaml"), *overrides], run=False)
    assert training.datamodule.cache_path.is_file() and str(training.datamodule.cache_path) in capsys.readouterr().out
    assert training.datamodule.purpose == "alignment"  # decided at parse time from the model class


def test_prepare_names_a_bad_config_and_a_bad_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"encoder.yaml: neither a data config .*\(its keys: \[.*'embed_dim'"):
        main(["prepare", "--config", str(DEMO / "encoder.yaml")])
    with pytest.raises(SettingError, match=r"^detach prepare --config \S*missing\.yaml: no such config file$"):
        main(["prepare", "--config", str(tmp_path / "missing.yaml")])
    (tmp_path / "cut.yaml").write_text("class_path: SyntheticKitchenDataModule\ninit_args: {batch_size: 4\n")
    with pytest.raises(SettingError, match=r"^detach prepare --config \S*cut\.yaml is not valid YAML: line 3"):
        main(["prepare", "--config", str(tmp_path / "cut.yaml")])
    with pytest.raises(ValueError, match=r"^data.init_args.world.run_seconds=5.0 must be a number in \["):
        main(["prepare", "--config", str(DEMO / "data.yaml"), "--data.init_args.world.run_seconds", "5"])


def test_prepare_ignores_an_overlay_without_data_beside_a_config_with_it(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    overlay = tmp_path / "ddp.yaml"
    overlay.write_text("trainer:\n  strategy: ddp\n  devices: 4\n")
    main(["prepare", "--config", str(DEMO / "stage1.yaml"), "--config", str(overlay),
          "--data.init_args.cache_dir", str(cache), *TINY_WORLD])
    assert len(list(cache.glob("synthetic-*.h5"))) == 1 and "run00: 48 windows" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"ddp.yaml: neither a data config .*\(its keys: \['trainer'\]\)"):
        main(["prepare", "--config", str(overlay)])
