"""Real 2-process DDP (gloo, CPU) evaluation: each window counted once, uneven sets do not crash.

PyTorch's DistributedSampler pads an evaluation set that the world size does not divide by
repeating windows; the DataModule serves evaluation batches of an `UnpaddedBatchSampler` instead,
and the gathers in the validation steps accept the ranks' uneven batch sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import DEMO, TINY_DATA

PROBE = str(DEMO / "probe_random.yaml")
PREDICT_SCRIPT = Path(__file__).with_name("ddp_predict_run.py")
VALIDATE_SCRIPT = Path(__file__).with_name("ddp_validate_run.py")
TWO_PROCESSES = ["--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2"]
# run01 + run02: 13 labelled windows, which 2 processes do not divide.
ODD_TEST_SET = ["--data.init_args.test_runs", "[run01, run02]"]
# 51-s runs hold 49 windows each: 49 validation windows for the alignment stages.
ODD_ALIGNMENT_SETS = ["--data.init_args.world.run_seconds", "51"]
METRICS = ("test/f1_weighted", "test/map", "test/accuracy", "test/f1_macro")


def launch(*args: str, cwd: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def detach(command: str, config: str, *args: str, cwd: Path, cache: Path) -> None:
    """`detach COMMAND --config CONFIG` on the tiny kitchen in `cwd` (one shared cache), then `args`."""
    cwd.mkdir(parents=True, exist_ok=True)
    launch("-m", "detach_pl.cli", command, "--config", config, *TINY_DATA, "--data.init_args.cache_dir", str(cache),
           *args, cwd=cwd)


@pytest.fixture(scope="module")
def probe_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A probe (random encoders) trained for 2 epochs in one process; its path and the cache."""
    root = tmp_path_factory.mktemp("ddp_eval")
    cache = root / "cache"
    detach("fit", PROBE, "--trainer.max_epochs", "2", cwd=root / "fit", cache=cache)
    return root / "fit/runs/demo/probe_random/checkpoints/last.ckpt", cache


def test_two_process_detach_test_equals_one_process(probe_checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, cache = probe_checkpoint
    metrics = {}
    for devices, extra in ((1, []), (2, TWO_PROCESSES)):
        cwd = tmp_path / f"devices{devices}"
        detach("test", PROBE, "--ckpt_path", str(checkpoint), *ODD_TEST_SET, *extra, cwd=cwd, cache=cache)
        (written,) = (cwd / "runs/demo/probe_random").rglob("test_metrics.json")
        metrics[devices] = json.loads(written.read_text())
    one, two = metrics[1], metrics[2]
    assert sum(map(sum, one["confusion_matrix"])) == 13
    assert two["confusion_matrix"] == one["confusion_matrix"]  # every test window exactly once
    for key in METRICS:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key


def test_two_process_predict_returns_every_window_once(probe_checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, cache = probe_checkpoint
    dumps = {}
    for devices in (1, 2):
        out = tmp_path / f"devices{devices}"
        launch(str(PREDICT_SCRIPT), "--devices", str(devices), "--checkpoint", str(checkpoint), "--cache", str(cache),
               "--out", str(out), cwd=tmp_path)
        dumps[devices] = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(devices)]
    (single,) = dumps[1]
    assert single["index"].tolist() == list(range(7))
    ranks = dumps[2]
    assert ranks[0]["batches"] == ranks[1]["batches"]
    index = torch.cat([rank["index"] for rank in ranks])
    assert sorted(index.tolist()) == list(range(7))
    torch.testing.assert_close(torch.cat([rank["probs"] for rank in ranks]), single["probs"][index])


def test_two_process_stage2_validation_sees_every_window_once(tmp_path: Path) -> None:
    """49 validation windows on 2 ranks of batch 8: 4 steps, each rank 6 windows a step, rank 1
    7 in the last; the padded sampler gave rank 1 a repeat of window 0 (25 + 25)."""
    out = tmp_path / "out"
    launch(str(VALIDATE_SCRIPT), "--devices", "2", "--cache", str(tmp_path / "cache"), "--out", str(out), cwd=tmp_path)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [len(rank["batches"]) for rank in ranks] == [4, 4]
    seen = sorted(index for rank in ranks for batch in rank["batches"] for index in batch)
    assert seen == list(range(49))
    assert ranks[0]["metrics"] == ranks[1]["metrics"] and "val/loss" in ranks[0]["metrics"]


def test_stage1_and_stage2_fit_under_ddp_with_validation_sets_the_world_size_does_not_divide(tmp_path: Path) -> None:
    """49 validation windows on 2 ranks of batch 8: 4 steps of 6 + 6 windows, the last 6 + 7.

    Stage 1 gathers the validation cluster assignments, stage 2 the global batch of its validation
    loss and diagnostics; before, the padding repeated a window, whose identical features made
    W^tm = 1 − S^sp·S^tm slightly negative ("weights must be finite and non-negative").
    """
    cache = tmp_path / "cache"
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    detach("fit", str(DEMO / "stage1.yaml"), *short, "--model.init_args.min_cluster_size", "5",
           *ODD_ALIGNMENT_SETS, *TWO_PROCESSES, cwd=tmp_path, cache=cache)
    detach("fit", str(DEMO / "stage2.yaml"), *short, *ODD_ALIGNMENT_SETS, *TWO_PROCESSES,
           cwd=tmp_path, cache=cache)
    for stage in ("stage1", "stage2"):
        assert (tmp_path / f"runs/demo/{stage}/checkpoints/last.ckpt").is_file()
