"""The `detach` command: LightningCLI in subclass mode for every stage and dataset.

`detach fit --config configs/<dataset>/<stage>.yaml`, `detach test --config … --ckpt_path …`,
`detach predict --config configs/<dataset>/predict.yaml --ckpt_path <probe>` (new recordings,
sensors only), `detach export --ckpt_path <probe> --output model.onnx` (docs/deploy.md) and
`detach prepare --config <data or stage config>` (builds the cache ahead of training and prints
its report; `detach_pl.data.prepare`).
The DataModule's `data_info` (channels, classes, places) is linked into the
model after instantiation, so one config never states the same fact twice. Without a `data:`
section the built-in synthetic kitchen is used.

What the CLI adds to LightningCLI, so a mistake fails early and in the user's own terms:

- errors raised by the DataModule or the model come out as raised, not wrapped in jsonargparse's
  link or union messages, and a misspelt or mistyped setting is one line naming it and the
  nearest settings that exist (`detach_pl.parse_errors`);
- `--ckpt_path` is checked before Lightning reads it (a truncated file is named as such);
- the data purpose is decided at parse time: `data.init_args.purpose: auto` becomes the model
  class's `data_purpose` ("alignment" or "probe"), before anything is built;
- `detach fit --trainer.max_epochs 0` is refused (it would write no checkpoint for the next stage);
- the cache folder is checked for writing before a cache is built (`data.init_args.cache_dir`);
- TensorBoard loggers get no `hp_metric` placeholder, any logger gets a learning-rate scalar
  (`LearningRateMonitor`), and log lines are written above the progress bars, not through them.

One setting names a stage's run folder: `run_dir: runs/demo/stage1` (top level of a stage config,
or `--run_dir`). What the config leaves unset is derived from it (`apply_run_dir`): the trainer's
`default_root_dir`, a TensorBoard logger in `<run_dir>/tensorboard`, and the checkpoint
`<run_dir>/checkpoints/last.ckpt`, rewritten at the end of every epoch (resume a killed run with
`--ckpt_path last`). A logger, a ModelCheckpoint or a `dirpath` the config states is kept as
stated. Relative paths in a config's values (run folders, checkpoints, caches, dataset roots) are
relative to the working directory; a config file named in a config (`data: data.yaml`) is
relative to the config file that names it.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml
from jsonargparse import Namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from tqdm.contrib.logging import logging_redirect_tqdm

from detach_pl.checkpoints import check_checkpoint_file
from detach_pl.data.checks import ensure_writable_folder
from detach_pl.data.datamodule import WindowDataModule
from detach_pl.data.prepare import DEFAULT_DATA
from detach_pl.modules.base import DetachModule, check_stage_checkpoint_file
from detach_pl.parse_errors import PlainErrorParser, SettingError, config_values

#: `--ckpt_path` values Lightning resolves itself (not file names).
CKPT_KEYWORDS = ("last", "best", "hpc")

#: Loggers that may print on their own (Lightning's do when the root logger has no handler).
OWN_CONSOLE_LOGGERS = ("lightning.pytorch", "lightning.fabric")

#: The logger a stage with a `run_dir` gets when its config names none (`<run_dir>/tensorboard`).
RUN_LOGGER = "lightning.pytorch.loggers.TensorBoardLogger"
#: The checkpoint a stage with a `run_dir` gets when its config names none: `last.ckpt`, rewritten
#: at the end of every epoch, is what the next stage reads and what `--ckpt_path last` resumes.
RUN_CHECKPOINT: dict[str, Any] = {
    "filename": "last",
    "save_top_k": 1,
    "save_last": True,
    "save_on_train_epoch_end": True,
    "enable_version_counter": False,
}


def _is_class(entry: Any, name: str) -> bool:
    """Whether a parsed `class_path` entry names a class called `name`."""
    return isinstance(entry, Namespace) and str(entry.get("class_path", "")).rsplit(".", 1)[-1] == name


def apply_run_dir(config: Namespace) -> None:
    """Derive the trainer's folders from `run_dir` where the config leaves them unset (in place).

    Sets `trainer.default_root_dir`; with no logger configured (`trainer.logger` unset), a
    TensorBoard logger in `<run_dir>/tensorboard`; with checkpointing not switched off and no
    ModelCheckpoint among the callbacks, `RUN_CHECKPOINT` in `<run_dir>/checkpoints`; a
    ModelCheckpoint without a `dirpath` gets that folder too. Without `run_dir`, nothing changes.
    """
    run_dir = config.get("run_dir")
    trainer = config.get("trainer")
    if not run_dir or not isinstance(trainer, Namespace):
        return
    run_dir = str(run_dir)
    checkpoints = str(Path(run_dir) / "checkpoints")
    if trainer.get("default_root_dir") is None:
        trainer.default_root_dir = run_dir
    if trainer.get("logger") is None:
        trainer.logger = Namespace(class_path=RUN_LOGGER, init_args=Namespace(save_dir=run_dir, name="tensorboard"))
    if trainer.get("enable_checkpointing") is False:
        return
    callbacks = trainer.get("callbacks")
    callbacks = [] if callbacks is None else list(callbacks) if isinstance(callbacks, list) else [callbacks]
    own = [entry for entry in callbacks if _is_class(entry, "ModelCheckpoint")]
    for entry in own:
        init_args = entry.get("init_args") or Namespace()
        if init_args.get("dirpath") is None:
            init_args.dirpath = checkpoints
        entry.init_args = init_args
    if not own:
        callbacks.append(
            Namespace(
                class_path="lightning.pytorch.callbacks.ModelCheckpoint",
                init_args=Namespace(dirpath=checkpoints, **RUN_CHECKPOINT),
            )
        )
    trainer.callbacks = callbacks


def config_names_data(value: str) -> bool:
    """Whether a `--config` value (a YAML file) has a top-level `data` entry (False when unreadable).

    An unreadable file is left to the parser, which names it.
    """
    path = Path(value)
    try:
        entries = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(entries, dict) and entries.get("data") is not None


def names_data(args: Sequence[str]) -> bool:
    """Whether a command line names its DataModule: `--data <class or file>` or a config with `data:`."""
    if any(arg == "--data" or arg.startswith("--data=") for arg in args):
        return True
    return any(config_names_data(value) for value in config_values(args))


def with_default_data(args: list[str], subcommands: list[str] | None) -> list[str]:
    """`args` with `--data DEFAULT_DATA` (after the subcommand) when they name no DataModule.

    Given on the command line rather than as the parser's default: jsonargparse hands the init
    args of a default class on to the class a config names instead (a predict config's
    CsvRecordings would get the synthetic kitchen's `batch_size` 64 instead of its own 256).

    Args:
        args: The command line after the program name.
        subcommands: The parser's subcommands (None: it has none, e.g. `main(..., run=False)`).
    """
    if names_data(args):
        return args
    if subcommands is None:
        return ["--data", DEFAULT_DATA, *args]
    position = next((index for index, arg in enumerate(args) if arg in subcommands), None)
    if position is None:
        return args  # no subcommand: the parser says so
    return [*args[: position + 1], "--data", DEFAULT_DATA, *args[position + 1 :]]


def console_loggers() -> list[logging.Logger]:
    """The root logger and every logger that prints without passing its lines to the root."""
    own = [logging.getLogger(name) for name in OWN_CONSOLE_LOGGERS]
    return [logging.getLogger(), *(logger for logger in own if not logger.propagate)]


def linked_data_info(data: WindowDataModule) -> dict[str, Any]:
    """The DataModule's `DataInfo` as a plain dict (linked into the model).

    A dict, not the dataclass, so the saved hyper-parameters (`hparams.yaml`, checkpoints) hold
    plain data that `yaml.safe_load` and `torch.load(weights_only=True)` read.
    """
    return dataclasses.asdict(data.data_info)


class _RecordErrors:
    """Wraps an instantiator and remembers what a constructor raised.

    jsonargparse resolves `Optional[DataModule]` as a union and, when the constructor raises a
    ValueError, reports every union member's failure (and the whole config) instead of the one
    message that matters; the recorded exception is raised in its place.
    """

    def __init__(self, instantiator: Callable[..., Any], errors: list[BaseException]) -> None:
        self.instantiator = instantiator
        self.errors = errors

    def __call__(self, class_type: type, *args: Any, applied_instantiation_links: dict, **kwargs: Any) -> Any:
        try:
            return self.instantiator(
                class_type, *args, applied_instantiation_links=applied_instantiation_links, **kwargs
            )
        except Exception as error:
            self.errors.append(error)
            raise


class _RecordPlainErrors:
    """The default instantiator (`class_type(*args, **kwargs)`), remembering what a constructor raised.

    Registered for every class after Lightning's own instantiators, so that a nested dataclass
    (`WindowSettings`, the world of the synthetic kitchen) that refuses its values is reported
    with its own message, not inside jsonargparse's union error.
    """

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors

    def __call__(self, class_type: type, *args: Any, **kwargs: Any) -> Any:
        try:
            return class_type(*args, **kwargs)
        except Exception as error:
            self.errors.append(error)
            raise


def original_error(error: BaseException, recorded: list[BaseException]) -> BaseException | None:
    """The exception a user should read instead of jsonargparse's wrapper of it (None: `error`)."""
    if str(error).startswith("Call to compute_fn of link") and error.__cause__ is not None:
        return error.__cause__
    for candidate in reversed(recorded):
        if candidate is not error and str(candidate) and str(candidate) in str(error):
            return candidate
    return None


def _tensorboard_entries(logger: Any) -> list[Namespace]:
    """The TensorBoardLogger entries of a parsed `trainer.logger` value (one or a list)."""
    entries = logger if isinstance(logger, list) else [logger]
    return [
        entry
        for entry in entries
        if isinstance(entry, Namespace)
        and str(entry.get("class_path", "")).rsplit(".", 1)[-1] == "TensorBoardLogger"
        and isinstance(entry.get("init_args"), Namespace)
    ]


class DetachArgumentParser(PlainErrorParser, LightningArgumentParser):
    """LightningCLI's parser with plain parse errors (`detach_pl.parse_errors`)."""

    other_subcommands = ("prepare", "export")


class DetachCLI(LightningCLI):
    """LightningCLI with the data → model link, the synthetic default and early, plain errors."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the data's `data_info` into the model, default to the synthetic kitchen, add `--run_dir`."""
        parser.link_arguments(
            "data",
            "model.init_args.data_info",
            compute_fn=linked_data_info,
            apply_on="instantiate",
        )
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="the stage's run folder: default_root_dir, <run_dir>/tensorboard, <run_dir>/checkpoints",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse (the synthetic kitchen where no data is named), then refuse settings that would fail late."""
        if args is None or isinstance(args, (list, tuple)):
            given = list(sys.argv[1:] if args is None else args)
            has_subcommands = getattr(parser, "_subcommands_action", None) is not None
            completed = with_default_data(given, list(self.subcommands()) if has_subcommands else None)
            args = args if completed == given else completed
        with warnings.catch_warnings():  # the command line completed above is the process's own
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        apply_run_dir(self.config[subcommand] if subcommand else self.config)
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and str(ckpt_path) not in CKPT_KEYWORDS and not str(ckpt_path).startswith("registry"):
            check_checkpoint_file(ckpt_path)
        if subcommand == "predict":
            link_recordings_checkpoint(config)
        if subcommand in EVALUATIONS and not ckpt_path:
            raise ValueError(untrained_evaluation_message(subcommand, config.get("run_dir")))
        if subcommand == "fit":
            for setting in ("max_epochs", "max_steps"):
                if config.trainer.get(setting) == 0:
                    raise ValueError(
                        f"--trainer.{setting} 0: `detach fit` would train nothing and write no "
                        "checkpoint for the next stage; give at least 1 (or evaluate a checkpoint: "
                        "`detach validate --ckpt_path …`)"
                    )

    def _add_instantiators(self) -> None:
        """Lightning's instantiators and the default one, wrapped to record constructor errors."""
        super()._add_instantiators()
        self._constructor_errors: list[BaseException] = []
        instantiators = self.parser._instantiators or {}
        self.parser._instantiators = {
            key: _RecordErrors(instantiator, self._constructor_errors) for key, instantiator in instantiators.items()
        }
        self.parser.add_instantiator(_RecordPlainErrors(self._constructor_errors), object, subclasses=True)

    def before_instantiate_classes(self) -> None:
        """Decide the data purpose (`set_data_purpose`); check a fit's stage checkpoints; no `hp_metric`.

        TensorBoard would log a placeholder `hp_metric = -1`; the probe logs real metrics.
        """
        config = self.config[self.subcommand] if self.subcommand else self.config
        set_data_purpose(config)
        if self.subcommand == "fit":
            check_stage_checkpoints(config)
        for entry in _tensorboard_entries(config.get("trainer", Namespace()).get("logger")):
            entry.init_args.default_hp_metric = False

    def instantiate_classes(self) -> None:
        """Instantiate, raising a constructor's or a `data_info` property's own exception."""
        try:
            super().instantiate_classes()
        except Exception as error:
            cause = original_error(error, getattr(self, "_constructor_errors", []))
            if cause is None:
                raise
            raise cause from None

    def after_instantiate_classes(self) -> None:
        """Check the cache folder before any build; add a learning-rate scalar to logged runs."""
        data = self.datamodule
        if isinstance(data, WindowDataModule) and not data.cache_path.is_file():
            ensure_writable_folder(data.cache_dir, "data.init_args.cache_dir")
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.loggers and not any(
            isinstance(callback, LearningRateMonitor) for callback in trainer.callbacks
        ):
            trainer.callbacks.append(LearningRateMonitor())

    def before_fit(self) -> None:
        """`--ckpt_path last` → the newest checkpoint; none to resume is refused (`last_checkpoint`)."""
        self.check_last("nothing to resume: start without --ckpt_path, or give the path of a checkpoint")

    def before_test(self) -> None:
        """`--ckpt_path last` → the newest checkpoint; none to test is refused (`last_checkpoint`)."""
        self.check_last("nothing to test: run `detach fit` with this config first, or give the path of a checkpoint")

    def before_validate(self) -> None:
        """`--ckpt_path last` → the newest checkpoint; none to validate is refused (`last_checkpoint`)."""
        self.check_last("nothing to validate: run `detach fit` first, or give the path of a checkpoint")

    def check_last(self, otherwise: str) -> None:
        """Where the subcommand's `--ckpt_path` is `last`, replace it by the file `last_checkpoint` chooses."""
        if self.subcommand and self.config_init[self.subcommand].get("ckpt_path") == "last":
            self.config_init[self.subcommand]["ckpt_path"] = str(last_checkpoint(self.trainer, otherwise))


def class_of(entry: Any) -> type | None:
    """The class a parsed `class_path` entry names (None when it names none)."""
    path = entry.get("class_path") if isinstance(entry, Namespace) else None
    if not path or "." not in str(path):
        return None
    module, name = str(path).rsplit(".", 1)
    return getattr(importlib.import_module(module), name, None)


def set_data_purpose(config: Namespace) -> None:
    """`data.init_args.purpose: auto` → the model class's `data_purpose`, once, at parse time.

    Raises:
        ValueError: The purpose is left "auto" and the model class states none.
    """
    data_class, model_class = class_of(config.get("data")), class_of(config.get("model"))
    if data_class is None or model_class is None or not issubclass(data_class, WindowDataModule):
        return
    init_args = config.data.get("init_args") or Namespace()
    if init_args.get("purpose", "auto") != "auto":
        return
    purpose = getattr(model_class, "data_purpose", None)
    if purpose not in ("alignment", "probe"):
        raise ValueError(
            f"model {model_class.__name__} states no data_purpose ('alignment' or 'probe'): set "
            "data.init_args.purpose"
        )
    init_args.purpose = purpose
    config.data.init_args = init_args


def check_stage_checkpoints(config: Namespace) -> None:
    """`detach fit`: the previous stage's checkpoint the model will load must exist, before any data is prepared.

    The model reads it only in `setup`, after the DataModule has built its cache (minutes to
    hours on a real release); the settings are named in `stage_checkpoint_settings`.
    """
    model_class = class_of(config.get("model"))
    if model_class is None:
        return
    init_args = config.model.get("init_args") or Namespace()
    for name, required in getattr(model_class, "stage_checkpoint_settings", {}).items():
        path = init_args.get(name)
        if required or path:
            check_stage_checkpoint_file(path, f"model.init_args.{name}")


def link_recordings_checkpoint(config: Namespace) -> None:
    """`detach predict` on new recordings: hand `--ckpt_path` to the data as its contract source.

    The recordings DataModule preprocesses by the checkpoint's contract and states the model's
    channels and classes (linked into the model, as every DataModule's `data_info` is). The
    checkpoint is checked first: a stage-1/2 checkpoint or one without a contract is refused
    with what `detach predict` needs.
    """
    from detach_pl.deploy.contract import load_probe
    from detach_pl.deploy.data import SensorRecordingsDataModule

    data_class = class_of(config.get("data"))
    if data_class is None or not issubclass(data_class, SensorRecordingsDataModule):
        return
    ckpt_path = config.get("ckpt_path")
    init_args = config.data.get("init_args") or Namespace()
    if not ckpt_path:
        raise ValueError(
            "detach predict on new recordings needs the probe checkpoint: --ckpt_path "
            "runs/<dataset>/probe/checkpoints/last.ckpt"
        )
    load_probe(ckpt_path)
    if init_args.get("checkpoint") is None:
        init_args.checkpoint = str(ckpt_path)
        config.data.init_args = init_args


#: Subcommands that evaluate weights they are given (refused without `--ckpt_path`).
EVALUATIONS = ("test", "validate")


def untrained_evaluation_message(subcommand: str, run_dir: str | None) -> str:
    """Why `detach test` / `validate` without `--ckpt_path` is refused, with the checkpoint to give.

    Without one, Lightning evaluates the model as the config builds it: a probe with an untrained
    head scores near chance, and its `test_metrics.json` would be the newest of the run.
    """
    last = Path(run_dir) / "checkpoints" / "last.ckpt" if run_dir else None
    if last is not None and last.is_file():
        hint = f"e.g. --ckpt_path {last} (this config's last checkpoint; `--ckpt_path last` finds it too)"
    elif last is not None:
        hint = f"`detach fit` with this config writes {last}; then --ckpt_path last"
    else:
        hint = "the path of a checkpoint that `detach fit` wrote"
    return (f"detach {subcommand} evaluates trained weights: give --ckpt_path ({hint}); without it the model "
            "would be evaluated as built, untrained")


#: The checkpoint Lightning saves in `default_root_dir` when a SLURM job is signalled before its
#: time limit and requeued (`hpc_ckpt_<N>.ckpt`; configs/cluster/slurm_detach.sbatch asks for it).
REQUEUE_CHECKPOINTS = "hpc_ckpt_*.ckpt"


def last_checkpoint(trainer: pl.Trainer, otherwise: str) -> Path:
    """The checkpoint `--ckpt_path last` resumes: the newest one a stopped run left.

    Lightning's `last` looks at each ModelCheckpoint's `last*.ckpt` and the OnExceptionCheckpoint's
    file; a SLURM job requeued near its time limit saves its progress in a requeue checkpoint in
    `default_root_dir` instead, which Lightning's `last` ignores. All of them are candidates here,
    and the newest (by modification time) is the one resumed, so a requeued job continues from
    where it was signalled, not from the end of an earlier epoch.

    Lightning only warns when there is none and goes on without one: a resumed fit then trains
    from epoch 0, which after a killed run silently throws the finished epochs away and
    overwrites their checkpoint, and a test evaluates untrained weights. Here that is refused.

    Args:
        trainer: The trainer whose checkpoint callbacks say where `last` is looked for.
        otherwise: What the user can do instead, closing the message.

    Raises:
        FileNotFoundError: No candidate exists; the folders searched are named.
    """
    folders: list[str] = []
    found: set[Path] = set()
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint):
            folders.append(str(callback.dirpath or f"{trainer.default_root_dir} (default checkpoint folder)"))
            found |= {Path(path) for path in callback._find_last_checkpoints(trainer)}
    for callback in trainer.callbacks:  # type: ignore[attr-defined]  # set by Lightning's callback connector, undeclared
        if isinstance(callback, OnExceptionCheckpoint):
            folders.append(str(callback.dirpath))
            found |= {Path(callback.ckpt_path)}
    root = Path(trainer.default_root_dir)
    found |= set(root.glob(REQUEUE_CHECKPOINTS))
    existing = [path for path in found if path.is_file()]
    if existing:
        return max(existing, key=lambda path: path.stat().st_mtime)
    if not folders:
        raise FileNotFoundError(f"--ckpt_path last: no ModelCheckpoint callback is configured: {otherwise}")
    searched = ", ".join(folders)
    raise FileNotFoundError(
        f"--ckpt_path last: no last checkpoint (last*.ckpt) in {searched}, and no SLURM requeue checkpoint "
        f"({REQUEUE_CHECKPOINTS}) in {root}; {otherwise}"
    )


