"""Performance figures of a DETACH training step at the demo's and the paper's sizes.

    python -m benchmarks.bench_perf                      # every section → benchmarks/perf.json
    python -m benchmarks.bench_perf --sections loss kmeans --json /tmp/loss.json
    python -m benchmarks.bench_perf --quick              # fewer repeats and smaller data

`make bench-perf` runs every section and writes `benchmarks/perf.md` from the figures and the
figures measured before the speed-ups (`benchmarks/perf_before.json`, machine named in it).
`--render-only` rewrites the report from the stored figures without measuring; the GPU check's
figures (`--gpu`, default benchmarks/perf_gpu.json from `make bench-gpu`) close it when they exist.

Sections (one CPU thread; batches reduced on CPU, stated in each row):

- `loss`: the weighted loss with its weights (S^sp, S^tm, W, weighted InfoNCE), forward +
  backward, against plain symmetric InfoNCE written with `F.cross_entropy`, at N = 256, 1024, 4096.
- `kmeans`: the ODC bank's k-means initialisation (10 k-means++ inits, ≤ 50 Lloyd iterations) of
  10k and 100k windows × 256.
- `odc`: per-step bank work (confident mask + update of a batch of 256), per-epoch centroid
  update and the thresholds, on banks of 10k and 100k windows.
- `cache`: build time per minute of recording, size per hour and read windows/s against a memory
  copy of the same bytes, for each frame storage option.
- `loader`: the DataModule's training DataLoader (1 and 2 workers) against direct reads of the
  same windows in one process.
- `train`: stage-1 and stage-2 training steps/s and windows/s with batches from the real
  DataLoader over the real cache against the same batches already in memory (data overhead).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import perf_sections
from benchmarks.perf_common import REPO, load_average, machine_name, set_threads, write_report

SECTIONS = ("loss", "kmeans", "odc", "cache", "loader", "train")


def measure(sections: list[str], quick: bool, workdir: Path | None) -> dict[str, dict]:
    """Run `sections` on one torch thread; their figures with the machine and its load."""
    set_threads(1)
    figures: dict[str, dict] = {"machine": {"name": machine_name(), "load_start": load_average()}}
    for section in sections:
        print(f"== {section} (load {load_average():.1f})", flush=True)
        figures[section] = getattr(perf_sections, section)(quick=quick, workdir=workdir)
    figures["machine"]["load_end"] = load_average()
    return figures


def main() -> None:
    """Run the chosen sections and store their figures as JSON (and Markdown with --report)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller inputs")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "perf.json")
    parser.add_argument("--before", type=Path, default=None, help="figures measured before, for the table")
    parser.add_argument("--report", type=Path, default=None, help="write the Markdown report here")
    parser.add_argument("--gpu", type=Path, default=REPO / "benchmarks" / "perf_gpu.json",
                        help="the GPU check's figures (`make bench-gpu`), reported when the file exists")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder for caches")
    parser.add_argument("--render-only", action="store_true", help="measure nothing: --report from --json")
    options = parser.parse_args()
    if options.render_only:
        if not options.json.is_file():
            parser.error(f"--render-only: no figures at --json {options.json} (run without --render-only first)")
        figures = json.loads(options.json.read_text())
    else:
        figures = measure(options.sections, options.quick, options.workdir)
        write_report(options.json, json.dumps(figures, indent=2))
        print(f"figures written to {options.json}")
    if options.report is not None:
        before = json.loads(options.before.read_text()) if options.before and options.before.is_file() else None
        gpu = json.loads(options.gpu.read_text()) if options.gpu.is_file() else None
        write_report(options.report, perf_sections.render(figures, before, gpu))
        print(f"report written to {options.report}")


if __name__ == "__main__":
    main()
