#!/usr/bin/env bash
# The prepared GPU check (docs: benchmarks/perf.md): stage-1/2 steps/s at the paper's sizes,
# fp32 vs bf16, data overhead, peak GPU memory and the sync-debug check. < 5 min on one GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
timeout 290 "$PY" -m benchmarks.gpu_check --device cuda "$@"
