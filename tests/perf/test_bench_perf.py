"""benchmarks/perf_sections.py: the loader rounds' bookkeeping (quick size, one round) and the peak-RSS reset."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import perf_sections
from benchmarks.perf_common import peak_rss_bytes, reset_peak_rss


@pytest.fixture(scope="module")
def loader_figures(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    workdir = tmp_path_factory.mktemp("perf")
    return perf_sections.loader(quick=True, workdir=workdir), workdir


def test_every_loader_figure_is_a_positive_number(loader_figures: tuple[dict, Path]) -> None:
    figures, workdir = loader_figures
    expected = {f"{prefix}direct_over_loader_{key}" for prefix in ("", "jpeg_q90_")
                for key in ("1w", "1w_second_epoch")} | {"direct_over_loader_0w", "direct_over_loader_2w"}
    assert expected <= figures.keys()
    assert all(math.isfinite(value) and value > 0 for value in figures.values()), figures
    assert list(workdir.iterdir()) == []  # the stand-in caches are removed


def test_first_rounds_ratios_are_their_rates_ratios(loader_figures: tuple[dict, Path]) -> None:
    figures, _ = loader_figures  # one round: the option's direct rate is that of its first loader's round
    for prefix, first in (("", "0w"), ("jpeg_q90_", "1w")):
        direct, batched = figures[f"{prefix}direct_windows_s"], figures[f"{prefix}batched_windows_s"]
        rate = figures[f"{prefix}loader_{first}_windows_s"]
        ratio = figures[f"{prefix}direct_over_loader_{first}"]
        assert figures[f"{prefix}direct_over_batched"] == pytest.approx(direct / batched)
        assert ratio == pytest.approx(direct / rate)
        assert figures[f"{prefix}direct_over_loader_{first}_lowest"] == ratio == figures[
            f"{prefix}direct_over_loader_{first}_highest"]
        assert figures[f"{prefix}batched_over_loader_{first}"] == pytest.approx(batched / rate)


def test_rounds_report_medians_of_per_round_ratios(monkeypatch: pytest.MonkeyPatch) -> None:
    direct = iter([(100.0, 1.0), (300.0, 2.0), (200.0, 4.0)])
    batched = iter([50.0, 100.0, 80.0])
    loader = iter([(50.0, 3.0), (100.0, 3.0), (200.0, 6.0)])
    monkeypatch.setattr(perf_sections, "_loader_rate_and_cpu", lambda dm, limit, warm: next(loader))
    figures = perf_sections._against_direct(None, lambda: next(direct), lambda: next(batched), 8, 3)
    walls = [100 / 50, 300 / 100, 200 / 200]  # per round: direct over loader, not median over median
    assert figures["wall"] == pytest.approx(sorted(walls)[1])
    assert (figures["lowest"], figures["highest"]) == (min(walls), max(walls))
    assert figures["cpu_ratio"] == pytest.approx(sorted([3 / 1, 3 / 2, 6 / 4])[1])
    assert figures["batched_over_loader"] == pytest.approx(sorted([50 / 50, 100 / 100, 80 / 200])[1])
    assert figures["direct"] == 200.0 and figures["rate"] == 100.0


def test_data_overhead_is_the_ratio_of_medians_with_the_rounds_spread() -> None:
    rounds = [(10.0, 11.0, 0.01), (12.0, 12.0, 0.03), (9.0, 10.8, 0.02)]  # memory s, loader s, wait share
    figures = perf_sections._overhead_figures(rounds)
    assert figures["memory_s"] == 10.0 and figures["loader_s"] == 11.0
    assert figures["data_overhead"] == pytest.approx(0.1)
    assert figures["data_overhead_lowest"] == pytest.approx(0.0)
    assert figures["data_overhead_highest"] == pytest.approx(0.2)
    assert figures["data_wait"] == pytest.approx(0.02)


def test_reset_peak_rss_forgets_an_earlier_peak() -> None:
    resident = np.ones(256 * 2**20 // 8)  # 256 MiB touched, then freed
    del resident
    earlier = peak_rss_bytes()
    reset_peak_rss()
    assert earlier - peak_rss_bytes() > 200 * 2**20


def test_gpu_section_reports_each_stage_and_precision() -> None:
    figure = {"steps_s": 2.5, "windows_s": 160.0, "data_overhead": 0.031, "peak_gib": 40.25, "sync_free": True}
    gpu = {"machine": "Some CPU, GPU NVIDIA H200", "batch": 64, "frames": 20, "image": 224, "workers": 4,
           "compile": False, "clip_decode": {"quality": 90, "jpeg_windows_s": 812.4, "raw_windows_s": 5000.0},
           "stage1_fp32": figure, "stage1_bf16": {**figure, "sync_free": "sync at odc.py:10: boom"},
           "stage2_bf16_fast": {**figure, "data_overhead": None, "peak_gib": None, "sync_free": False}}
    text = "\n".join(perf_sections.render_gpu(gpu))
    assert "Machine: Some CPU, GPU NVIDIA H200; batch 64 per device, 20 x 224^2" in text
    assert "| stage1 | fp32 | 2.5 | 160 | 3.1 | 40.25 | yes |" in text
    assert "| stage1 | bf16 | 2.5 | 160 | 3.1 | 40.25 | sync at odc.py:10: boom |" in text
    assert "| stage2 | bf16_fast | 2.5 | 160 | - | - | not checked (no CUDA) |" in text
    assert "| stage2 | fp32 |" not in text and "4 workers" in text and "not `encoder.compile`" in text
    assert "812 windows/s from JPEG q90" in text and "5000 windows/s from raw frames" in text
    assert "make gpu-wheels" in "\n".join(perf_sections.render_gpu(None))
