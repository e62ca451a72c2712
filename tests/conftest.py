"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def in_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run with the working directory in a scratch folder (configs write `runs/`, `data/cache`)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
