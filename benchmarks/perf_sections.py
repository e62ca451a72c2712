"""The measuring sections of `bench_perf.py` (each returns a dict of figures) and the report."""

from __future__ import annotations

import gc
import inspect
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.perf_common import (
    interleaved_median_seconds,
    load_average,
    markdown_table,
    median_seconds,
    peak_rss_bytes,
    reset_peak_rss,
)

EMBED = 256  # the paper's d: u = [normalize(z), normalize(h)] has 2d = 512
TAU = 0.1
# Repeats of each loss variant, timed in turn: about a second of calls at N = 256 and 1024, where one
# call takes 3-80 ms and a single slow call on a shared machine moves a median of 7 (stop 22: 1.00-1.38x).
LOSS_REPEATS = {256: 51, 1024: 15, 4096: 5}


# ---- loss -------------------------------------------------------------------------------------


def _loss_inputs(num_pairs: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    make = lambda dim: torch.randn(num_pairs, dim, generator=gen)  # noqa: E731
    return {"u_v": make(2 * EMBED), "u_s": make(2 * EMBED), "z_v": make(EMBED), "z_s": make(EMBED),
            "h_v": make(EMBED), "h_s": make(EMBED)}


def _loss_figures(num_pairs: int, quick: bool, pair_weights) -> dict:  # noqa: ANN001
    """Milliseconds of each loss variant at N = `num_pairs`, and its ratio to plain InfoNCE."""
    from detach_pl.losses import info_nce, weighted_info_nce

    x = _loss_inputs(num_pairs)
    u_v = x["u_v"].requires_grad_()
    u_s = x["u_s"].requires_grad_()

    def plain() -> None:
        logits = F.normalize(u_v, dim=1) @ F.normalize(u_s, dim=1).T / TAU
        targets = torch.arange(num_pairs)
        (0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))).backward()

    def weighted() -> None:
        weights = pair_weights(x["z_v"], x["z_s"], x["h_v"], x["h_s"])
        weighted_info_nce(u_v, u_s, weights, TAU, check=False).backward()

    def weighted_bf16_gram() -> None:  # the stage-2 option weights_gram_dtype: bfloat16
        weights = pair_weights(x["z_v"], x["z_s"], x["h_v"], x["h_s"], gram_dtype="bfloat16")
        weighted_info_nce(u_v, u_s, weights, TAU, check=False).backward()

    def project_plain() -> None:
        info_nce(u_v, u_s, TAU, check=False).backward()

    repeats = 3 if quick else LOSS_REPEATS[num_pairs]
    variants = {"plain": plain, "weighted": weighted, "info_nce": project_plain}
    if "gram_dtype" in inspect.signature(pair_weights).parameters:
        variants["weighted_bf16_gram"] = weighted_bf16_gram
    times = interleaved_median_seconds(variants, repeats=repeats)
    return {
        **{f"{k}_ms": 1e3 * v for k, v in times.items()},
        **{f"{k}_ratio": times[k] / times["plain"] for k in times if k != "plain"},
    }


def loss(quick: bool = False, workdir: Path | None = None) -> dict:
    """Weighted loss + weights vs plain `F.cross_entropy` InfoNCE (and the project's info_nce), fwd + bwd."""
    pair_weights: Callable[..., torch.Tensor]
    try:
        from detach_pl.losses import pair_weights
    except ImportError:  # the code before the fused weights
        from detach_pl.losses import alignment_weights, spatial_similarity, temporal_similarity

        def composed_weights(z_v, z_s, h_v, h_s):  # noqa: ANN001, ANN202
            return alignment_weights(spatial_similarity(z_v, z_s), temporal_similarity(h_v, h_s))

        pair_weights = composed_weights
    results = {}
    for num_pairs in (256, 1024, 4096):
        results[str(num_pairs)] = _loss_figures(num_pairs, quick, pair_weights)
        print(f"  N={num_pairs}: {results[str(num_pairs)]}", flush=True)
    return results


# ---- ODC ----------------------------------------------------------------------------------------


def _clustered_features(num_samples: int, num_clusters: int = 7, seed: int = 0) -> torch.Tensor:
    """Gaussian blobs around K random centres in 256 dimensions (ReLU-free, like z_s)."""
    gen = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(num_clusters, EMBED, generator=gen)
    members = torch.randint(num_clusters, (num_samples,), generator=gen)
    return centres[members] + torch.randn(num_samples, EMBED, generator=gen)


def kmeans(quick: bool = False, workdir: Path | None = None) -> dict:
    """k-means initialisation (10 inits, 50 iterations, K = 7) of 10k and 100k windows × 256."""
    from detach_pl import clustering

    results = {}
    for num_samples in (10_000, 100_000):
        features = _clustered_features(num_samples)
        repeats = 1 if num_samples == 100_000 and quick else 3
        seconds = median_seconds(partial(clustering.kmeans, features, 7, seed=42, num_inits=10, num_iters=50),
                                 repeats=repeats, warmup=0)
        results[str(num_samples)] = {"seconds": seconds}
        print(f"  kmeans {num_samples}: {seconds:.2f} s", flush=True)
    return results


