#!/usr/bin/env bash
# The prepared GPU check (docs: benchmarks/perf.md): stage-1/2 steps/s at the paper's sizes,
# fp32 vs bf16, data overhead, peak GPU memory and the sync-debug check. < 5 min on one GPU.
#
# Runs with the project's venv, or (none there) with a `python3` that already holds torch, as on a
# GPU machine without network: wheels in $GPU_WHEELS (default .whl, made by `make gpu-wheels`)
# are installed into a scratch folder first, and src/ is used when detach_pl is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
WHEELS=${GPU_WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  site=$(mktemp -d -t detach_wheels.XXXXXX)
  trap 'rm -rf "$site"' EXIT
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
    --target "$site" "$WHEELS"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c 'import detach_pl' 2>/dev/null || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! missing=$("$PY" -c '
try:
    import benchmarks.gpu_check, detach_pl.data.cache, detach_pl.data.datamodule, detach_pl.modules
except ModuleNotFoundError as error:
    print(error.name)
    raise SystemExit(1)
'); then
  echo "gpu_check: $PY cannot import '$missing' (searched: ${PYTHONPATH:-site-packages only})." >&2
  echo "  Use the project's venv (make install) or a Python that holds torch, lightning and h5py (PYTHON=...);" >&2
  echo "  without network, run 'make gpu-wheels' where pip works and bring its folder (GPU_WHEELS, default .whl)." >&2
  exit 2
fi
timeout 290 "$PY" -m benchmarks.gpu_check --device cuda "$@"
