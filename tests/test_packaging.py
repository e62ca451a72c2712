"""The wheel `pip install` builds: what a user gets besides the modules (PEP 561 marker, licence, data, scripts)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The project's wheel, built offline from a copy of its sources (no `build/` left in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "--quiet", "--wheel-dir", str(out)], capture_output=True, text=True)
    assert built.returncode == 0, f"pip wheel failed:\n{built.stderr}"
    (path,) = out.glob("detach_pl-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_the_type_marker_the_licence_and_the_fixtures(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "detach_pl/py.typed" in names
    (licence,) = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(licence) == (ROOT / "LICENSE").read_bytes()
    fixtures = {path.relative_to(ROOT / "src").as_posix()  # the release files, not the repository's dotfiles
                for path in (ROOT / "src/detach_pl/testing/fixtures").rglob("[!.]*") if path.is_file()}
    assert "detach_pl/testing/fixtures/opportunity/column_names.txt" in fixtures
    assert fixtures <= names
    (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
    assert "License-Expression: Apache-2.0" in wheel.read(metadata).decode().splitlines()


def test_wheel_declares_the_console_scripts_the_readme_uses(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry_points).decode())
    assert dict(parser["console_scripts"]) == {"detach": "detach_pl.console:console_main",
                                               "detach-folds": "detach_pl.folds:console_main"}
