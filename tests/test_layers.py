"""The import graph of detach_pl has no upward arrow: each layer imports only itself and the layers below.

Every module under src/detach_pl is parsed with `ast` (imports inside functions count too), so an
import that only runs on some path is caught as well as one at the top of a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "detach_pl"

# Lowest first: a module may import its own layer and the layers listed before it, never a later one.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {
        "__init__", "io", "checkpoints", "settings", "parse_errors", "seeding", "distributed", "transforms", "metrics",
        "plots", "diagnostics",
    }),
    ("core: readers, networks, losses", {"data", "nn", "losses", "clustering"}),
    ("LightningModules", {"modules"}),
    ("deployment", {"deploy"}),
    ("command line", {"cli", "console"}),
    ("stage chain and reports", {"pipeline", "folds", "report"}),
    ("stand-ins for tests and benchmarks", {"testing"}),
]
LEVEL = {unit: level for level, (_, units) in enumerate(LAYERS) for unit in units}


def unit_of(path: Path) -> str:
    """The top-level unit of a file: its sub-package (data, nn, …) or its module name (io, cli, …)."""
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def imported_units(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, imported module, its detach_pl unit) of every absolute detach_pl import in a parsed file."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "detach_pl":
                found.append((node.lineno, module, parts[1] if len(parts) > 1 else "__init__"))
    return found


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(path) for path in source_files()}
    assert units - LEVEL.keys() == set(), "add these modules or packages to LAYERS in tests/test_layers.py"


def test_no_relative_imports() -> None:
    relative = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in source_files()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert not relative, "relative imports hide the layer they reach; write them absolute:\n" + "\n".join(relative)


def test_no_import_reaches_a_higher_layer() -> None:
    upward = []
    for path in source_files():
        unit = unit_of(path)
        level = LEVEL[unit]
        for line, module, target in imported_units(ast.parse(path.read_text())):
            if LEVEL.get(target, -1) > level:
                upward.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {unit} ({LAYERS[level][0]}) imports {module} "
                    f"({LAYERS[LEVEL[target]][0]})"
                )
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("data", "cli"), ("data", "modules"), ("data", "pipeline"), ("data", "deploy"),
        ("nn", "modules"), ("losses", "deploy"), ("clustering", "pipeline"),
        ("deploy", "cli"), ("deploy", "pipeline"),
        ("modules", "cli"), ("modules", "pipeline"), ("modules", "deploy"),
        ("data", "testing"), ("cli", "testing"),
    ],
)
def test_the_table_forbids_the_arrows_the_design_names(lower: str, higher: str) -> None:
    assert LEVEL[lower] < LEVEL[higher]


def test_an_upward_import_is_reported_with_its_line() -> None:
    tree = ast.parse("import os\n\ndef f():\n    from detach_pl.cli import main\n")
    assert imported_units(tree) == [(4, "detach_pl.cli", "cli")]
