"""Mistakes a new user makes, each answered by one message that names the setting or file."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tqdm.contrib.logging import _TqdmLoggingHandler

from detach_pl import cli
from detach_pl.checkpoints import check_checkpoint_file
from detach_pl.cli import main
from detach_pl.testing.opportunity import FIXTURES
from helpers import DEMO, REPO, TINY_DATA

OPP = REPO / "configs" / "opp"


def release_without_legend(root: Path) -> Path:
    """An Opportunity++ folder with `column_names.txt` but no `label_legend.txt`."""
    (root / "data").mkdir(parents=True)
    shutil.copyfile(FIXTURES / "column_names.txt", root / "data" / "column_names.txt")
    return root


def test_missing_label_legend_is_the_datasets_own_message(in_scratch) -> None:
    root = release_without_legend(in_scratch / "Opportunity++")
    with pytest.raises(FileNotFoundError) as error:
        main(["fit", "--config", str(OPP / "stage1.yaml"), "--data.init_args.root", str(root)])
    assert str(error.value).startswith("Opportunity++: label_legend.txt not found")
    assert "compute_fn" not in str(error.value)


def test_root_that_is_not_a_folder_is_the_datasets_own_message(in_scratch) -> None:
    with pytest.raises(FileNotFoundError) as error:
        main(["fit", "--config", str(OPP / "stage1.yaml"), "--data.init_args.root", "no/such/release"])
    assert str(error.value).startswith("data.init_args.root='no/such/release' is not a folder")
    assert "compute_fn" not in str(error.value)


def test_negative_batch_size_names_only_that_setting(in_scratch) -> None:
    with pytest.raises(ValueError) as error:
        main(["fit", "--config", str(DEMO / "stage1.yaml"), *TINY_DATA, "--data.init_args.batch_size", "-3"])
    assert str(error.value) == "data.init_args.batch_size=-3 must be >= 1"


def test_truncated_checkpoint_is_named_before_lightning_reads_it(in_scratch) -> None:
    whole = in_scratch / "whole.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(1000)}, "hyper_parameters": {}}, whole)
    truncated = in_scratch / "last.ckpt"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    expected = r"--ckpt_path .*last\.ckpt \(\d+ bytes\) is not a readable checkpoint: the file is truncated"
    with pytest.raises(ValueError, match=expected):
        main(["test", "--config", str(DEMO / "probe.yaml"), *TINY_DATA, "--ckpt_path", str(truncated)])


def test_damaged_checkpoint_member_is_named(in_scratch) -> None:
    path = in_scratch / "damaged.ckpt"
    torch.save({"state_dict": {"weight": torch.arange(1000.0)}}, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"damaged\.ckpt \(\d+ bytes\) is damaged"):
        check_checkpoint_file(path)


def test_fit_with_zero_epochs_is_refused(in_scratch) -> None:
    expected = r"--trainer.max_epochs 0: `detach fit` would train nothing and write no checkpoint"
    with pytest.raises(ValueError, match=expected):
        main(["fit", "--config", str(DEMO / "stage1.yaml"), *TINY_DATA, "--trainer.max_epochs", "0"])
    assert not (in_scratch / "runs").exists()


def test_test_or_validate_without_a_checkpoint_is_refused_naming_the_one_to_give(in_scratch) -> None:
    """Lightning would evaluate the model as built: an untrained probe head, near chance, reported as a result."""
    untrained = "; without it the model would be evaluated as built, untrained$"
    with pytest.raises(ValueError, match=r"^detach test evaluates trained weights: give --ckpt_path \(`detach fit` "
                                         r"with this config writes runs/demo/probe/checkpoints/last.ckpt; then "
                                         r"--ckpt_path last\)" + untrained):
        main(["test", "--config", str(DEMO / "probe.yaml"), *TINY_DATA])
    assert not (in_scratch / "data").exists()
    last = in_scratch / "runs/demo/stage1/checkpoints/last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    with pytest.raises(ValueError, match=r"^detach validate evaluates trained weights: give --ckpt_path \(e.g. "
                                         r"--ckpt_path runs/demo/stage1/checkpoints/last.ckpt \(this config's last "
                                         r"checkpoint; `--ckpt_path last` finds it too\)\)" + untrained):
        main(["validate", "--config", str(DEMO / "stage1.yaml"), *TINY_DATA])


def test_evaluating_the_last_checkpoint_when_there_is_none_is_refused(in_scratch) -> None:
    """Lightning would only warn and evaluate untrained weights."""
    with pytest.raises(FileNotFoundError, match=r"^--ckpt_path last: no last checkpoint \(last\*\.ckpt\) in "
                                                r"\S*runs/demo/stage1/checkpoints, and no SLURM requeue checkpoint "
                                                r"\(hpc_ckpt_\*\.ckpt\) in \S*runs/demo/stage1; nothing to validate: "
                                                r"run `detach fit` first, or give the path of a checkpoint$"):
        main(["validate", "--config", str(DEMO / "stage1.yaml"), *TINY_DATA, "--ckpt_path", "last"])


def test_unwritable_cache_folder_names_the_setting(in_scratch) -> None:
    (in_scratch / "a_file").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=r"^data.init_args.cache_dir='a_file/cache' is not a folder"):
        main([
            "fit", "--config", str(DEMO / "stage1.yaml"), *TINY_DATA,
            "--data.init_args.cache_dir", "a_file/cache", "--trainer.fast_dev_run", "1",
        ])


def test_log_lines_are_written_through_tqdm_while_the_cli_runs(monkeypatch) -> None:
    seen: list[list[logging.Handler]] = []
    monkeypatch.setattr(cli, "DetachCLI", lambda *args, **kwargs: seen.append(list(logging.getLogger().handlers)))
    main(["fit"])
    assert any(isinstance(handler, _TqdmLoggingHandler) for handler in seen[0])
    assert not any(isinstance(handler, _TqdmLoggingHandler) for handler in logging.getLogger().handlers)


def test_loader_workers_default_to_the_cpus_present(monkeypatch) -> None:
    from detach_pl.data import checks

    monkeypatch.setattr(checks.os, "sched_getaffinity", lambda pid: {0, 1})
    assert checks.resolve_num_workers(None) == 1
    assert checks.resolve_num_workers(6) == 6
    monkeypatch.setattr(checks.os, "sched_getaffinity", lambda pid: set(range(64)))
    assert checks.resolve_num_workers(None) == checks.MAX_AUTO_WORKERS
    for dataset in ("opp", "hwu"):
        data = yaml.safe_load((REPO / "configs" / dataset / "data.yaml").read_text())
        assert data["init_args"]["num_workers"] is None


def test_opportunity_checks_every_run_before_decoding_any(tmp_path, monkeypatch) -> None:
    from detach_pl.data.opportunity import datamodule as opportunity
    from detach_pl.data.windows import WindowSettings
    from detach_pl.testing.opportunity import write_standin_release

    release = write_standin_release(tmp_path / "Opportunity++", seconds=8.0)
    runs = list(release.runs)
    release.runs[runs[3]].video_path.write_bytes(b"not a video")
    matrix = release.runs[runs[4]].sensor_path
    lines = matrix.read_text().splitlines()
    lines[20] = " ".join(lines[20].split()[:-1])
    matrix.write_text("\n".join(lines) + "\n")
    decoded: list[Path] = []
    monkeypatch.setattr(opportunity, "iter_timed_frames", lambda path, size: decoded.append(path) or iter(()))
    module = opportunity.OpportunityDataModule(
        root=str(release.root), cache_dir=str(tmp_path / "cache"), windows=WindowSettings(image_size=16),
        num_workers=0, runs=runs, train_runs=runs[:3], val_runs=runs[3:4], test_runs=runs[4:], progress=False,
    )
    with pytest.raises(ValueError) as error:
        module.prepare_data()
    message = str(error.value)
    assert "2 problem(s) in the files of 5 run(s), found before building the cache" in message
    assert f"{runs[3]}: video {release.runs[runs[3]].video_path}: unreadable" in message
    assert f"{runs[4]}: {matrix}:21: 249 columns, expected 250" in message
    assert decoded == []


def test_hwu_checks_every_trial_before_decoding_any(tmp_path, monkeypatch) -> None:
    from detach_pl.data.hwu_usp import datamodule as hwu_usp
    from detach_pl.data.windows import WindowSettings
    from detach_pl.testing.hwu_usp import write_standin

    release = write_standin(tmp_path / "hwu", layout="flat", subjects=(1, 2, 3, 4), seconds=6.0)
    trials = sorted(release.trials.values(), key=lambda t: (t.subject, hwu_usp.ACTIVITIES.index(t.activity)))
    late = trials[-2].ambient
    lines = late.read_text().splitlines()
    cells = lines[5].split(",")
    cells[lines[0].split(",").index("Ktch_Motion_1")] = "x"
    lines[5] = ",".join(cells)
    late.write_text("\n".join(lines) + "\n")
    decoded: list[Path] = []
    monkeypatch.setattr(hwu_usp, "iter_timed_frames", lambda path, size: decoded.append(path) or iter(()))
    module = hwu_usp.HwuUspDataModule(
        root=str(release.root), classes=["cereals", "tea", "dishes"], num_folds=2, fold=1,
        cache_dir=str(tmp_path / "cache"), windows=WindowSettings(image_size=16), num_workers=0, progress=False,
    )
    with pytest.raises(ValueError) as error:
        module.prepare_data()
    message = str(error.value)
    assert f"1 of {len(trials)} trial(s) cannot be read, found before building the cache" in message
    assert f"{trials[-2].name}: {late}: line 6" in message and "'x' is not a number" in message
    assert decoded == []


def test_console_script_prints_a_bad_input_as_one_message(in_scratch, monkeypatch, capsys) -> None:
    """`detach …` with a wrong setting: the message and where it was raised, exit status 2."""
    argv = ["detach", "fit", "--config", str(OPP / "stage1.yaml"), "--data.init_args.root", "nowhere"]
    monkeypatch.setattr("sys.argv", argv)
    monkeypatch.delenv(cli.TRACEBACK_VARIABLE, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.console_main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    lines = error[error.index("detach: error:"):].strip().splitlines()
    assert lines[0].startswith("detach: error: data.init_args.root='nowhere' is not a folder")
    assert len(lines) == 2 and lines[1].startswith("  (raised at detach_pl/") and "DETACH_TRACEBACK=1" in lines[1]


def test_console_script_shows_the_traceback_on_request(in_scratch, monkeypatch) -> None:
    argv = ["detach", "fit", "--config", str(OPP / "stage1.yaml"), "--data.init_args.root", "nowhere"]
    monkeypatch.setattr("sys.argv", argv)
    monkeypatch.setenv(cli.TRACEBACK_VARIABLE, "1")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        cli.console_main()
