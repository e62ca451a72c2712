"""Print the probe results of several runs side by side (`python -m detach_pl.report DIR …`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("f1_weighted", "map", "accuracy", "f1_macro")


def latest_metrics(run_dir: Path) -> dict[str, float]:
    """The newest `test_metrics.json` under a run folder (written by `detach test`)."""
    files = sorted(run_dir.rglob("test_metrics.json"), key=lambda path: path.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no test_metrics.json under {run_dir}: run `detach test` first")
    data = json.loads(files[-1].read_text())
    return {column: float(data[f"test/{column}"]) for column in COLUMNS}


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per run, the probe metrics as columns."""
    header = "| run | weighted F1 | mAP | accuracy | macro F1 |\n|---|---|---|---|---|"
    lines = [
        f"| {name} | " + " | ".join(f"{metrics[column]:.3f}" for column in COLUMNS) + " |"
        for name, metrics in rows.items()
    ]
    return "\n".join([header, *lines])


def main(argv: list[str] | None = None) -> None:
    """Command line: run folders, optionally named with NAME=DIR."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="run folders (NAME=DIR or DIR)")
    args = parser.parse_args(argv)
    rows = {}
    for entry in args.runs:
        name, _, folder = entry.rpartition("=")
        rows[name or folder] = latest_metrics(Path(folder))
    print(format_table(rows))


if __name__ == "__main__":
    main()
