"""One prepared GPU check (`make bench-gpu`, < 5 min on one GPU): steps/s, bf16, memory, syncs.

    python -m benchmarks.gpu_check                    # GPU, the paper's sizes → benchmarks/perf_gpu.json
    python -m benchmarks.gpu_check --device cpu --tiny --json /tmp/g.json   # the CPU-checkable parts
    python -m benchmarks.gpu_check --device cpu --batch 4 --steps 2 --json /tmp/p.json   # the paper's path

For stage 1 (refine phase: every loss term) and stage 2, at batch 64 per device, 20 × 224² clips
and the paper's encoders (`--tiny`: batch 4, 8 × 32², the demo's encoders):

1. steps/s in fp32, under bf16 autocast, and under bf16 with the throughput options
   ("bf16_fast": `encoder.channels_last`, stage 2's `weights_gram_dtype: bfloat16`, and with
   `--compile` also `encoder.compile`), over batches already in host memory, each copied to the
   device in its step as Lightning does;
2. peak allocated GPU memory of each;
3. the sync check: after the first (validating) step, `training_step` + `backward` run under
   `torch.cuda.set_sync_debug_mode("error")`, so any host–device synchronisation raises;
4. the data overhead: the same steps with batches from the DataModule's loader over a prepared
   stand-in cache (pinned memory, workers) against the batches in memory (fp32 and bf16 only);
5. windows/s of one batch's clips turned into the model's floats on the device from JPEG (the JPEG
   cache's path on a GPU: nvJPEG) and from raw frames.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch

from benchmarks.perf_common import REPO, machine_name, synchronize, write_report
from benchmarks.perf_sections import GPU_PRECISIONS, _encoder, build_stage, standin_datamodule


@contextlib.contextmanager
def sync_errors(device: torch.device):
    """Raise on any host–device synchronisation inside (CUDA only; CPU has none to catch)."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def build(stage: str, dm, encoder, precision: str, compile_encoders: bool):
    """The stage module of `perf_sections.build_stage`, with the throughput options for "bf16_fast"."""
    if precision != "bf16_fast":
        return build_stage(stage, dm.data_info, encoder, dm.alignment_training_set().sensor)
    encoder = dataclasses.replace(encoder, channels_last=True, compile=compile_encoders)
    if stage == "stage1":
        module = build_stage(stage, dm.data_info, encoder, dm.alignment_training_set().sensor)
    else:
        from detach_pl.modules import TemporalAlignmentModule

        module = TemporalAlignmentModule(dm.data_info, encoder, weights_gram_dtype="bfloat16")
    module.configure_model()
    return module


def to_device(batch: dict, device: torch.device) -> dict:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def steps(module, batches, dm, device, precision: str, check_syncs: bool) -> tuple[float, int]:
    """Seconds and windows of training steps; bf16 autocast when `precision` is "bf16"."""
    optimizer = module.configure_optimizers()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    synchronize(device)
    started, count = time.perf_counter(), 0
    for batch in batches:
        batch = dm.on_after_batch_transfer(to_device(batch, device), 0)
        optimizer.zero_grad(set_to_none=True)
        with autocast, (sync_errors(device) if check_syncs else contextlib.nullcontext()):
            loss = module.training_step(batch, 0)
            loss.backward()
        optimizer.step()
        count += batch["sensor"].shape[0]
    synchronize(device)
    return time.perf_counter() - started, count


def clip_decode_rates(video: torch.Tensor, device: torch.device, repeats: int) -> dict[str, float]:
    """Windows/s of turning one batch's clips into the model's floats on `device`, from JPEG and from raw.

    JPEG: the JPEG cache's path when training on a GPU (the frames' bytes, encoded here at the default
    quality, decoded by `jpeg_clips_to_float` in one batched `decode_jpeg` call: nvJPEG); raw: the
    uint8 clips copied to the device and converted (`clips_to_float`).
    """
    from detach_pl.data.cache import DEFAULT_FRAME_STORAGE, encode_jpeg_frames
    from detach_pl.data.dataset import clips_to_float, jpeg_clips_to_float

    quality = DEFAULT_FRAME_STORAGE.quality
    clips = [encode_jpeg_frames(clip, quality) for clip in video.numpy()]
    encoded = [tuple(clip[step].tobytes() for clip in clips) for step in range(video.shape[1])]

    def rate(convert: Callable[[], torch.Tensor]) -> float:
        convert()  # the first call sets up the decoder
        synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            convert()
        synchronize(device)
        return repeats * video.shape[0] / (time.perf_counter() - started)

    return {"quality": quality, "jpeg_windows_s": rate(lambda: jpeg_clips_to_float(encoded, device)),
            "raw_windows_s": rate(lambda: clips_to_float(video.to(device, non_blocking=True)))}


