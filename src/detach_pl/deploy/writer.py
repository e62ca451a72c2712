"""The prediction writer of `detach predict`: per recording, windows, events and a timeline.

Files under `output_dir` (default: the trainer's `default_root_dir`), written atomically:

- `<recording>.windows.csv`: start_s, end_s, predicted, probability, p_<class> for every class;
- `<recording>.events.csv`: start_s, end_s, label, mean_confidence, windows (`merge_events`);
- `<recording>.timeline.png`: events over time, ground truth beneath, weighted F1 in the title;
- for the sequence probe, one `predictions.csv` with a row per recording (trial).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torchmetrics.functional.classification import multiclass_f1_score

from detach_pl.deploy.data import PreparedRecording, SensorRecordingsDataModule
from detach_pl.deploy.events import label_segments, merge_events, timeline_figure
from detach_pl.io import write_atomically

log = logging.getLogger(__name__)


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    """A CSV document (floats with 6 decimals)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([f"{value:.6f}" if isinstance(value, float) else value for value in row])
    return buffer.getvalue()


def csv_cells(cells: list[str]) -> list[str]:
    """`cells` as `csv.writer` writes them (quoted where they hold a comma, a quote or a line end)."""
    return [csv_text([cell], []).rstrip("\n") for cell in cells]


def windows_csv_text(start_s: np.ndarray, end_s: np.ndarray, probs: np.ndarray, class_names: list[str]) -> str:
    """`<recording>.windows.csv`: start_s, end_s, predicted, probability, p_<class>...

    The text `csv_text` gives for these rows, built with one format string per row (an hour of
    windows in milliseconds rather than a `csv.writer` call per row).
    """
    header = ["start_s", "end_s", "predicted", "probability", *(f"p_{name}" for name in class_names)]
    names = csv_cells(class_names)
    numbers = np.asarray(probs, dtype=np.float64)
    predicted = numbers.argmax(1) if numbers.size else np.zeros(0, np.int64)
    row = ",".join(["%.6f", "%.6f", "%s", "%.6f", *["%.6f"] * numbers.shape[1]])
    lines = [
        row % (a, b, names[k], p[k], *p)
        for a, b, k, p in zip(start_s.tolist(), end_s.tolist(), predicted.tolist(), numbers.tolist(), strict=True)
    ]
    return csv_text(header, []) + "".join(f"{line}\n" for line in lines)


