"""The DataModule every dataset shares: cache building, splits, standardisation, loaders.

A dataset subclass only says how to read its release (`recordings`), what it is called, which
runs it has and how they split; everything after the raw files is common.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from detach_pl.data.cache import FrameStorage, RunRecording, RunReport, WindowCache, build_cache, cache_key
from detach_pl.data.checks import resolve_num_workers
from detach_pl.data.dataset import WindowDataset, clips_to_float
from detach_pl.data.info import DataInfo
from detach_pl.data.windows import Standardize, WindowSettings
from detach_pl.deploy.contract import CONTRACT_KEY, PreprocessingContract
from detach_pl.distributed import BatchedDataset, UnpaddedBatchSampler
from detach_pl.seeding import loader_generator, run_seed, sample_generator
from detach_pl.transforms import augment_clip

log = logging.getLogger(__name__)

Purpose = Literal["auto", "alignment", "probe"]


class SequenceDataset(Dataset):
    """Whole runs (trials) as items, for the sequence-level probe: all windows of a run."""

    def __init__(self, windows: WindowDataset, labels: dict[int, int]) -> None:
        self.windows = windows
        self.runs = sorted(labels)
        self.labels = labels
        run_of_window = windows.sequence.numpy()
        self.members = {run: np.flatnonzero(run_of_window == run) for run in self.runs}

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        run = self.runs[index]
        rows = torch.from_numpy(self.members[run])
        return {
            "index": torch.tensor(index, dtype=torch.int64),
            "sensor": self.windows.sensor[rows],
            "label": torch.tensor(self.labels[run], dtype=torch.int64),
            "sequence": torch.tensor(run, dtype=torch.int64),
        }


def collate_sequences(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad runs of different lengths: `sensor` (B, W_max, C, L) and a `mask` (B, W_max)."""
    longest = max(item["sensor"].shape[0] for item in items)
    channels, length = items[0]["sensor"].shape[1:]
    sensor = torch.zeros(len(items), longest, channels, length)
    mask = torch.zeros(len(items), longest, dtype=torch.bool)
    for row, item in enumerate(items):
        count = item["sensor"].shape[0]
        sensor[row, :count] = item["sensor"]
        mask[row, :count] = True
    batch = {key: torch.stack([item[key] for item in items]) for key in ("index", "label", "sequence")}
    batch.update(sensor=sensor, mask=mask)
    return batch


