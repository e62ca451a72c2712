"""How the cache stores video frames: raw uint8 (the default) or JPEG per frame, written and read here.

A run's frames are written as they stream in (never all in memory) and read back a window's T
frames at a time:

- raw: `/runs/<run>/frames` uint8 (F, H, W, 3), one HDF5 chunk per frame, unfiltered; a frame is
  read as its chunk's bytes, with one `os.preadv` at the chunk's byte offset in the file (the
  offsets come from HDF5's chunk index, `chunk_iter`, once per run and process), straight into
  the clip's row. Fastest, and large: 5.1 GiB per hour of 10 fps video at 224 px.
- jpeg: `/runs/<run>/frames_jpeg` variable-length uint8 (F,), each frame encoded with
  `torchvision.io.encode_jpeg` at `quality` (in blocks of 64 frames); the frame shape is the
  dataset's `frame_shape` attribute. A window's frames are decoded in one batched
  `torchvision.io.decode_jpeg` call (on the CPU in a DataLoader worker, or on a GPU:
  `decode_jpeg_frames(..., device=...)`). Lossy: `benchmarks/perf.md` and
  tests/data/test_frame_storage.py state the size, speed and grey-level difference.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import h5py
import numpy as np
from tqdm.auto import tqdm

from detach_pl.data.decoding import TimedFrame

if TYPE_CHECKING:  # torch and torchvision are imported when JPEG frames are coded: a raw cache never needs them
    import torch

FRAME_BLOCK = 64
"""Frames written (and encoded) per step, and read per step by `iter_stored_frames`."""
RAW_FRAMES = "frames"
JPEG_FRAMES = "frames_jpeg"
Codec = Literal["raw", "jpeg"]


@dataclass(frozen=True)
class FrameStorage:
    """How the cache stores frames (a data setting: `data.init_args.frame_storage`).

    Attributes:
        codec: "raw" (uint8 pixels, the default: exact, fastest to read, largest) or "jpeg"
            (each frame JPEG-encoded: about 10× smaller at quality 90 on camera-like frames,
            lossy, decoded at read time).
        quality: JPEG quality, 1–100 (jpeg only).
    """

    codec: Codec = "raw"
    quality: int = 90

    def __post_init__(self) -> None:
        if self.codec not in ("raw", "jpeg"):
            raise ValueError(f"data.init_args.frame_storage.codec must be 'raw' or 'jpeg', got {self.codec!r}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"data.init_args.frame_storage.quality={self.quality} must be in 1..100")

    def to_dict(self) -> dict[str, Any]:
        """The settings as stored in a cache's attributes."""
        return asdict(self)

    def cache_key_parts(self) -> dict[str, Any]:
        """What this storage adds to the cache key: nothing for raw (existing caches keep their names)."""
        return {} if self.codec == "raw" else {"frame_storage": self.to_dict()}


DEFAULT_FRAME_STORAGE = FrameStorage()
"""Raw frames: the default of every setting that takes a `FrameStorage` (a frozen, shared instance)."""


def encode_jpeg_frames(frames: np.ndarray, quality: int) -> list[np.ndarray]:
    """(n, H, W, 3) uint8 frames → n JPEG byte arrays (one batched `encode_jpeg` call)."""
    import torch
    from torchvision.io import encode_jpeg

    images = [torch.from_numpy(frame).permute(2, 0, 1) for frame in frames]
    return [encoded.numpy() for encoded in encode_jpeg(images, quality=quality)]


def decode_jpeg_frames(encoded: list[torch.Tensor], device: torch.device | str = "cpu") -> torch.Tensor:
    """JPEG byte tensors (CPU, 1-D uint8) → (n, 3, H, W) uint8 on `device`, in one batched call."""
    import torch
    from torchvision.io import decode_jpeg

    return torch.stack(decode_jpeg(encoded, device=device))


