"""`detach export`: one graph from preprocessed sensor windows to class probabilities.

The graph holds the sensor encoders f_s and g_s, the joint embedding u_s, the probe's
standardisation and its Linear layer, and a softmax: (B, C, L) float32 → (B, K) for a window
probe; a sequence probe takes the (W, C, L) windows of one recording and mean-pools their
embeddings → (1, K). `model.json` beside it holds the preprocessing contract and class names, so
raw rows can be turned into the graph's input on a machine with nothing else
(`StreamingRecognizer.from_export`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from detach_pl.deploy.contract import CONTRACT_KEY, LoadedProbe, load_probe
from detach_pl.io import write_atomically
from detach_pl.modules.probe import LinearProbeModule
from detach_pl.nn import joint_embedding

ExportFormat = Literal["onnx", "torchscript"]
#: ONNX opset of the exported graph (torch's exporter, `dynamo=True`: the TorchScript-based one
#: cannot export the adaptive average pool of f_s when the pool size does not divide the length).
ONNX_OPSET = 18


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


def export_model(
    ckpt_path: str | Path, output: str | Path, format: ExportFormat = "onnx", batch: int = 2
) -> tuple[Path, Path]:
    """Write the graph (`output`) and its `model.json` (same folder, `<stem>.json`).

    Args:
        ckpt_path: Probe checkpoint.
        output: The model file (`.onnx` or `.pt`).
        format: "onnx" (dynamic batch axis, opset `ONNX_OPSET`) or "torchscript" (traced).
        batch: Batch size of the example input used for tracing.

    Returns:
        The model file and the JSON file.
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
        with torch.no_grad():
            if format == "onnx":
                torch.onnx.export(
                    graph, (example,), str(temporary), input_names=["sensor"], output_names=["probs"],
                    dynamic_shapes={"sensor": {0: torch.export.Dim("windows", min=1)}},
                    opset_version=ONNX_OPSET, dynamo=True, verbose=False, external_data=False,
                )
            else:
                torch.jit.save(torch.jit.trace(graph, (example,), check_trace=False), str(temporary))
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
    return output, json_path


def export_main(argv: Sequence[str] | None = None) -> None:
    """`detach export --ckpt_path <probe> --output model.onnx [--format torchscript]`."""
    parser = argparse.ArgumentParser(
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
    model, description = export_model(args.ckpt_path, args.output, chosen)
    print(f"wrote {model} ({model.stat().st_size} bytes) and {description}")
