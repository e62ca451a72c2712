"""jsonargparse's parse errors as one plain line: the setting, what was wrong, what was expected.

jsonargparse reports a misspelt or mistyped setting of a model or DataModule inside the union of
the types the parser tried (`Does not validate against any of the Union subtypes …`), after the
whole usage of the subcommand (about 80 lines), and a misspelt Trainer option as
`Unrecognized arguments: fit`, without the option. `PlainErrorParser` turns the errors it
recognises into a `SettingError` that names the setting as a config spells it, what was given
and what was expected, with the nearest settings that exist:

    model.init_args.refine_start_epch: SpatialGroundingModule has no setting 'refine_start_epch'
    (did you mean 'refine_start_epoch'?); `--model.help SpatialGroundingModule` lists them

Config files are named the same way: a `--config` file that is not valid YAML is named with its
line and column before jsonargparse reads it (which reports `in "<unicode string>"`), and a
missing config file, given on the command line or inside a config (`data: data.yaml`), is named
with the setting that names it.

The messages are recognised by their text, as the pinned jsonargparse writes them
(tests/test_parse_errors.py); an error it does not recognise keeps jsonargparse's own message and
usage.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import os
import re
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from jsonargparse import ArgumentParser, Namespace


class SettingError(ValueError):
    """A setting that the parser refused: the message names it and what was expected."""


#: How alike (difflib's ratio) a name must be to be suggested, and how near to the best suggestion.
SUGGEST_CUTOFF, SUGGEST_SPREAD = 0.6, 0.1


def close_names(name: str, names: Sequence[str]) -> str:
    """`` (did you mean 'a' or 'b'?)`` for the names nearest to `name` (at most two, both about as near).

    Without a near name, the names that start with `name_` (`sensor` → `sensor_spatial_style`, …),
    else nothing.
    """
    scores = sorted(((difflib.SequenceMatcher(None, name, option).ratio(), option) for option in names), reverse=True)
    best = scores[0][0] if scores else 0.0
    near = [option for score, option in scores[:2] if score >= max(SUGGEST_CUTOFF, best - SUGGEST_SPREAD)]
    if not near:
        prefixed = [option for option in names if option.startswith(f"{name}_")]
        return f" (the settings starting with {name}_: {', '.join(prefixed)})" if prefixed else ""
    return f" (did you mean {' or '.join(repr(option) for option in near)}?)"


def yaml_error_text(error: yaml.YAMLError) -> str:
    """`line L, column C: <what is wrong>` for a YAML parse error (1-based, as editors count).

    Where the error has a context (a bracket opened earlier), where that started is added.
    """
    if not isinstance(error, yaml.MarkedYAMLError):
        return str(error)

    def at(mark: yaml.Mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    problem = error.problem or error.context or "not valid YAML"
    where = f"{at(error.problem_mark)}: " if error.problem_mark is not None else ""
    opened = error.context_mark is not None and error.context is not None and error.problem is not None
    started = f" ({error.context.removeprefix('while ')} started at {at(error.context_mark)})" if opened else ""
    return f"{where}{problem}{started}"


def read_config_file(setting: str, path: str | Path) -> Any:
    """The content of a YAML (or JSON) config file that `setting` names.

    Raises:
        SettingError: No such file, a folder, not UTF-8 text, or not valid YAML (line and column named).
    """
    file = Path(path)
    if not file.exists():
        raise SettingError(f"{setting} {path}: no such config file")
    if not file.is_file():
        raise SettingError(f"{setting} {path} is a folder, not a config file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SettingError(f"{setting} {path} is not a config file (not UTF-8 text: {error.reason})") from error
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SettingError(f"{setting} {path} is not valid YAML: {yaml_error_text(error)}") from error


def config_values(args: Sequence[str]) -> Iterator[str]:
    """The values of every `--config` / `-c` / `--config=…` in a command line."""
    for position, arg in enumerate(args):
        if arg.startswith("--config="):
            yield arg.split("=", 1)[1]
        elif arg in ("--config", "-c") and position + 1 < len(args):
            yield args[position + 1]


def named_file_problem(setting: str, value: str) -> str | None:
    """A plain message for a config file that a setting names and jsonargparse could not load."""
    try:
        read_config_file(setting, value)
    except SettingError as error:
        if Path(value).exists() or Path(value).is_absolute():
            return str(error)
        return (
            f"{setting} {value}: no such config file (a file named in a config is relative to that config's "
            "folder, one on the command line to the working directory)"
        )
    return None


def init_settings(cls: type) -> dict[str, Any]:
    """The constructor settings a config can give `cls` → their annotations.

    Follows `**kwargs` into the parent classes' constructors, as jsonargparse does.
    """
    settings: dict[str, Any] = {}
    for klass in cls.__mro__:
        constructor = vars(klass).get("__init__")
        if constructor is None or klass is object:
            continue
        try:
            hints = typing.get_type_hints(constructor)
        except Exception:  # noqa: BLE001 - an annotation that does not resolve only costs the suggestion
            hints = {}
        parameters = inspect.signature(constructor).parameters.values()
        for parameter in parameters:
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY) and parameter.name != "self":
                settings.setdefault(parameter.name, hints.get(parameter.name))
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
            break
    return settings


def dataclass_in(annotation: Any) -> type | None:
    """The dataclass an annotation names, alone or in a union (`EncoderConfig | dict`), else None."""
    members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or (
        typing.get_origin(annotation) is typing.Union) else (annotation,)
    return next((m for m in members if isinstance(m, type) and dataclasses.is_dataclass(m)), None)


def field_types(cls: type) -> dict[str, Any]:
    """A dataclass's fields → their annotations."""
    hints = typing.get_type_hints(cls)
    return {field.name: hints.get(field.name) for field in dataclasses.fields(cls)}


