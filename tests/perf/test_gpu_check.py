"""The GPU check's CPU-checkable parts run end to end (`--device cpu --tiny`).

Three steps: the loader measurements then need more batches than one epoch of the stand-in holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_on_cpu_tiny(tmp_path: Path) -> None:
    out = tmp_path / "g.json"
    # Run as `make bench-gpu` does (`python -m benchmarks.gpu_check`), from a scratch folder.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--tiny", "--steps", "3",
         "--json", str(out)],
        check=True, timeout=300, cwd=tmp_path, env=env,
    )
    figures = json.loads(out.read_text())
    for key in ("stage1_fp32", "stage1_bf16", "stage1_bf16_fast", "stage2_fp32", "stage2_bf16", "stage2_bf16_fast"):
        assert figures[key]["steps_s"] > 0 and figures[key]["windows_s"] > 0