class FrameWriter:
    """Appends a run's frames to its HDF5 group in blocks, raw or JPEG-encoded."""

    def __init__(self, group: h5py.Group, image_size: int, storage: FrameStorage) -> None:
        self.storage = storage
        self.count = 0
        shape = (image_size, image_size, 3)
        if storage.codec == "raw":
            self.dataset = group.create_dataset(
                RAW_FRAMES, shape=(0, *shape), maxshape=(None, *shape), dtype=np.uint8, chunks=(1, *shape)
            )
        else:
            self.dataset = group.create_dataset(
                JPEG_FRAMES, shape=(0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.uint8), chunks=(FRAME_BLOCK,)
            )
            self.dataset.attrs["frame_shape"] = shape

    def append(self, block: list[np.ndarray]) -> None:
        """Store `block` ((H, W, 3) uint8 frames) after the frames written so far."""
        if not block:
            return
        frames = np.stack(block)
        self.dataset.resize(self.count + len(block), axis=0)
        if self.storage.codec == "raw":
            self.dataset[self.count : self.count + len(block)] = frames
        else:
            encoded = np.empty(len(block), dtype=object)
            encoded[:] = encode_jpeg_frames(frames, self.storage.quality)
            self.dataset[self.count : self.count + len(block)] = encoded
        self.count += len(block)


def write_frames(
    group: h5py.Group, run: Any, image_size: int, storage: FrameStorage, progress: bool
) -> np.ndarray:
    """Store the frames of `run` (a `RunRecording`) as they stream in, and `frame_time_ms`.

    Returns:
        (F,) frame times in ms on the sensor clock (NaN where a frame had no timestamp).

    Raises:
        ValueError: A frame is not (image_size, image_size, 3) uint8 (the message names the run and frame).
    """
    writer = FrameWriter(group, image_size, storage)
    bar = tqdm(total=run.num_frames, desc=f"  frames {run.name}", unit="fr", leave=False, disable=not progress)
    block: list[np.ndarray] = []
    times: list[float] = []
    for index, (seconds, frame) in enumerate(_timed(run.frames, run.fps)):
        if frame.shape != (image_size, image_size, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"run {run.name!r}: frame {index} has shape {frame.shape} and dtype {frame.dtype}, "
                f"expected ({image_size}, {image_size}, 3) uint8"
            )
        times.append(float("nan") if seconds is None else run.video_offset_ms + 1000.0 * seconds)
        block.append(frame)
        if len(block) == FRAME_BLOCK:
            writer.append(block)
            bar.update(len(block))
            block = []
    writer.append(block)
    bar.update(len(block))
    bar.close()
    frame_time_ms = np.asarray(times, dtype=np.float64)
    group.create_dataset("frame_time_ms", data=frame_time_ms)
    return frame_time_ms


def _timed(frames: Iterable[TimedFrame | np.ndarray], fps: float) -> Iterator[tuple[float | None, np.ndarray]]:
    """(seconds, image) pairs: `TimedFrame`s as they are, bare arrays as frame k at k / fps."""
    for index, item in enumerate(frames):
        if isinstance(item, np.ndarray):
            yield index / fps, item
        else:
            yield item[0], item[1]


def chunk_byte_offsets(dataset: h5py.Dataset) -> np.ndarray:
    """(F,) where each frame's chunk lies in the file, for raw frames stored one unfiltered chunk each.

    Read from HDF5's chunk index in one pass (`chunk_iter`), so that a frame can be read with a
    plain `os.preadv` of its bytes, without an HDF5 call per frame.

    Raises:
        ValueError: A frame has no chunk of the frame's size (an incomplete cache; the message names
            the file, the dataset and the first such frame).
    """
    frame_bytes = int(np.prod(dataset.shape[1:])) * dataset.dtype.itemsize
    offsets = np.full(len(dataset), -1, dtype=np.int64)

    def visit(chunk: Any) -> None:
        if chunk.size == frame_bytes and chunk.filter_mask == 0:
            offsets[chunk.chunk_offset[0]] = chunk.byte_offset

    dataset.id.chunk_iter(visit)
    missing = np.flatnonzero(offsets < 0)
    if missing.size:
        raise ValueError(
            f"window cache {dataset.file.filename}: {dataset.name} has no stored chunk of {frame_bytes} bytes for "
            f"frame {int(missing[0])} ({missing.size} of {len(dataset)} frames): the cache is incomplete; "
            "delete it and it will be rebuilt"
        )
    return offsets


