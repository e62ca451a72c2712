"""Figures of the prepared window cache, on synthesised Opportunity++ stand-ins.

    python benchmarks/bench_data.py            # full: prepares a 30-minute run (~12 min on 2 cores)
    python benchmarks/bench_data.py --quick    # a 5-minute run, fewer windows (~3 min)

Measured, and printed as a table (a 2 s window = 37×128 sensor samples + a 20-frame 224×224 clip;
the stand-in video is 640×480, 10 fps, MPEG-4 at 2 Mbit/s with texture and camera noise):

1. Read throughput in windows/s.
   * One process, no DataLoader: a clip from the cache (`WindowCache.read_frames`, raw chunk
     reads) against decoding it with PyAV on the fly (`video.decode_clip`, what the reference
     implementation does; target ≥ 20×) and against a plain memory copy of the same bytes from an
     in-RAM array (target: within 3×).
   * Through a DataLoader with 1, 2 and 4 workers, as the DataModule's loaders read (a batch per
     fetch, `WindowBatches`: uint8 clips read into one tensor; the float conversion and
     augmentation happen after the transfer, on the device) against a Dataset that decodes each
     clip with `decode_clip`.
2. Preparing: seconds per minute of recording and peak resident memory of the preparing
   process (a spawned child, `prepare`; its own `VmHWM`: on Linux a child's `ru_maxrss` starts
   from the parent's high-water mark, so it would overstate) for a 30-minute run (`--quick`: 5
   minutes) at 224×224 (target < 2 GiB: frames are streamed, never all in memory).
3. Cache size per hour of recording at 112 and 224 pixels (raw frames, one chunk each) and at 224
   with JPEG frames (quality 90), measured on the throughput run (5 min; `--quick`: 2 min) and
   extrapolated linearly (frames dominate); and the one-process read rate of the JPEG cache.
4. Parsing time of the sensor matrix of the prepared run (54k rows × 250 columns for 30 minutes).

The cache file was just written, so reads come mostly from the page cache (as they do in training
after the first epoch on a machine with enough RAM).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detach_pl.data.cache import DEFAULT_FRAME_STORAGE, FrameStorage, WindowCache
from detach_pl.data.dataset import WindowBatches, WindowDataset, already_batched
from detach_pl.data.decoding import decode_clip
from detach_pl.data.opportunity import OpportunityDataModule
from detach_pl.data.opportunity.release import parse_sensor_matrix
from detach_pl.data.windows import WindowSettings, sample_frame_indices
from detach_pl.testing.opportunity import write_standin_release

RUN = "S1-ADL1"
FRAMES = 20
BATCH = 8
VIDEO_SIZE = (640, 480)
NOISE = 12  # background texture and camera noise: a realistic bit rate (2 Mbit/s) and decoding work
JPEG = FrameStorage(codec="jpeg", quality=90)

def make_release(root: Path, minutes: float) -> Path:
    """One run of `minutes` at 640×480, 10 fps, MPEG-4 at 2 Mbit/s (written frame by frame)."""
    started = time.perf_counter()
    write_standin_release(root, runs=[RUN], seconds=minutes * 60.0, frame_size=VIDEO_SIZE, codec="mpeg4", noise=NOISE)
    print(f"  wrote a {minutes:g}-minute stand-in in {time.perf_counter() - started:.0f} s", flush=True)
    return root


def _peak_rss() -> int:
    """This process's peak resident memory (VmHWM) in bytes."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmHWM"].split()[0]) * 1024


def prepare(root: str, cache_dir: str, size: int, frame_storage: FrameStorage) -> dict:
    """Prepare the stand-in's cache in this process: wall time, cache path, peak RSS before and after."""
    imports_rss = _peak_rss()  # torch, Lightning and the DataModule are imported by now
    started = time.perf_counter()
    dm = OpportunityDataModule(
        root=root, cache_dir=cache_dir, windows=WindowSettings(image_size=size), frame_storage=frame_storage,
        runs=[RUN], train_runs=[RUN], val_runs=[RUN], test_runs=[RUN], progress=False,
    )
    dm.prepare_data()
    return {"seconds": time.perf_counter() - started, "path": str(dm.cache_path), "imports_rss": imports_rss,
            "peak_rss": _peak_rss()}