def unknown_nested_setting(cls: type, path: list[str]) -> str:
    """Where the dotted `path` below `cls`'s settings stops matching, and the nearest names there."""
    settings, owner = init_settings(cls), cls.__name__
    for depth, name in enumerate(path):
        if name not in settings:
            where = owner if depth == 0 else f"{owner} ({'.'.join(path[:depth])})"
            return f"{where} has no setting {name!r}{close_names(name, list(settings))}"
        inner = dataclass_in(settings[name])
        if inner is None:
            return f"{owner}'s {'.'.join(path[:depth + 1])} has no setting {'.'.join(path[depth + 1:])!r}"
        settings, owner = field_types(inner), inner.__name__
    return f"{owner} does not accept {'.'.join(path)!r}"


#: jsonargparse's spelling of a type → what a user is told is expected.
EXPECTED = {"<class 'int'>": "an integer", "<class 'float'>": "a number", "<class 'bool'>": "true or false",
            "<class 'str'>": "a string", "<class 'NoneType'>": "null"}


def expected_text(type_text: str) -> str:
    """What a type, as jsonargparse writes it, means to a user: `an integer`, `one of 'a', 'b'`."""
    literal = re.fullmatch(r"typing\.Literal\[(.*)\]", type_text)
    if literal:
        return f"one of {literal.group(1)}"
    return EXPECTED.get(type_text, type_text)


