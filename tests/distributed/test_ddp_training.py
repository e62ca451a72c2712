"""Real 2-process DDP (gloo, CPU) against one process: memory bank, EMA, parameters, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import DEMO, TINY_DATA

SCRIPT = Path(__file__).with_name("ddp_stage_run.py")
# The video encoders hold BatchNorm layers. Each rank normalises with the statistics of its own
# batch unless SyncBatchNorm is on (`--trainer.sync_batchnorm true`), which PyTorch supports on
# GPUs only; on CPU their parameters legitimately differ from one process. Every other parameter
# and the memory bank are compared with one process.
BATCHNORM_FREE = ("encoders.sensor_spatial.", "encoders.sensor_temporal.", "ema.sensor_temporal.")


def parameters_only(params: dict) -> dict:
    """Drop BatchNorm running statistics: each rank updates its own in its last forward, and DDP
    overwrites them with rank 0's before every forward (the checkpoint holds rank 0's)."""
    return {key: value for key, value in params.items() if "running_" not in key and "num_batches" not in key}


def without_batchnorm(params: dict) -> dict:
    return {key: value for key, value in params.items() if key.startswith(BATCHNORM_FREE)}


def launch(*args: str, cwd: Path | None = None) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def train(stage: int, devices: int, batch: int, out: Path, cache: Path, *extra: str) -> list[dict]:
    launch(str(SCRIPT), "--stage", str(stage), "--devices", str(devices), "--batch-size", str(batch),
           "--cache", str(cache), "--out", str(out), *extra)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(devices)]


@pytest.fixture(scope="module")
def stage1_runs(tmp_path_factory):
    """Stage 1 on 2 ranks × batch 8 and on 1 process × batch 16, same global batches."""
    root = tmp_path_factory.mktemp("ddp1")
    ddp = train(1, 2, 8, root / "ddp", root / "cache")
    single = train(1, 1, 16, root / "single", root / "cache")
    return ddp, single, root


def test_memory_bank_is_bit_identical_across_ranks(stage1_runs) -> None:
    (rank0, rank1), _, _ = stage1_runs
    for key in ("features", "labels", "centroids", "thresholds"):
        assert torch.equal(rank0["memory"][key], rank1["memory"][key]), key
    # BatchNorm running statistics are rank-local after the last forward (DDP broadcasts rank 0's
    # before the next one), so the parameters are what must agree.
    for key, value in parameters_only(rank0["params"]).items():
        assert torch.equal(value, rank1["params"][key]), key


def test_two_ranks_equal_one_process_on_the_same_global_batches(stage1_runs) -> None:
    (rank0, _), (single,), _ = stage1_runs
    # Three epochs cover clustering, joint video learning (masked means) and refinement.
    # Float sums are ordered differently across 2 ranks, so compare with a tolerance.
    assert torch.equal(rank0["memory"]["labels"], single["memory"]["labels"])
    torch.testing.assert_close(rank0["memory"]["features"], single["memory"]["features"], atol=1e-4, rtol=0)
    torch.testing.assert_close(rank0["memory"]["centroids"], single["memory"]["centroids"], atol=1e-4, rtol=0)
    compared = without_batchnorm(rank0["params"])
    assert compared
    for key, value in compared.items():
        torch.testing.assert_close(value, single["params"][key], atol=1e-4, rtol=1e-4, msg=key)


def test_stage2_weights_and_ema_identical_across_ranks(stage1_runs, tmp_path) -> None:
    """Stage 2 on 2 ranks: online and EMA temporal encoders stay identical on every rank.

    Equality with one process is checked at the loss and gradient level (global negatives,
    tests/test_distributed.py): end to end, stage 2's BatchNorm video encoders feed the weights W
    and the video embeddings, so on CPU (no SyncBatchNorm) one process differs by design.
    """
    _, _, root = stage1_runs
    checkpoint = str(root / "ddp" / "stage1.ckpt")
    rank0, rank1 = train(2, 2, 8, tmp_path / "ddp", root / "cache", "--stage1-checkpoint", checkpoint, "--epochs", "1")
    compared = parameters_only(rank0["params"])
    assert any(key.startswith("ema.video_temporal") for key in compared)
    for key, value in compared.items():
        assert torch.equal(value, rank1["params"][key]), key


def test_probe_standardiser_sums_over_ranks_to_the_one_process_statistics(stage1_runs, tmp_path) -> None:
    """The probe's μ, σ come from all ranks' shards (4 training windows: 2 ranks × 2, 1 × 4)."""
    _, _, root = stage1_runs
    rank0, rank1 = train(3, 2, 2, tmp_path / "ddp", root / "cache", "--epochs", "1")
    (single,) = train(3, 1, 4, tmp_path / "single", root / "cache", "--epochs", "1")
    for key in ("classifier.0.mean", "classifier.0.std"):
        assert torch.equal(rank0["params"][key], rank1["params"][key]), key
        torch.testing.assert_close(rank0["params"][key], single["params"][key], rtol=1e-5, atol=1e-6)
    assert bool(rank0["params"]["classifier.0.fitted"])


def test_detach_fit_with_ddp_on_two_cpu_processes(tmp_path) -> None:
    ddp = ["--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2"]
    detach = [sys.executable, "-m", "detach_pl.cli"]
    for stage in ("stage1", "stage2"):
        launch(*detach[1:], "fit", "--config", str(DEMO / f"{stage}.yaml"), *ddp, *TINY_DATA, cwd=tmp_path)
        assert (tmp_path / f"runs/demo/{stage}/checkpoints/last.ckpt").is_file()
    saved = torch.load(tmp_path / "runs/demo/stage1/checkpoints/last.ckpt", weights_only=False)
    assert "odc_memory" in saved and len(saved["rng_states"]) == 2
