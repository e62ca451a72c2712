"""The DataModule every dataset shares (`WindowDataModule`): splits, standardisation, purpose, loaders.

On the synthetic kitchen at a tiny size (three 50-s runs, 16-pixel frames, one cache for the
module), each compared with a direct computation on the generated runs; and on the Opportunity++
stand-in where the test predates the synthetic kitchen.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from detach_pl.data.cache import WindowCache
from detach_pl.data.datamodule import labels_as_classes
from detach_pl.data.synthetic import SyntheticKitchenConfig, SyntheticKitchenDataModule, generate_run
from detach_pl.data.windows import WindowSettings
from detach_pl.testing.opportunity import StandinRelease
from opportunity_helpers import AMBIENT, TEST, TRAIN, VAL, expected_standardisation, module, nan_statistics

WORLD = SyntheticKitchenConfig(num_runs=3, run_seconds=50.0)
RUNS = ["run00", "run01", "run02"]
WINDOWS_PER_RUN = 48  # 2-s windows every second over 50 s


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the module: every kitchen below shares its cache (same key)."""
    return tmp_path_factory.mktemp("kitchen_cache")


def kitchen(cache_dir: Path, **kwargs) -> SyntheticKitchenDataModule:
    """A tiny synthetic-kitchen DataModule: run00 trains, run01 validates, run02 tests."""
    options = dict(
        cache_dir=str(cache_dir), world=WORLD, windows=WindowSettings(image_size=16), num_frames=4,
        batch_size=8, num_workers=0, progress=False, train_runs=["run00"], val_runs=["run01"],
        test_runs=["run02"],
    )
    options.update(kwargs)
    return SyntheticKitchenDataModule(**options)