def class_problem(key: str, class_path: str, problem: str) -> str | None:
    """A plain message for jsonargparse's `Problem with given class_path …` of setting `key`."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):  # jsonargparse's own message names such a class
        return None
    listed = f"`--{key}.help {name}` lists them"
    unknown = re.fullmatch(r"Option '([^']+)' is not accepted", problem)
    if unknown:
        option = unknown.group(1)
        return f"{key}.init_args.{option}: {unknown_nested_setting(cls, [option])}; {listed}"
    unrecognized = re.fullmatch(r"Unrecognized arguments: --([^=\s]+)(?:=.*)?", problem)
    if unrecognized:
        path = unrecognized.group(1)
        return f"{key}.init_args.{path}: {unknown_nested_setting(cls, path.split('.'))}; {listed}"
    unloadable = re.match(r"Parser key \"([^\"]+)\": Unable to load config '([^']+)'", problem)
    if unloadable:
        return named_file_problem(f"{key}.init_args.{unloadable.group(1)}", unloadable.group(2))
    mistyped = re.fullmatch(r"Parser key \"([^\"]+)\":\s+Expected a (.+?)\. Got value: (.*)", problem, re.DOTALL)
    if mistyped:
        setting, type_text, value = mistyped.groups()
        return f"{key}.init_args.{setting}={value.strip()!r}: {name} expects {expected_text(type_text.strip())}"
    return None


def top_level_problem(message: str) -> str | None:
    """A plain message for a Trainer (or other top-level) setting of the wrong type."""
    match = re.match(r"Parser key \"([^\"]+)\":\n", message)
    if not match or "Does not validate against any of the Union subtypes" not in message:
        return None
    given = re.search(r"\n\s*Given value: (.*)$", message)
    errors = re.findall(r"^\s+- Expected a (.+)$", message, re.MULTILINE)
    if not given or not errors:
        return None
    expected = " or ".join(expected_text(text.strip()) for text in errors)
    return f"{match.group(1)}={given.group(1).strip()!r}: expected {expected}"


def option_strings(parser: ArgumentParser) -> Iterator[str]:
    """Every `--option` a parser accepts by that spelling."""
    for action in parser._actions:
        yield from (option for option in action.option_strings if option.startswith("--"))


def unknown_options(parser: ArgumentParser, unrecognized: Sequence[str]) -> str | None:
    """A plain message for the `--options` among the `unrecognized` arguments, with the nearest known ones.

    When `parser` has subcommands and the arguments start with one, the subcommand's parser
    is the one that knows the options.
    """
    subcommands = getattr(parser, "_subcommands_action", None)
    if subcommands is not None and unrecognized and unrecognized[0] in subcommands.choices:
        parser = subcommands.choices[unrecognized[0]]
    unknown = [arg.split("=", 1)[0] for arg in unrecognized if arg.startswith("--")]
    if not unknown:
        return None
    known = sorted(set(option_strings(parser)))
    named = "; ".join(f"{option}{close_names(option, known)}" for option in unknown)
    return f"unknown option(s) {named}; `{parser.prog.replace(' [options]', '')} --help` lists every option"


def subcommand_problem(message: str, parser: ArgumentParser) -> str | None:
    """A plain message for a missing or unknown subcommand, naming every subcommand there is."""
    subcommands = getattr(parser, "_subcommands_action", None)
    if subcommands is None:
        return None
    names = [*subcommands.choices, *getattr(parser, "other_subcommands", ())]
    listed = f"give one of {', '.join(names)} (`{parser.prog} <subcommand> --help` shows its options)"
    if re.fullmatch(r'expected "subcommand" to be one of \{.*\}, but it was not provided\.', message):
        return f"no subcommand: {listed}"
    invalid = re.fullmatch(r"argument subcommand: invalid choice: '([^']*)' \(choose from .*\)", message)
    if invalid:
        return f"{invalid.group(1)!r} is not a subcommand{close_names(invalid.group(1), names)}: {listed}"
    return None


#: A config that names a model, for each subcommand (said when the model is missing).
EXAMPLE_CONFIGS = {"fit": "configs/demo/stage1.yaml", "validate": "configs/demo/probe.yaml",
                   "test": "configs/demo/probe.yaml", "predict": "configs/demo/predict.yaml"}


def missing_option(parser: ArgumentParser, key: str) -> str:
    """A plain message for a required option `key` (`fit.model`, `ckpt_path`) that was not given."""
    subcommands = getattr(parser, "_subcommands_action", None)
    first, _, rest = key.partition(".")
    subcommand = None
    if subcommands is not None and rest and first in subcommands.choices:
        subcommand, parser, key = first, subcommands.choices[first], rest
    command = parser.prog.replace(" [options]", "")
    if key == "model":
        example = EXAMPLE_CONFIGS.get(subcommand or "", EXAMPLE_CONFIGS["fit"])
        return (f"{command} has no model: give a config that names one (e.g. --config {example}) or "
                "--model <class> (e.g. SpatialGroundingModule)")
    helps = [action.help for action in parser._actions if action.dest == key and action.help]
    return f"{command} needs --{key}" + (f": {helps[0]}" if helps else "")


def plain_parse_error(message: str, parser: ArgumentParser) -> str | None:
    """The plain message for a jsonargparse error (None: not one that is recognised)."""
    if message.startswith(("expected \"subcommand\"", "argument subcommand:")):
        return subcommand_problem(message, parser)
    no_path = re.match(r"Parser key \"(model|data)\":\s+- Expected a path but (\S+) either not accessible", message)
    if no_path and no_path.group(2).endswith(CONFIG_SUFFIXES):
        return named_file_problem(no_path.group(1), no_path.group(2))
    found = re.search(
        r"^Parser key \"([^\"]+)\":.*?Problem with given class_path '([^']+)':\n(.*?)\n\s*Given value type:",
        message, re.DOTALL,
    )
    if found:
        return class_problem(found.group(1), found.group(2), " ".join(found.group(3).split()))
    no_class = re.search(r"^Parser key \"(model|data)\":.*Expected a dot import path string: (\S+)", message, re.DOTALL)
    if no_class:
        key, value = no_class.groups()
        return (f"{key}={value!r} names no class: give a class name as configs/ do (e.g. SpatialGroundingModule, "
                f"SyntheticKitchenDataModule) or its dotted import path")
    missing_config = re.fullmatch(r"Parser key \"config\": (?:File does not exist|Path is not a file): '(.*)'", message)
    if missing_config:
        return named_file_problem("--config", missing_config.group(1))
    required = re.fullmatch(r"Option '([\w.]+)' is required but not provided or its value is None\.", message)
    if required:
        return missing_option(parser, required.group(1))
    choice = re.fullmatch(r"argument (--[\w.]+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        option, value, listed = choice.groups()
        choices = re.findall(r"'([^']*)'", listed)
        return f"{option}={value!r}: expected one of {listed}{close_names(value, choices)}"
    if message.startswith("Unrecognized arguments: "):
        return unknown_options(parser, message.removeprefix("Unrecognized arguments: ").split())
    return top_level_problem(message)


#: What a config file's name ends with (a value so named is a file, not a class name).
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")

#: jsonargparse's debug switch: with it set, its errors are raised as they are.
DEBUG_VARIABLE = "JSONARGPARSE_DEBUG"


class PlainErrorParser(ArgumentParser):
    """A jsonargparse parser whose final parse error is one plain line where it can be (module docstring)."""

    #: Subcommands that the program dispatches before this parser sees them (named in its errors).
    other_subcommands: tuple[str, ...] = ()

    def parse_args(  # type: ignore[override]  # as jsonargparse itself overrides it
        self, args: Sequence[str] | None = None, *more: Any, **kwargs: Any
    ) -> Namespace:
        """Parse, after checking that every `--config` file given is valid YAML.

        jsonargparse reports a YAML mistake without the file (`in "<unicode string>", line 3`).
        A `--config` value that is no file is left to jsonargparse (inline YAML is allowed there).

        Raises:
            SettingError: A `--config` file that is not valid YAML, with the file, line and column.
        """
        for value in config_values(list(args) if args is not None else sys.argv[1:]):
            if Path(value).is_file():
                read_config_file("--config", value)
        return super().parse_args(args, *more, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """Raise `SettingError` for an error `plain_parse_error` recognises; else jsonargparse's own handling.

        Only the error that would end the program is translated: a parser that does not exit on
        errors is one jsonargparse tries options with, and its errors are caught inside it.
        """
        if self.exit_on_error and os.environ.get(DEBUG_VARIABLE, "").lower() not in ("true", "1", "yes"):
            plain = plain_parse_error(message, self)
            if plain is not None:
                raise SettingError(plain) from ex
        super().error(message, ex)
