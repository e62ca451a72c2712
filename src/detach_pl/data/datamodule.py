"""The DataModule every dataset shares: cache building, reports, splits, standardisation, loaders.

(One class of ~530 lines, the base every dataset's DataModule subclasses: its hooks, what a
subclass provides, stay beside the mechanism they feed so that a dataset's author reads one file;
the datasets, loaders, sequence batches and reader results live in their own modules.)

A dataset subclass only says how to read its release (`recordings`, with a reader that returns
what it found per run), what it is called, which runs it has and how they split; everything after
the raw files is common: one `prepare_data` builds the cache and writes the report next to it.

The contract with the models is explicit, in two places:

- **purpose** ("alignment": windows with video; "probe": labelled windows, sensors only). A model
  class states the purpose it needs as its `data_purpose` attribute ("the data purpose"); the
  `detach` CLI copies it into `data.init_args.purpose` when the configuration leaves it "auto",
  at parse time, before anything is built. Outside the CLI pass `purpose=` yourself, or let the
  Trainer's model decide it at the first `setup` (decided once, then kept).
- **what stage 1 reads from the training set**: `alignment_training_set()` returns an
  `AlignmentTrainingSet` (standardised sensor windows, place ids), nothing else.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from detach_pl.data.cache import (
    DEFAULT_FRAME_STORAGE,
    FrameStorage,
    RunRecording,
    RunReport,
    WindowCache,
    build_cache,
    cache_key,
)
from detach_pl.data.checks import ensure_writable_folder, resolve_num_workers
from detach_pl.data.contract import CONTRACT_KEY, PreprocessingContract
from detach_pl.data.dataset import WindowDataset, batch_for_model, decodes_on_device
from detach_pl.data.info import DataInfo
from detach_pl.data.loaders import split_loader
from detach_pl.data.readings import RunReading, collect_findings, report_lines
from detach_pl.data.sequences import SequenceDataset, collate_sequences
from detach_pl.data.windows import DEFAULT_WINDOWS, Standardize, WindowSettings
from detach_pl.io import write_atomically
from detach_pl.seeding import loader_generator
from detach_pl.settings import at_least, check_settings, one_of

__all__ = [
    "AlignmentTrainingSet", "RunReading", "SequenceDataset", "WindowDataModule", "WindowDataset", "collate_sequences",
]

log = logging.getLogger(__name__)

Purpose = Literal["auto", "alignment", "probe"]
PURPOSES: tuple[str, ...] = ("alignment", "probe")


@dataclass(frozen=True)
class AlignmentTrainingSet:
    """What stage 1 needs from the training set, in dataset-index order.

    Attributes:
        sensor: (N, C, L) standardised sensor windows (the ODC memory's initialisation).
        place: (N,) place id of each window, −1 for none (cluster diagnostics only).
    """

    sensor: torch.Tensor
    place: torch.Tensor


def labels_as_classes(labels: np.ndarray, names: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Labels stored as indices into `names` (−1: none) as indices into `classes` (−1: not among them).

    How a cache that stores labels by the names found in a release serves the configured classes
    without being rebuilt when they change (`WindowDataModule.window_labels`).
    """
    to_class = np.array([list(classes).index(name) if name in classes else -1 for name in names] + [-1],
                        dtype=np.int64)
    return to_class[np.where(labels >= 0, labels, len(names))]


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
            "auto": the model's `data_purpose` (set at parse time by the `detach` CLI; outside it,
            taken from the Trainer's model at the first `setup`; module docstring).
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
        windows: WindowSettings = DEFAULT_WINDOWS,
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
        frame_storage: FrameStorage = DEFAULT_FRAME_STORAGE,
        shuffle_seed: int = 42,
        progress: bool = True,
    ) -> None:
        super().__init__()
        check_settings(
            [
                at_least("batch_size", batch_size, 1),
                at_least("probe_batch_size", probe_batch_size, 1, null="batch_size"),
                at_least("num_workers", num_workers, 0, null="chosen from the CPUs"),
                (
                    "num_frames", num_frames, num_frames >= 3,
                    ">= 3 (the temporal video encoder needs frame differences)",
                ),
                one_of("pretrain_windows", pretrain_windows, ("all", "labelled")),
                one_of("probe_unit", probe_unit, ("window", "sequence")),
                one_of("standardize", standardize, get_args(Standardize)),
                one_of("purpose", purpose, ("auto", *PURPOSES)),
            ],
            section="data.init_args",
        )
        self.cache_dir = Path(cache_dir).expanduser()
        self.windows = windows
        self.window_batch_size = batch_size
        self.probe_batch_size = probe_batch_size
        self.sequence_batch_size: int | None = None
        self.num_workers = resolve_num_workers(num_workers)
        self.num_frames = num_frames
        self._splits = {"train_runs": train_runs, "val_runs": val_runs, "test_runs": test_runs}
        self.probe_train_runs = None if probe_train_runs is None else list(probe_train_runs)
        self.pretrain_windows = pretrain_windows
        self.probe_unit = probe_unit
        self.standardize = standardize
        self.purpose = purpose
        self.augment_video = augment_video
        self.frame_storage = frame_storage
        self.shuffle_seed = shuffle_seed
        self.progress = progress
        self.cache: WindowCache | None = None
        self.reports: list[RunReport] = []
        self.report: dict[str, Any] = {}
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.datasets: dict[str, WindowDataset | SequenceDataset] = {}

    # ---- what a dataset subclass provides -------------------------------------------------

    @abstractmethod
    def source_settings(self) -> dict[str, Any]:
        """Dataset-specific settings that shape the cache (root folder, channel subset, …)."""

    @abstractmethod
    def recordings(self) -> Iterator[RunRecording | RunReading]:
        """Read the release run by run (called only when the cache is built).

        Yields `RunReading`s when the reader has something to report about a run (its findings
        go to `report_extra`), bare `RunRecording`s otherwise.
        """

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

    def report_extra(self, reports: list[RunReport], findings: dict[str, Any]) -> dict[str, Any]:
        """Dataset-specific entries of the report written next to the cache (default: none).

        Args:
            reports: What the cache writer found per run (durations, windows kept and dropped).
            findings: Run name → the findings its reader returned (`RunReading.findings`).
        """
        return {}

    def report_lines(self) -> list[str]:
        """Dataset-specific lines of `summary()` (default: none), from `self.report`."""
        return []

    def excluded_runs(self) -> set[str]:
        """Runs that the splits leave out although configured (default: none)."""
        return set()

    def window_labels(self, cache: WindowCache) -> np.ndarray:
        """Class id of every cached window for this configuration (default: as stored).

        A dataset whose cache stores labels of a larger vocabulary maps them here to the
        configured classes (−1 outside them), so changing the classes never rebuilds the cache.
        """
        return cache.label

    def sequence_labels(self, cache: WindowCache) -> dict[int, int]:
        """Class of each run for the sequence probe: run index → class (runs without one omitted)."""
        return {
            index: int(cache.run_attrs[name]["sequence_label"])
            for index, name in enumerate(cache.run_names)
            if int(cache.run_attrs[name]["sequence_label"]) >= 0
        }

    # ---- the shared mechanism ---------------------------------------------------------------

    def configured_runs(self, name: str) -> list[str]:
        """Run names of `train_runs`, `val_runs` or `test_runs`: the config value or the default."""
        chosen = self._splits[name]
        return list(chosen) if chosen is not None else list(self.default_splits()[name])

    def split(self, name: str) -> list[str]:
        """The configured runs of a split, without the `excluded_runs`."""
        excluded = self.excluded_runs()
        return [run for run in self.configured_runs(name) if run not in excluded]

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

    @property
    def report_path(self) -> Path:
        """`<cache>.report.json`: what preparing found (per run, and the dataset's own findings)."""
        return self.cache_path.with_suffix(".report.json")

    def prepare_data(self) -> None:
        """Build the cache if it is missing and write its report (one process per node).

        The report holds the cache writer's `RunReport`s under "runs" plus the dataset's
        `report_extra`; it is written atomically beside the cache. With the cache already there
        (or built by another process meanwhile) the stored report is read instead.
        """
        path = self.cache_path
        if path.is_file():
            self.load_report()
            return
        ensure_writable_folder(self.cache_dir, "data.init_args.cache_dir")
        log.info("building window cache %s", path)
        findings: dict[str, Any] = {}
        read: list[bool] = []
        reports = build_cache(
            path,
            collect_findings(self.recordings(), findings, read),
            self.windows,
            self.cache_meta(),
            num_runs=self.num_recordings(),
            progress=self.progress,
            frame_storage=self.frame_storage,
        )
        if not read:  # another process built the cache while this one waited
            self.load_report()
            return
        self.reports = reports
        self.report = {"runs": [asdict(report) for report in reports], **self.report_extra(reports, findings)}
        write_atomically(self.report_path, json.dumps(self.report, indent=1, default=str))

    def load_report(self) -> None:
        """Read the report stored beside an existing cache (empty for a cache without one)."""
        if not self.report_path.is_file():
            self.report, self.reports = {}, []
            return
        self.report = json.loads(self.report_path.read_text())
        self.reports = [RunReport(**report) for report in self.report.get("runs", [])]

    def summary(self) -> str:
        """What preparing found, for `detach prepare`: the cache, each run, the dataset's notes."""
        lines = report_lines(self.cache_path, self.report_path, self.report, self.reports)
        return "\n".join(lines + self.report_lines())

    def resolved_purpose(self) -> Literal["alignment", "probe"]:
        """The purpose in force, decided once (see the module docstring).

        Raises:
            ValueError: The purpose is "auto" and no Trainer's model states one.
        """
        if self.purpose == "auto":
            model = self.trainer.lightning_module if self.trainer is not None else None
            purpose = getattr(model, "data_purpose", None)
            if purpose not in PURPOSES:
                raise ValueError(
                    f"{type(self).__name__}: data.init_args.purpose is 'auto' and no model states its "
                    "data purpose: the `detach` CLI sets it from the model class; otherwise pass "
                    "purpose='alignment' (windows with video) or purpose='probe' (labelled windows)"
                )
            self.purpose = purpose
        return cast(Literal["alignment", "probe"], self.purpose)  # decided: no longer "auto"

    @property
    def batch_size(self) -> int:
        """Items per batch and device that the loaders serve for the purpose in force.

        `batch_size` (windows) for alignment; for the probe `probe_batch_size` (None: the same),
        or `sequence_batch_size` runs for the sequence probe when the dataset sets it.
        """
        if self.purpose != "probe":
            return self.window_batch_size
        if self.probe_unit == "sequence" and self.sequence_batch_size is not None:
            return self.sequence_batch_size
        return self.probe_batch_size if self.probe_batch_size is not None else self.window_batch_size

    def open_cache(self) -> WindowCache:
        """The cache (built if missing), its window labels mapped by `window_labels`."""
        if self.cache is None:
            if not self.cache_path.is_file():
                self.prepare_data()
            cache = WindowCache(self.cache_path)
            cache.label = self.window_labels(cache)
            self.cache = cache
        return self.cache

    def setup(self, stage: str | None = None) -> None:
        """Open the cache, compute training-run statistics and build the split datasets."""
        cache = self.open_cache()
        train_runs = self.split("train_runs")
        cache.run_indices(train_runs, setting="data.train_runs")
        self.mean, self.std = cache.channel_statistics(train_runs)
        purpose = self.resolved_purpose()
        for split in ("train", "val", "test"):
            self.datasets[split] = self.split_dataset(cache, split, purpose)

    def split_dataset(self, cache: WindowCache, split: str, purpose: str) -> WindowDataset | SequenceDataset:
        """The dataset of one split for a purpose: its windows, or its runs for the sequence probe.

        Raises:
            ValueError: The split's runs give no window (or no labelled run) for the purpose.
        """
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
            raise ValueError(f"data.{setting} {runs} give no {purpose} windows (cache {self.cache_path.name})")
        if self.mean is None or self.std is None:
            raise RuntimeError("split_dataset() needs the training-run statistics that setup() computes")
        dataset = WindowDataset(
            cache,
            windows,
            self.mean,
            self.std,
            num_frames=self.num_frames,
            load_video=purpose == "alignment",
            standardize=self.standardize,
            decode_on_device=self.trainer is not None
            and decodes_on_device(self.frame_storage, self.trainer.strategy.root_device),
        )
        if purpose != "probe" or self.probe_unit != "sequence":
            return dataset
        labels = self.sequence_labels(cache)
        present = set(np.unique(dataset.sequence.numpy()).tolist())
        sequences = SequenceDataset(dataset, {run: labels[run] for run in present if run in labels})
        if len(sequences) == 0:
            raise ValueError(f"data.{setting} {runs}: no run with a sequence label of the configured classes")
        return sequences

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """On the host: the windows' indices as Python ints (`index_host`).

        They seed the clip augmentation after the transfer without reading them back from the
        device (a sync).
        """
        if "video" in batch or "video_jpeg" in batch:
            batch["index_host"] = batch["index"].tolist()
        return batch

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """On the device: clips to the model's floats, training clips augmented (`batch_for_model`)."""
        trainer = self.trainer
        training = self.augment_video and trainer is not None and trainer.training
        return batch_for_model(batch, augment_epoch=trainer.current_epoch if training and trainer is not None else None)

    def alignment_training_set(self) -> AlignmentTrainingSet:
        """The training windows' sensors and places, for stage 1 (after `setup`).

        Raises:
            TypeError: The training set is not made of windows (e.g. the sequence probe's runs).
        """
        dataset = self.datasets.get("train")
        if not isinstance(dataset, WindowDataset):
            raise TypeError(
                f"alignment_training_set() needs the window training set of setup(); got "
                f"{type(dataset).__name__} (purpose {self.purpose!r}, probe_unit {self.probe_unit!r})"
            )
        return AlignmentTrainingSet(sensor=dataset.sensor, place=dataset.place)

    def _loader(self, split: str, sampler: DistributedSampler | None = None) -> DataLoader:
        """A split's loader (`detach_pl.data.loaders.split_loader`), its sampler at the epoch training is at.

        The loader has its own generator (`loader_generator`).

        Lightning creates the first iterator of a `fit` before it sets the sampler's epoch, and
        worker processes fetch their first batches at once: without the epoch set here, a resumed
        run with workers would replay epoch 0's order in its first epoch.
        """
        if sampler is not None and self.trainer is not None and hasattr(sampler, "set_epoch"):
            # Lightning types `current` as the base tracker; at run time it counts processed epochs
            sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)  # type: ignore[attr-defined]
        return split_loader(
            self.datasets[split],
            self.batch_size,
            sampler,
            world_size=self.trainer.world_size if self.trainer is not None else 1,
            rank=self.trainer.global_rank if self.trainer is not None else 0,
            num_workers=self.num_workers,
            # pinned batches let the copy to a GPU run asynchronously; on CPU pinning only costs
            pin_memory=self.trainer is not None and self.trainer.strategy.root_device.type == "cuda",
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
        sampler: DistributedSampler = DistributedSampler(
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
        return PreprocessingContract(
            dataset=self.dataset_name,
            channel_names=list(self.cache.channel_names),
            sensor_rate_hz=self.cache.sensor_rate_hz(runs),
            windows=self.windows.to_dict(),
            standardize=self.standardize,
            mean=self.mean.astype(float).tolist(),
            std=self.std.astype(float).tolist(),
            class_names=list(self.data_info.class_names),
            probe_unit=self.probe_unit,
            extra={"source": json.loads(json.dumps(self.source_settings(), default=str))},
        )

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the cache used, the standardisation statistics, the preprocessing contract.

        Deployment reads the contract (`detach_pl.deploy.contract`).
        """
        return {
            "cache": self.cache_path.name,
            "train_runs": self.split("train_runs"),
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
            CONTRACT_KEY: None if self.mean is None else self.preprocessing_contract().to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Warn when the checkpoint was trained with other statistics than this config gives."""
        if self.mean is None or self.std is None or state.get("mean") is None:
            return
        if not (np.allclose(self.mean, state["mean"]) and np.allclose(self.std, state["std"])):
            log.warning(
                "the checkpoint was trained with other standardisation statistics (train runs %s) "
                "than this configuration (%s)",
                state.get("train_runs"),
                self.split("train_runs"),
            )

