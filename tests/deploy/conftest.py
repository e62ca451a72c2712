"""A tiny probe checkpoint with its preprocessing contract, trained once for the deploy tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from detach_pl.cli import main
from helpers import DEMO, TINY_DATA

#: The demo's probe on random encoders (no stage 2 needed), one short epoch on the tiny kitchen.
SHORT_FIT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
             "--trainer.limit_val_batches", "1", "--trainer.logger", "false"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scratch folder holding runs/demo/probe_random/checkpoints/last.ckpt and its data/cache."""
    folder = tmp_path_factory.mktemp("deploy")
    previous = Path.cwd()
    os.chdir(folder)
    try:
        main(["fit", "--config", str(DEMO / "probe_random.yaml"), *TINY_DATA, *SHORT_FIT])
    finally:
        os.chdir(previous)
    return folder


@pytest.fixture(scope="session")
def probe_ckpt(trained: Path) -> Path:
    """The trained probe checkpoint."""
    return trained / "runs/demo/probe_random/checkpoints/last.ckpt"


@pytest.fixture(scope="session")
def predicted(probe_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`detach predict` of run02 with configs/demo/predict.yaml, in a folder without cache or data."""
    folder = tmp_path_factory.mktemp("predicted")
    previous = Path.cwd()
    os.chdir(folder)
    try:
        main(["predict", "--config", str(DEMO / "predict.yaml"), "--ckpt_path", str(probe_ckpt),
              "--data.recordings", "[run02]", "--trainer.enable_progress_bar", "false"])
    finally:
        os.chdir(previous)
    return folder / "runs/demo/predict"


@pytest.fixture(scope="session")
def exported(probe_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`detach export` of the probe to model.onnx (and model.json beside it)."""
    output = tmp_path_factory.mktemp("exported") / "model.onnx"
    main(["export", "--ckpt_path", str(probe_ckpt), "--output", str(output)])
    return output
