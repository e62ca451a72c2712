"""A `detach fit` killed with SIGKILL mid-run and resumed with `--ckpt_path last` ends bit for bit
where an uninterrupted run does, with DataLoader workers, time warp and video augmentation on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from detach_pl.cli import main
from helpers import DEMO, TINY_DATA

CHECKPOINT = Path("runs/demo/stage1/checkpoints/last.ckpt")
EPOCHS = 6  # room for the poll to catch an epoch-1 checkpoint on a loaded machine


def detach_command() -> list[str]:
    """The `detach` console script of this environment (or the module, if it is not installed)."""
    script = Path(sys.executable).with_name("detach")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "detach_pl.cli"]


def fit_args(cache: Path, *extra: str) -> list[str]:
    """A tiny stage 1 with 2 workers: all three phases, the warp from epoch 0, 3 batches an epoch."""
    return [
        *detach_command(), "fit", "--config", str(DEMO / "stage1.yaml"), *TINY_DATA,
        "--data.init_args.cache_dir", str(cache),
        "--data.init_args.num_workers", "2",
        "--trainer.max_epochs", str(EPOCHS),
        "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "1",
        "--trainer.logger", "false",
        "--model.init_args.min_cluster_size", "5",
        "--model.init_args.video_start_epoch", "1",
        "--model.init_args.refine_start_epoch", "2",
        "--model.init_args.warp_start_epoch", "0",
        "--model.init_args.video_gate", "0.0",
        *extra,
    ]


def start(folder: Path, cache: Path, *extra: str) -> subprocess.Popen:
    """Start `detach fit` in `folder` (the config writes `runs/` below the working directory)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "PL_GLOBAL_SEED"}
    return subprocess.Popen(
        fit_args(cache, *extra), cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen, timeout: float = 240.0) -> None:
    """Wait for a run and fail with its output when it did not succeed."""
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]


def saved_epoch(path: Path) -> int | None:
    """The epoch of a checkpoint on disk, None while there is none (it is replaced atomically)."""
    if not path.is_file():
        return None
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except (OSError, RuntimeError, EOFError):
        return None


def kill_after_epoch(process: subprocess.Popen, path: Path, epoch: int, timeout: float = 240.0) -> int:
    """SIGKILL `process` once `path` holds a checkpoint of `epoch` or later; returns that epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reached = saved_epoch(path)
        if reached is not None and reached >= epoch:
            assert process.poll() is None, "the run ended before it could be killed"
            process.send_signal(signal.SIGKILL)
            process.communicate()
            return reached
        if process.poll() is not None:
            output, _ = process.communicate()
            pytest.fail(f"the run ended (status {process.returncode}) before epoch {epoch}:\n{output[-4000:]}")
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"no checkpoint of epoch {epoch} within {timeout} s")


def tensor_differences(ours: Any, theirs: Any, where: str) -> list[str]:
    """Where nested dicts/lists of tensors differ (dtype, shape or any bit), with the largest gap."""
    if isinstance(ours, torch.Tensor):
        if not isinstance(theirs, torch.Tensor) or ours.dtype != theirs.dtype or ours.shape != theirs.shape:
            return [f"{where}: {type(theirs).__name__} of another dtype or shape"]
        if torch.equal(ours, theirs):
            return []
        gap = (ours.double() - theirs.double()).abs().max().item() if ours.is_floating_point() else "n/a"
        return [f"{where}: max |difference| {gap}"]
    if isinstance(ours, dict):
        if ours.keys() != theirs.keys():
            return [f"{where}: keys {sorted(map(str, ours))} vs {sorted(map(str, theirs))}"]
        return [line for key in ours for line in tensor_differences(ours[key], theirs[key], f"{where}.{key}")]
    if isinstance(ours, (list, tuple)):
        if len(ours) != len(theirs):
            return [f"{where}: length {len(ours)} vs {len(theirs)}"]
        pairs = enumerate(zip(ours, theirs, strict=True))
        return [line for k, (a, b) in pairs for line in tensor_differences(a, b, f"{where}[{k}]")]
    return [] if ours == theirs else [f"{where}: {ours!r} vs {theirs!r}"]


def check_sigkill_resume(tmp_path: Path, workers: int) -> None:
    """Uninterrupted run, then a run SIGKILLed after epoch 1 and resumed: the same final state."""
    cache = tmp_path / "cache"
    loader = ("--data.init_args.num_workers", str(workers))
    uninterrupted = start(tmp_path / "a", cache, *loader)
    finish(uninterrupted)  # also builds the cache, so the killed run only trains
    killed = start(tmp_path / "b", cache, *loader)
    reached = kill_after_epoch(killed, tmp_path / "b" / CHECKPOINT, epoch=1)
    assert killed.returncode == -signal.SIGKILL
    assert 1 <= reached < EPOCHS - 1
    finish(start(tmp_path / "b", cache, *loader, "--ckpt_path", "last"))

    expected = torch.load(tmp_path / "a" / CHECKPOINT, map_location="cpu", weights_only=False)
    resumed = torch.load(tmp_path / "b" / CHECKPOINT, map_location="cpu", weights_only=False)
    assert expected["epoch"] == resumed["epoch"] == EPOCHS - 1
    assert expected["global_step"] == resumed["global_step"]
    differences = [
        line
        for key in ("state_dict", "odc_memory", "optimizer_states")
        for line in tensor_differences(resumed[key], expected[key], key)
    ]
    assert not differences, (
        f"resumed after epoch {reached}, {len(differences)} differences:\n" + "\n".join(differences[:20])
    )


@pytest.mark.slow  # the 2-worker test below covers the same path with workers on
def test_sigkilled_stage1_resumes_bit_identical_without_workers(tmp_path: Path) -> None:
    check_sigkill_resume(tmp_path, workers=0)


def test_sigkilled_stage1_resumes_bit_identical_with_two_workers(tmp_path: Path) -> None:
    check_sigkill_resume(tmp_path, workers=2)


def test_resume_without_a_checkpoint_names_the_folder(in_scratch: Path) -> None:
    message = r"no last checkpoint \(last\*\.ckpt\) in \S*runs/demo/stage1/checkpoints, and no SLURM requeue "
    message += r"checkpoint \(hpc_ckpt_\*\.ckpt\) in \S*runs/demo/stage1; nothing to resume"
    with pytest.raises(FileNotFoundError, match=message):
        main(["fit", "--config", str(DEMO / "stage1.yaml"), *TINY_DATA, "--ckpt_path", "last"])
    assert not (in_scratch / "runs/demo/stage1/checkpoints").exists()


EVERY_EPOCH = """trainer:
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args:
        {dirpath: epochs, filename: "{epoch}", save_top_k: -1, every_n_epochs: 1, save_on_train_epoch_end: true}