#: What `detach --help` says the program is, and the subcommands LightningCLI does not list.
DESCRIPTION = (
    "DETACH: align a fixed camera with ambient sensors (stage 1, stage 2), then recognise actions "
    "from the sensors alone (the linear probe). Configs per dataset and stage are under configs/."
)
EPILOG = (
    "Also: `detach prepare --config <data or stage config>` builds a dataset's window cache and "
    "prints what reading it found; `detach export --ckpt_path <probe> --output model.onnx` exports "
    "the sensor-only model (docs/deploy.md). Each takes --help."
)


def main(args: list[str] | None = None, run: bool = True) -> DetachCLI | None:
    """Entry point of `detach`; `args` lets tests call it in-process.

    `detach export …` is dispatched to `detach_pl.deploy.export` and `detach prepare …` to
    `detach_pl.data.prepare` (no Trainer involved in either).

    Log lines go through `logging_redirect_tqdm`, so warnings print above the progress bars
    instead of breaking them.
    """
    arguments = sys.argv[1:] if args is None else list(args)
    if arguments[:1] == ["export"]:
        from detach_pl.deploy.export import export_main

        export_main(arguments[1:])
        return None
    if arguments[:1] == ["prepare"]:
        from detach_pl.data.prepare import prepare_main

        with logging_redirect_tqdm(loggers=console_loggers()):
            prepare_main(arguments[1:])
        return None
    with logging_redirect_tqdm(loggers=console_loggers()):
        return DetachCLI(
            DetachModule,
            pl.LightningDataModule,  # WindowDataModule subclasses, or detach_pl.deploy's recordings
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            auto_configure_optimizers=False,
            parser_class=DetachArgumentParser,
            parser_kwargs={"description": DESCRIPTION, "epilog": EPILOG},
        )


