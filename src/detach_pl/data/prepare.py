"""`detach prepare`: build a dataset's window cache ahead of training and print what preparing found.

    detach prepare --config configs/opp/data.yaml --data.init_args.root /data/Opportunity++
    detach prepare --config configs/opp/stage1.yaml --data.init_args.root /data/Opportunity++

The configuration is read as `detach fit` reads it, so the cache is the one training will use:
a data config (a file with a top-level `class_path`, e.g. `configs/<dataset>/data.yaml`) or a
stage config, whose `data:` entry is taken and whose other entries (model, trainer, run folder)
are ignored, as are `--model.*`, `--trainer.*`, … options (a `fit` command line works with `fit`
replaced by `prepare`). Without a config the built-in synthetic kitchen is prepared.

The cache is built once (with a progress bar unless `--data.init_args.progress false`); a second
run finds it and prints the stored report. The report is written beside the cache
(`<cache>.report.json`) by the DataModule's `prepare_data`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from detach_pl.data.datamodule import WindowDataModule
from detach_pl.parse_errors import PlainErrorParser, read_config_file

#: The DataModule of a command whose configs name none (`detach prepare`, `detach fit`, …): the
#: built-in synthetic kitchen.
DEFAULT_DATA = "detach_pl.data.synthetic.SyntheticKitchenDataModule"
#: Options of `detach prepare` itself; every other top-level option is accepted and ignored.
OWN_OPTIONS = ("config", "data", "help", "print_config")


def config_entries(path: str) -> dict[str, Any]:
    """The top-level entries of a YAML config file.

    Raises:
        SettingError: There is no such file, or it is not valid YAML.
        ValueError: The file is not a YAML mapping.
    """
    entries = read_config_file("detach prepare --config", path)
    if not isinstance(entries, dict):
        raise ValueError(f"detach prepare --config {path}: expected a YAML mapping, got {type(entries).__name__}")
    return entries


def split_arguments(args: Sequence[str]) -> tuple[list[str], set[str]]:
    """The arguments `detach prepare` parses, and the top-level keys it ignores.

    A `--config` naming a data config becomes `--data <file>`; options outside `OWN_OPTIONS`
    (with their value) are dropped; a stage config's entries other than `data` are ignored, and
    so are overlays without one (`configs/cluster/ddp.yaml`) beside a config that has one.

    Raises:
        ValueError: `--config` files of which none is a data config or has a `data:` entry.
    """
    kept: list[str] = []
    ignored: set[str] = set()
    with_data: list[str] = []
    without_data: list[tuple[str, list[str]]] = []
    index = 0
    while index < len(args):
        option = args[index]
        name, has_value = option[2:].split("=", 1)[0], "=" in option
        value_follows = not has_value and index + 1 < len(args) and not args[index + 1].startswith("--")
        value = option.split("=", 1)[1] if has_value else (args[index + 1] if value_follows else None)
        step = 1 if has_value or not value_follows else 2
        top = name.split(".", 1)[0]
        if not option.startswith("--") or top in ("help", "print_config") and value is None:
            kept.append(option)
            index += 1
            continue
        if top == "config" and value is not None:
            entries = config_entries(value)
            if "class_path" in entries:
                kept += ["--data", value]
                with_data.append(value)
            else:
                kept += ["--config", value]
                ignored |= set(entries) - {"data"}
                with_data += [value] if "data" in entries else []
                without_data.append((value, sorted(entries)))
        elif top in OWN_OPTIONS:
            kept += args[index : index + step]
        index += step
    if without_data and not with_data:
        value, keys = without_data[0]
        raise ValueError(
            f"detach prepare --config {value}: neither a data config (a top-level class_path, like "
            f"configs/opp/data.yaml) nor a stage config with a data: entry (its keys: {keys})"
        )
    if not with_data and not any(arg == "--data" or arg.startswith("--data=") for arg in kept):
        kept = ["--data", DEFAULT_DATA, *kept]  # as detach fit: on the command line, not as a parser default
    return kept, ignored


def build_parser(ignored: set[str]) -> ArgumentParser:
    """A parser of the `data` section exactly as `detach fit` has it, plus ignored stage entries."""
    parser = PlainErrorParser(prog="detach prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="a data or stage config (YAML)")
    parser.add_subclass_arguments(WindowDataModule, "data", required=True, fail_untyped=False)
    for key in sorted(ignored):
        parser.add_argument(f"--{key}", type=Any, default=None, help="ignored by detach prepare")
    return parser


def configured_datamodule(args: Sequence[str]) -> WindowDataModule:
    """The DataModule a data or stage config and its overrides describe (nothing read yet).

    A constructor's own error (a bad setting) is raised as it is, not inside jsonargparse's
    "does not validate against any of the Union subtypes" message.
    """
    kept, ignored = split_arguments(list(args))
    parser = build_parser(ignored)
    config: Namespace = parser.parse_args(kept)
    errors: list[Exception] = []

    def instantiate(class_type: type, *init_args: Any, **kwargs: Any) -> Any:
        try:
            return class_type(*init_args, **kwargs)
        except Exception as error:
            errors.append(error)
            raise

    parser.add_instantiator(instantiate, object)
    try:
        return parser.instantiate_classes(config).data
    except Exception as error:
        if errors and errors[0] is not error:
            raise errors[0] from None
        raise


def prepare_main(args: Sequence[str] | None = None) -> WindowDataModule:
    """`detach prepare …`: build the cache if it is missing and print the report summary.

    Returns:
        The prepared DataModule (its `report` and `reports` hold what preparing found).
    """
    data = configured_datamodule(sys.argv[1:] if args is None else args)
    existed = data.cache_path.is_file()
    data.prepare_data()
    print(("cache already prepared\n" if existed else "") + data.summary())
    return data
