"""Print the probe results of several runs side by side (`python -m detach_pl.report DIR …`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detach_pl.pipeline.metrics import METRIC_LABELS, TEST_METRICS, format_table


def latest_metrics(run_dir: Path) -> dict[str, float]:
    """The newest `test_metrics.json` under a run folder (written by `detach test`).

    Raises:
        FileNotFoundError: No `detach test` has written one there.
        ValueError: The newest file is not JSON or lacks one of the test metrics.
    """
    files = sorted(run_dir.rglob("test_metrics.json"), key=lambda path: path.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no test_metrics.json under {run_dir}: run `detach test` first")
    try:
        data = json.loads(files[-1].read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{files[-1]} is not the JSON `detach test` writes ({error})") from error
    missing = [f"test/{name}" for name in TEST_METRICS if f"test/{name}" not in data]
    if missing:
        raise ValueError(f"{files[-1]} lacks {', '.join(missing)}: written by another version of `detach test`?")
    return {name: float(data[f"test/{name}"]) for name in TEST_METRICS}


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per run, the probe metrics as columns (3 decimals)."""
    header = ["run", *(METRIC_LABELS[name] for name in TEST_METRICS)]
    cells = [[run, *(f"{metrics[name]:.3f}" for name in TEST_METRICS)] for run, metrics in rows.items()]
    return format_table(header, cells)


def main(argv: list[str] | None = None) -> None:
    """Command line: run folders, optionally named with NAME=DIR.

    A folder without results, or a results file that is not readable, ends the command with its
    message and exit status 2 (argparse's error), not a traceback.
    """
    parser = argparse.ArgumentParser(prog="python -m detach_pl.report", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run folders (NAME=DIR or DIR)")
    args = parser.parse_args(argv)
    rows = {}
    for entry in args.runs:
        name, _, folder = entry.rpartition("=")
        try:
            rows[name or folder] = latest_metrics(Path(folder))
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
    print(metrics_table(rows))


if __name__ == "__main__":
    main()
