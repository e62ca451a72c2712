"""The stage chain (stage 1 → stage 2 → probe) and running one stage of it in this process.

Every caller that runs `detach` in-process (the fold runner, the benchmarks, the tests) goes
through `run_detach`: the arguments are given as a list, the working directory is left alone
(a stage's run folder is its `run_dir` setting, not the place it is started from) and `sys.argv`
is not touched (a DDP launcher re-runs it).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from detach_pl.cli import main as cli_main
from detach_pl.parse_errors import SettingError


@dataclass(frozen=True)
class Stage:
    """One stage of the chain and the model setting that receives the previous stage's checkpoint."""

    name: str
    receives: str | None = None

    @property
    def input_argument(self) -> str | None:
        """The command-line form of `receives` (e.g. `--model.init_args.stage1_checkpoint`)."""
        return None if self.receives is None else f"--model.init_args.{self.receives}"


CHAIN: tuple[Stage, ...] = (
    Stage("stage1"),
    Stage("stage2", "stage1_checkpoint"),
    Stage("probe", "encoder_checkpoint"),
)
"""DETACH's stages in order: stage 2 reads stage 1's checkpoint, the probe stage 2's."""
STAGES: dict[str, Stage] = {stage.name: stage for stage in CHAIN}
"""The stages of the chain by name."""


class StageFailed(RuntimeError):
    """`detach` refused a stage's command line, or a stage left no checkpoint; the message says which."""


def run_detach(args: Sequence[str], *, run: bool = True) -> LightningCLI | None:
    """`detach <args>` in this process; returns the CLI (its trainer, model and data stay usable).

    Lightning warns when `args` is given while `sys.argv` holds other arguments (a script's or
    pytest's own); those are not the stage's, so that warning is silenced instead of `sys.argv`
    being rewritten.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return cli_main(list(args), run=run)


def run_stage(args: Sequence[str], what: str) -> LightningCLI:
    """`run_detach(args)`, with a refused command line raised as StageFailed naming `what`."""
    try:
        cli = run_detach(args)
    except SettingError as error:
        raise StageFailed(f"{what}: the `detach` command line was refused ({error}): {list(args)}") from error
    except SystemExit as error:
        if error.code in (0, None):
            raise
        raise StageFailed(f"{what}: the `detach` command line was refused (exit {error.code}): {list(args)}") from error
    assert cli is not None  # only `detach export` returns None
    return cli


def last_checkpoint(cli: LightningCLI, what: str) -> Path:
    """The checkpoint a fitted stage saved last (what the next stage receives).

    Raises:
        StageFailed: The run saved no checkpoint.
    """
    callback = cli.trainer.checkpoint_callback
    saved = (callback.last_model_path or callback.best_model_path) if isinstance(callback, ModelCheckpoint) else ""
    if not saved:
        raise StageFailed(
            f"{what}: the run saved no checkpoint; give the stage a run_dir (its checkpoint is then "
            "<run_dir>/checkpoints/last.ckpt) or keep a ModelCheckpoint callback with save_last: true"
        )
    return Path(saved).resolve()


def resolve_config(subcommand: str, config: str, overrides: Sequence[str]) -> dict[str, Any]:
    """The full configuration the CLI would run, as a dict (via `--print_config`).

    Raises:
        ValueError: The CLI rejects the configuration (its message is included).
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_detach([subcommand, "--config", config, *overrides, "--print_config"])
        except SettingError as error:
            raise ValueError(f"configuration {config} with {list(overrides)} is invalid: {error}") from None
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                message = err.getvalue()
                message = message[message.find("error:") :] if "error:" in message else message
                raise ValueError(f"configuration {config} with {list(overrides)} is invalid:\n{message}") from None
    resolved = yaml.safe_load(out.getvalue())
    if not isinstance(resolved, dict) or "trainer" not in resolved:
        raise ValueError(f"could not resolve configuration {config}: {out.getvalue()[:500]}")
    return resolved