def batches_from(loader: Iterable, count: int) -> Iterator:
    """`count` batches of `loader`, from the start of an epoch, into the next epochs when one ends."""
    served = 0
    while served < count:
        epoch_start = served
        for batch in loader:
            yield batch
            served += 1
            if served == count:
                return
        if served == epoch_start:
            raise RuntimeError("the stand-in's training loader has no batch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized: batch 4, 8 × 32², demo encoders")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None, help="per device (default 64; --tiny 4)")
    parser.add_argument("--compile", action="store_true", help="bf16_fast also compiles the encoders (slow start)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where the figures go (default on CUDA: benchmarks/perf_gpu.json, which perf.md reports)")
    options = parser.parse_args()
    warnings.filterwarnings("ignore")
    device = torch.device(options.device)
    if options.json is None:
        if device.type != "cuda":
            parser.error(f"--json is needed on {device.type}: benchmarks/perf_gpu.json is for a GPU's figures")
        options.json = REPO / "benchmarks" / "perf_gpu.json"
    batch, frames, image = (4, 8, 32) if options.tiny else (64, 20, 224)
    batch = options.batch or batch
    num_steps = options.steps or (3 if options.tiny else 10)
    results: dict = {"machine": machine_name(device), "batch": batch, "frames": frames, "image": image}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
        windows_needed = batch * (2 * num_steps + 2)
        minutes = max(1.0, windows_needed / 60.0 + 0.2)
        workers = 0 if options.tiny else 4
        results.update(workers=workers, compile=options.compile)
        dm = standin_datamodule(Path(folder), image, minutes, batch_size=batch, num_frames=frames, num_workers=workers)
        dm.prepare_data()
        dm.setup("fit")
        loader = dm.train_dataloader()
        iterator = iter(loader)
        in_memory = [next(iterator) for _ in range(num_steps + 1)]
        results["clip_decode"] = clip_decode_rates(in_memory[0]["video"], device, repeats=3 if options.tiny else 5)
        print(f"clip_decode: {results['clip_decode']}", flush=True)
        encoder = _encoder(paper=not options.tiny)
        for stage in ("stage1", "stage2"):
            for precision in GPU_PRECISIONS:
                torch.manual_seed(0)
                module = build(stage, dm, encoder, precision, options.compile).to(device)
                if stage == "stage1":
                    module.memory.to(device)
                module.train()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                steps(module, in_memory[:1], dm, device, precision, check_syncs=False)  # first step: checks
                sync_free: bool | str = device.type == "cuda"
                try:
                    steps(module, in_memory[1:2], dm, device, precision, check_syncs=True)
                except RuntimeError as error:  # where the first synchronisation happened
                    calls = [f for f in traceback.extract_tb(error.__traceback__) if "detach_pl" in f.filename]
                    where = f"{calls[-1].filename}:{calls[-1].lineno}" if calls else "outside detach_pl"
                    sync_free = f"sync at {where}: {str(error).splitlines()[0]}"
                    torch.cuda.set_sync_debug_mode("default")
                seconds, count = steps(module, in_memory[1:], dm, device, precision, check_syncs=False)
                overhead = None
                if precision != "bf16_fast":
                    loader_seconds, _ = steps(module, batches_from(loader, num_steps), dm, device, precision,
                                              check_syncs=False)
                    overhead = loader_seconds / seconds - 1.0
                key = f"{stage}_{precision}"
                results[key] = {
                    "steps_s": num_steps / seconds,
                    "windows_s": count / seconds,
                    "data_overhead": overhead,
                    "sync_free": sync_free,
                    "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
                }
                print(f"{key}: {results[key]}", flush=True)
                del module
        dm.cache.close()
    write_report(options.json, json.dumps(results, indent=2))
    print(f"written {options.json}")


if __name__ == "__main__":
    main()