def raw_statistics(runs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the generated runs' non-NaN raw samples (std 1 if constant)."""
    world = dataclasses.replace(WORLD, image_size=16)
    sensors = [generate_run(world, RUNS.index(run)).sensor for run in runs]
    return nan_statistics(np.concatenate(sensors).astype(np.float64))


# ---- splits and standardisation ----------------------------------------------------------------


def test_default_splits_hold_out_the_last_two_runs_and_the_config_overrides_them(cache_dir: Path) -> None:
    default = kitchen(cache_dir, train_runs=None, val_runs=None, test_runs=None)
    splits = [default.split(name) for name in ("train_runs", "val_runs", "test_runs")]
    assert splits == [["run00"], ["run01"], ["run02"]]
    chosen = kitchen(cache_dir, train_runs=["run02", "run00"])
    assert chosen.split("train_runs") == ["run02", "run00"] and chosen.cache_path == default.cache_path


def test_excluded_runs_leave_the_splits(cache_dir: Path) -> None:
    class WithoutRun01(SyntheticKitchenDataModule):
        def excluded_runs(self) -> set[str]:
            return {"run01"}

    data = WithoutRun01(
        cache_dir=str(cache_dir), world=WORLD, windows=WindowSettings(image_size=16), progress=False,
        train_runs=["run00", "run01"], val_runs=["run01"], test_runs=["run02"],
    )
    assert data.configured_runs("train_runs") == ["run00", "run01"]
    assert data.split("train_runs") == ["run00"] and data.split("val_runs") == []


def test_an_unknown_run_is_named_with_its_setting(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"data.train_runs: unknown run\(s\) \['run07'\]"):
        kitchen(cache_dir, train_runs=["run07"], purpose="alignment").setup("fit")


@pytest.mark.parametrize("train_runs", [["run00"], ["run00", "run01"]])
def test_statistics_are_those_of_the_training_runs_raw_samples(cache_dir: Path, train_runs: list[str]) -> None:
    data = kitchen(cache_dir, train_runs=train_runs, purpose="probe")
    data.setup("fit")
    mean, std = raw_statistics(train_runs)
    np.testing.assert_allclose(data.mean, mean, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(data.std, std, rtol=1e-5, atol=1e-5)


def test_statistics_come_from_the_training_runs_and_a_new_split_reuses_the_cache(
    release: StandinRelease, tmp_path: Path
) -> None:
    runs = TRAIN + VAL + TEST
    first = module(release.root, tmp_path / "cache", runs=runs)
    first.prepare_data()
    first.setup("fit")
    other = module(release.root, tmp_path / "cache", runs=runs, train_runs=["S2-ADL4"], test_runs=["S1-ADL1"])
    assert other.cache_path == first.cache_path
    other.setup("fit")
    mean, std = expected_standardisation(release, ["S2-ADL4"], AMBIENT)
    np.testing.assert_allclose(other.mean, mean, rtol=1e-5, atol=1e-4)
    assert not np.allclose(other.mean, first.mean)
    state = other.state_dict()
    assert state["train_runs"] == ["S2-ADL4"] and np.allclose(state["mean"], other.mean)
    assert len(list((tmp_path / "cache").glob("*.h5"))) == 1


# ---- the purpose and what it serves ------------------------------------------------------------


def test_purpose_auto_without_a_model_is_refused_and_a_models_purpose_is_kept(cache_dir: Path) -> None:
    data = kitchen(cache_dir)
    with pytest.raises(ValueError, match="purpose is 'auto' and no model states its data purpose"):
        data.setup("fit")
    model = SimpleNamespace(data_purpose="probe")
    data.trainer = SimpleNamespace(lightning_module=model, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    data.setup("fit")
    assert data.purpose == "probe" and "video" not in data.datasets["train"][0]
    model.data_purpose = "alignment"
    assert data.resolved_purpose() == "probe"  # decided once
    refused = r"data.init_args.purpose='pretraining' must be one of \['auto', 'alignment', 'probe'\]"
    with pytest.raises(ValueError, match=refused):
        kitchen(cache_dir, purpose="pretraining")


def test_alignment_and_probe_windows(cache_dir: Path) -> None:
    everything = kitchen(cache_dir, purpose="alignment")
    everything.setup("fit")
    cache = everything.cache
    labelled = {run: int(((cache.window_run == RUNS.index(run)) & (cache.label >= 0)).sum()) for run in RUNS}
    assert all(count > 0 for count in labelled.values())
    assert [len(everything.datasets[split]) for split in ("train", "val", "test")] == [WINDOWS_PER_RUN] * 3
    item = everything.datasets["train"][0]
    assert item["video"].shape == (4, 16, 16, 3) and item["video"].dtype == torch.uint8
    assert set(item) == {"index", "sensor", "label", "place", "sequence", "video"}
    chosen = kitchen(cache_dir, purpose="alignment", pretrain_windows="labelled")
    chosen.setup("fit")
    assert [len(chosen.datasets[split]) for split in ("train", "val")] == [labelled["run00"], labelled["run01"]]
    assert len(chosen.datasets["test"]) == WINDOWS_PER_RUN  # the test keeps every window
    probe = kitchen(cache_dir, purpose="probe")
    probe.setup("fit")
    assert [len(probe.datasets[split]) for split in ("train", "val", "test")] == [labelled[run] for run in RUNS]
    assert bool((probe.datasets["test"].label >= 0).all()) and "video" not in probe.datasets["test"][0]


def test_batch_size_follows_the_purpose(cache_dir: Path) -> None:
    assert kitchen(cache_dir, purpose="alignment", probe_batch_size=3).batch_size == 8
    assert kitchen(cache_dir, purpose="probe", probe_batch_size=3).batch_size == 3
    assert kitchen(cache_dir, purpose="probe", probe_batch_size=None).batch_size == 8
    sequences = kitchen(cache_dir, purpose="probe", probe_unit="sequence", probe_batch_size=3)
    assert sequences.batch_size == 3
    sequences.sequence_batch_size = 2  # a dataset that batches runs (HWU-USP's trials_per_batch)
    assert sequences.batch_size == 2 and kitchen(cache_dir, purpose="probe", probe_batch_size=3).batch_size == 3


def test_alignment_training_set_is_the_training_windows(cache_dir: Path) -> None:
    data = kitchen(cache_dir, purpose="alignment", train_runs=["run00", "run01"])
    data.setup("fit")
    training = data.alignment_training_set()
    train = data.datasets["train"]
    assert training.sensor.shape == (2 * WINDOWS_PER_RUN, len(data.data_info.channel_names), 128)
    assert torch.equal(training.sensor, train.sensor) and torch.equal(training.place, train.place)
    expected_place = data.cache.place[train.windows]
    np.testing.assert_array_equal(training.place.numpy(), expected_place)


def test_window_labels_hook_maps_the_labels_without_a_rebuild(cache_dir: Path) -> None:
    class OpenOrNull(SyntheticKitchenDataModule):
        def window_labels(self, cache: WindowCache) -> np.ndarray:
            return np.where(cache.label >= 0, 0, -1)

    plain = kitchen(cache_dir, purpose="probe")
    plain.setup("fit")
    mapped = OpenOrNull(
        cache_dir=str(cache_dir), world=WORLD, windows=WindowSettings(image_size=16), progress=False,
        train_runs=["run00"], val_runs=["run01"], test_runs=["run02"], purpose="probe",
    )
    mapped.setup("fit")
    assert mapped.cache_path == plain.cache_path
    np.testing.assert_array_equal(mapped.cache.label, np.where(plain.cache.label >= 0, 0, -1))
    assert set(mapped.datasets["train"].label.tolist()) == {0}


# ---- loaders ---------------------------------------------------------------------------------


def test_training_order_depends_only_on_the_seed_and_evaluation_serves_every_window_once(cache_dir: Path) -> None:
    def first_epoch(seed: int) -> list[list[int]]:
        data = kitchen(cache_dir, purpose="probe", probe_batch_size=4, shuffle_seed=seed)
        data.setup("fit")
        return [batch["index"].tolist() for batch in data.train_dataloader()]

    order = first_epoch(0)
    assert order == first_epoch(0) and order != first_epoch(1)
    flat = [index for batch in order for index in batch]
    assert all(len(batch) == 4 for batch in order) and len(set(flat)) == len(flat)
    data = kitchen(cache_dir, purpose="probe", probe_batch_size=4)
    data.setup("fit")
    served = torch.cat([batch["index"] for batch in data.val_dataloader()])
    assert served.tolist() == list(range(len(data.datasets["val"])))


# ---- preparing and its report -----------------------------------------------------------------


def test_prepare_data_writes_the_report_beside_the_cache_and_a_second_module_reads_it(tmp_path: Path) -> None:
    first = kitchen(tmp_path / "cache")
    first.prepare_data()
    stored = json.loads(first.report_path.read_text())
    assert stored == first.report and [run["name"] for run in stored["runs"]] == RUNS
    assert [run["windows"] for run in stored["runs"]] == [WINDOWS_PER_RUN] * 3
    assert not [path for path in (tmp_path / "cache").iterdir() if ".tmp" in path.name]
    second = kitchen(tmp_path / "cache")
    second.prepare_data()
    assert second.reports == first.reports and second.report == first.report
    summary = second.summary()
    assert f"cache: {first.cache_path}" in summary and "run01: 48 windows, sensor 50.0 s" in summary


def test_labels_stored_by_name_map_to_the_classes_in_force() -> None:
    names = ["close", "open", "walk"]
    stored = np.array([-1, 0, 1, 2, 2, -1, 0])
    mapped = labels_as_classes(stored, names, ["open", "close", "idle"])  # "walk" is not a class here
    expected = [{"close": 1, "open": 0}.get(names[k], -1) if k >= 0 else -1 for k in stored]
    np.testing.assert_array_equal(mapped, expected)
    assert mapped.dtype == np.int64
    np.testing.assert_array_equal(labels_as_classes(np.array([-1, -1]), [], ["idle"]), [-1, -1])
