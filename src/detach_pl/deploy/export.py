"""`detach export`: one graph from preprocessed sensor windows to class probabilities.

The graph holds the sensor encoders f_s and g_s, the joint embedding u_s, the probe's
standardisation and its Linear layer, and a softmax: (B, C, L) float32 → (B, K) for a window
probe; a sequence probe takes the (W, C, L) windows of one recording and mean-pools their
embeddings → (1, K). `model.json` beside it holds the preprocessing contract and class names, so
raw rows can be turned into the graph's input on a machine with nothing else
(`StreamingRecognizer.from_export`).
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from detach_pl.deploy.contract import CONTRACT_KEY, LoadedProbe, load_probe
from detach_pl.deploy.streaming import eager_predictor, onnx_predictor
from detach_pl.io import write_atomically
from detach_pl.modules.probe import LinearProbeModule
from detach_pl.nn import joint_embedding
from detach_pl.parse_errors import PlainErrorParser

ExportFormat = Literal["onnx", "torchscript"]
#: ONNX opset of the exported graph (torch's exporter, `dynamo=True`: the TorchScript-based one
#: cannot export the adaptive average pool of f_s when the pool size does not divide the length).
ONNX_OPSET = 18
#: Largest difference of a probability, exported graph on its runtime vs the eager probe, that
#: `export_model` accepts (float32 reassociation gives ~1e-7).
EXPORT_TOLERANCE = 1e-4
#: Batch sizes of the check: one window (the axis' lower bound) and another size than the tracing's.
CHECK_BATCHES = (1, 5)


def build_probe(loaded: LoadedProbe) -> LinearProbeModule:
    """The checkpoint's model (its own class and hyper-parameters) with its weights, in eval mode."""
    path = str(loaded.hparams.get("_class_path", "detach_pl.modules.LinearProbeModule"))
    module, name = path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    kwargs = {key: value for key, value in loaded.hparams.items() if not key.startswith("_")}
    kwargs["encoder_checkpoint"] = None
    model = cls(**kwargs)
    model.load_state_dict(loaded.state_dict)
    return model.eval()


class ProbeGraph(nn.Module):
    """Sensor windows → class probabilities: f_s, g_s, u_s, standardisation, Linear, softmax.

    Args:
        probe: A trained probe (its modules are shared, not copied).
        pool: Mean-pool the window embeddings of the input into one prediction (sequence probe).
    """

    def __init__(self, probe: LinearProbeModule, pool: bool = False) -> None:
        super().__init__()
        self.spatial = probe.encoders["sensor_spatial"]
        self.temporal = probe.encoders["sensor_temporal"]
        self.classifier = probe.classifier
        self.normalize_embedding = bool(probe.normalize_embedding)
        self.pool = pool

    def forward(self, sensor: Tensor) -> Tensor:
        """(B, C, L) windows → (B, K) probabilities ((1, K) when pooling)."""
        embedding = joint_embedding(
            self.spatial(sensor), self.temporal(sensor), normalize_output=self.normalize_embedding
        )
        if self.pool:
            embedding = embedding.mean(0, keepdim=True)
        return self.classifier(embedding).softmax(-1)


def probe_graph(loaded: LoadedProbe) -> ProbeGraph:
    """The eval-mode graph of a loaded probe checkpoint."""
    return ProbeGraph(build_probe(loaded), pool=loaded.contract.probe_unit == "sequence").eval()


def quiet_exporter_notes() -> None:
    """Silence the notes torch prints while it exports, inside a `warnings.catch_warnings()` block.

    They concern torch's own internals (`_check_is_size`, TorchScript's deprecation, nn.GRU
    re-assigning `_flat_weights` while traced) or the tracer's shape constants; none is for the
    user to act on. Whether the graph is right is what `exported_difference` checks, on the
    runtime a deployment uses, at two batch sizes.
    """
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"_check_is_size will be removed", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"The tensor attributes .*_flat_weights", category=UserWarning)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)


def exported_difference(graph: ProbeGraph, path: Path, format: ExportFormat, example: Tensor) -> float:
    """Largest |p_exported − p_eager| of the exported file, run on its own runtime, over `CHECK_BATCHES`.

    ONNX runs on onnxruntime's CPU provider, TorchScript on `torch.jit.load`: what a deployment
    would run. The windows are random draws shaped like `example`; the seed is fixed.
    """
    predict = onnx_predictor(path) if format == "onnx" else eager_predictor(torch.jit.load(str(path)).eval())
    reference = eager_predictor(graph)
    generator = torch.Generator().manual_seed(0)
    largest = 0.0
    for batch in CHECK_BATCHES:
        windows = torch.randn(batch, *example.shape[1:], generator=generator).numpy()
        largest = max(largest, float(np.abs(predict(windows) - reference(windows)).max()))
    return largest


