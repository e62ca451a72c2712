"""DataModules of `detach predict`: new recordings, sensors only, preprocessed by the contract.

No cache and no training data: the window settings, channel order and standardisation statistics
come from the probe checkpoint (`data.init_args.checkpoint`, filled from `--ckpt_path` by the CLI).
Window probes get one item per window; the sequence probe (HWU-USP) one item per recording.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detach_pl.data.datamodule import collate_sequences
from detach_pl.data.hwu_usp import GapFill, TimestampUnit, discover_trials, read_ambient_csv
from detach_pl.data.info import DataInfo
from detach_pl.data.opportunity import OpportunityDataModule, locate_run
from detach_pl.data.sensor_csv import SensorRecording, csv_files, read_sensor_csv, run_class_ids
from detach_pl.data.synthetic import SyntheticKitchenConfig
from detach_pl.deploy.contract import LoadedProbe, PreprocessingContract, load_probe
from detach_pl.deploy.preprocess import (
    RateMismatch,
    RecordingWindows,
    check_rate,
    check_rows,
    match_channels,
    recording_windows,
)
from detach_pl.deploy.readers import synthetic_recordings, world_of
from detach_pl.settings import at_least, check_settings, fraction, one_of

log = logging.getLogger(__name__)


@dataclass
class PreparedRecording:
    """A recording ready for the model: its windows, and what the writer needs to report it."""

    name: str
    windows: RecordingWindows
    time_ms: np.ndarray
    row_label: np.ndarray | None
    sequence_label: int
    source: str


class WindowItems(Dataset):
    """Every window of every recording: `sensor` (C, L), `sequence` (recording), `window`, `label`."""

    def __init__(self, recordings: list[PreparedRecording]) -> None:
        self.sensor = torch.from_numpy(np.concatenate([r.windows.sensor for r in recordings]))
        self.sequence = torch.cat([torch.full((r.windows.sensor.shape[0],), i) for i, r in enumerate(recordings)])
        self.window = torch.cat([torch.arange(r.windows.sensor.shape[0]) for r in recordings])
        self.label = torch.from_numpy(np.concatenate([r.windows.label for r in recordings]))

    def __len__(self) -> int:
        return int(self.sensor.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "index": torch.tensor(index),
            "sensor": self.sensor[index],
            "sequence": self.sequence[index],
            "window": self.window[index],
            "label": self.label[index],
        }


class RecordingItems(Dataset):
    """One item per recording for the sequence probe: all its windows (`collate_sequences`)."""

    def __init__(self, recordings: list[PreparedRecording]) -> None:
        self.recordings = recordings

    def __len__(self) -> int:
        return len(self.recordings)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        recording = self.recordings[index]
        return {
            "index": torch.tensor(index),
            "sensor": torch.from_numpy(recording.windows.sensor),
            "label": torch.tensor(recording.sequence_label),
            "sequence": torch.tensor(index),
        }


class SensorRecordingsDataModule(pl.LightningDataModule):
    """New recordings, sensors only, for `detach predict` (subclasses say how to read them).

    Args:
        root: Release folder, recording folder or file (what the subclass reads).
        recordings: Names of the recordings to predict (None: every one found).
        checkpoint: Probe checkpoint or exported `model.json` holding the preprocessing contract
            (`detach predict` fills it from `--ckpt_path`).
        batch_size: Windows (or, for the sequence probe, recordings) per batch. At the paper's
            sizes on two cores, 3600 windows take 4.1–4.3 s in the encoders at 256, 4.4–4.9 s
            at 64 and 4.4–4.8 s at 1024 (larger batches leave the caches; benchmarks/predict.md).
        rate_mismatch: A recording whose sensor rate differs from the model's by more than
            `rate_tolerance` is "resample"d linearly to the model's rate (with a warning) or
            refused ("error").
        rate_tolerance: Relative rate difference accepted as the same rate (0.05).
        num_workers: DataLoader workers (0: the windows are already in memory).
    """

    dataset_name = "recordings"

    def __init__(
        self,
        root: str | None = None,
        recordings: list[str] | None = None,
        checkpoint: str | None = None,
        batch_size: int = 256,
        rate_mismatch: RateMismatch = "resample",
        rate_tolerance: float = 0.05,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        check_settings(
            [
                at_least("batch_size", batch_size, 1),
                one_of("rate_mismatch", rate_mismatch, get_args(RateMismatch)),
                fraction("rate_tolerance", rate_tolerance, include_zero=True, include_one=False),
                at_least("num_workers", num_workers, 0),
            ],
            section="data.init_args",
        )
        self.root = None if root is None else Path(root).expanduser()
        self.recordings = None if recordings is None else list(recordings)
        self.checkpoint = checkpoint
        #: Keyword arguments of the prediction DataLoader and of `check_rate`, as given.
        self.loader_options: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers}
        self.rate_options: dict[str, Any] = {"policy": rate_mismatch, "tolerance": rate_tolerance}
        self._probe: LoadedProbe | None = None
        self._contract: PreprocessingContract | None = None
        self.prepared: list[PreparedRecording] = []

    # ---- what a reader subclass provides ------------------------------------------------------

    @abstractmethod
    def read(self) -> Iterator[SensorRecording]:
        """The recordings, sensors only (labels where the files have them)."""

    # ---- the contract -------------------------------------------------------------------------

    @property
    def contract(self) -> PreprocessingContract:
        """The checkpoint's (or model.json's) preprocessing contract, read once."""
        if self._contract is None:
            if not self.checkpoint:
                raise ValueError(
                    "data.init_args.checkpoint is not set: give the probe checkpoint (`detach predict "
                    "--ckpt_path …` sets it) or an exported model.json"
                )
            if str(self.checkpoint).endswith(".json"):
                from detach_pl.deploy.contract import read_contract

                self._contract = read_contract(self.checkpoint, "data.init_args.checkpoint")
            else:
                self._probe = load_probe(self.checkpoint, "--ckpt_path")
                self._contract = self._probe.contract
        return self._contract

    @property
    def source(self) -> dict[str, Any]:
        """The training DataModule's source settings stored in the contract (may be empty)."""
        return dict(self.contract.extra.get("source", {}))

    @property
    def data_info(self) -> DataInfo:
        """Channels and classes of the contract (linked into the model like any DataModule's)."""
        contract = self.contract
        places = 1
        if self._probe is not None and isinstance(self._probe.hparams.get("data_info"), dict):
            places = int(self._probe.hparams["data_info"].get("num_places", 1))
        return DataInfo(
            num_channels=len(contract.channel_names),
            num_classes=len(contract.class_names),
            num_places=places,
            class_names=list(contract.class_names),
            channel_names=list(contract.channel_names),
        )

    def require_root(self) -> Path:
        """`root`, which must exist."""
        if self.root is None or not self.root.exists():
            raise FileNotFoundError(f"data.init_args.root={self.root and str(self.root)!r}: no such file or folder")
        return self.root

    # ---- preparing the windows ----------------------------------------------------------------

    def prepare(self, recording: SensorRecording) -> PreparedRecording:
        """Check, reorder, resample if needed, and cut one recording into preprocessed windows."""
        contract, where = self.contract, recording.where
        check_rows(recording.time_ms, recording.sensor, where)
        sensor = match_channels(recording.channel_names, recording.sensor, contract, where)
        time_ms, sensor = check_rate(recording.time_ms, sensor, contract, where, **self.rate_options)
        row_label = recording.row_label
        if row_label is not None and time_ms is not recording.time_ms:
            nearest = np.clip(np.searchsorted(recording.time_ms, time_ms, side="right") - 1, 0, None)
            row_label = row_label[nearest]
        windows = recording_windows(time_ms, sensor, contract, where, row_label)
        return PreparedRecording(
            recording.name, windows, time_ms, row_label, recording.sequence_label, recording.source
        )

    def setup(self, stage: str | None = None) -> None:
        """Read and preprocess every recording (once)."""
        if self.prepared:
            return
        self.prepared = [self.prepare(recording) for recording in self.read()]
        if not self.prepared:
            raise FileNotFoundError(f"data.init_args.root={str(self.root)!r}: no recording to predict")
        log.info(
            "predicting %d recording(s), %d windows", len(self.prepared),
            sum(r.windows.sensor.shape[0] for r in self.prepared),
        )

    def predict_dataloader(self) -> DataLoader:
        """Windows in recording order (or whole recordings for the sequence probe)."""
        if self.contract.probe_unit == "sequence":
            return DataLoader(RecordingItems(self.prepared), collate_fn=collate_sequences, **self.loader_options)
        return DataLoader(WindowItems(self.prepared), **self.loader_options)


