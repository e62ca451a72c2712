"""Live recognition: push sensor rows as they arrive, get each window once it is complete.

The windows are those `detach predict` cuts from the whole recording (starts at first row +
k·hop, rows [start, start + window)), preprocessed by the same routine (`preprocess_spans`), so a
recording pushed in chunks of any size gives the windows and probabilities of `detach predict`.
Only rows that a future window still needs are kept.

    recognizer = StreamingRecognizer.from_checkpoint("runs/demo/probe/checkpoints/last.ckpt")
    for timestamps_ms, rows in sensor_feed():        # (n,), (n, C) in the model's channel order
        for window in recognizer.push(timestamps_ms, rows).rows():
            print(window.start_s, window.label, window.probability)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from detach_pl.data.windows import window_starts
from detach_pl.deploy.contract import CONTRACT_KEY, PreprocessingContract, load_probe, read_export_description
from detach_pl.deploy.preprocess import match_channels, preprocess_spans, report_dead_channels, sensor_rate

Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class WindowResult:
    """One recognised window."""

    start_s: float
    end_s: float
    label: str
    probability: float
    probs: np.ndarray


@dataclass(frozen=True)
class StreamedWindows:
    """The windows that one `push` completed.

    Attributes:
        start_ms: (n,) window starts.
        end_ms: (n,) window ends.
        probs: (n, K) class probabilities.
        class_names: The K class names.
    """

    start_ms: np.ndarray
    end_ms: np.ndarray
    probs: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return int(self.start_ms.shape[0])

    def rows(self) -> Iterator[WindowResult]:
        """The windows one by one, with their top class."""
        for start, end, probs in zip(self.start_ms, self.end_ms, self.probs, strict=True):
            k = int(probs.argmax())
            yield WindowResult(start / 1000.0, end / 1000.0, self.class_names[k], float(probs[k]), probs)


def eager_predictor(graph: torch.nn.Module) -> Predictor:
    """Probabilities from the eager graph (threads: `torch.set_num_threads`, the caller's choice)."""

    def predict(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return graph(torch.from_numpy(windows)).numpy()

    return predict


def onnx_predictor(path: Path, threads: int = 1) -> Predictor:
    """Probabilities from an exported ONNX graph on onnxruntime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def predict(windows: np.ndarray) -> np.ndarray:
        return session.run(["probs"], {"sensor": windows})[0]

    return predict


class StreamingRecognizer:
    """Windows and probabilities from sensor rows pushed in chunks of any size.

    Args:
        contract: The model's preprocessing contract.
        predict: (n, C, L) float32 windows → (n, K) probabilities.
        channel_names: Names of the pushed columns, when not the model's channel order (matched
            by name: missing ones are an error, extra ones ignored).
        rate_tolerance: Largest relative difference of the stream's rate (measured on its first
            window) from the model's; streaming cannot resample as `detach predict` does.
    """

    def __init__(self, contract: PreprocessingContract, predict: Predictor,
                 channel_names: Sequence[str] | None = None, rate_tolerance: float = 0.05) -> None:
        if contract.settings.filter_scope != "window":
            raise ValueError(
                "streaming needs windows preprocessed on their own (filter_scope 'window'); this model "
                "was trained with filter_scope 'run', which filters whole recordings: use detach predict"
            )
        if contract.probe_unit == "sequence":
            raise ValueError("this is a sequence probe (one prediction per recording): use detach predict")
        self.contract = contract
        self.predict = predict
        self.channel_names = None if channel_names is None else list(channel_names)
        self.rate_tolerance = rate_tolerance
        channels = len(contract.channel_names) if channel_names is None else len(channel_names)
        self._time = np.zeros(0, dtype=np.float64)
        self._rows = np.zeros((0, channels), dtype=np.float64)
        self._first: float | None = None
        self._next = 0
        self._rate_checked = False
        self._reported = np.zeros(len(contract.channel_names), dtype=bool)

    @classmethod
    def from_checkpoint(cls, path: str | Path, channel_names: Sequence[str] | None = None) -> StreamingRecognizer:
        """A recogniser running the probe checkpoint's eager model."""
        from detach_pl.deploy.export import probe_graph

        loaded = load_probe(path, "checkpoint")
        return cls(loaded.contract, eager_predictor(probe_graph(loaded)), channel_names)

    @classmethod
    def from_export(cls, model: str | Path, description: str | Path | None = None,
                    channel_names: Sequence[str] | None = None, threads: int = 1) -> StreamingRecognizer:
        """A recogniser running an exported model (ONNX on onnxruntime, or TorchScript).

        Raises:
            FileNotFoundError: The model file or its `model.json` is missing.
            ValueError: The `model.json` is not one that `detach export` wrote.
        """
        model = Path(model)
        if not model.is_file():
            raise FileNotFoundError(f"model {model}: no such exported model (`detach export` writes it)")
        description = Path(description) if description is not None else model.with_suffix(".json")
        values = read_export_description(description, "description")
        contract = PreprocessingContract.from_dict(values[CONTRACT_KEY], str(description))
        if values.get("format") == "torchscript":
            predict = eager_predictor(torch.jit.load(str(model)).eval())
        else:
            predict = onnx_predictor(model, threads)
        return cls(contract, predict, channel_names)

    def push(self, timestamps_ms: np.ndarray, samples: np.ndarray) -> StreamedWindows:
        """Add rows and recognise the windows they complete.

        Timestamps are in ms, strictly increasing across pushes.

        Raises:
            ValueError: Shapes that do not fit, timestamps that do not increase, missing
                channels, or a stream at another rate than the model's.
        """
        times = np.asarray(timestamps_ms, dtype=np.float64).reshape(-1)
        rows = np.asarray(samples, dtype=np.float64)
        if rows.ndim != 2 or rows.shape != (times.size, self._rows.shape[1]):
            raise ValueError(
                f"push: {times.size} timestamps need samples of shape ({times.size}, {self._rows.shape[1]}), "
                f"got {rows.shape}"
            )
        if times.size == 0:
            return self._empty()
        previous = self._time[-1:] if self._time.size else times[:0]
        steps = np.diff(np.concatenate([previous, times]))
        if (steps <= 0).any() or not np.isfinite(times).all():
            raise ValueError("push: timestamps must be finite and strictly increasing, also across pushes")
        self._time = np.concatenate([self._time, times])
        self._rows = np.concatenate([self._rows, rows])
        if self._first is None:
            self._first = float(times[0])
        return self._complete()

    def _empty(self) -> StreamedWindows:
        k = len(self.contract.class_names)
        return StreamedWindows(np.zeros(0), np.zeros(0), np.zeros((0, k), np.float32), list(self.contract.class_names))

    def _complete(self) -> StreamedWindows:
        """Preprocess and classify every window complete by now (as `window_spans` cuts them)."""
        settings = self.contract.settings
        window_ms, hop_ms = settings.window_seconds * 1000.0, settings.hop_seconds * 1000.0
        first_ms = self._first
        if first_ms is None:  # no row pushed yet
            return self._empty()
        starts = window_starts(np.array([first_ms, self._time[-1]]), settings)[self._next :]
        if starts.size == 0:
            return self._empty()
        kept, spans = [], []
        for start in starts:
            first, last = np.searchsorted(self._time, [start, start + window_ms])
            if last > first:
                kept.append(start)
                spans.append((int(first), int(last)))
        self._next += starts.size
        if not self._rate_checked and spans:
            self._check_rate(spans[0])
        sensor = self._rows
        if self.channel_names is not None:
            sensor = match_channels(self.channel_names, sensor, self.contract, "streamed rows")
        windows, dead = preprocess_spans(self._time, sensor, spans, self.contract)
        fresh = dead & ~self._reported  # each mostly-NaN channel is reported once per stream
        self._reported |= dead.any(axis=0)
        report_dead_channels(fresh, self.contract, "streamed rows (first time)")
        probs = self.predict(windows) if spans else self._empty().probs
        keep_from = np.searchsorted(self._time, first_ms + hop_ms * self._next)
        self._time, self._rows = self._time[keep_from:], self._rows[keep_from:]
        start_ms = np.asarray(kept, dtype=np.float64)
        return StreamedWindows(start_ms, start_ms + window_ms, np.asarray(probs), list(self.contract.class_names))

    def _check_rate(self, span: tuple[int, int]) -> None:
        self._rate_checked = True
        rate, expected = sensor_rate(self._time[span[0] : span[1]]), self.contract.sensor_rate_hz
        if abs(rate - expected) > self.rate_tolerance * expected:
            raise ValueError(
                f"streamed rows arrive at {rate:.2f} Hz, the model was trained at {expected:.2f} Hz: "
                "resample them to the model's rate before pushing (detach predict resamples whole recordings)"
            )
