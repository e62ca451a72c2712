"""The quality benchmark's aggregation and report: mean ± std per row, the Markdown report, the chart."""

from __future__ import annotations

import os
import platform
import statistics
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from detach_pl.io import write_atomically
from detach_pl.pipeline.metrics import METRIC_LABELS, TEST_METRICS, format_mean_std, format_table, mean_std
from detach_pl.pipeline.table import ROWS, Row


def summarize(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Row → metric → (mean, std) over seeds."""
    return {
        key: {metric: mean_std([run[metric] for run in runs]) for metric in TEST_METRICS}
        for key, runs in results.items()
        if runs
    }


def average_diagnostics(diagnostics: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Row → diagnostic → mean over the seeds that logged it."""
    averaged = {}
    for key, runs in diagnostics.items():
        names = sorted({name for run in runs for name in run})
        averaged[key] = {name: statistics.fmean([run[name] for run in runs if name in run]) for name in names}
    return averaged


def comparisons(summary: dict[str, dict[str, tuple[float, float]]]) -> list[str]:
    """Plain statements of the paper's expectations against the measured means."""
    lines: list[str] = []
    if "detach" not in summary:
        return lines
    detach_f1 = summary["detach"]["f1_weighted"][0]
    if "global" in summary:
        gap = detach_f1 - summary["global"]["f1_weighted"][0]
        lines.append(
            f"- DETACH − global alignment, weighted F1: {gap:+.3f} (paper, Opportunity++: 0.73 − 0.56 = +0.17)."
        )
    for key in (
        "no_spatial_weight", "no_temporal_weight", "no_refinement_plain", "no_refinement_weighted", "refinement_plain",
        "cross_temporal", "detach_all_windows",
    ):
        if key in summary:
            name = next(row.name for row in ROWS if row.key == key)
            diff = summary[key]["f1_weighted"][0] - detach_f1
            std = summary[key]["f1_weighted"][1]
            verdict = "below" if diff < 0 else "not below"
            lines.append(f"- {name} − DETACH, weighted F1: {diff:+.3f} ({verdict} DETACH; row std {std:.3f}).")
    for key, name in (("floor", "random-encoder floor"), ("supervised", "supervised ceiling")):
        if key in summary:
            lines.append(f"- {name}: weighted F1 {summary[key]['f1_weighted'][0]:.3f}; DETACH {detach_f1:.3f}.")
    return lines


def machine() -> str:
    """CPU model, cores and torch threads of this machine."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        model = names[0] if names else model
    return f"{model}; {os.cpu_count()} logical CPUs; torch {torch.__version__}"


DIAGNOSTICS_INTRO = [
    "",
    "## Alignment diagnostics (validation set, last epoch, mean over seeds)",
    "",
    "Negative types against ground truth: easy = other place, hard = same place and other class, "
    "false = same class. ΔS = sim(v, hard) − sim(v, easy) of the cross-modal cosine similarity "
    "(> 0: the embedding groups by place; < 0: by shared motion, the P2 inversion). W^sp and W^tm "
    "are the factors as computed from the learnt features (also in the ablations that do not use "
    "them); W is the weight the loss used. Stage-1 cluster quality is Hungarian accuracy / NMI "
    "of the validation windows against the true places.",
    "",
]
DIAGNOSTICS_HEADER = (
    "row", "stage-1 cluster acc / NMI", "retrieval top-1", "ΔS", "sim pos / hard / easy / false",
    "W^sp easy / hard / false", "W^tm easy / hard / false", "W easy / hard / false",
)
PAPER_COLUMNS = ("paper Opp++ F1 / mAP", "paper HWU-USP F1 / mAP", "minutes per seed")


def joined(values: dict[str, float], *names: str) -> str:
    """The named values as "a / b / …", "—" where one is missing."""
    return " / ".join(f"{values[name]:.3f}" if name in values else "—" for name in names)


def diagnostic_cells(name: str, values: dict[str, float]) -> list[str]:
    """One row of the diagnostics table (`DIAGNOSTICS_HEADER`)."""
    return [
        name,
        joined(values, "val/cluster_accuracy", "val/cluster_nmi"),
        joined(values, "val/retrieval_top1"),
        joined(values, "diag/delta_s"),
        joined(values, *(f"diag/sim/{kind}" for kind in ("positive", "hard", "easy", "false"))),
        *(
            joined(values, *(f"diag/{weight}/{kind}" for kind in ("easy", "hard", "false")))
            for weight in ("W_sp", "W_tm", "W")
        ),
    ]


def write_markdown(
    path: Path,
    rows: Sequence[Row],
    summary: dict[str, dict[str, tuple[float, float]]],
    diagnostics: dict[str, dict[str, float]],
    seconds: dict[str, float],
    header: dict[str, str],
    dataset: str,
) -> None:
    """The benchmark's Markdown report: settings, the table, diagnostics, comparisons."""
    lines = [f"# Quality benchmark: the paper's table on {dataset}", ""]
    lines += [f"- {name}: {value}" for name, value in header.items()]
    lines += [
        "",
        "Weighted F1, mAP (macro AP of the softmax scores) and accuracy of the linear probe on the frozen",
        "sensor encoders, on the test runs; mean ± sample std over the seeds. The paper's numbers are",
        "for the real datasets (weighted F1 / mAP) and are given for reference only.",
        "",
    ]
    table = [
        [row.name, *(format_mean_std(*summary[row.key][metric]) for metric in TEST_METRICS),
         row.paper[0], row.paper[1], f"{seconds.get(row.key, 0.0) / 60:.1f}"]
        for row in rows
        if row.key in summary
    ]
    lines.append(format_table(["row", *(METRIC_LABELS[metric] for metric in TEST_METRICS), *PAPER_COLUMNS], table))
    lines += [
        "",
        "¹ The paper's best global-alignment baseline; IMU2CLIP / PRIMUS / COMODO reach 0.28–0.43 weighted F1 "
        "on Opportunity++. Minutes per seed count only the steps a row ran itself (a shared stage 1 is "
        "counted once, for the first row that needs it).",
    ]
    diagnosed = [row for row in rows if diagnostics.get(row.key)]
    if diagnosed:
        lines += DIAGNOSTICS_INTRO
        cells = [diagnostic_cells(row.name, diagnostics[row.key]) for row in diagnosed]
        lines.append(format_table(DIAGNOSTICS_HEADER, cells))
    statements = comparisons(summary)
    if statements:
        lines += ["", "## Against the paper's expectations", "", *statements]
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, "\n".join(lines))