def prepare_in_subprocess(
    root: Path, cache_dir: Path, size: int, frame_storage: FrameStorage = DEFAULT_FRAME_STORAGE
) -> dict:
    """`prepare` in a fresh (spawned) process, so that its peak RSS is the build's alone.

    The child's own VmHWM is the figure: on Linux a forked child's high-water mark, and a
    child's `ru_maxrss`, start from the parent's.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(prepare, str(root), str(cache_dir), size, frame_storage).result()


def datamodule(root: Path, cache_dir: Path, size: int) -> OpportunityDataModule:
    """The DataModule over the single stand-in run, alignment purpose (video loaded)."""
    dm = OpportunityDataModule(
        root=str(root), cache_dir=str(cache_dir), windows=WindowSettings(image_size=size), num_frames=FRAMES,
        runs=[RUN], train_runs=[RUN], val_runs=[RUN], test_runs=[RUN], purpose="alignment", progress=False,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


class OnTheFlyClips(Dataset):
    """The reference implementation's way: each window's clip decoded from the video on demand.

    Items match `WindowDataset`'s (standardised sensor, uint8 clip (T, H, W, 3)).
    """

    def __init__(self, video: Path, cache: WindowCache, windows: np.ndarray, sensor: torch.Tensor, size: int) -> None:
        self.video, self.size = video, size
        self.starts = cache.start_ms[windows] / 1000.0
        self.sensor = sensor
        self.window_seconds = cache.settings.window_seconds

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = float(self.starts[index])
        clip = torch.from_numpy(decode_clip(self.video, start, start + self.window_seconds, FRAMES, self.size))
        return {"sensor": self.sensor[index], "video": clip}


def loader_rate(dataset: Dataset, workers: int, limit: int, seed: int = 0, collate_fn: Any = None) -> float:
    """Windows per second through a shuffling DataLoader, worker start-up included."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, generator=generator,
                        collate_fn=collate_fn)
    count, started = 0, time.perf_counter()
    iterator = iter(loader)
    for batch in iterator:
        count += batch["sensor"].shape[0]
        if count >= limit:
            break
    elapsed = time.perf_counter() - started
    del iterator
    return count / elapsed


def source_rates(cache: WindowCache, video: Path, cache_limit: int, decode_limit: int) -> dict[str, float]:
    """One process, no DataLoader: cache reads, on-the-fly decoding and a memory copy of the same bytes."""
    rng = np.random.default_rng(0)
    windows = rng.permutation(len(cache))
    frames_in_ram = np.stack(list(cache.iter_run_frames(RUN)))
    sensor_in_ram, _, _ = cache.read_sensor(np.arange(len(cache)))
    size = cache.settings.image_size

    def rate(read, limit: int) -> float:
        started = time.perf_counter()
        for window in windows[:limit]:
            read(int(window))
        return min(limit, len(windows)) / (time.perf_counter() - started)

    def from_cache(window: int) -> None:
        cache.read_frames(window, FRAMES)
        sensor_in_ram[window].copy()  # WindowDataset holds every sensor window in memory

    def from_video(window: int) -> None:
        start = float(cache.start_ms[window]) / 1000.0
        decode_clip(video, start, start + cache.settings.window_seconds, FRAMES, size)
        sensor_in_ram[window].copy()

    def from_memory(window: int) -> None:
        picks = sample_frame_indices(int(cache.frame_start[window]), int(cache.frame_stop[window]), FRAMES)
        frames_in_ram[picks]  # fancy indexing copies the bytes
        sensor_in_ram[window].copy()

    return {
        "cache": rate(from_cache, cache_limit),
        "decode": rate(from_video, decode_limit),
        "memory": rate(from_memory, cache_limit),
        "bytes": FRAMES * size * size * 3 + sensor_in_ram[0].nbytes,
    }