def _odc_figures(num_samples: int, quick: bool) -> dict:
    """Milliseconds of the ODC bank's per-step, per-epoch and threshold work on a bank of `num_samples`."""
    from detach_pl.clustering import OdcMemory

    features = _clustered_features(num_samples)
    memory = OdcMemory(num_samples, EMBED, 7)
    memory.initialize(features, seed=42, num_inits=1, num_iters=5)
    gen = torch.Generator().manual_seed(1)
    indices = torch.randperm(num_samples, generator=gen)[:256]
    batch = features[indices] + 0.1 * torch.randn(256, EMBED, generator=gen)

    def step() -> None:
        memory.batch_confident_mask(indices, batch, check=False)
        memory.update(indices, batch, check=False)

    return {
        "step_ms": 1e3 * median_seconds(step, repeats=5 if quick else 11),
        "epoch_ms": 1e3 * median_seconds(partial(memory.update_centroids, 10), repeats=3),
        "thresholds_ms": 1e3 * median_seconds(memory.refresh_thresholds, repeats=5),
    }


def odc(quick: bool = False, workdir: Path | None = None) -> dict:
    """Per-step confident mask + update (B = 256), per-epoch centroid update, thresholds."""
    results = {}
    for num_samples in (10_000, 100_000):
        results[str(num_samples)] = _odc_figures(num_samples, quick)
        print(f"  odc {num_samples}: {results[str(num_samples)]}", flush=True)
    return results


# ---- a stand-in dataset for the data and training sections ----------------------------------


CHANNELS = 37
SENSOR_HZ = 30.0
FPS = 10.0


