"""The app layer: the stage chain, running stages in-process, and what is reported of them.

- `stages`: the chain (stage 1 → stage 2 → probe, and which setting receives the previous
  checkpoint), `run_detach` / `run_stage` (the `detach` CLI in this process), `resolve_config`.
- `metrics`: the probe's test-metric names, `mean_std` (sample std, ddof = 1), Markdown tables.
- `table`, `runner`, `jobs`, `quality_report`: the rows of the paper's table and the benchmark
  runner that trains, probes and reports them (benchmarks/bench_quality.py, bench_labels.py).

Used by `detach_pl.folds` (cross-validated folds), `detach_pl.report` and the benchmarks.
"""

from __future__ import annotations

import importlib
from typing import Any

from detach_pl.pipeline.metrics import METRIC_LABELS, TEST_METRICS, format_mean_std, format_table, mean_std

#: Names of `stages`, imported on first use: it imports the CLI (Lightning, the modules, the
#: data), which `detach_pl.report` and the metrics alone do not need.
_STAGE_NAMES = (
    "CHAIN", "STAGES", "Stage", "StageFailed", "last_checkpoint", "resolve_config", "run_detach", "run_stage"
)

__all__ = ["METRIC_LABELS", "TEST_METRICS", "format_mean_std", "format_table", "mean_std", *_STAGE_NAMES]


def __getattr__(name: str) -> Any:
    """The stage chain's names, from `detach_pl.pipeline.stages` when first asked for."""
    if name in _STAGE_NAMES:
        return getattr(importlib.import_module("detach_pl.pipeline.stages"), name)
    raise AttributeError(f"module 'detach_pl.pipeline' has no attribute {name!r}")