def weighted_f1(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> float | None:
    """Weighted F1 over the labelled windows (None when none is labelled)."""
    labelled = truth >= 0
    if not labelled.any():
        return None
    return float(multiclass_f1_score(
        torch.from_numpy(predicted[labelled]), torch.from_numpy(truth[labelled]), num_classes, average="weighted"
    ))


class PredictionWriter(BasePredictionWriter):
    """Writes what `detach predict` recognised, per recording (module docstring).

    Args:
        output_dir: Folder of the outputs (None: the trainer's `default_root_dir`).
        min_confidence: Windows whose top probability is lower belong to no event.
        min_duration_s: Events shorter than this are not written.
        timeline: Also draw `<recording>.timeline.png`.
    """

    def __init__(self, output_dir: str | None = None, min_confidence: float = 0.0,
                 min_duration_s: float = 0.0, timeline: bool = True) -> None:
        super().__init__(write_interval="batch")
        if not 0.0 <= min_confidence <= 1.0 or min_duration_s < 0:
            raise ValueError(
                f"PredictionWriter: min_confidence={min_confidence} must lie in [0, 1] and "
                f"min_duration_s={min_duration_s} be >= 0"
            )
        self.output_dir = output_dir
        self.min_confidence = min_confidence
        self.min_duration_s = min_duration_s
        self.timeline = timeline
        self._probs: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Refuse several processes before any work (the files are written from one)."""
        if trainer.world_size > 1:
            raise ValueError("detach predict writes its files from one process: set --trainer.devices 1")

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Forget the probabilities of an earlier predict run."""
        self._probs = {}

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Keep the batch's probabilities by recording (and window position)."""
        probs = prediction["probs"].detach().float().cpu().numpy()
        sequence = batch["sequence"].cpu().numpy()
        window = batch["window"].cpu().numpy() if "window" in batch else np.zeros(sequence.size, np.int64)
        for recording in np.unique(sequence):
            rows = sequence == recording
            self._probs.setdefault(int(recording), []).append((window[rows], probs[rows]))

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write every recording's files."""
        data = trainer.datamodule  # type: ignore[attr-defined]  # set by Lightning's data connector, undeclared
        if not isinstance(data, SensorRecordingsDataModule):
            raise TypeError(
                "PredictionWriter writes predictions of new recordings: use a data module of "
                "detach_pl.deploy (configs/<dataset>/predict.yaml), not the training DataModule"
            )
        folder = Path(self.output_dir or trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        class_names = list(data.contract.class_names)
        if data.contract.probe_unit == "sequence":
            self.write_sequences(folder, data.prepared, class_names)
        else:
            for index, recording in enumerate(data.prepared):
                self.write_recording(folder, recording, self.collected(index, recording), class_names)
        log.info("predictions of %d recording(s) written to %s", len(data.prepared), folder)

    def collected(self, index: int, recording: PreparedRecording) -> np.ndarray:
        """(n, K) probabilities of one recording's windows, in window order."""
        parts = self._probs.get(index, [])
        count = recording.windows.sensor.shape[0]
        window = np.concatenate([w for w, _ in parts]) if parts else np.zeros(0, np.int64)
        if np.sort(window).tolist() != list(range(count)):
            raise RuntimeError(f"recording {recording.name}: {window.size} window predictions for {count} windows")
        probs = np.concatenate([p for _, p in parts])
        return probs[np.argsort(window)]

    def write_recording(self, folder: Path, recording: PreparedRecording, probs: np.ndarray,
                        class_names: list[str]) -> None:
        """`<name>.windows.csv`, `<name>.events.csv` and `<name>.timeline.png` of one recording."""
        start_s, end_s = recording.windows.start_ms / 1000.0, recording.windows.end_ms / 1000.0
        predicted = probs.argmax(1)
        write_atomically(folder / f"{recording.name}.windows.csv", windows_csv_text(start_s, end_s, probs, class_names))
        events = merge_events(start_s, end_s, probs, self.min_confidence, self.min_duration_s)
        write_atomically(folder / f"{recording.name}.events.csv", csv_text(
            ["start_s", "end_s", "label", "mean_confidence", "windows"],
            [[e.start_s, e.end_s, class_names[e.label], e.confidence, e.windows] for e in events],
        ))
        if not self.timeline:
            return
        f1 = weighted_f1(predicted, recording.windows.label, len(class_names))
        truth = None
        if recording.row_label is not None:
            truth = label_segments(recording.time_ms / 1000.0, recording.row_label)
        labelled = int((recording.windows.label >= 0).sum())
        score = "no labels" if f1 is None else f"weighted F1 {f1:.3f} over {labelled} labelled windows"
        figure = timeline_figure(events, class_names, truth, f"{recording.name}: {score}")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        write_atomically(folder / f"{recording.name}.timeline.png", buffer.getvalue())

    def write_sequences(self, folder: Path, recordings: list[PreparedRecording], class_names: list[str]) -> None:
        """`predictions.csv`: one row per recording (sequence probe)."""
        rows = []
        for index, recording in enumerate(recordings):
            probs = np.concatenate([p for _, p in self._probs[index]])[0]
            truth = class_names[recording.sequence_label] if recording.sequence_label >= 0 else ""
            k = int(probs.argmax())
            rows.append([recording.name, class_names[k], float(probs[k]), truth, *map(float, probs)])
        header = ["recording", "predicted", "probability", "truth", *(f"p_{name}" for name in class_names)]
        write_atomically(folder / "predictions.csv", csv_text(header, rows))
