"""The prepared GPU check runs as it would on a GPU machine without network, in its CPU-checkable parts.

Such a machine's Python holds torch but neither this project nor PyAV: `benchmarks/gpu_check.sh`
installs the carried wheels (`make gpu-wheels`) and falls back to src/. Here a Python without
site-packages (`-S`) sees this venv's packages except PyAV and detach_pl, and PyAV's wheel is
packed offline from its installed files. Three steps: the loader measurements then need more
batches than one epoch of the stand-in holds.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "benchmarks" / "gpu_check.sh"
ARGS = ["--device", "cpu", "--tiny", "--steps", "3"]
SIX = ("stage1_fp32", "stage1_bf16", "stage1_bf16_fast", "stage2_fp32", "stage2_bf16", "stage2_bf16_fast")


def _is_left_out(name: str) -> bool:
    """PyAV and this project (its editable-install hooks too): what the GPU image lacks."""
    return name in ("av", "av.libs") or name.startswith(("av-", "detach_pl", "__editable__")) or name.endswith(".pth")


def _image_python(folder: Path) -> Path:
    """An executable running this interpreter as the GPU image's Python: installed packages minus the left-out ones."""
    packages = folder / "site-packages"
    packages.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not _is_left_out(entry.name):
            (packages / entry.name).symlink_to(entry)
    python = folder / "python3"
    search = f'"${{PYTHONPATH:+$PYTHONPATH:}}"{shlex.quote(str(packages))}'
    python.write_text(f'#!/bin/sh\nPYTHONPATH={search} exec {shlex.quote(sys.executable)} -S "$@"\n')
    python.chmod(0o755)
    return python


def _wheel_of_installed(name: str, folder: Path) -> Path:
    """The installed distribution `name` packed back into a wheel: the files its RECORD lists, under its tag."""
    dist = importlib.metadata.distribution(name)
    (tag,) = [line.split(": ", 1)[1] for line in dist.read_text("WHEEL").splitlines() if line.startswith("Tag: ")]
    path = folder / f"{name}-{dist.version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as wheel:
        for file in dist.files or []:
            installer_only = file.name in ("INSTALLER", "REQUESTED", "direct_url.json")
            if file.parts[0] != ".." and "__pycache__" not in file.parts and not installer_only:
                wheel.write(Path(str(file.locate())), file.as_posix())
    return path


def _run_check(tmp_path: Path, wheels: Path) -> subprocess.CompletedProcess:
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHON=str(_image_python(tmp_path)), GPU_WHEELS=str(wheels), TMPDIR=str(scratch))
    return subprocess.run([str(CHECK), *ARGS, "--json", str(tmp_path / "g.json")], env=env, capture_output=True,
                          text=True, timeout=300)


def test_image_python_lacks_what_the_gpu_image_lacks(tmp_path: Path) -> None:
    python = _image_python(tmp_path)
    for module in ("av", "detach_pl"):
        found = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, cwd=tmp_path)
        assert found.returncode != 0, f"{module} is importable: the test's stand-in for the GPU image is wrong"
    assert subprocess.run([str(python), "-c", "import torch, h5py, lightning"], cwd=tmp_path).returncode == 0


def test_gpu_check_runs_with_carried_wheels_and_src(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel_of_installed("av", wheels)
    done = _run_check(tmp_path, wheels)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads((tmp_path / "g.json").read_text())
    for key in SIX:
        assert figures[key]["steps_s"] > 0 and figures[key]["windows_s"] > 0
    assert figures["clip_decode"]["jpeg_windows_s"] > 0 and figures["clip_decode"]["raw_windows_s"] > 0
    assert not list((tmp_path / "tmp").glob("detach_wheels.*")), "the installed wheels' scratch folder was left behind"


def test_gpu_check_names_the_missing_package_and_the_fix(tmp_path: Path) -> None:
    empty = tmp_path / "no_wheels"
    empty.mkdir()
    done = _run_check(tmp_path, empty)
    assert done.returncode == 2
    assert "cannot import 'av'" in done.stderr and "make gpu-wheels" in done.stderr
    assert not (tmp_path / "g.json").exists()


def _module_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def test_gpu_figures_file_is_not_written_off_the_gpu_by_default(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *ARGS], env=_module_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--json is needed on cpu" in done.stderr


@pytest.mark.slow  # the paper's encoders on 20 x 224^2 clips, 4 workers: about a minute on 2 cores
def test_gpu_check_paper_path_runs_on_cpu_at_a_small_batch(tmp_path: Path) -> None:
    out = tmp_path / "paper.json"
    subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--batch", "2", "--steps", "2",
                    "--json", str(out)], env=_module_env(), cwd=tmp_path, check=True, timeout=900)
    figures = json.loads(out.read_text())
    assert (figures["batch"], figures["frames"], figures["image"], figures["workers"]) == (2, 20, 224, 4)
    assert all(figures[key]["windows_s"] > 0 for key in SIX)
