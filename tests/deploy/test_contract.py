"""The preprocessing contract travels in the probe checkpoint; wrong checkpoints are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detach_pl.deploy.contract import CONTRACT_KEY, PreprocessingContract, load_probe, read_contract
from helpers import tiny_datamodule


def test_probe_checkpoint_carries_the_training_datamodules_contract(probe_ckpt, trained) -> None:
    contract = load_probe(probe_ckpt).contract
    data = tiny_datamodule(trained / "data/cache", train_runs=["run00"], val_runs=["run01"], test_runs=["run02"],
                           purpose="probe")  # as the probe fit resolved it from the model
    data.setup("test")
    np.testing.assert_allclose(contract.mean, data.mean, rtol=1e-6)
    np.testing.assert_allclose(contract.std, data.std, rtol=1e-6)
    assert contract.channel_names == data.data_info.channel_names
    assert contract.class_names == data.data_info.class_names
    assert contract.settings == data.windows and contract.standardize == "keep_zeros"
    assert contract.probe_unit == "window" and contract.dataset == "synthetic"
    world = data.world
    assert abs(contract.sensor_rate_hz - world.sensor_rate_hz) < 0.02 * world.sensor_rate_hz
    assert contract.extra["source"]["seed"] == world.seed
    assert PreprocessingContract.from_dict(contract.to_dict()) == contract


def test_stage_checkpoints_and_old_probes_are_refused_by_name(probe_ckpt, tmp_path) -> None:
    checkpoint = torch.load(probe_ckpt, map_location="cpu", weights_only=True)
    stage2 = dict(checkpoint, hyper_parameters={**checkpoint["hyper_parameters"],
                                                "_class_path": "detach_pl.modules.TemporalAlignmentModule"})
    torch.save(stage2, tmp_path / "stage2.ckpt")
    with pytest.raises(ValueError, match=r"stage-2 .*checkpoint; prediction needs a linear-probe checkpoint"):
        load_probe(tmp_path / "stage2.ckpt")
    stage1 = dict(checkpoint, hyper_parameters={"_class_path": "detach_pl.modules.SpatialGroundingModule"})
    torch.save(stage1, tmp_path / "stage1.ckpt")
    with pytest.raises(ValueError, match="stage-1"):
        load_probe(tmp_path / "stage1.ckpt")
    old = {key: value for key, value in checkpoint.items()}
    for key, value in checkpoint.items():
        if isinstance(value, dict) and CONTRACT_KEY in value:
            old[key] = {k: v for k, v in value.items() if k != CONTRACT_KEY}
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match="without a preprocessing contract.*train the probe again"):
        load_probe(tmp_path / "old.ckpt")


def test_contract_versions_and_fields_are_checked(probe_ckpt, tmp_path) -> None:
    values = read_contract(probe_ckpt).to_dict()
    with pytest.raises(ValueError, match="version 99"):
        PreprocessingContract.from_dict({**values, "version": 99})
    with pytest.raises(ValueError, match="unknown preprocessing contract field"):
        PreprocessingContract.from_dict({**values, "colour": "red"})
    with pytest.raises(ValueError, match="standard deviation"):
        PreprocessingContract.from_dict({**values, "std": [0.0] * len(values["std"])})
