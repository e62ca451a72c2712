"""`python -m detach_pl.report`: the newest test results of each run folder, side by side."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from detach_pl.report import main


def results(folder: Path, version: str, values: dict[str, float], mtime: float) -> Path:
    """A `test_metrics.json` as `detach test` writes it, with its modification time set."""
    path = folder / "tensorboard" / version / "test_metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({f"test/{name}": value for name, value in values.items()}))
    os.utime(path, (mtime, mtime))
    return path


def metrics(f1: float) -> dict[str, float]:
    return {"f1_weighted": f1, "map": 0.5, "accuracy": 0.25, "f1_macro": 0.125}


def test_the_newest_results_of_each_run_are_tabled_under_their_names(tmp_path: Path, capsys) -> None:
    results(tmp_path / "a", "version_0", metrics(0.9), mtime=2_000)
    results(tmp_path / "a", "version_1", metrics(0.1), mtime=1_000)  # an older test, in a later folder
    results(tmp_path / "b", "version_0", metrics(0.7004), mtime=1_000)
    main([f"DETACH={tmp_path / 'a'}", str(tmp_path / "b")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| run | weighted F1 | mAP | accuracy | macro F1 |"
    assert lines[2] == "| DETACH | 0.900 | 0.500 | 0.250 | 0.125 |"
    assert lines[3] == f"| {tmp_path / 'b'} | 0.700 | 0.500 | 0.250 | 0.125 |"


def test_a_run_without_readable_results_ends_with_its_message_not_a_traceback(tmp_path: Path, capsys) -> None:
    (tmp_path / "untested").mkdir()
    cut = results(tmp_path / "cut", "version_0", metrics(0.9), mtime=1_000)
    cut.write_text(cut.read_text()[:20])
    old = results(tmp_path / "old", "version_0", {"f1_weighted": 0.9}, mtime=1_000)
    cases = [
        ("untested", r"no test_metrics.json under \S*untested: run `detach test` first"),
        ("cut", rf"{re.escape(str(cut))} is not the JSON `detach test` writes \(.*line 1 column \d+"),
        ("old", rf"{re.escape(str(old))} lacks test/map, test/accuracy, test/f1_macro"),
    ]
    for folder, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main([str(tmp_path / folder)])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.splitlines()[-1]
        assert error.startswith("python -m detach_pl.report: error: ")
        assert re.search(message, error), error
