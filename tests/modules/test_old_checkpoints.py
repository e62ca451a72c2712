"""Checkpoints written before the probe and the supervised ceiling became siblings still load.

`fixtures/checkpoint_layouts_6d5f406.json` holds what such checkpoints contain, taken from tiny
runs of commit 6d5f406 (`detach fit` and the Python API): hyper-parameters as written and the
state-dict layout (key, shape, dtype). The real files are megabytes of encoder weights; the tests
rebuild them from the layout with seeded values and check that every tensor lands where it did.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from detach_pl.cli import main
from detach_pl.modules import LinearProbeModule, SupervisedSensorModule
from helpers import DEMO, TINY_DATA

LAYOUTS = json.loads((Path(__file__).parent / "fixtures" / "checkpoint_layouts_6d5f406.json").read_text())
CLASSES = {"LinearProbeModule": LinearProbeModule, "SupervisedSensorModule": SupervisedSensorModule}


def old_state_dict(layout: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded tensors in the layout's keys, shapes and dtypes (variances and σ positive)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, spec in layout["state_dict"].items():
        dtype = getattr(torch, spec["dtype"])
        if dtype == torch.bool:
            state[key] = torch.ones(spec["shape"], dtype=dtype)
        elif dtype.is_floating_point:
            value = torch.randn(spec["shape"], generator=generator, dtype=dtype)
            positive = key.endswith(("running_var", "classifier.0.std"))
            state[key] = value.abs() + 0.5 if positive else value
        else:
            state[key] = torch.randint(1, 100, spec["shape"], generator=generator, dtype=dtype)
    return state


def write_old_checkpoint(layout: dict, path: Path) -> dict[str, torch.Tensor]:
    state = old_state_dict(layout)
    torch.save(
        {
            "state_dict": state,
            "hyper_parameters": layout["hyper_parameters"],
            "pytorch-lightning_version": layout["pytorch-lightning_version"],
            "epoch": 0,
            "global_step": 2,
        },
        path,
    )
    return state


@pytest.mark.parametrize("layout", LAYOUTS, ids=[f"{e['class']}-{e['written_by'].split()[0]}" for e in LAYOUTS])
def test_old_checkpoints_load_every_tensor_where_it_was(layout: dict, tmp_path: Path) -> None:
    path = tmp_path / "old.ckpt"
    state = write_old_checkpoint(layout, path)
    model = CLASSES[layout["class"]].load_from_checkpoint(path, map_location="cpu").eval()
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    # The classifier reads u_s = [normalize(z_s), normalize(h_s)] through the stored standardiser.
    sensor = torch.randn(3, model.data_info.num_channels, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z_s, h_s = model.encoders["sensor_spatial"](sensor), model.encoders["sensor_temporal"](sensor)
    u_s = torch.cat([z_s / z_s.norm(dim=1, keepdim=True), h_s / h_s.norm(dim=1, keepdim=True)], dim=1)
    if "classifier.0.mean" in state:
        u_s = (u_s - state["classifier.0.mean"]) / state["classifier.0.std"]
    expected = u_s @ state["classifier.1.weight"].T + state["classifier.1.bias"]
    with torch.no_grad():
        torch.testing.assert_close(model(sensor), expected, rtol=1e-4, atol=1e-4)


def test_an_old_supervised_checkpoint_hands_its_encoders_to_the_probe(tmp_path: Path) -> None:
    layout = next(e for e in LAYOUTS if e["class"] == "SupervisedSensorModule")
    path = tmp_path / "supervised.ckpt"
    state = write_old_checkpoint(layout, path)
    info = SupervisedSensorModule.load_from_checkpoint(path, map_location="cpu").data_info
    probe = LinearProbeModule(
        data_info=info, encoder=layout["hyper_parameters"]["encoder"], encoder_checkpoint=str(path)
    )
    probe.setup("fit")
    for key, value in probe.encoders.state_dict().items():
        assert torch.equal(value, state[f"encoders.{key}"]), key
    assert not any(p.requires_grad for p in probe.encoders.parameters())


@pytest.mark.parametrize("config", ["supervised.yaml", "probe_random.yaml"])
def test_detach_test_runs_on_an_old_cli_checkpoint(config: str, in_scratch: Path) -> None:
    """`detach test --ckpt_path` re-parses the stored hyper-parameters (class path included)."""
    cls = "SupervisedSensorModule" if config == "supervised.yaml" else "LinearProbeModule"
    layout = next(e for e in LAYOUTS if e["class"] == cls and "_class_path" in e["hyper_parameters"])
    path = in_scratch / "old.ckpt"
    write_old_checkpoint(layout, path)
    args = ["test", "--config", str(DEMO / config), *TINY_DATA, "--data.init_args.cache_dir", str(in_scratch / "cache"),
            "--trainer.logger", "false", "--ckpt_path", str(path)]
    if config == "probe_random.yaml":
        args += ["--model.init_args.standardize_features", "true"]
    env = os.environ.pop("PL_GLOBAL_SEED", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cli = main(args)
    finally:
        if env is not None:
            os.environ["PL_GLOBAL_SEED"] = env
    assert type(cli.model).__name__ == cls
    metrics = json.loads(next(in_scratch.rglob("test_metrics.json")).read_text())
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    assert len(metrics["confusion_matrix"]) == cli.model.data_info.num_classes
