"""Range checks of settings, made once at construction with the settings' config names.

A setting out of range (a zero temperature, a quantile above 1, zero clusters) would otherwise
surface epochs later as a NaN loss or an error deep inside a loss or the k-means, naming neither
the setting nor what was expected. `check_settings` raises one error that lists every bad setting
as the config spells it, e.g. ``model.init_args.confidence_quantile=1.5 must be in [0, 1]``.
The modules, the DataModules and the window settings all check theirs with it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

#: (setting name, its value, whether the value is acceptable, what is expected).
SettingRule = tuple[str, object, bool, str]

SECTION = "model.init_args"


def check_settings(rules: Iterable[SettingRule], section: str = SECTION) -> None:
    """Raise ValueError naming each setting whose rule fails: ``<section>.<name>=<value> must be <expected>``.

    Args:
        rules: (name, value, acceptable, expected) per setting; `expected` completes "must be …".
        section: Where the settings live in a config ("model.init_args").
    """
    failed = [f"{section}.{name}={value!r} must be {expected}" for name, value, ok, expected in rules if not ok]
    if failed:
        raise ValueError("; ".join(failed))


def positive(name: str, value: float) -> SettingRule:
    """The rule `value > 0`."""
    return name, value, value > 0, "> 0"


def at_least(name: str, value: float | None, low: float, *, null: str | None = None) -> SettingRule:
    """The rule `value >= low`; with `null` (what None means), None is accepted too."""
    if null is not None:
        return name, value, value is None or value >= low, f">= {low} (or null: {null})"
    return name, value, value is not None and value >= low, f">= {low}"


def fraction(name: str, value: float, *, include_zero: bool = True, include_one: bool = True) -> SettingRule:
    """The rule `0 <= value <= 1`; `include_zero` / `include_one` False make that end open."""
    above = value >= 0.0 if include_zero else value > 0.0
    below = value <= 1.0 if include_one else value < 1.0
    interval = f"{'[' if include_zero else '('}0, 1{']' if include_one else ')'}"
    return name, value, above and below, f"in {interval}"


def one_of(name: str, value: object, allowed: Collection[object]) -> SettingRule:
    """The rule `value in allowed` (for settings a Literal types: Python callers pass anything)."""
    return name, value, value in allowed, f"one of {list(allowed)}"


def distinct_names(name: str, value: Sequence[str] | None, *, null: str | None = None) -> SettingRule:
    """The rule "at least one name, none repeated"; with `null` (what None means), None is accepted too."""
    ok = value is not None and len(value) > 0 and len(set(value)) == len(value)
    expected = "a list of at least one name, none repeated"
    if null is not None:
        return name, value, value is None or ok, f"{expected} (or null: {null})"
    return name, value, ok, expected