def _frames(num_frames: int, size: int, seed: int):
    """Camera-like frames: a smooth textured background, a moving bright object, sensor noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, size=(size // 8 + 1, size // 8 + 1, 3)).astype(np.float32)
    background = np.kron(coarse, np.ones((8, 8, 1), np.float32))[:size, :size]
    side = max(size // 6, 2)
    for k in range(num_frames):
        frame = background.copy()
        x = int((size - side) * (0.5 + 0.5 * np.sin(0.05 * k)))
        y = int((size - side) * (0.5 + 0.5 * np.cos(0.03 * k)))
        frame[y : y + side, x : x + side] = 250.0
        frame += rng.normal(0.0, 3.0, size=frame.shape).astype(np.float32)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def standin_datamodule(cache_dir: Path, image_size: int, minutes: float, runs: int = 1, **kwargs: Any):
    """A `WindowDataModule` over generated runs (`minutes` each; 37 channels at 30 Hz, 10 fps video)."""
    from detach_pl.data.cache import RunRecording
    from detach_pl.data.datamodule import WindowDataModule
    from detach_pl.data.info import DataInfo
    from detach_pl.data.windows import WindowSettings

    names = [f"run{k}" for k in range(runs)]

    class StandIn(WindowDataModule):
        dataset_name = "perf_standin"

        def source_settings(self) -> dict:
            return {"minutes": minutes, "runs": runs}

        def default_splits(self) -> dict:
            return {"train_runs": names, "val_runs": names[:1], "test_runs": names[:1]}

        @property
        def data_info(self) -> DataInfo:
            return DataInfo(num_channels=CHANNELS, num_classes=4, num_places=7,
                            channel_names=[f"c{i}" for i in range(CHANNELS)], class_names=list("abcd"),
                            place_names=[f"p{i}" for i in range(7)])

        def recordings(self):
            for index, name in enumerate(names):
                rng = np.random.default_rng(index)
                rows = int(minutes * 60 * SENSOR_HZ)
                time_ms = np.arange(rows) * 1000.0 / SENSOR_HZ
                sensor = np.cumsum(rng.normal(size=(rows, CHANNELS)), axis=0)
                label = (np.arange(rows) // 90) % 5 - 1
                num_frames = int(minutes * 60 * FPS)
                yield RunRecording(name, time_ms, sensor, label, label % 7, _frames(num_frames, image_size, index),
                                   FPS, num_frames=num_frames)

    settings: dict[str, Any] = dict(cache_dir=str(cache_dir), windows=WindowSettings(image_size=image_size),
                                    progress=False, purpose="alignment", augment_video=False)
    settings.update(kwargs)
    return StandIn(**settings)


def _storage_options() -> list[dict]:
    """The frame storage settings this version of the code offers ({} is the default)."""
    try:
        from detach_pl.data.cache import FrameStorage
    except ImportError:  # the code before frame storage options
        return [{}]
    return [{}, {"frame_storage": FrameStorage(codec="jpeg", quality=90)}]


def _option_name(option: dict) -> str:
    storage = option.get("frame_storage")
    return "raw" if storage is None else f"{storage.codec} q{storage.quality}"


def _scratch(workdir: Path | None, name: str) -> Path:
    root = Path(workdir) if workdir is not None else Path(tempfile.gettempdir())
    folder = Path(tempfile.mkdtemp(prefix=f"perf_{name}_", dir=root))
    return folder


def _direct_reads(cache, windows: np.ndarray, num_frames: int, sensor: np.ndarray) -> tuple[float, float]:
    """Windows/s and CPU ms per window of `read_frames` + the sensor row, one process, no DataLoader."""
    cpu_started, started = time.process_time(), time.perf_counter()
    for window in windows:
        cache.read_frames(int(window), num_frames)
        sensor[int(window)].copy()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return len(windows) / wall, 1000.0 * cpu / len(windows)


def _memory_rate(cache, windows: np.ndarray, num_frames: int, frames_in_ram: np.ndarray, sensor: np.ndarray) -> float:
    """Windows/s of a memory copy of the same bytes (the limit of any reader)."""
    from detach_pl.data.windows import sample_frame_indices

    started = time.perf_counter()
    for window in windows:
        picks = sample_frame_indices(int(cache.frame_start[window]), int(cache.frame_stop[window]), num_frames)
        frames_in_ram[picks]
        sensor[int(window)].copy()
    return len(windows) / (time.perf_counter() - started)


def cache(quick: bool = False, workdir: Path | None = None) -> dict:
    """Build time per minute of recording, size per hour, read rate vs a memory copy, per storage option."""
    minutes = 1.0 if quick else 2.0
    results = {}
    for option in _storage_options():
        folder = _scratch(workdir, "cache")
        try:
            dm = standin_datamodule(folder, 224, minutes, **option)
            started = time.perf_counter()
            dm.prepare_data()
            build = time.perf_counter() - started
            dm.setup("fit")
            cache_ = dm.cache
            size = dm.cache_path.stat().st_size
            windows = np.random.default_rng(0).permutation(len(cache_))[: 60 if quick else 120]
            sensor, _, _ = cache_.read_sensor(np.arange(len(cache_)))
            frames_in_ram = np.stack(list(cache_.iter_run_frames(cache_.run_names[0])))
            direct = statistics.median(_direct_reads(cache_, windows, 20, sensor)[0] for _ in range(3))
            memory = statistics.median(_memory_rate(cache_, windows, 20, frames_in_ram, sensor) for _ in range(3))
            name = _option_name(option)
            results[name] = {
                "build_s_per_min": build / minutes,
                "gib_per_hour": size / (minutes / 60.0) / 2**30,
                "read_windows_s": direct,
                "memory_windows_s": memory,
                "memory_over_read": memory / direct,
            }
            print(f"  {name}: {results[name]}", flush=True)
            cache_.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return results


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loader_rate_and_cpu(dm, limit: int, warm: bool = False) -> tuple[float, float]:
    """Windows/s through the DataModule's training loader and its CPU ms per window.

    Timed after the first batch (workers started). CPU: this process plus its workers (their
    /proc counters; in steady state the batches prefetched before the clock starts balance those
    prefetched after it stops). A new loader each call; with `warm`, one untimed epoch first, so
    that the timed one runs as every epoch after the first does in training (persistent workers,
    their clip slots already written once).
    """
    loader = dm.train_dataloader()
    if warm:
        for _ in loader:
            pass
    iterator = iter(loader)
    next(iterator)
    workers = [worker.pid for worker in getattr(iterator, "_workers", [])]
    cpu_started = time.process_time() + sum(_process_cpu_seconds(pid) for pid in workers)
    count, started = 0, time.perf_counter()
    for batch in iterator:
        count += batch["sensor"].shape[0]
        if count >= limit:
            break
    rate = count / (time.perf_counter() - started)
    cpu = time.process_time() + sum(_process_cpu_seconds(pid) for pid in workers) - cpu_started
    del iterator, loader
    gc.collect()
    return rate, 1000.0 * cpu / count


# Rounds of direct reads, batched reads and a new loader, alternated. Until stop 23 the direct rate was measured
# once (median of 3 back-to-back) before every loader run; consecutive direct reads of the same windows
# in one process read 1485-2511 windows/s (stop 24), which alone moved the 1-worker ratio of the same
# code from 1.0x to 2.0x. Each round now takes its own ratio; the median of the rounds is reported.
LOADER_ROUNDS = 9


def _batched_reads(dataset, positions: np.ndarray, batch_size: int):  # noqa: ANN001, ANN202
    """A measure of batched reads in this process: `read_batch` into batch slots, no DataLoader.

    The batches of `positions` (dataset indices) are read into the `SLOTS_PER_WORKER` slots of one
    `BatchSlots` in turn, as a worker writes them: what a loader's worker does, without the worker.
    The direct reads instead write each clip into one reused 3 MiB array, which stays in the L3.
    None for code without slots.
    """
    try:
        from detach_pl.data.batch_slots import BatchSlots
    except ImportError:
        return None
    clip = (dataset.num_frames, *dataset.cache.frame_shape)
    slots = BatchSlots(1, (batch_size, *clip)).segments[0]
    batches = [positions[start : start + batch_size] for start in range(0, len(positions), batch_size)]

    def measure() -> float:
        started = time.perf_counter()
        for k, batch in enumerate(batches):
            clips = slots[k % len(slots)][: len(batch) * math.prod(clip)]
            dataset.read_batch(batch, clips.view(len(batch), *clip))
        return len(positions) / (time.perf_counter() - started)

    return measure


def _against_direct(dm, direct, batched, limit: int, rounds: int, warm: bool = False) -> dict[str, float]:  # noqa: ANN001
    """Alternated rounds of `direct()`, `batched()` and `_loader_rate_and_cpu`: medians of rates and ratios.

    Returns loader windows/s and CPU ms per window, the direct rate and CPU, wall and CPU ratios
    (direct over loader; loader CPU over direct CPU), the lowest and highest wall ratio, and,
    when `batched` is given, its rate and the ratios direct over batched and batched over loader.
    """
    measured = []
    for _ in range(rounds):
        direct_rate, direct_cpu = direct()
        batched_rate = batched() if batched is not None else float("nan")
        rate, cpu = _loader_rate_and_cpu(dm, limit, warm)
        measured.append((direct_rate, direct_cpu, rate, cpu, direct_rate / rate, cpu / direct_cpu, batched_rate,
                         direct_rate / batched_rate, batched_rate / rate))
    names = ("direct", "direct_cpu", "rate", "cpu", "wall", "cpu_ratio", "batched", "direct_over_batched",
             "batched_over_loader")
    figures = {name: statistics.median(column) for name, column in zip(names, zip(*measured, strict=True), strict=True)}
    walls = [m[4] for m in measured]
    return {**figures, "lowest": min(walls), "highest": max(walls)}


def loader(quick: bool = False, workdir: Path | None = None) -> dict:
    """DataModule training loader (0, 1 and 2 workers, batch 8 of 20 × 224²) vs direct reads of the same windows.

    Wall-clock rates (windows/s) and, because wall clocks on a shared machine measure the load
    as much as the code, CPU ms per window (this process and its workers) as well. Each figure is
    the median of `LOADER_ROUNDS` rounds of direct reads, batched reads (`_batched_reads`) and a
    new loader (one round when quick).
    """
    results: dict[str, float] = {}
    folder = _scratch(workdir, "loader")
    rounds = 1 if quick else LOADER_ROUNDS
    try:
        for option in _storage_options():
            name = _option_name(option)
            prefix = "" if name == "raw" else name.replace(" ", "_") + "_"
            dm = standin_datamodule(folder, 224, 1.0 if quick else 2.0, batch_size=8, num_frames=20, num_workers=0,
                                    **option)
            dm.prepare_data()
            dm.setup("fit")
            dataset = dm.datasets["train"]
            limit = 48 if quick else 96
            positions = np.random.default_rng(0).permutation(len(dataset))[:limit]
            direct = partial(_direct_reads, dm.cache, dataset.windows[positions], 20, dataset.sensor.numpy())
            batched = _batched_reads(dataset, positions, 8)
            for workers in (0, 1, 2) if name == "raw" else (1,):  # compressed: decoded in the workers on CPU
                dm.num_workers = workers
                for suffix, warm in (("", False), ("_second_epoch", True)) if workers == 1 else (("", False),):
                    figures = _against_direct(dm, direct, batched, limit, rounds, warm)
                    key = f"loader_{workers}w{suffix}"
                    if f"{prefix}direct_windows_s" not in results:  # the option's first rounds
                        results[f"{prefix}direct_windows_s"] = figures["direct"]
                        results[f"{prefix}direct_cpu_ms"] = figures["direct_cpu"]
                        if batched is not None:
                            results[f"{prefix}batched_windows_s"] = figures["batched"]
                            results[f"{prefix}direct_over_batched"] = figures["direct_over_batched"]
                    if batched is not None:
                        results[f"{prefix}batched_over_{key}"] = figures["batched_over_loader"]
                    results[f"{prefix}{key}_windows_s"] = figures["rate"]
                    results[f"{prefix}{key}_cpu_ms"] = figures["cpu"]
                    results[f"{prefix}direct_over_{key}"] = figures["wall"]
                    results[f"{prefix}direct_over_{key}_lowest"] = figures["lowest"]
                    results[f"{prefix}direct_over_{key}_highest"] = figures["highest"]
                    results[f"{prefix}{key}_cpu_over_direct"] = figures["cpu_ratio"]
            dm.cache.close()
        print(f"  {results}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


# ---- training steps --------------------------------------------------------------------------

# Alternated rounds of in-memory and loader steps at both sizes. Until stop 22 the paper's size ran one
# round of 8 + 8 steps of 5-6 s; the same code then read 0.0-9.7 % and the code before -6.6 %, so a
# drift of the machine within the 90 s read as data overhead. Each size runs `rounds` rounds of
# `steps` + `steps` steps (see the notes for how the demo's rounds were chosen).
class TrainSize(NamedTuple):
    """One size of the `train` section: clips, batch, encoders, stand-in recording and protocol."""

    image: int
    frames: int
    batch: int
    paper: bool  # the paper's encoders (else the demo's)
    minutes: float  # of each stand-in run
    runs: int
    steps: int  # per arm of a round
    rounds: int


TRAIN_SIZES = {
    "demo": TrainSize(image=32, frames=8, batch=32, paper=False, minutes=2.0, runs=5, steps=12, rounds=11),
    "paper": TrainSize(image=224, frames=20, batch=4, paper=True, minutes=1.0, runs=1, steps=4, rounds=3),
}


def _encoder(paper: bool):
    from detach_pl.nn import EncoderConfig

    if paper:
        return EncoderConfig()
    return EncoderConfig(embed_dim=64, video_cnn_channels=[16, 32, 64, 64], video_temporal_channels=[8, 16, 32],
                         sensor_spatial_channels=[16, 32, 32], sensor_spatial_pool=16,
                         sensor_temporal_channels=[16, 32, 64], gru_hidden=64)


def training_sensor(dm) -> torch.Tensor:  # noqa: ANN001
    """The standardised training windows (N, C, L) that initialise the ODC bank.

    Also from the code before `alignment_training_set`, so that this benchmark measures a "before" commit.
    """
    if hasattr(dm, "alignment_training_set"):
        return dm.alignment_training_set().sensor
    return dm.train_sensor_windows()


def build_stage(stage: str, data_info, encoder, train_sensor: torch.Tensor | None = None):
    """A stage-1 module in its refine phase (every loss term runs) or a stage-2 module, on CPU."""
    from detach_pl.modules import SpatialGroundingModule, TemporalAlignmentModule

    if stage == "stage1":
        if train_sensor is None:
            raise ValueError("build_stage('stage1'): the ODC bank needs the training windows (train_sensor)")
        module = SpatialGroundingModule(data_info, encoder, video_start_epoch=0, refine_start_epoch=0,
                                        warp_start_epoch=0, min_cluster_size=2, kmeans_inits=1)
        module.initialize_memory(train_sensor)
        return module
    return TemporalAlignmentModule(data_info, encoder)


def _transfer(dm, batch: dict) -> dict:  # noqa: ANN001
    """What Lightning does to a host batch before the step, on CPU: the DataModule's after-transfer hook."""
    return dm.on_after_batch_transfer(dict(batch), 0)


