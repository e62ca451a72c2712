"""Frame storage options of the cache: raw uint8 (default, unchanged) and JPEG per frame.

Tolerances, measured here at quality 90 (2-core CPU, torchvision's libjpeg, 4:2:0 chroma):
- camera-like 64-px frames (smooth background, a moving bright square, sensor noise σ = 2): mean
  absolute difference to the raw frames 1.9 grey levels (about the noise removed), asserted < 3;
  10× smaller than raw;
- the synthetic kitchen's renders (flat colours, sharp edges, tiny) are JPEG's worst case: 9.2
  grey levels at 32 px, 8.6 at 64 px. A stage-1 epoch on them (3 steps from the same weights and
  seed, every loss term, the video encoder trained) gives losses within 16 % of the raw cache's
  (measured 10 % at step 1, 15.5 % at step 2), asserted within 25 %. Use raw storage for
  rendered or very small frames; JPEG is for camera video at the paper's 224 px.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torchvision.io import decode_jpeg

from detach_pl.data.cache import (
    FrameStorage,
    RunRecording,
    WindowCache,
    build_cache,
    cache_key,
    decode_jpeg_frames,
    encode_jpeg_frames,
)
from detach_pl.data.cache.frames import RAW_FRAMES, StoredFrames, chunk_byte_offsets
from detach_pl.data.windows import WindowSettings
from detach_pl.modules import SpatialGroundingModule
from helpers import tiny_datamodule, tiny_encoder

META = {"channel_names": ["a", "b", "c"], "class_names": ["x"], "place_names": ["p"]}
SIZE = 64
JPEG = FrameStorage(codec="jpeg", quality=90)


def camera_frames(count: int, size: int, seed: int = 0) -> np.ndarray:
    """(count, size, size, 3) uint8: a smooth colour gradient, a moving bright square, noise σ = 2."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    background = np.stack([60 + 120 * x, 50 + 100 * y, 90 + 60 * (x + y) / 2], axis=-1)
    frames = []
    side = size // 6
    for k in range(count):
        frame = background.copy()
        left, top = (3 * k) % (size - side), (2 * k) % (size - side)
        frame[top : top + side, left : left + side] = 240.0
        frame += rng.normal(0.0, 2.0, size=frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(frames)


def recording(frames: np.ndarray) -> RunRecording:
    """A 20-s run at 30 Hz with 3 channels, the given frames at 10 fps."""
    rows = 600
    rng = np.random.default_rng(1)
    return RunRecording(
        "run0", np.arange(rows) * (1000.0 / 30.0), rng.normal(size=(rows, 3)), np.full(rows, -1),
        np.full(rows, -1), iter(frames), 10.0, num_frames=len(frames),
    )


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, WindowCache, WindowCache]:
    """The same recording cached raw and as JPEG (quality 90)."""
    folder = tmp_path_factory.mktemp("frame_storage")
    frames = camera_frames(200, SIZE)
    settings = WindowSettings(image_size=SIZE)
    built = {}
    for storage in (FrameStorage(), JPEG):
        path = folder / f"{storage.codec}.h5"
        build_cache(path, [recording(frames)], settings, META, progress=False, frame_storage=storage)
        built[storage.codec] = WindowCache(path)
    return frames, built["raw"], built["jpeg"]


def test_batched_jpeg_decode_equals_per_frame_decode() -> None:
    frames = np.concatenate([camera_frames(6, 48, seed=2), camera_frames(6, 48, seed=3)[:, ::-1].copy()])
    encoded = [torch.from_numpy(data) for data in encode_jpeg_frames(frames, quality=90)]
    batched = decode_jpeg_frames(encoded)
    one_by_one = torch.stack([decode_jpeg(data) for data in encoded])
    assert batched.shape == (12, 3, 48, 48) and batched.dtype == torch.uint8
    assert torch.equal(batched, one_by_one)