class WindowDataModule(pl.LightningDataModule):
    """Shared DataModule: prepares the cache once, then serves alignment or probe data.

    Args:
        cache_dir: Folder of prepared caches (one file per dataset and shaping settings).
        windows: Settings that shape the cached windows; changing any builds a new cache.
        batch_size: Batch size per device (global batch = batch_size × devices × nodes).
        probe_batch_size: Batch size per device when serving the probe (8, released); None
            keeps `batch_size`.
        num_workers: DataLoader worker processes per device; None: min(4, CPUs available − 1)
            (`detach_pl.data.checks.resolve_num_workers`).
        num_frames: Frames sampled uniformly per clip at read time (T).
        train_runs: Runs used for pre-training, for the sensor statistics and (unless
            `probe_train_runs` is set) for probe training (None: the dataset's default).
        val_runs: Runs for validation (None: default).
        test_runs: Runs for the final test (None: default).
        probe_train_runs: Runs whose labelled windows the probe trains on (None: `train_runs`).
            Fewer labelled runs than alignment runs measure label efficiency; the sensor
            statistics stay those of `train_runs`, so the encoders see the input they were
            aligned on.
        pretrain_windows: Which windows the alignment stages train and validate on: "all", or
            "labelled" only (windows a gesture covers; the places K counts are then all active).
        probe_unit: "window": one prediction per window; "sequence": windows mean-pooled per run.
        standardize: Sensor standardisation with the training runs' μ, σ: "keep_zeros"
            (released: exact zeros stay 0, every other sample (x − μ)/σ, so an idle reed switch
            stays at rest) or "affine" (plain (x − μ)/σ). Applied at read time: no cache rebuild.
        purpose: "alignment" (windows with video), "probe" (labelled windows, sensors only), or
            "auto": asked from the model (`data_purpose` attribute).
        augment_video: Clip-consistent colour jitter and blur on training clips, applied on the
            training device after transfer (so DataLoader workers only read bytes).
        frame_storage: How the cache stores frames: raw uint8 (default) or JPEG at a quality
            (`detach_pl.data.cache.FrameStorage`; docs/data_loading.md). A JPEG cache is another file.
        shuffle_seed: Seed of the epoch-seeded training order.
        progress: Progress bars while preparing the cache.
    """

    dataset_name: str = "dataset"

    def __init__(
        self,
        cache_dir: str = "data/cache",
        windows: WindowSettings = WindowSettings(),
        batch_size: int = 64,
        probe_batch_size: int | None = 8,
        num_workers: int | None = None,
        num_frames: int = 20,
        train_runs: list[str] | None = None,
        val_runs: list[str] | None = None,
        test_runs: list[str] | None = None,
        probe_train_runs: list[str] | None = None,
        pretrain_windows: Literal["all", "labelled"] = "all",
        probe_unit: Literal["window", "sequence"] = "window",
        standardize: Standardize = "keep_zeros",
        purpose: Purpose = "auto",
        augment_video: bool = True,
        frame_storage: FrameStorage = FrameStorage(),
        shuffle_seed: int = 42,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.init_args.batch_size={batch_size} must be >= 1")
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"data.init_args.num_workers={num_workers} must be >= 0 (or null: chosen from the CPUs)")
        if num_frames < 3:
            raise ValueError(
                f"data.init_args.num_frames={num_frames} must be >= 3 (the temporal video encoder "
                "needs frame differences)"
            )
        self.cache_dir = Path(cache_dir).expanduser()
        self.windows = windows
        self.batch_size = batch_size
        if probe_batch_size is not None and probe_batch_size < 1:
            raise ValueError(f"data.init_args.probe_batch_size={probe_batch_size} must be >= 1 (or null: batch_size)")
        self.alignment_batch_size = batch_size
        self.probe_batch_size = probe_batch_size
        self.num_workers = resolve_num_workers(num_workers)
        self.num_frames = num_frames
        self._splits = {"train_runs": train_runs, "val_runs": val_runs, "test_runs": test_runs}
        self.probe_train_runs = None if probe_train_runs is None else list(probe_train_runs)
        self.pretrain_windows = pretrain_windows
        self.probe_unit = probe_unit
        if standardize not in ("keep_zeros", "affine"):
            raise ValueError(f"data.init_args.standardize must be 'keep_zeros' or 'affine', got {standardize!r}")
        self.standardize = standardize
        self.purpose = purpose
        self.augment_video = augment_video
        self.frame_storage = frame_storage
        self.shuffle_seed = shuffle_seed
        self.progress = progress
        self.cache: WindowCache | None = None
        self.reports: list[RunReport] = []
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.datasets: dict[str, Dataset] = {}

    # ---- what a dataset subclass provides -------------------------------------------------

    @abstractmethod
    def source_settings(self) -> dict[str, Any]:
        """Dataset-specific settings that shape the cache (root folder, channel subset, …)."""

    @abstractmethod
    def recordings(self) -> Iterator[RunRecording]:
        """Read the release run by run (called only when the cache is built)."""

    @abstractmethod
    def default_splits(self) -> dict[str, list[str]]:
        """Default `train_runs`, `val_runs`, `test_runs`."""

    @property
    @abstractmethod
    def data_info(self) -> DataInfo:
        """Channels, classes and places, known before the cache exists."""

    def cache_meta(self) -> dict[str, Any]:
        """Metadata stored in the cache; subclasses may add keys."""
        info = self.data_info
        return {
            "dataset": self.dataset_name,
            "channel_names": info.channel_names,
            "class_names": info.class_names,
            "place_names": info.place_names,
        }

    def num_recordings(self) -> int | None:
        """How many runs `recordings` yields, for the progress bar."""
        return None

    def sequence_labels(self, cache: WindowCache) -> dict[int, int]:
        """Class of each run for the sequence probe: run index → class (runs without one omitted)."""
        return {
            index: int(cache.run_attrs[name]["sequence_label"])
            for index, name in enumerate(cache.run_names)
            if int(cache.run_attrs[name]["sequence_label"]) >= 0
        }

    # ---- the shared mechanism ---------------------------------------------------------------

    def split(self, name: str) -> list[str]:
        """Run names of `train_runs`, `val_runs` or `test_runs` (config value or default)."""
        chosen = self._splits[name]
        return list(chosen) if chosen is not None else list(self.default_splits()[name])

    @property
    def cache_path(self) -> Path:
        """Where the cache for the current settings lives."""
        key = cache_key(
            {
                "dataset": self.dataset_name,
                "windows": self.windows.to_dict(),
                "source": self.source_settings(),
                **self.frame_storage.cache_key_parts(),
            }
        )
        return self.cache_dir / f"{self.dataset_name}-{key}.h5"

    def prepare_data(self) -> None:
        """Build the cache if it is missing (Lightning runs this on one process per node)."""
        path = self.cache_path
        if path.is_file():
            return
        log.info("building window cache %s", path)
        self.reports = build_cache(
            path,
            self.recordings(),
            self.windows,
            self.cache_meta(),
            num_runs=self.num_recordings(),
            progress=self.progress,
            frame_storage=self.frame_storage,
        )

    def resolved_purpose(self) -> Literal["alignment", "probe"]:
        """The purpose in force: the config value, or the attached model's `data_purpose`."""
        if self.purpose != "auto":
            return self.purpose
        model = self.trainer.lightning_module if self.trainer is not None else None
        return getattr(model, "data_purpose", "alignment")

    def setup(self, stage: str | None = None) -> None:
        """Open the cache, compute training-run statistics and build the split datasets."""
        if self.cache is None:
            if not self.cache_path.is_file():
                self.prepare_data()
            self.cache = WindowCache(self.cache_path)
        cache = self.cache
        train_runs = self.split("train_runs")
        cache.run_indices(train_runs, setting="data.train_runs")
        self.mean, self.std = cache.channel_statistics(train_runs)
        purpose = self.resolved_purpose()
        self.batch_size = self.alignment_batch_size
        if purpose == "probe" and self.probe_batch_size is not None:
            self.batch_size = self.probe_batch_size
        for split in ("train", "val", "test"):
            setting, runs = f"{split}_runs", self.split(f"{split}_runs")
            if split == "train" and purpose == "probe" and self.probe_train_runs is not None:
                setting, runs = "probe_train_runs", self.probe_train_runs
            windows = cache.windows_of_runs(runs, setting=f"data.{setting}")
            labelled = cache.label[windows] >= 0
            if purpose == "probe" and self.probe_unit == "window":
                windows = windows[labelled]
            elif purpose == "alignment" and split != "test" and self.pretrain_windows == "labelled":
                windows = windows[labelled]
            if windows.size == 0:
                raise ValueError(
                    f"data.{setting} {runs} give no {purpose} windows "
                    f"(cache {self.cache_path.name})"
                )
            dataset = WindowDataset(
                cache,
                windows,
                self.mean,
                self.std,
                num_frames=self.num_frames,
                load_video=purpose == "alignment",
                standardize=self.standardize,
            )
            if purpose == "probe" and self.probe_unit == "sequence":
                labels = self.sequence_labels(cache)
                runs = set(np.unique(dataset.sequence.numpy()).tolist())
                dataset = SequenceDataset(dataset, {run: labels[run] for run in runs if run in labels})
            self.datasets[split] = dataset

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        """On the device: uint8 clips (B, T, H, W, 3) → floats (B, T, 3, H, W) in [0, 1]; training
        clips augmented, one draw per clip (batch contract: `detach_pl.data.dataset`)."""
        if "video" not in batch or batch["video"].dtype != torch.uint8:
            return batch
        video = clips_to_float(batch["video"])
        if self.augment_video and self.trainer is not None and self.trainer.training:
            seed, epoch = run_seed(), self.trainer.current_epoch
            generators = [sample_generator(seed, epoch, index) for index in batch["index"].tolist()]
            video = torch.stack([augment_clip(clip, generator=g) for clip, g in zip(video, generators)])
        batch["video"] = video
        return batch

    def train_sensor_windows(self) -> torch.Tensor:
        """All standardised training windows (N, C, L) in dataset-index order (ODC initialisation)."""
        dataset = self.datasets["train"]
        if not isinstance(dataset, WindowDataset):
            raise TypeError("train_sensor_windows is only defined for window datasets")
        return dataset.sensor

    def _loader(self, split: str, sampler: DistributedSampler | None = None) -> DataLoader:
        """A loader with its own generator and its sampler at the epoch training is at.

        Lightning creates the first iterator of a `fit` before it sets the sampler's epoch, and
        worker processes fetch their first batches at once: without the epoch set here, a resumed
        run with workers would replay epoch 0's order in its first epoch.

        Without a sampler (evaluation) under DDP, the loader serves whole batches of an
        `UnpaddedBatchSampler`: each window exactly once and the same number of batches on every
        rank. Being a DistributedSampler, Lightning does not replace it by its padded one.
        """
        dataset = self.datasets[split]
        sequences = isinstance(dataset, SequenceDataset)
        if sampler is not None and self.trainer is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)
        batch_size: int | None = self.batch_size
        collate_fn = collate_sequences if sequences else None
        if sampler is None and self.trainer is not None and self.trainer.world_size > 1:
            sampler = UnpaddedBatchSampler(
                dataset, self.batch_size, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank
            )
            dataset, batch_size, collate_fn = BatchedDataset(dataset, collate_fn), None, None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=batch_size is not None
            and sampler is not None
            and len(dataset) >= batch_size * sampler.num_replicas,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # pinned batches let the copy to a GPU run asynchronously; on CPU pinning only costs
            pin_memory=self.trainer is not None and self.trainer.strategy.root_device.type == "cuda",
            collate_fn=collate_fn,
            generator=loader_generator(self.shuffle_seed, split),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled by an epoch-seeded sampler, also in one process.

        The order depends only on (shuffle_seed, epoch): a resumed run sees the batches the
        uninterrupted run would have seen, and one process with batch B·R sees the same global
        batches as R processes with batch B (each rank takes every R-th index of one permutation).
        """
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler = DistributedSampler(
            self.datasets["train"], num_replicas=world, rank=rank, shuffle=True, seed=self.shuffle_seed,
            drop_last=len(self.datasets["train"]) >= world,
        )
        return self._loader("train", sampler)

    def val_dataloader(self) -> DataLoader:
        """Validation windows in order; under DDP each exactly once (see `_loader`)."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """Test windows in order; under DDP each exactly once (see `_loader`)."""
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """The test windows for `detach predict`; under DDP each exactly once (see `_loader`)."""
        return self._loader("test")

    def preprocessing_contract(self) -> PreprocessingContract:
        """What deployment needs to preprocess raw rows as training did (after `setup`).

        The sensor rate is that of the training runs: valid rows per second of run duration.
        """
        if self.cache is None or self.mean is None or self.std is None:
            raise RuntimeError("preprocessing_contract() is defined after setup()")
        runs = self.split("train_runs")
        h5 = self.cache._file()  # the per-run sample counts (channel_sums row 0) have no accessor
        rows = sum(float(h5[f"runs/{name}/channel_sums"][0].max()) - 1.0 for name in runs)
        seconds = sum(float(self.cache.run_attrs[name]["sensor_seconds"]) for name in runs)
        return PreprocessingContract(
            dataset=self.dataset_name,
            channel_names=list(self.cache.channel_names),
            sensor_rate_hz=rows / seconds,
            windows=self.windows.to_dict(),
            standardize=self.standardize,
            mean=self.mean.astype(float).tolist(),
            std=self.std.astype(float).tolist(),
            class_names=list(self.data_info.class_names),
            probe_unit=self.probe_unit,
            extra={"source": json.loads(json.dumps(self.source_settings(), default=str))},
        )

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the cache used, the standardisation statistics and the
        preprocessing contract that deployment reads (`detach_pl.deploy.contract`)."""
        return {
            "cache": self.cache_path.name,
            "train_runs": self.split("train_runs"),
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
            CONTRACT_KEY: None if self.mean is None else self.preprocessing_contract().to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Warn when the checkpoint was trained with other statistics than this config gives."""
        if self.mean is None or state.get("mean") is None:
            return
        if not (np.allclose(self.mean, state["mean"]) and np.allclose(self.std, state["std"])):
            log.warning(
                "the checkpoint was trained with other standardisation statistics (train runs %s) "
                "than this configuration (%s)",
                state.get("train_runs"),
                self.split("train_runs"),
            )