class Table:
    """Rows of (measure, value, note), printed aligned."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add(self, measure: str, value: str, note: str = "") -> None:
        self.rows.append((measure, value, note))
        print(f"  {measure}: {value}  {note}", flush=True)

    def print(self) -> None:
        width = max(len(row[0]) for row in self.rows)
        value_width = max(len(row[1]) for row in self.rows)
        print()
        print(f"{'measure'.ljust(width)}  {'value'.ljust(value_width)}  note")
        print(f"{'-' * width}  {'-' * value_width}  ----")
        for name, value, note in self.rows:
            print(f"{name.ljust(width)}  {value.ljust(value_width)}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5-minute prepare run, fewer windows")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    options = parser.parse_args()
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    torch.set_num_threads(1)
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="bench_data_"))
    workdir.mkdir(parents=True, exist_ok=True)
    prepare_minutes = 5.0 if options.quick else 30.0
    read_minutes = 2.0 if options.quick else 5.0
    cache_limit = 160 if options.quick else 480
    decode_limit = 24 if options.quick else 64
    table = Table()
    load = os.getloadavg()[0]
    mode = "quick" if options.quick else "full"
    print(f"bench_data ({mode}), scratch {workdir}, {os.cpu_count()} CPU cores, load {load:.1f}", flush=True)
    try:
        # ---- read throughput and cache sizes on a shorter run ----------------------------------
        read_root = make_release(workdir / "read", read_minutes)
        video = read_root / "data" / RUN / f"{RUN}_side.avi"
        sizes: dict[tuple[int, str], int] = {}
        jpeg_path: str | None = None
        for size, storage in ((112, FrameStorage()), (224, FrameStorage()), (224, JPEG)):
            result = prepare_in_subprocess(read_root, workdir / "cache_read", size, storage)
            sizes[size, storage.codec] = Path(result["path"]).stat().st_size
            jpeg_path = result["path"] if storage == JPEG else jpeg_path
        dm = datamodule(read_root, workdir / "cache_read", 224)
        cache = dm.open_cache()
        dataset = dm.datasets["train"]  # uint8 clips, as training reads (converted and augmented on the device)
        assert isinstance(dataset, WindowDataset), "the benchmark's datamodule serves windows"
        print(f"  {len(dataset)} windows of {FRAMES} frames at 224x224 in the read run", flush=True)
        rates = source_rates(cache, video, cache_limit, decode_limit)
        table.add("1 process: clip + sensor from the cache", f"{rates['cache']:.0f} windows/s",
                  f"{rates['cache'] / rates['decode']:.0f}x decode_clip (target >= 20x)")
        table.add("1 process: clip decoded on the fly (decode_clip)", f"{rates['decode']:.1f} windows/s")
        table.add(f"1 process: memory copy of the same {rates['bytes'] / 2**20:.1f} MiB",
                  f"{rates['memory']:.0f} windows/s",
                  f"cache is {rates['memory'] / rates['cache']:.1f}x slower (target <= 3x)")
        assert jpeg_path is not None, "the storage loop above prepares a JPEG cache"
        jpeg_rates = source_rates(WindowCache(jpeg_path), video, cache_limit, 1)
        table.add("1 process: clip + sensor from a JPEG q90 cache", f"{jpeg_rates['cache']:.0f} windows/s",
                  f"raw cache is {rates['cache'] / jpeg_rates['cache']:.1f}x faster")
        on_the_fly = OnTheFlyClips(video, cache, dataset.windows, dataset.sensor, 224)
        for workers in (1, 2, 4):
            batches = WindowBatches(dataset, workers, BATCH)
            cache_rate = loader_rate(batches, workers, cache_limit, collate_fn=already_batched)
            decode_rate = loader_rate(on_the_fly, workers, decode_limit)
            table.add(f"DataLoader {workers}w: cache (WindowBatches)", f"{cache_rate:.1f} windows/s",
                      f"{cache_rate / decode_rate:.1f}x decode_clip (target >= 20x)")
            table.add(f"DataLoader {workers}w: decode_clip", f"{decode_rate:.1f} windows/s")
        hours = read_minutes / 60.0
        for (size, codec), nbytes in sizes.items():
            table.add(f"cache size at {size}x{size}, {codec}", f"{nbytes / hours / 2**30:.2f} GiB/hour",
                      f"{nbytes / 2**20:.0f} MiB for {read_minutes:g} min, extrapolated")
        cache.close()
        shutil.rmtree(workdir / "cache_read")
        shutil.rmtree(read_root)
        # ---- preparing a long run ------------------------------------------------------------------
        long_root = make_release(workdir / "long", prepare_minutes)
        started = time.perf_counter()
        matrix = parse_sensor_matrix(long_root / "data" / RUN / f"{RUN}_sensors_data.txt", 250)
        table.add(f"parse a sensor matrix of {matrix.shape[0]} rows x 250", f"{time.perf_counter() - started:.1f} s")
        del matrix
        result = prepare_in_subprocess(long_root, workdir / "cache_long", 224)
        table.add(f"prepare a {prepare_minutes:g}-min run at 224 (640x480 MPEG-4)",
                  f"{result['seconds'] / prepare_minutes:.1f} s/min of recording", f"{result['seconds']:.0f} s in all")
        table.add("peak memory while preparing (child VmHWM)", f"{result['peak_rss'] / 2**30:.2f} GiB",
                  f"target < 2 GiB; {result['imports_rss'] / 2**30:.2f} GiB after importing torch/lightning")
        size = Path(result["path"]).stat().st_size
        table.add(f"cache of the {prepare_minutes:g}-min run at 224", f"{size / 2**30:.2f} GiB",
                  f"{size / (prepare_minutes / 60) / 2**30:.2f} GiB/hour")
    finally:
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    table.print()
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (at the start {load:.1f}) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