class StoredFrames:
    """Read access to one run's stored frames, whatever the storage.

    Args:
        group: The run's HDF5 group.
        by_offset: Read raw frames stored one chunk each with `os.preadv` at their byte offsets
            (`chunk_byte_offsets`), where the platform and the file's driver allow it; otherwise
            (or False) with h5py's `read_direct_chunk`, one HDF5 call per frame. Same bytes.
    """

    def __init__(self, group: h5py.Group, by_offset: bool = True) -> None:
        self.jpeg = JPEG_FRAMES in group
        self.dataset: h5py.Dataset = group[JPEG_FRAMES if self.jpeg else RAW_FRAMES]
        self.shape = tuple(int(n) for n in self.dataset.attrs["frame_shape"]) if self.jpeg else self.dataset.shape[1:]
        self._direct = not self.jpeg and self.dataset.compression is None and self.dataset.chunks == (1, *self.shape)
        self._offsets: np.ndarray | None = None
        if self._direct and by_offset and hasattr(os, "preadv") and group.file.driver == "sec2":
            self._offsets = chunk_byte_offsets(self.dataset)
            self._descriptor = int(group.file.id.get_vfd_handle())  # h5py's own: closed with the file
            self._path = group.file.filename

    def __len__(self) -> int:
        return int(self.dataset.shape[0])

    def read(self, picks: np.ndarray) -> np.ndarray:
        """Frames `picks` (indices, repeats allowed) as (T, H, W, 3) uint8, decoded when stored as JPEG.

        Raw frames stored one chunk each are read as their chunk bytes (no HDF5 selection
        machinery): a window read touches exactly its T frames.
        """
        out = np.empty((picks.size, *self.shape), dtype=np.uint8)
        self.read_into(picks, out)
        return out

    def read_into(self, picks: np.ndarray, out: np.ndarray) -> None:
        """`read(picks)` written into `out`, a C-contiguous (T, H, W, 3) uint8 array (no temporary clip).

        Raw chunks are read straight into their rows, in file order (by byte offset, or through
        h5py); JPEG frames are decoded in one batched call and written in place.
        """
        if self._direct:
            if self._offsets is not None and not self.dataset.id.valid:  # its descriptor may be another file's now
                raise ValueError(f"window cache {self._path}: read after the file was closed")
            rows = out.reshape(picks.size, -1)
            for row in np.argsort(picks, kind="stable"):
                self._read_chunk(int(picks[row]), rows[row])
        elif not self.jpeg:
            unique, inverse = np.unique(picks, return_inverse=True)
            out[...] = self.dataset[unique][inverse]
        else:
            out[...] = decode_jpeg_frames(self.encoded(picks), "cpu").permute(0, 2, 3, 1).numpy()

    def _read_chunk(self, frame: int, out: np.ndarray) -> None:
        """The bytes of raw frame `frame` (stored one chunk each) into `out`, 1-D uint8 of a frame's size."""
        if self._offsets is None:
            self.dataset.id.read_direct_chunk((frame, 0, 0, 0), out=out)
        elif os.preadv(self._descriptor, [out.data], int(self._offsets[frame])) != out.nbytes:
            raise OSError(
                f"window cache {self._path}: frame {frame} of {self.dataset.name} ends past the "
                "end of the file (truncated?): delete the cache and it will be rebuilt"
            )

    def encoded(self, picks: np.ndarray) -> list[torch.Tensor]:
        """The JPEG bytes of frames `picks` (jpeg storage only), one 1-D uint8 tensor each."""
        if not self.jpeg:
            raise ValueError(f"{self.dataset.name} holds raw frames, not JPEG")
        import torch

        unique, inverse = np.unique(picks, return_inverse=True)
        stored = [torch.from_numpy(np.asarray(data, dtype=np.uint8)) for data in self.dataset[unique]]
        return [stored[position] for position in inverse]

    def blocks(self) -> Iterator[np.ndarray]:
        """Every frame in order, FRAME_BLOCK at a time: (n, H, W, 3) uint8 arrays."""
        for start in range(0, len(self), FRAME_BLOCK):
            yield self.read(np.arange(start, min(start + FRAME_BLOCK, len(self))))