#: Errors that answer a user's input (a setting, a file, a checkpoint, a diverged fit): printed as one message.
USER_ERRORS = (
    ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FloatingPointError,
)
#: Set to 1 to see the full traceback of such an error.
TRACEBACK_VARIABLE = "DETACH_TRACEBACK"


def where_raised(error: BaseException) -> str:
    """`file:line` of the innermost frame of `error` inside detach_pl (else the innermost frame)."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [frame for frame in frames if f"{os.sep}detach_pl{os.sep}" in frame.filename]
    frame = (ours or frames)[-1]
    parts = Path(frame.filename).parts
    short = Path(*parts[parts.index("detach_pl"):]) if "detach_pl" in parts else Path(frame.filename).name
    return f"{short}:{frame.lineno}"


def console_main() -> None:
    """The `detach` console script: exit status 0 on success, 2 on bad input.

    A mistake in a setting, a file or a checkpoint prints its message (which names what is wrong
    and what was expected) and where it was raised, instead of a 30-line traceback; set
    DETACH_TRACEBACK=1 to see the traceback. Other exceptions keep theirs.
    """
    try:
        main()
    except USER_ERRORS as error:
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        print(f"detach: error: {error}", file=sys.stderr)
        if not isinstance(error, SettingError):  # where the parser raised it tells nothing
            print(f"  (raised at {where_raised(error)}; {TRACEBACK_VARIABLE}=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    from detach_pl.console import run

    run(console_main, sys.argv[1:])  # as the `detach` script: predict and export exit fast
