"""Settings out of range are refused when the module is made, each named as the config spells it."""

from __future__ import annotations

import re

import pytest

from detach_pl.cli import main
from detach_pl.data.info import DataInfo
from detach_pl.modules import (
    GlobalAlignmentModule,
    LinearProbeModule,
    SpatialGroundingModule,
    SupervisedSensorModule,
    TemporalAlignmentModule,
)
from detach_pl.settings import check_settings, fraction
from helpers import DEMO, TINY_DATA, tiny_encoder

INFO = DataInfo(num_channels=4, num_classes=3, num_places=3)
MODULES = {
    "stage1": SpatialGroundingModule,
    "stage2": TemporalAlignmentModule,
    "global": GlobalAlignmentModule,
    "supervised": SupervisedSensorModule,
    "probe": LinearProbeModule,
}

BAD_SETTINGS = [
    ("stage1", "num_clusters", 0, ">= 1 (or null: the places)"),
    ("stage1", "prototype_temperature", 0.0, "> 0"),
    ("stage1", "memory_momentum", 1.0, "in [0, 1)"),
    ("stage1", "confidence_quantile", 1.5, "in [0, 1]"),
    ("stage1", "min_cluster_size", -1, ">= 0"),
    ("stage1", "balance_power", -1.0, ">= 0"),
    ("stage1", "balance_max_ratio", 0.5, ">= 1"),
    ("stage1", "balance_clamp", "clip", "one of ['raise_small', 'cap_large']"),
    ("stage1", "cluster_loss_reduction", "sum", "one of ['weighted_mean', 'mean']"),
    ("stage1", "confident_windows", "batch", "one of ['step', 'epoch']"),
    ("stage1", "video_in_refine", "off", "one of ['train', 'frozen']"),
    ("stage1", "alpha", -0.5, ">= 0"),
    ("stage1", "beta", -1.5, ">= 0"),
    ("stage1", "video_gate", 1.2, "in [0, 1]"),
    ("stage1", "video_start_epoch", -1, ">= 0"),
    ("stage1", "refine_start_epoch", 3, ">= video_start_epoch (5)"),
    ("stage1", "cluster_loss_on", "some", "one of ['confident', 'all']"),
    ("stage1", "warp_start_epoch", -2, ">= 0"),
    ("stage1", "warp_sigma", -0.1, ">= 0"),
    ("stage1", "warp_phase_end", 0.0, "> 0"),
    ("stage1", "kmeans_metric", "manhattan", "one of ['euclidean', 'cosine']"),
    ("stage1", "kmeans_inits", 0, ">= 1"),
    ("stage1", "kmeans_iters", 0, ">= 1"),
    ("stage1", "dissolve_small", "none", "one of ['cluster', 'members']"),
    ("stage1", "encode_batch_size", 0, ">= 1"),
    ("stage1", "lr", 0.0, "> 0"),
    ("stage1", "weight_decay", -1e-4, ">= 0"),
    ("stage2", "temperature", -0.1, "> 0"),
    ("stage2", "lambda_hard", 0.5, ">= 1"),
    ("stage2", "ema_momentum", 1.0, "in [0, 1)"),
    ("stage2", "temporal_similarity", "both", "one of ['within', 'cross']"),
    ("stage2", "warp_sigma", -1.0, ">= 0"),
    ("stage2", "warp_phase_end", -3.0, "> 0"),
    ("stage2", "frozen_mode", "test", "one of ['train', 'eval']"),
    ("stage2", "weights_gram_dtype", "float16", "one of ['float32', 'bfloat16']"),
    ("global", "min_temperature", 0.0, "> 0"),
    ("global", "initial_temperature", 0.005, ">= min_temperature (0.01)"),
    ("global", "warp_sigma", -0.2, ">= 0"),
    ("supervised", "warp_sigma", -0.2, ">= 0"),
    ("probe", "lr", -1e-3, "> 0"),
]


@pytest.mark.parametrize(("module", "name", "value", "expected"), BAD_SETTINGS,
                         ids=[f"{module}-{name}" for module, name, _, _ in BAD_SETTINGS])
def test_a_setting_out_of_range_is_named_with_what_was_expected(module: str, name: str, value: object,
                                                                expected: str) -> None:
    with pytest.raises(ValueError) as error:
        MODULES[module](data_info=INFO, encoder=tiny_encoder(), **{name: value})
    assert str(error.value) == f"model.init_args.{name}={value!r} must be {expected}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_defaults_pass(module: str) -> None:
    MODULES[module](data_info=INFO, encoder=tiny_encoder())


def test_every_bad_setting_is_named_in_one_message() -> None:
    with pytest.raises(ValueError) as error:
        SpatialGroundingModule(data_info=INFO, encoder=tiny_encoder(), confidence_quantile=2.0, kmeans_iters=0)
    assert str(error.value) == ("model.init_args.confidence_quantile=2.0 must be in [0, 1]; "
                                "model.init_args.kmeans_iters=0 must be >= 1")


@pytest.mark.parametrize(("value", "include_one", "ok"), [(0.0, True, True), (1.0, True, True), (1.0, False, False),
                                                          (0.999, False, True), (-0.001, True, False)])
def test_fraction_bounds(value: float, include_one: bool, ok: bool) -> None:
    check = [fraction("x", value, include_one=include_one)]
    if ok:
        check_settings(check)
    else:
        with pytest.raises(ValueError, match=re.escape(f"model.init_args.x={value!r} must be in [0, 1")):
            check_settings(check)


def test_the_cli_names_the_setting_before_any_data_is_read(in_scratch) -> None:
    with pytest.raises(ValueError) as error:
        main(["fit", "--config", str(DEMO / "stage1.yaml"), *TINY_DATA, "--model.init_args.num_clusters", "0"])
    assert str(error.value) == "model.init_args.num_clusters=0 must be >= 1 (or null: the places)"
    assert not (in_scratch / "runs").exists()
