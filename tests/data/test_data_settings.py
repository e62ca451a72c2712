"""Data and window settings out of range are refused when made, each named as the config spells it."""

from __future__ import annotations

import pytest

from detach_pl.cli import main
from detach_pl.data.csv_video import CsvVideoDataModule
from detach_pl.data.hwu_usp import HwuUspDataModule
from detach_pl.data.synthetic import SyntheticKitchenDataModule
from detach_pl.data.windows import WindowSettings
from helpers import DEMO, TINY_DATA

BAD_DATA = [
    ("batch_size", 0, ">= 1"),
    ("probe_batch_size", 0, ">= 1 (or null: batch_size)"),
    ("num_workers", -1, ">= 0 (or null: chosen from the CPUs)"),
    ("num_frames", 2, ">= 3 (the temporal video encoder needs frame differences)"),
    ("pretrain_windows", "some", "one of ['all', 'labelled']"),
    ("probe_unit", "run", "one of ['window', 'sequence']"),
    ("standardize", "zscore", "one of ['keep_zeros', 'affine']"),
    ("purpose", "train", "one of ['auto', 'alignment', 'probe']"),
]

BAD_WINDOWS = [
    ("window_seconds", 0.0, "> 0"),
    ("hop_seconds", -1.0, "> 0"),
    ("sensor_length", 4, ">= 8"),
    ("lowpass_cutoff", 1.0, "in (0, 1)"),
    ("lowpass_cutoff", 0.0, "in (0, 1)"),
    ("lowpass_order", 0, ">= 1"),
    ("nan_channel_fraction", 1.5, "in [0, 1]"),
    ("nan_policy", "drop", "one of ['zero_nans', 'zero_channel']"),
    ("filter_scope", "file", "one of ['window', 'run']"),
    ("resample_grid", "cubic", "one of ['half_pixel', 'endpoints']"),
    ("label_rule", "first", "one of ['majority', 'center']"),
    ("min_label_fraction", 0.0, "in (0, 1]"),
    ("image_size", 4, ">= 8"),
]


@pytest.mark.parametrize(("name", "value", "expected"), BAD_DATA, ids=[name for name, _, _ in BAD_DATA])
def test_a_data_setting_out_of_range_is_named(name: str, value: object, expected: str) -> None:
    with pytest.raises(ValueError) as error:
        SyntheticKitchenDataModule(**{name: value})
    assert str(error.value) == f"data.init_args.{name}={value!r} must be {expected}"


@pytest.mark.parametrize(("name", "value", "expected"), BAD_WINDOWS,
                         ids=[f"{name}={value}" for name, value, _ in BAD_WINDOWS])
def test_a_window_setting_out_of_range_is_named(name: str, value: object, expected: str) -> None:
    with pytest.raises(ValueError) as error:
        WindowSettings(**{name: value})
    assert str(error.value) == f"data.init_args.windows.{name}={value!r} must be {expected}"


def test_the_edges_of_the_window_ranges_are_accepted() -> None:
    WindowSettings(min_label_fraction=1.0, nan_channel_fraction=0.0, image_size=8, sensor_length=8, lowpass_order=1)
    SyntheticKitchenDataModule(num_frames=3, num_workers=0, probe_batch_size=None)


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--data.init_args.windows.image_size", "4", "data.init_args.windows.image_size=4 must be >= 8"),
    ("--data.init_args.world.sensor_noise", "-1", "data.init_args.world.sensor_noise=-1.0 must be a number in [0, 10]"),
    ("--data.init_args.num_frames", "2",
     "data.init_args.num_frames=2 must be >= 3 (the temporal video encoder needs frame differences)"),
])
def test_the_cli_shows_a_nested_settings_own_message(in_scratch, flag: str, value: str, message: str) -> None:
    """A dataclass inside the data settings is made by jsonargparse, which would wrap its error in a union dump."""
    with pytest.raises(ValueError) as error:
        main(["fit", "--config", str(DEMO / "stage1.yaml"), *TINY_DATA, flag, value])
    assert str(error.value) == message
    assert not (in_scratch / "runs").exists()


def own_data(**settings: object) -> CsvVideoDataModule:
    return CsvVideoDataModule(root="own", num_places=3, **settings)


def hwu_data(**settings: object) -> HwuUspDataModule:
    return HwuUspDataModule(root="hwu", **settings)


@pytest.mark.parametrize(("make", "name", "value", "null"), [
    (own_data, "channels", [], " (or null: the first run's columns)"),
    (own_data, "classes", ["a", "a"], " (or null: every label found)"),
    (hwu_data, "classes", ["tea", "tea"], ""),
])
def test_lists_of_names_need_one_name_and_no_repeats(make, name: str, value: list[str], null: str) -> None:
    with pytest.raises(ValueError) as error:
        make(**{name: value})
    expected = f"must be a list of at least one name, none repeated{null}"
    assert str(error.value) == f"data.init_args.{name}={value!r} {expected}"
