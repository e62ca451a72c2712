"""The `detach` launcher (detach_pl.console): paused collector on import, fast exit after predict/export."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from detach_pl.console import exits_fast, import_paused
from helpers import DEMO, REPO

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
#: The `detach` console script of this environment (pyproject.toml [project.scripts]).
DETACH = Path(sys.executable).with_name("detach")


def python(code: str, *arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter of this environment."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *arguments], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("enabled", [True, False])
def test_import_paused_imports_with_the_collector_off_then_freezes_and_restores_it(
    enabled: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "probe_collector_module.py").write_text("import gc\nCOLLECTING = gc.isenabled()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    was_enabled = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        frozen_before = gc.get_freeze_count()
        module = import_paused("probe_collector_module")
        assert module is sys.modules["probe_collector_module"]
        assert module.COLLECTING is False
        assert gc.isenabled() is enabled
        assert gc.get_freeze_count() > frozen_before
    finally:
        sys.modules.pop("probe_collector_module", None)
        gc.unfreeze()
        (gc.enable if was_enabled else gc.disable)()


def test_only_predict_and_export_exit_fast() -> None:
    assert exits_fast(["predict", "--config", "x.yaml"]) and exits_fast(["export", "--ckpt_path", "p.ckpt"])
    for arguments in (["fit", "--config", "x.yaml"], ["test"], ["prepare"], ["validate"], [], ["--help"]):
        assert not exits_fast(arguments)


#: A command that leaves work for the interpreter's exit: an atexit handler, a non-daemon thread
#: still writing, unflushed stdout (a pipe: block-buffered), and an object whose finaliser runs
#: only when the interpreter tears its modules down.
EXIT_WORK = """
    import atexit, sys, threading, time
    from pathlib import Path
    from detach_pl.console import run

    class Teardown:
        def __del__(self, write=Path("teardown").write_text):  # bound now: names are gone at teardown
            write("ran")

    KEPT = Teardown()
    atexit.register(lambda: Path("atexit").write_text("ran"))
    def late_writer():
        time.sleep(0.3)
        Path("thread").write_text("ran")
    threading.Thread(target=late_writer).start()
    sys.stdout.write("unflushed")

    def command():
        if sys.argv[2] == "raise":
            raise RuntimeError("the command failed")
        if sys.argv[2] == "exit2":
            raise SystemExit(2)
    run(command, sys.argv[1:2])
"""


def test_fast_exit_does_the_exit_work_that_matters_and_skips_the_teardown(tmp_path: Path) -> None:
    done = python(EXIT_WORK, "predict", "ok", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "unflushed"
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "ran"
    assert not (tmp_path / "teardown").exists()  # the interpreter's teardown was skipped


def test_other_subcommands_exit_the_ordinary_way(tmp_path: Path) -> None:
    done = python(EXIT_WORK, "fit", "ok", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "unflushed"
    assert {path.name for path in tmp_path.iterdir()} == {"atexit", "thread", "teardown"}


@pytest.mark.parametrize(("outcome", "status", "message"), [("raise", 1, "RuntimeError: the command failed"),
                                                            ("exit2", 2, "")])
def test_a_failed_predict_keeps_its_exit_status_and_message(tmp_path: Path, outcome: str, status: int,
                                                            message: str) -> None:
    done = python(EXIT_WORK, "predict", outcome, cwd=tmp_path)
    assert done.returncode == status
    assert message in done.stderr
    assert (tmp_path / "atexit").exists() and (tmp_path / "thread").exists()
    assert (tmp_path / "teardown").exists()  # ordinary exit


def test_detach_script_predicts_the_same_files_as_the_in_process_command(probe_ckpt, predicted, tmp_path) -> None:
    """The console script (fresh process, fast exit) writes complete outputs, byte for byte those of `main`."""
    assert DETACH.is_file(), f"{DETACH}: the console script is not installed (pip install -e .)"
    done = subprocess.run([str(DETACH), "predict", "--config", str(DEMO / "predict.yaml"), "--ckpt_path",
                           str(probe_ckpt), "--data.recordings", "[run02]", *QUIET],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    written = tmp_path / "runs/demo/predict"
    names = sorted(path.name for path in predicted.iterdir())
    assert names == sorted(path.name for path in written.iterdir())
    assert {"run02.windows.csv", "run02.events.csv", "run02.timeline.png"} <= set(names)
    for name in names:
        assert (written / name).read_bytes() == (predicted / name).read_bytes(), name


@pytest.mark.parametrize("command", [[str(DETACH)], [sys.executable, "-m", "detach_pl.cli"]],
                         ids=["script", "python -m"])
def test_bad_predict_input_prints_one_message_and_exits_2(tmp_path: Path, command: list[str]) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "DETACH_TRACEBACK"}
    done = subprocess.run([*command, "predict", "--config", str(REPO / "configs/opp/predict.yaml"),
                           "--ckpt_path", str(tmp_path / "missing.ckpt")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 2
    assert f"detach: error: --ckpt_path {tmp_path / 'missing.ckpt'}: no such checkpoint file" in done.stderr
    assert "Traceback" not in done.stderr
