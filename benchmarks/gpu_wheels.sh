#!/usr/bin/env bash
# Wheels for a GPU machine without network whose Python already holds torch, lightning, h5py and
# numpy (as the lent GPU machines' image does) but not the rest of this project's dependencies:
# downloads them, at the versions this checkout's venv runs, into $GPU_WHEELS (default .whl).
# Carry that folder to the machine; benchmarks/gpu_check.sh installs them there before the check.
#
#   GPU_PYTHON_VERSION   the machine's Python (default 3.12)
#   GPU_WHEEL_PACKAGES   what it lacks (default: PyAV, and jsonargparse with its signature extras)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEST=${GPU_WHEELS:-.whl}
PYTHON_VERSION=${GPU_PYTHON_VERSION:-3.12}
read -r -a packages <<<"${GPU_WHEEL_PACKAGES:-av jsonargparse docstring-parser typeshed-client}"
specs=()
for name in "${packages[@]}"; do
  specs+=("$name==$("$PY" -c 'import importlib.metadata, sys; print(importlib.metadata.version(sys.argv[1]))' "$name")")
done
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014; do platforms+=(--platform "${tag}_x86_64"); done
rm -rf "$DEST.partial"
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$PYTHON_VERSION" --implementation cp "${platforms[@]}" -d "$DEST.partial" "${specs[@]}"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
echo "wheels for Python $PYTHON_VERSION in $DEST: ${specs[*]}"
du -sh "$DEST"