def _private_copy(batch: dict) -> dict:
    """A loader batch copied out of the loader's memory: held batches must not hold the workers' clip slots."""
    return {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def _train_steps(module, batches, transfer) -> tuple[float, int, float]:
    """Seconds of training steps (forward, loss, backward, AdamW step) over `batches`, windows, seconds waited.

    The wait is the time spent asking `batches` for the next batch: with a loader, how long the
    training loop stood idle for data, whatever the speed of the machine's steps around it.
    """
    optimizer = module.configure_optimizers()
    iterator = iter(batches)
    started = time.perf_counter()
    count, waited = 0, 0.0
    while True:
        asked = time.perf_counter()
        batch = next(iterator, None)
        waited += time.perf_counter() - asked
        if batch is None:
            break
        batch = transfer(batch)
        loss = module.training_step(batch, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += batch["sensor"].shape[0]
    return time.perf_counter() - started, count, waited


def _overhead_figures(rounds: list[tuple[float, float, float]]) -> dict[str, float]:
    """Data overhead and wait from alternated rounds of (memory seconds, loader seconds, wait share).

    The overhead is the issue's: the median loader time over the median in-memory time, minus 1.
    Its lowest and highest per-round values show how far repeated rounds of the same code spread;
    the wait is the median share of the loader steps' time spent waiting for a batch.
    """
    per_round = [loaded / memory - 1.0 for memory, loaded, _ in rounds]
    memory_s = statistics.median(memory for memory, _, _ in rounds)
    loader_s = statistics.median(loaded for _, loaded, _ in rounds)
    return {"memory_s": memory_s, "loader_s": loader_s, "data_overhead": loader_s / memory_s - 1.0,
            "data_overhead_lowest": min(per_round), "data_overhead_highest": max(per_round),
            "data_wait": statistics.median(share for _, _, share in rounds)}


def train(quick: bool = False, workdir: Path | None = None) -> dict:
    """Stage-1/2 steps with batches from the real loader over the real cache vs the same batches in memory."""
    import warnings

    warnings.filterwarnings("ignore", message=".*self.log.*")
    warnings.filterwarnings("ignore", message=".*You are trying to `self.log`.*")
    results = {}
    for size_name, size in TRAIN_SIZES.items():
        folder = _scratch(workdir, "train")
        try:
            dm = standin_datamodule(folder, size.image, size.minutes, runs=size.runs,
                                    batch_size=size.batch, num_frames=size.frames, num_workers=1)
            dm.prepare_data()
            dm.setup("fit")
            steps = min(size.steps, 6) if quick else size.steps
            encoder = _encoder(size.paper)
            for stage in ("stage1", "stage2"):
                gc.collect()
                reset_peak_rss()  # this stage's peak: building it, its loader and its steps
                torch.manual_seed(0)
                module = build_stage(stage, dm.data_info, encoder, training_sensor(dm))
                module.train()
                transfer = partial(_transfer, dm)
                loader_ = dm.train_dataloader()
                iterator = iter(loader_)
                first = next(iterator)
                in_memory = [_private_copy(next(iterator)) for _ in range(steps)]
                # Warm-up, untimed: the first step's checks, and a pass over the batches (the first timed pass
                # of the demo's steps ran 6-34 % slower than the later ones: glibc's malloc was still raising
                # its mmap threshold, and with MALLOC_MMAP_THRESHOLD_ fixed the first pass was not slower).
                _train_steps(module, [first] if quick else [first, *in_memory], transfer)
                del first
                rounds = []  # in memory, then from the loader, alternated: drifts of the machine's load cancel
                for _ in range(1 if quick else size.rounds):
                    memory_s, count, _ = _train_steps(module, in_memory, transfer)
                    iterator = iter(loader_)
                    next(iterator)
                    batches = (next(iterator) for _ in range(steps))
                    loader_s, _, waited = _train_steps(module, batches, transfer)
                    rounds.append((memory_s, loader_s, waited / loader_s))
                del iterator, loader_
                key = f"{size_name}_{stage}"
                overhead = _overhead_figures(rounds)
                memory_s, loader_s = overhead.pop("memory_s"), overhead.pop("loader_s")
                results[key] = {
                    "batch": size.batch, "frames": size.frames, "image": size.image,
                    "memory_windows_s": count / memory_s, "loader_windows_s": count / loader_s,
                    "steps_s": steps / memory_s, **overhead, "peak_rss_gib": peak_rss_bytes() / 2**30,
                }
                print(f"  {key}: {results[key]} (load {load_average():.1f})", flush=True)
                gc.collect()
            dm.cache.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return results


def _rows(figures: dict) -> dict[str, tuple[str, float]]:
    """Flat {figure name: (unit, value)} of a figures dict (for the before/after table)."""
    rows: dict[str, tuple[str, float]] = {}
    for n, v in figures.get("loss", {}).items():
        rows[f"loss N={n}: weighted + weights, fwd+bwd"] = ("ms", v["weighted_ms"])
        rows[f"loss N={n}: plain InfoNCE (F.cross_entropy)"] = ("ms", v["plain_ms"])
        rows[f"loss N={n}: weighted / plain (target <= 1.3)"] = ("x", v["weighted_ratio"])
        rows[f"loss N={n}: info_nce / plain"] = ("x", v["info_nce_ratio"])
        if "weighted_bf16_gram_ratio" in v:
            rows[f"loss N={n}: weighted, bf16 weight Grams / plain (weights_gram_dtype: bfloat16)"] = (
                "x", v["weighted_bf16_gram_ratio"])
    for n, v in figures.get("kmeans", {}).items():
        rows[f"k-means init {n} x 256, 10 inits (target 100k < 3 s)"] = ("s", v["seconds"])
    for n, v in figures.get("odc", {}).items():
        rows[f"ODC {n}: per-step mask + update (B=256)"] = ("ms", v["step_ms"])
        rows[f"ODC {n}: per-epoch centroid update"] = ("ms", v["epoch_ms"])
        rows[f"ODC {n}: thresholds"] = ("ms", v["thresholds_ms"])
    for name, v in figures.get("cache", {}).items():
        rows[f"cache {name}: build per minute of recording"] = ("s", v["build_s_per_min"])
        rows[f"cache {name}: size per hour at 224 px"] = ("GiB", v["gib_per_hour"])
        rows[f"cache {name}: read windows/s"] = ("1/s", v["read_windows_s"])
        rows[f"cache {name}: memory copy / read (limit 1)"] = ("x", v["memory_over_read"])
    for key, v in figures.get("loader", {}).items():
        rows[f"loader: {key}"] = ("x" if "over" in key else "ms" if key.endswith("_ms") else "1/s", v)
    for key, v in figures.get("train", {}).items():
        size = f"batch {v['batch']}, {v['frames']} x {v['image']}^2"
        rows[f"{key} ({size}): windows/s in memory"] = ("1/s", v["memory_windows_s"])
        rows[f"{key} ({size}): data overhead (target < 5 %)"] = ("%", 100 * v["data_overhead"])
        if "data_overhead_lowest" in v:
            rows[f"{key}: data overhead, lowest round"] = ("%", 100 * v["data_overhead_lowest"])
            rows[f"{key}: data overhead, highest round"] = ("%", 100 * v["data_overhead_highest"])
        if "data_wait" in v:
            rows[f"{key} ({size}): waiting for the loader (share of step time)"] = ("%", 100 * v["data_wait"])
        rows[f"{key}: peak RSS"] = ("GiB", v["peak_rss_gib"])
    return rows


def render(figures: dict, before: dict | None, gpu: dict | None = None) -> str:
    """The Markdown table of every figure, before and after, with the machine and its load; then the GPU check's."""
    after_rows = _rows(figures)
    before_rows = _rows(before) if before else {}
    names = list(after_rows) + [name for name in before_rows if name not in after_rows]
    table = [
        (
            name,
            (after_rows.get(name) or before_rows[name])[0],
            f"{before_rows[name][1]:.3g}" if name in before_rows else "-",
            f"{after_rows[name][1]:.3g}" if name in after_rows else "not rerun",
        )
        for name in names
    ]
    machine = figures["machine"]
    head = [
        "# Performance figures (generated by `make bench-perf`)",
        "",
        f"Machine: {machine['name']}; one torch thread; load average {machine['load_start']:.1f} at the start, "
        f"{machine['load_end']:.1f} at the end (a shared machine: read the ratios).",
    ]
    if before:
        commit, loads = before["machine"].get("commit", "?"), before["machine"].get("loads")
        where = before["machine"].get("name", "?")
        same = "the same machine" if where == machine["name"] else f"another machine ({where}): compare the ratios"
        head.append(f"Before: commit {commit}, on {same}; loads {loads}.")
    body = ["", markdown_table(["figure", "unit", "before", "after"], table), "", NOTES, *render_gpu(gpu)]
    return "\n".join(head + body)


def _sync_verdict(value: bool | str) -> str:
    if value is True:
        return "yes"
    return "not checked (no CUDA)" if value is False else str(value)


def render_gpu(gpu: dict | None) -> list[str]:
    """The GPU check's section (benchmarks/gpu_check.py's figures), or how to produce it when there are none."""
    if gpu is None:
        return ["## GPU check", "", GPU_NOT_RUN]
    size = f"batch {gpu['batch']} per device, {gpu['frames']} x {gpu['image']}^2"
    rows = []
    for key in (f"{stage}_{precision}" for stage in ("stage1", "stage2") for precision in GPU_PRECISIONS):
        if key in gpu:
            v = gpu[key]
            overhead = "-" if v["data_overhead"] is None else f"{100 * v['data_overhead']:.1f}"
            peak = "-" if v["peak_gib"] is None else f"{v['peak_gib']:.2f}"
            stage, precision = key.split("_", 1)
            rows.append((stage, precision, f"{v['steps_s']:.3g}", f"{v['windows_s']:.4g}", overhead, peak,
                         _sync_verdict(v["sync_free"])))
    headers = ["stage", "precision", "steps/s", "windows/s", "data overhead %", "peak GiB", "no host sync"]
    compiled = "and `encoder.compile`" if gpu["compile"] else "not `encoder.compile` (no `--compile`)"
    return ["## GPU check (generated from `make bench-gpu`'s figures)", "",
            f"Machine: {gpu['machine']}; {size}; the steps after the first (validating) one.", "",
            markdown_table(headers, rows), "", GPU_NOTES.format(workers=gpu["workers"], compiled=compiled), "",
            GPU_DECODE.format(**gpu["clip_decode"])]


NOTES = """## Notes

- This report ("after") is one full `make bench-perf` run, 2026-12-03 16:54-17:05 UTC, nothing else on
  the machine, the first under the `train` protocol of 16:40 (below). The host drifts by tens of
  per cent within a day, so compare ratios, and the runs that were alternated within one hour.
  Earlier full runs today: 12:53 (the previous report, raw frames already read by byte offset);
  06:03, 06:23, 06:49, 07:05, 08:09 ("run 1") and 08:25 ("run 2"), of the code before the offset
  reads. The "before" is commit cae4405 on the same machine (`PYTHONPATH=<worktree of cae4405>/src`),
  re-measured today for `train` (16:40, under this protocol), `kmeans` (08:22, three `--sections
  kmeans` runs alternated with the code after: 4.84, 4.96, 5.29 s; the median run is the table's) and
  `loader` (05:57); `loss` 2026-12-02 22:44 UTC; `odc` and `cache` from an earlier session.
- Protocol changes, each motivated by the spread of repeated runs of the same code or by what a
  figure held, not by its direction, and applied to before and after alike:
  - `loss`: the variants are timed in turn within each repeat, with 51 / 15 / 5 repeats at
    N = 256 / 1024 / 4096.
  - `train` (16:40): an untimed warm-up pass over the in-memory batches after the first step, and
    11 rounds at the demo's size (the paper's size keeps 3: a round there takes a minute). In three
    15-round demo runs the first round's in-memory pass ran 6-34 % slower than the later ones
    (glibc's malloc still raising its mmap threshold: with `MALLOC_MMAP_THRESHOLD_` fixed it did
    not), which read as negative overhead; and the overheads of 3 consecutive rounds spread with a
    standard deviation of 3-4.5 points, those of 9-14 rounds 0.2-2. The code before, re-measured
    under it, reads 15.4 / 12.1 % at the demo's size (-2.1 / 6.8 % under the old one).
  - `train` (stop 23): alternated rounds of in-memory and loader steps at both sizes; peak RSS per stage
    (the high-water mark reset before each stage; before it was the process's peak so far, which
    held the loss section's N = 4096 matrices and the loader's slots); the data wait, the time the
    loop spends asking the loader for its next batch, as a share of the loader steps' time; the
    data overhead's lowest and highest round. The overhead stays as the issue defines it (median
    loader time over median in-memory time); repeated runs of the same code read 5.9, 6.3, 0.9,
    -3.8, 7.9 and -2.2 % (paper stage 1, the six runs before this one).
  - `loader`: `LOADER_ROUNDS` = 9 rounds, each of direct reads, batched reads (the same windows read
    in batches into one `BatchSlots`, in this process) and a new loader; the median of the
    per-round ratios, and their range. Consecutive direct reads of the same windows read 1485-2511
    windows/s, so a direct rate measured once per loader run moved the ratio from 1.0x to 2.0x.
- Sizes: `loss` uses the paper's embeddings (u: 2·256, z and h: 256). `train` runs the demo's sizes
  (batch 32, 8 × 32², demo encoders) and the paper's clips and encoders (20 × 224²) with the batch
  reduced to 4 on CPU. Stage 1 runs in its refine phase (every loss term) from epoch 0.
- Loss (docs/performance.md): weighted / plain this run 1.10 / 1.07 / 0.89 at N = 256 / 1024 / 4096;
  12:53 1.04 / 1.08 / 0.76; runs 1 and 2 1.05 / 1.06 / 0.93 and 1.06 / 1.08 / 0.90; the runs of 06:03-07:05 0.99-1.09 /
  0.99-1.08 / 0.81-0.94; before 1.57 / 1.64 / 1.95.
- k-means, 100k × 256, 10 inits (src/detach_pl/clustering/kmeans.py): this run 1.81 s; 12:53 1.73 s;
  runs 1 and 2 1.84 and 1.99 s, five `--sections kmeans` runs 1.86-2.13 s; the code before its blockwise passes
  (6b3d0b9) alternated with them 2.38 and 2.52 s; before 4.84-5.29 s. The blockwise passes take each
  run's own distances (inertia, empty-cluster re-seeding), the feature mean and the seeds' squared
  norms in blocks that stay in cache instead of through (N, d) temporaries: inertia 0.30 → 0.10 s,
  mean 0.12 → 0.04 s, squared norms 0.06 → 0.01 s, the results the same bit for bit. The rest:
  Lloyd 1.5-1.7 s (two of the ten runs take all 50 iterations, each rescoring 10-14k rows), the
  k-means++ draws 0.16-0.19 s, their distances 0.12-0.19 s.
- Sync-free steps: `debug_checks: false` (the default) validates on the first step only. The CPU
  test (tests/perf/test_sync_free.py) refuses host reads during the stage-1/2 steps after the first.
  The GPU script checks the same with `set_sync_debug_mode("error")`.
- Raw frames by byte offset (src/detach_pl/data/cache/frames.py): each frame is one `os.preadv` at
  its chunk's offset (HDF5's chunk index, read once per run), not an h5py call per frame. Alternated
  with the code before it (6b1941c) in `--sections cache loader` runs, 13:03-13:12, old / new / old /
  new: cache reads 2142 / 2643 / 1744 / 2745 windows/s (memory copy over read 2.78 / 1.98 / 2.35 /
  2.18); the loader with 1 worker 1578 / 1838 / 1387 / 1597 windows/s, second epoch 1566 / 1866 /
  1290 / 1706, 2 workers 2290 / 3180 / 2230 / 2720. The loader gains less than the reads do (1.15-1.17x
  against 1.23-1.57x): the reads' fixed cost shrinks, the writing of whole batches stays.
- Loader (docs/data_loading.md): one worker against direct reads, median of 9 rounds (range), new
  loader / second epoch: this run 1.62 (1.58-1.85) / 1.57 (1.31-1.68); 12:53 1.64 (1.52-1.95) / 1.52
  (1.39-1.73); the alternated runs, old / new / old / new: 1.51 / 1.61 / 1.56 / 1.51 and 1.48 / 1.59 /
  1.43 / 1.48. Direct over batched reads 1.41 this run, 1.30-1.48 at 13:00 (1.20-1.43 this morning):
  the slots are together three times the L3, and the direct reads reuse one 3 MiB array. Copying each
  clip from such an array into the slot with non-temporal stores (a diagnostic outside the report,
  glibc's `x86_non_temporal_threshold` set to 1 MiB; this VM's glibc otherwise streams only copies
  over 240 MiB) read as fast as reading into the slot, 1821-1863 against 1837-1885 windows/s
  (1586-1608 with ordinary stores): the floor is writing the batch out, not the cache lines read for
  ownership. Batched reads over the loader 1.12 this run, 1.08-1.17 before (the loader's own share).
  The 1.5x target sits on that floor and is not met. Two workers outrun direct reads (0.77-1.00x).
  Before: 7.9 / 7.6x.
- Data overhead this run (demo stage 1 / 2, paper stage 1 / 2), median (lowest to highest round):
  1.8 (-1.7 to 4.0) / 0.1 (-6.2 to 7.5) / -2.2 (-5.8 to 8.5) / 2.2 (-4.7 to 2.8) %; three demo-only
  runs of the same protocol after it (17:06-17:09): 4.9 / -1.3, 3.5 / -0.9, 1.0 / 3.3 %; before
  15.4 / 12.1 / -0.9 / -0.2 %. Under the old protocol: 12:53 -0.1 / 3.0 / -4.3 / -0.4 %, run 2
  12.8 / -2.7 / -2.2 / 3.7 %, run 1 -0.8 / 0.05 / 7.9 / -1.4 %. The data wait, same order: 0.9 / 0.6
  / 0.03 / 0.08 % of the loader steps' time (the demo-only runs 0.95-1.0 / 0.57-0.61 %; before 7.3 /
  5.0 / 0.15 / 0.15 %). Demo stage 1 pays 1-5 % with a wait of 1 %: the worker and the step share
  the machine's two cores and its memory bandwidth.
"""

GPU_PRECISIONS = ("fp32", "bf16", "bf16_fast")

GPU_DECODE = """Clips to the model's floats on the device, one batch:
{jpeg_windows_s:.0f} windows/s from JPEG q{quality} (`frame_storage: {{codec: jpeg}}`, one batched `decode_jpeg`);
{raw_windows_s:.0f} windows/s from raw frames (copied to the device and converted)."""

GPU_NOT_RUN = """No GPU figures yet (no benchmarks/perf_gpu.json): no GPU was lent to the tasks that ran this suite.
`make bench-gpu` on a GPU machine writes them, and `make bench-perf` (or `--render-only --gpu
benchmarks/perf_gpu.json`) puts them here. On a GPU machine without network whose Python holds
torch: `make gpu-wheels` where pip works, bring the repository and its `.whl` folder, and run
`benchmarks/gpu_check.sh --json <where>/perf_gpu.json` there (docs/performance.md). Its CPU mode
runs in tests/perf/test_gpu_check.py, on a Python without PyAV or this project, as on such a machine."""

GPU_NOTES = """Precisions: fp32; bf16 autocast; "bf16_fast" adds `encoder.channels_last` and stage 2's
`weights_gram_dtype: bfloat16`, {compiled}.
The data overhead is the steps over the DataModule's loader with {workers} workers (a prepared
stand-in cache, pinned memory) against the same steps over batches already in memory; "no host
sync" is `torch.cuda.set_sync_debug_mode("error")` over a training step and its backward after the first."""