def export_model(
    ckpt_path: str | Path, output: str | Path, format: ExportFormat = "onnx", batch: int = 2
) -> tuple[Path, Path, float]:
    """Write the graph (`output`) and its `model.json` (same folder, `<stem>.json`), checked on its runtime.

    The written graph is run on its runtime against the eager probe (`exported_difference`)
    before it is renamed into place; nothing is left behind when the check fails.

    Args:
        ckpt_path: Probe checkpoint.
        output: The model file (`.onnx` or `.pt`).
        format: "onnx" (dynamic batch axis, opset `ONNX_OPSET`) or "torchscript" (traced).
        batch: Batch size of the example input used for tracing.

    Returns:
        The model file, the JSON file, and the largest probability difference of the check.

    Raises:
        ValueError: An unknown format, or an exported graph more than `EXPORT_TOLERANCE` away
            from the eager probe.
    """
    if format not in ("onnx", "torchscript"):
        raise ValueError(f"--format {format!r}: expected onnx or torchscript")
    loaded = load_probe(ckpt_path)
    graph = probe_graph(loaded)
    contract = loaded.contract
    example = torch.randn(batch, len(contract.channel_names), contract.settings.sensor_length)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            quiet_exporter_notes()
            if format == "onnx":
                torch.onnx.export(
                    graph, (example,), str(temporary), input_names=["sensor"], output_names=["probs"],
                    dynamic_shapes={"sensor": {0: torch.export.Dim("windows", min=1)}},
                    opset_version=ONNX_OPSET, dynamo=True, verbose=False, external_data=False,
                )
            else:
                torch.jit.save(torch.jit.trace(graph, (example,), check_trace=False), str(temporary))
            difference = exported_difference(graph, temporary, format, example)
        if not difference <= EXPORT_TOLERANCE:
            raise ValueError(
                f"detach export: the {format} graph for {output} gives probabilities up to {difference:.3g} away "
                f"from the checkpoint's model on its runtime (accepted: {EXPORT_TOLERANCE:g}); nothing was written"
            )
        os.replace(temporary, output)
    finally:
        if temporary.exists():
            temporary.unlink()
    description = {
        "format": format,
        "model_file": output.name,
        "input": {"name": "sensor", "shape": ["windows", len(contract.channel_names), contract.settings.sensor_length],
                  "dtype": "float32", "what": "preprocessed windows (docs/deploy.md)"},
        "output": {"name": "probs", "shape": [1 if graph.pool else "windows", len(contract.class_names)]},
        "class_names": list(contract.class_names),
        "checkpoint": str(Path(ckpt_path).resolve()),
        "model_class": str(loaded.hparams.get("_class_path", "")),
        CONTRACT_KEY: contract.to_dict(),
    }
    json_path = output.with_suffix(".json")
    write_atomically(json_path, json.dumps(description, indent=2))
    return output, json_path, difference


def export_main(argv: Sequence[str] | None = None) -> None:
    """`detach export --ckpt_path <probe> --output model.onnx [--format torchscript]`."""
    parser = PlainErrorParser(
        prog="detach export",
        description="Export a probe checkpoint to one ONNX or TorchScript graph (preprocessed sensor "
        "windows → class probabilities) and a model.json with its preprocessing contract.",
    )
    parser.add_argument("--ckpt_path", required=True,
                        help="probe checkpoint (runs/<dataset>/probe/checkpoints/last.ckpt)")
    parser.add_argument("--output", default="model.onnx", help="model file; model.json is written beside it")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default=None,
                        help="default: from the output suffix (.onnx → onnx, else torchscript)")
    args = parser.parse_args(argv)
    chosen: ExportFormat = args.format or ("onnx" if str(args.output).endswith(".onnx") else "torchscript")
    model, description, difference = export_model(args.ckpt_path, args.output, chosen)
    runtime = "onnxruntime" if chosen == "onnx" else "torch.jit.load"
    print(f"wrote {model} ({model.stat().st_size} bytes) and {description}; on {runtime}, "
          f"{' and '.join(map(str, CHECK_BATCHES))} windows give the checkpoint's probabilities "
          f"within {difference:.1e}")