def write_chart(
    path: Path, rows: Sequence[Row], summary: dict[str, dict[str, tuple[float, float]]], title: str
) -> None:
    """Bars of weighted F1 and mAP per row (± std), the paper's Opportunity++ numbers as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [row for row in rows if row.key in summary]
    positions = range(len(shown))
    width = 0.38
    figure, axis = plt.subplots(figsize=(max(7.0, 1.1 * len(shown) + 2), 4.8))
    for offset, metric, label in ((-width / 2, "f1_weighted", "weighted F1"), (width / 2, "map", "mAP")):
        means = [summary[row.key][metric][0] for row in shown]
        stds = [summary[row.key][metric][1] for row in shown]
        axis.bar([p + offset for p in positions], means, width, yerr=stds, capsize=3, label=label)
        paper = [paper_value(row.paper[0], metric) for row in shown]
        points = [(p + offset, value) for p, value in zip(positions, paper, strict=True) if value is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.scatter(xs, ys, marker="D", color="black", zorder=3, s=18,
                         label="paper, Opportunity++" if metric == "f1_weighted" else None)
    axis.set_xticks(list(positions), [row.name for row in shown], rotation=30, ha="right")
    axis.set_ylim(0, 1.15)  # room above 1 for the error bars and the legend
    axis.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axis.set_ylabel("linear probe, test")
    axis.set_title(title, fontsize=10)
    axis.legend(loc="upper center", ncol=3, fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    figure.savefig(temporary, dpi=120, format=path.suffix.lstrip("."))
    temporary.replace(path)
    plt.close(figure)


def paper_value(text: str, metric: str) -> float | None:
    """The F1 (first) or mAP (second) number of a "F1 / mAP …" cell, None when absent."""
    parts = text.split("/")
    index = 0 if metric == "f1_weighted" else 1
    if len(parts) < 2:
        return None
    try:
        return float(parts[index].split()[0])
    except (ValueError, IndexError):
        return None


class LoadMonitor:
    """Samples the 1-minute load average every `interval` seconds while the benchmark runs."""

    def __init__(self, interval: float = 30.0) -> None:
        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> str:
        """"mean X, max Y" of the samples."""
        self._stop.set()
        self.samples.append(os.getloadavg()[0])
        return f"mean {statistics.fmean(self.samples):.1f}, max {max(self.samples):.1f}"


def repo_relative(path: Path, root: Path) -> str:
    """`path` relative to `root` (the repository) when it lies inside it (reports stay machine-neutral)."""
    resolved, root = path.resolve(), root.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)
