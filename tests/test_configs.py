"""Every YAML under configs/ parses, states its run folder once, and derives the rest in the CLI.

The trainer's folders (default_root_dir, the TensorBoard logger, the last.ckpt checkpoint) come
from one `run_dir` line per stage (`detach_pl.cli.apply_run_dir`); no config repeats them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from jsonargparse import Namespace

from detach_pl.cli import RUN_CHECKPOINT, apply_run_dir
from detach_pl.pipeline import run_detach
from helpers import DEMO, REPO, TINY_DATA

CONFIGS = REPO / "configs"
ALL_YAML = sorted(path.relative_to(CONFIGS).as_posix() for path in CONFIGS.rglob("*.yaml"))
# Folder-level parts that stage configs name (`data: data.yaml`, `encoder: encoder.yaml`).
PARTS = {"data.yaml", "encoder.yaml"}
# Overlays: added after a base config of their folder (or of configs/opp for the cluster overlay).
OVERLAY_BASE = {"pretrain_all_windows": "stage1.yaml", "ddp": "../opp/stage2.yaml"}
# Settings that only `run_dir` may set now (their values are derived from it).
DERIVED = ("default_root_dir", "save_dir", "dirpath", "ModelCheckpoint", "TensorBoardLogger")


def without_comments(path: Path) -> str:
    return "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())


def command_for(relative: str) -> list[str]:
    """A `--print_config` command line that parses the config (an overlay on its base)."""
    path = CONFIGS / relative
    if path.parent.name == "ablations" or path.stem in OVERLAY_BASE:
        base = OVERLAY_BASE.get(path.stem, f"{path.stem.split('_', 1)[0]}.yaml")
        folder = path.parent.parent if path.parent.name == "ablations" else path.parent
        return ["fit", "--config", str(folder / base), "--config", str(path)]
    subcommand = "predict" if path.stem == "predict" else "fit"
    return [subcommand, "--config", str(path)]


@pytest.mark.parametrize("relative", [name for name in ALL_YAML if Path(name).name not in PARTS])
def test_every_config_parses(relative: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_detach([*command_for(relative), "--print_config"])
    assert exit_info.value.code == 0, capsys.readouterr().err[-2000:]
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("detach_pl.modules.")
    assert not printed["model"]["class_path"].startswith("detach_pl.modules.baselines.")  # one spelling


def test_every_part_is_named_by_a_stage_config_of_its_folder() -> None:
    for name in ALL_YAML:
        path = CONFIGS / name
        if path.name in PARTS:
            users = [other for other in path.parent.parent.rglob("*.yaml") if re.search(
                rf"^\s*(data|encoder): (\.\./{path.parent.name}/)?{path.name}\s*$", other.read_text(), re.M)]
            assert users, f"configs/{name} is named by no stage config (so no test parses it)"


def test_no_config_repeats_the_trainer_folders_and_each_stage_names_its_own_run_dir() -> None:
    run_dirs = {}
    for name in ALL_YAML:
        text = without_comments(CONFIGS / name)
        for setting in DERIVED:
            assert setting not in text, f"configs/{name} states {setting}: derive it from run_dir"
        assert text.count("runs/") <= 2, f"configs/{name}: its run folder and at most one input checkpoint"
        found = re.findall(r"^run_dir: (\S+)$", text, re.M)
        assert len(found) <= 1, name
        if found:
            run_dirs[name] = found[0]
    stage_files = [name for name in ALL_YAML if "trainer:" in without_comments(CONFIGS / name)
                   and Path(name).stem not in ("predict", "ddp")]
    assert set(stage_files) <= set(run_dirs), set(stage_files) - set(run_dirs)
    assert len(set(run_dirs.values())) == len(run_dirs), "two configs share a run folder"


def parsed(**trainer: object) -> Namespace:
    """A parsed config with `run_dir` and the trainer settings given (the others unset)."""
    unset = {"default_root_dir": None, "logger": None, "callbacks": None, "enable_checkpointing": None}
    return Namespace(run_dir="runs/x/stage1", trainer=Namespace(**{**unset, **trainer}))


def test_run_dir_derives_the_folders_a_config_leaves_unset() -> None:
    config = parsed()
    apply_run_dir(config)
    assert config.trainer.default_root_dir == "runs/x/stage1"
    assert config.trainer.logger.init_args.save_dir == "runs/x/stage1"
    assert config.trainer.logger.init_args.name == "tensorboard"
    (checkpoint,) = config.trainer.callbacks
    assert checkpoint.class_path.endswith("ModelCheckpoint")
    assert dict(checkpoint.init_args) == {"dirpath": "runs/x/stage1/checkpoints", **RUN_CHECKPOINT}


def test_run_dir_keeps_what_a_config_states() -> None:
    own = Namespace(class_path="lightning.pytorch.callbacks.ModelCheckpoint", init_args=Namespace(dirpath="epochs"))
    bare = Namespace(class_path="lightning.pytorch.callbacks.ModelCheckpoint", init_args=Namespace(every_n_epochs=2))
    config = parsed(callbacks=[own, bare])
    config.trainer.logger = False
    config.trainer.default_root_dir = "elsewhere"
    apply_run_dir(config)
    assert config.trainer.logger is False and config.trainer.default_root_dir == "elsewhere"
    assert [entry.init_args.dirpath for entry in config.trainer.callbacks] == ["epochs", "runs/x/stage1/checkpoints"]
    off = parsed(enable_checkpointing=False)
    apply_run_dir(off)
    assert off.trainer.callbacks is None
    untouched = parsed()
    untouched.run_dir = None
    apply_run_dir(untouched)
    assert untouched.trainer.logger is None and untouched.trainer.callbacks is None


def test_configs_work_from_another_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Config files named in a config resolve against that config's folder, not the working one;
    the run folders (values) are relative to the working directory, so stage 2 finds stage 1's."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    longer = ["--data.init_args.world.run_seconds", "80"]  # the harder kitchen's longer gestures need it
    benchmark = run_detach(["--config", str(REPO / "configs/benchmark/stage1.yaml"), *TINY_DATA, *longer], run=False)
    demo_encoder = yaml.safe_load((DEMO / "encoder.yaml").read_text())
    assert benchmark.model.encoder_config.embed_dim == demo_encoder["embed_dim"]  # ../demo/encoder.yaml
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
             "--model.init_args.min_cluster_size", "2"]
    run_detach(["fit", "--config", str(DEMO / "stage1.yaml"), *TINY_DATA, *short])
    stage1 = elsewhere / "runs/demo/stage1"
    assert (stage1 / "checkpoints/last.ckpt").is_file() and list((stage1 / "tensorboard").rglob("events.out.*"))
    stage2 = run_detach(["fit", "--config", str(DEMO / "stage2.yaml"), *TINY_DATA, "--trainer.fast_dev_run", "1"])
    assert stage2.model.hparams.stage1_checkpoint == "runs/demo/stage1/checkpoints/last.ckpt"
    assert not (REPO / "configs/demo/runs").exists()


OLD_STYLE = """\
seed_everything: 42
trainer:
  max_epochs: 3
  default_root_dir: runs/old/baseline_global
  logger:
    class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args: {save_dir: runs/old/baseline_global, name: tensorboard}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {dirpath: runs/old/baseline_global/checkpoints, filename: last, save_top_k: 1, save_last: true}
model:
  class_path: detach_pl.modules.baselines.GlobalAlignmentModule
  init_args:
    encoder: DEMO/encoder.yaml
data: DEMO/data.yaml
"""


def test_a_config_written_before_run_dir_still_runs_as_written(in_scratch: Path) -> None:
    """The old spelling of the baselines' class path, and the trainer folders stated in full."""
    old = in_scratch / "old.yaml"
    old.write_text(OLD_STYLE.replace("DEMO", str(DEMO)))
    cli = run_detach(["--config", str(old), *TINY_DATA], run=False)
    assert type(cli.model).__name__ == "GlobalAlignmentModule"
    assert cli.trainer.checkpoint_callback.dirpath == str(in_scratch / "runs/old/baseline_global/checkpoints")
    assert cli.trainer.logger.save_dir == "runs/old/baseline_global" and cli.config["run_dir"] is None
    assert len(cli.trainer.checkpoint_callbacks) == 1