def test_jpeg_cache_holds_the_raw_cache_within_tolerance(caches) -> None:
    frames, raw, jpeg = caches
    assert raw.frame_storage == FrameStorage() and jpeg.frame_storage == JPEG
    stored_raw = np.stack(list(raw.iter_run_frames("run0")))
    stored_jpeg = np.stack(list(jpeg.iter_run_frames("run0")))
    np.testing.assert_array_equal(stored_raw, frames)
    difference = np.abs(stored_jpeg.astype(np.float64) - frames).mean()
    assert 0.0 < difference < 3.0, difference  # grey levels, quality 90
    assert jpeg.path.stat().st_size < raw.path.stat().st_size / 2


def test_jpeg_cache_has_the_raw_cache_windows(caches) -> None:
    _, raw, jpeg = caches
    for name in ("window_run", "frame_start", "frame_stop", "label", "place", "start_ms"):
        np.testing.assert_array_equal(getattr(jpeg, name), getattr(raw, name), err_msg=name)
    everything = np.arange(len(raw))
    for from_raw, from_jpeg in zip(raw.read_sensor(everything), jpeg.read_sensor(everything), strict=True):
        np.testing.assert_array_equal(from_jpeg, from_raw)


def test_jpeg_window_read_decodes_the_sampled_frames(caches) -> None:
    _, raw, jpeg = caches
    for window in (0, len(jpeg) // 2, len(jpeg) - 1):
        clip = jpeg.read_frames(window, 20)
        assert clip.shape == (20, SIZE, SIZE, 3) and clip.dtype == np.uint8 and clip.flags.c_contiguous
        picks = jpeg.frame_picks(window, 20)
        stored = jpeg._file()["runs/run0/frames_jpeg"]
        reference = np.stack(
            [decode_jpeg(torch.from_numpy(np.asarray(stored[int(p)]))).permute(1, 2, 0).numpy() for p in picks]
        )
        np.testing.assert_array_equal(clip, reference)
        on_device = decode_jpeg_frames(jpeg.read_encoded_frames(window, 20), "cpu").permute(0, 2, 3, 1)
        np.testing.assert_array_equal(on_device.numpy(), clip)
        assert raw.read_frames(window, 20).shape == clip.shape
    with pytest.raises(ValueError, match="raw frames, not JPEG"):
        raw.read_encoded_frames(0, 20)


def test_raw_storage_leaves_the_cache_key_and_file_as_before(caches, tmp_path: Path) -> None:
    parts = {"dataset": "d", "windows": WindowSettings().to_dict(), "source": {}}
    assert cache_key({**parts, **FrameStorage().cache_key_parts()}) == cache_key(parts)
    assert cache_key({**parts, **JPEG.cache_key_parts()}) != cache_key(parts)
    assert cache_key({**parts, **JPEG.cache_key_parts()}) != cache_key(
        {**parts, **FrameStorage("jpeg", 80).cache_key_parts()}
    )
    _, raw, _ = caches
    h5 = raw._file()
    assert "frame_storage" not in h5.attrs and "frames_jpeg" not in h5["runs/run0"]
    assert h5["runs/run0/frames"].chunks == (1, SIZE, SIZE, 3)
    dm_raw, dm_jpeg = tiny_datamodule(tmp_path), tiny_datamodule(tmp_path, frame_storage=JPEG)
    assert dm_raw.cache_path != dm_jpeg.cache_path


def test_raw_frames_read_by_byte_offset_equal_the_hdf5_selection(caches) -> None:
    frames, raw, _ = caches
    group = raw._file()["runs/run0"]
    dataset = group[RAW_FRAMES]
    by_offset, through_h5py = StoredFrames(group), StoredFrames(group, by_offset=False)
    assert by_offset._offsets is not None and through_h5py._offsets is None
    expected = [dataset.id.get_chunk_info_by_coord((k, 0, 0, 0)).byte_offset for k in range(len(dataset))]
    np.testing.assert_array_equal(chunk_byte_offsets(dataset), expected)
    shuffled_with_repeats = np.array([7, 3, 3, 199, 0, 7, 120, 1])
    for picks in (raw.frame_picks(0, 20), raw.frame_picks(len(raw) - 1, 40), shuffled_with_repeats):
        reference = dataset[np.unique(picks)][np.unique(picks, return_inverse=True)[1]]  # h5py's own selection
        np.testing.assert_array_equal(reference, frames[picks])
        np.testing.assert_array_equal(by_offset.read(picks), reference)
        np.testing.assert_array_equal(through_h5py.read(picks), reference)


def write_raw_frames(path: Path, frames: np.ndarray, written: list[int]) -> None:
    """A run group as the cache stores raw frames, with only the frames `written` stored."""
    with h5py.File(path, "w") as h5:
        stored = h5.create_group("runs/run0").create_dataset(
            RAW_FRAMES, shape=frames.shape, dtype=np.uint8, chunks=(1, *frames.shape[1:])
        )
        for k in written:
            stored[k] = frames[k]


def test_a_frame_without_its_chunk_is_named_when_the_run_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "holes.h5"
    write_raw_frames(path, camera_frames(4, 16), written=[0, 1, 3])
    message = r"holes\.h5: /runs/run0/frames has no stored chunk of 768 bytes for frame 2 \(1 of 4 frames\)"
    with h5py.File(path, "r") as h5, pytest.raises(ValueError, match=message):
        StoredFrames(h5["runs/run0"])


def test_a_truncated_frame_and_a_closed_file_raise_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.h5"
    frames = camera_frames(3, 16)
    write_raw_frames(path, frames, written=[0, 1, 2])
    with h5py.File(path, "r") as h5:
        offsets = chunk_byte_offsets(h5["runs/run0"][RAW_FRAMES])
    last = int(np.argmax(offsets))
    h5 = h5py.File(path, "r")
    stored = StoredFrames(h5["runs/run0"])
    np.testing.assert_array_equal(stored.read(np.arange(3)), frames)
    with open(path, "r+b") as file:
        file.truncate(int(offsets[last]) + 100)
    np.testing.assert_array_equal(stored.read(np.array([k for k in range(3) if k != last])), np.delete(frames, last, 0))
    with pytest.raises(OSError, match=rf"cut\.h5: frame {last} of /runs/run0/frames ends past the end of the file"):
        stored.read(np.array([last]))
    h5.close()
    with pytest.raises(ValueError, match=r"cut\.h5: read after the file was closed"):
        stored.read(np.array([0]))


@pytest.mark.parametrize(
    ("codec", "quality", "match"), [("png", 90, "codec"), ("jpeg", 0, "quality"), ("jpeg", 101, "quality")]
)
def test_bad_frame_storage_settings_name_the_setting(codec: str, quality: int, match: str) -> None:
    with pytest.raises(ValueError, match=f"frame_storage.{match}"):
        FrameStorage(codec=codec, quality=quality)  # type: ignore[arg-type]


class LossRecorder(pl.Callback):
    """Every training step's loss, as the module returns it."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.losses.append(float(outputs["loss"]))


def stage1_losses(cache_dir: Path, storage: FrameStorage) -> list[float]:
    """Losses of one stage-1 epoch (3 batches, every loss term, video encoder trained) from seed 0."""
    pl.seed_everything(0, verbose=False)
    datamodule = tiny_datamodule(cache_dir, windows=WindowSettings(image_size=32), frame_storage=storage,
                                 augment_video=False)
    module = SpatialGroundingModule(
        data_info=datamodule.data_info, encoder=tiny_encoder(), min_cluster_size=5, video_start_epoch=0,
        refine_start_epoch=0, video_gate=0.0, lr=1e-3,
    )
    recorder = LossRecorder()
    pl.Trainer(
        max_epochs=1, limit_train_batches=3, limit_val_batches=0, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder],
        default_root_dir=cache_dir,
    ).fit(module, datamodule=datamodule)
    return recorder.losses


def test_tiny_training_on_jpeg_is_within_tolerance_of_raw(tmp_path: Path) -> None:
    raw = stage1_losses(tmp_path / "raw", FrameStorage())
    jpeg = stage1_losses(tmp_path / "jpeg", JPEG)
    assert len(raw) == len(jpeg) == 3
    assert raw != jpeg  # the video input differs, so the losses do
    np.testing.assert_allclose(jpeg, raw, rtol=0.25)