"""


@pytest.mark.slow  # 5 runs of stage 1 (about a minute on 2 cores)
def test_resume_from_every_phase_boundary_with_two_workers_is_bit_identical(tmp_path: Path) -> None:
    """Resumed from the end of each epoch (clustering, + video, + refinement), with 2 workers."""
    cache, overlay = tmp_path / "cache", tmp_path / "every_epoch.yaml"
    overlay.write_text(EVERY_EPOCH)
    extra = ("--config", str(overlay), "--data.init_args.num_workers", "2")
    finish(start(tmp_path / "a", cache, *extra))
    last = f"epoch={EPOCHS - 1}.ckpt"
    expected = torch.load(tmp_path / "a" / "epochs" / last, map_location="cpu", weights_only=False)
    for epoch in (1, 2, 3):
        folder = tmp_path / f"from{epoch}"
        finish(start(folder, cache, *extra, "--ckpt_path", str(tmp_path / "a" / "epochs" / f"epoch={epoch}.ckpt")))
        resumed = torch.load(folder / "epochs" / last, map_location="cpu", weights_only=False)
        differences = [
            line
            for key in ("state_dict", "odc_memory", "optimizer_states")
            for line in tensor_differences(resumed[key], expected[key], key)
        ]
        assert not differences, f"resumed after epoch {epoch}:\n" + "\n".join(differences[:20])


QUICK_FIT = [
    "fit", "--config", str(DEMO / "stage1.yaml"), *TINY_DATA,
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
    "--trainer.logger", "false",
]


def test_resuming_last_takes_the_newest_of_the_last_and_the_slurm_requeue_checkpoint(in_scratch: Path) -> None:
    """A SLURM job signalled before its time limit saves `hpc_ckpt_<N>.ckpt` in the run folder and is
    requeued; Lightning's own `last` ignores that file, so the requeued job would go back to the end of an
    earlier epoch. Here the newest candidate is resumed, and a requeue checkpoint alone is enough."""
    main(QUICK_FIT)
    last = in_scratch / CHECKPOINT
    requeue = in_scratch / "runs/demo/stage1/hpc_ckpt_1.ckpt"
    requeue.write_bytes(last.read_bytes())
    now = time.time()

    def resumed_from(newer: Path) -> Path:
        for path in (last, requeue):
            if path.is_file():
                stamp = now + (60 if path == newer else 0)
                os.utime(path, (stamp, stamp))
        cli = main([*QUICK_FIT, "--ckpt_path", "last"])  # epoch 0 is done: nothing left to train
        assert cli is not None and cli.trainer.current_epoch == 1
        return Path(str(cli.trainer.ckpt_path)).resolve()

    assert resumed_from(requeue) == requeue
    assert resumed_from(last) == last
    last.unlink()
    assert resumed_from(requeue) == requeue
