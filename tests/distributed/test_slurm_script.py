"""configs/cluster/slurm_detach.sbatch, run as SLURM would run it (one task, `srun` replaced by a
recorder that runs its command), on the CPU: a first submission trains, a requeued job resumes."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from helpers import DEMO, REPO, TINY_DATA

SCRIPT = REPO / "configs/cluster/slurm_detach.sbatch"
#: What the job's extra arguments change for a CPU machine (the overlay asks for GPUs and SyncBatchNorm).
ON_CPU = ["--trainer.accelerator", "cpu", "--trainer.strategy", "auto", "--trainer.sync_batchnorm", "false",
          "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.logger", "false"]
#: A one-task allocation, as `sbatch` describes it to the batch script and `srun` to the task.
SLURM_ONE_TASK = {"SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NTASKS": "1",
                  "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_ID": "4242",
                  "SLURM_JOB_NAME": "detach", "SLURM_NODELIST": "localhost"}


def job_folder(tmp_path: Path) -> Path:
    """A submission folder: the repository's configs, a `.venv/bin/activate` putting this environment's
    `detach` and a recording `srun` first on PATH."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    srun = fake_bin / "srun"
    srun.write_text('#!/bin/bash\nprintf "%s\\n" "$*" >> srun.log\nexec "$@"\n')
    srun.chmod(0o755)
    activate = tmp_path / ".venv/bin/activate"
    activate.parent.mkdir(parents=True)
    activate.write_text(f"export PATH={shlex.quote(str(fake_bin))}:{shlex.quote(str(Path(sys.executable).parent))}"
                        ':"$PATH"\n')
    (tmp_path / "configs").symlink_to(REPO / "configs")
    return tmp_path


def submit(folder: Path, epochs: int, restarts: int) -> tuple[list[str], str]:
    """Run the batch script in `folder` as the job's `restarts`-th start: the `srun` command lines so far
    and what the job printed."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLURM_", "PL_"))}
    env.update(SLURM_ONE_TASK, SLURM_RESTART_COUNT=str(restarts))
    command = ["bash", str(SCRIPT), str(DEMO / "stage1.yaml"), *TINY_DATA, *ON_CPU, "--trainer.max_epochs", str(epochs)]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return (folder / "srun.log").read_text().splitlines(), done.stdout + done.stderr


def saved_epoch(folder: Path) -> int:
    checkpoint = torch.load(folder / "runs/demo/stage1/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    return int(checkpoint["epoch"])


def test_a_first_submission_trains_and_a_requeued_job_resumes(tmp_path: Path) -> None:
    folder = job_folder(tmp_path)
    (first,), printed = submit(folder, epochs=1, restarts=0)
    assert "--ckpt_path" not in first.split()  # nothing to resume yet: `last` would be refused
    assert "Restored all states" not in printed
    assert saved_epoch(folder) == 0
    (_, requeued), printed = submit(folder, epochs=2, restarts=1)
    assert "--ckpt_path last" in requeued
    assert re.search(r"Restored all states from the checkpoint at \S*runs/demo/stage1/checkpoints/last\.ckpt", printed)
    assert "SLURM auto-requeueing enabled" in printed  # Lightning took the job for a SLURM one
    assert saved_epoch(folder) == 1, printed
    assert "--config configs/cluster/ddp.yaml" in requeued and "--trainer.num_nodes 1 --trainer.devices 1" in requeued