class SyntheticRecordings(SensorRecordingsDataModule):
    """Runs of the built-in synthetic kitchen, regenerated (sensors only).

    The world is the one the probe was trained on (stored in the contract), with `world`'s
    fields replacing its own (e.g. `{seed: 7}` for runs of a world the probe never saw).

    Args:
        world: Overrides of the checkpoint's `SyntheticKitchenConfig` fields (None: none).
        **kwargs: `SensorRecordingsDataModule` settings (`recordings`: run names, None: every run).
    """

    dataset_name = "synthetic"

    def __init__(self, world: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.world = dict(world or {})

    def generator_settings(self) -> SyntheticKitchenConfig:
        """The checkpoint's world with the overrides applied."""
        unknown = sorted(set(self.world) - set(dataclasses.asdict(SyntheticKitchenConfig())))
        if unknown:
            raise ValueError(f"data.init_args.world: unknown SyntheticKitchenConfig field(s) {unknown}")
        return world_of({**self.source, **self.world})

    def read(self) -> Iterator[SensorRecording]:
        """Regenerate the named runs of the checkpoint's world."""
        world = self.generator_settings()
        names = self.recordings or [f"run{index:02d}" for index in range(world.num_runs)]
        return synthetic_recordings(world, names, self.contract.class_names)


class CsvRecordings(SensorRecordingsDataModule):
    """One's own sensors: CSV files (docs/deploy.md), one recording per file.

    Args:
        time_column: Header name of the timestamp column.
        time_unit: "s" or "ms".
        label_column: Optional column of class names (ground truth for the timeline and F1).
        delimiter: Cell separator.
        run_classes: The class of each whole recording, by file stem: the truth of a sequence
            probe's `predictions.csv` (None: no truth).
        **kwargs: `SensorRecordingsDataModule` settings (`root`: a CSV or a folder of them;
            `recordings`: file stems).
    """

    dataset_name = "csv"

    def __init__(
        self,
        time_column: str = "timestamp",
        time_unit: Literal["s", "ms"] = "s",
        label_column: str | None = "label",
        delimiter: str = ",",
        run_classes: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        #: Keyword arguments of `read_sensor_csv`, as given.
        self.csv_format: dict[str, Any] = {
            "time_column": time_column, "time_unit": time_unit, "label_column": label_column, "delimiter": delimiter,
        }
        self.run_classes = dict(run_classes or {})

    def read(self) -> Iterator[SensorRecording]:
        """Read every CSV file (or the named stems) under `root`, each with its `run_classes` class.

        Raises:
            ValueError: `run_classes` names a CSV that is not there or a class the model lacks.
        """
        root = self.require_root()
        stems = [path.stem for path in csv_files(root, None)]
        classes = list(self.contract.class_names)
        truth = run_class_ids(self.run_classes, classes, stems, "data.init_args.run_classes", root)
        for path in csv_files(root, self.recordings):
            recording = read_sensor_csv(path, classes, **self.csv_format)
            recording.sequence_label = truth.get(recording.name, -1)
            yield recording


class OpportunityRecordings(SensorRecordingsDataModule):
    """Opportunity++ run folders, sensor matrix only (videos are neither needed nor opened).

    Args:
        label_track: Label column for the ground truth (None: the training one).
        classes: Class names by legend name (None: the checkpoint's; another list is refused).
        check_srt: Compare the SRT track with the matrix, as when training.
        **kwargs: `SensorRecordingsDataModule` settings (`root`: the release or a folder of run
            folders; `recordings`: run names, None: every run folder with a sensor matrix).
    """

    dataset_name = "opportunity"

    def __init__(self, label_track: str | None = None, classes: list[str] | None = None,
                 check_srt: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label_track = label_track
        self.classes = classes
        self.check_srt = check_srt

    def run_names(self, root: Path) -> list[str]:
        """Run folders under `root` (or `root/data`) that hold a sensor matrix."""
        folders = {p.name for base in (root, root / "data") if base.is_dir() for p in base.iterdir() if p.is_dir()}
        return sorted(name for name in folders if locate_run(root, name, require_video=False).sensor is not None)

    def read(self) -> Iterator[SensorRecording]:
        """Read the sensor matrix of every run (or the named runs); the video is never opened."""
        root = self.require_root()
        contract, source = self.contract, self.source
        if self.classes is not None:
            contract.check_class_names(self.classes, "data.init_args.classes")
        columns = source.get("channel_columns")
        channels = [f"column:{n}" for n in columns] if columns else list(contract.channel_names)
        names = self.recordings or self.run_names(root)
        release = OpportunityDataModule(
            root=str(root), channels=channels,
            label_track=self.label_track or source.get("label_track", "ML_Both_Arms"),
            classes=list(contract.class_names), runs=names, check_srt=self.check_srt, require_video=False,
            progress=False, num_workers=0,
        )
        contract.check_class_names(list(release.vocabulary.class_names), f"Opportunity++ legend under {root}")
        channel_names = release.channel_labels()
        for name in names:
            time_ms, sensor, row_label, _ = release.read_sensor_run(name)
            labelled = row_label if (row_label >= 0).any() else None
            yield SensorRecording(name, time_ms, sensor, channel_names, labelled, source=str(root))


class HwuRecordings(SensorRecordingsDataModule):
    """HWU-USP trials, ambient CSV only (the sequence probe: one prediction per trial).

    Args:
        csv_glob: Glob (relative to root) of the CSV files.
        timestamp_unit: Unit of numeric timestamps ("auto").
        sensor_rate_hz: Clock of tables without timestamps (None: measured).
        gap_fill: "hold" or "interpolate".
        **kwargs: `SensorRecordingsDataModule` settings (`recordings`: trial ids such as tea_s01).
    """

    dataset_name = "hwu_usp"

    def __init__(self, csv_glob: str = "**/*.csv", timestamp_unit: TimestampUnit = "auto",
                 sensor_rate_hz: float | None = None, gap_fill: GapFill = "hold", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.csv_glob = csv_glob
        #: Keyword arguments of `read_ambient_csv`, as given.
        self.table_options: dict[str, Any] = {
            "timestamp_unit": timestamp_unit, "sensor_rate_hz": sensor_rate_hz, "gap_fill": gap_fill,
        }

    def read(self) -> Iterator[SensorRecording]:
        """Read the ambient CSV of every trial (or the named trials); one recording per trial."""
        contract = self.contract
        channels = list(contract.channel_names)
        found = discover_trials(self.require_root(), channels, csv_glob=self.csv_glob, require_video=False)
        names = self.recordings or sorted(found.trials, key=lambda n: (found.trials[n].subject, n))
        missing = [name for name in names if name not in found.trials]
        if missing:
            raise FileNotFoundError(
                f"data.init_args.recordings: no ambient CSV for {missing} under {found.root} "
                f"({'; '.join(f'{k}: {v}' for k, v in found.incomplete.items()) or 'not found'})"
            )
        for name in names:
            trial = found.trials[name]
            table = read_ambient_csv(
                trial.ambient, channels, column_names=None if trial.columns.has_header else trial.columns.names,
                **self.table_options,
            )
            label = contract.class_names.index(trial.activity) if trial.activity in contract.class_names else -1
            rows = np.full(table.time_ms.shape[0], label, dtype=np.int64) if label >= 0 else None
            yield SensorRecording(name, table.time_ms, table.values, channels, rows, label, str(trial.ambient))
