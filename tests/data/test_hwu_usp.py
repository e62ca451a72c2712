"""HWU-USP from the raw release, on generated stand-ins in both folder trees (hwu_standin.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detach_pl.data.dataset import WindowDataset
from detach_pl.data.hwu_usp.ambient import choose_timestamp_unit, read_ambient_csv
from detach_pl.data.hwu_usp.datamodule import HwuUspDataModule, fold_subjects
from detach_pl.data.hwu_usp.discovery import DEFAULT_CHANNELS, read_column_names
from detach_pl.data.readings import RunReading
from detach_pl.data.sequences import SequenceDataset, collate_sequences
from detach_pl.data.windows import WindowSettings
from detach_pl.modules import LinearProbeModule
from detach_pl.testing.hwu_usp import (
    AMBIENT_COLUMNS,
    PLACE_COLUMNS,
    StandinRelease,
    iter_scene_frames,
    write_standin,
    write_video,
)
from helpers import tiny_encoder

CLASSES = ["cereals", "tea", "dishes"]
SUBJECTS = (1, 2, 3, 4, 5, 6)


def make_module(root: Path, cache_dir: Path | None = None, **kwargs) -> HwuUspDataModule:
    """A stand-in HwuUspDataModule at test sizes."""
    options = dict(
        root=str(root), cache_dir=str(cache_dir or root.parent / "cache"), classes=CLASSES, num_folds=3,
        windows=WindowSettings(image_size=16), num_frames=4, batch_size=8, num_workers=0, progress=False,
    )
    options.update(kwargs)
    return HwuUspDataModule(**options)


@pytest.fixture(scope="module")
def authors(tmp_path_factory: pytest.TempPathFactory) -> StandinRelease:
    """The dataset authors' tree: dense 0/1 table, relative seconds, mpeg4 (never modified)."""
    return write_standin(tmp_path_factory.mktemp("hwu") / "authors", layout="authors", subjects=SUBJECTS)


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> StandinRelease:
    """A flat folder: epoch-ms clock, missing rows and empty cells, h264 (never modified)."""
    root = tmp_path_factory.mktemp("hwu") / "flat"
    return write_standin(
        root, layout="flat", subjects=(1, 2), timestamp_format="epoch_ms", gaps=True, codec="h264", seed=1
    )


@pytest.fixture(scope="module")
def prepared(authors: StandinRelease) -> HwuUspDataModule:
    """The authors' stand-in with its cache built, set up for alignment (fold 1)."""
    module = make_module(authors.root, purpose="alignment")
    module.setup("fit")
    return module


@pytest.fixture
def small(tmp_path: Path) -> StandinRelease:
    """A private 2 × 2 stand-in that a test may damage."""
    return write_standin(tmp_path / "small", subjects=(1, 2), activities=("tea", "dishes"), seconds=12.0)


def make_small_module(release: StandinRelease, **kwargs) -> HwuUspDataModule:
    """A module over the `small` stand-in (2 subjects: one fold, validated on its test subjects)."""
    options = dict(classes=["tea", "dishes"], num_folds=1, val_rule="test_fold")
    options.update(kwargs)
    return make_module(release.root, **options)


def read_small_trial(release: StandinRelease, name: str) -> RunReading:
    """`read_trial` of one trial of the `small` stand-in, as `prepare_data` reads it."""
    module = make_small_module(release)
    return module.read_trial(next(trial for trial in module.trials() if trial.name == name))


def channel_columns(channels: list[str]) -> list[int]:
    return [AMBIENT_COLUMNS.index(name) for name in channels]


# ---- discovery and parsing -----------------------------------------------------------------


@pytest.mark.parametrize("tree", ["authors", "flat"])
def test_discovery_finds_every_trial_in_either_tree(tree: str, request: pytest.FixtureRequest) -> None:
    release: StandinRelease = request.getfixturevalue(tree)
    module = make_module(release.root)
    trials = {trial.name: trial for trial in module.trials()}
    assert sorted(trials) == sorted(release.trials)
    for name, truth in release.trials.items():
        assert trials[name].activity == truth.activity
        assert trials[name].subject == truth.subject
        assert trials[name].video == truth.video.resolve()
        assert trials[name].ambient == truth.ambient.resolve()  # never the wrist-IMU CSV
    assert module.skipped_trials == {}


@pytest.mark.parametrize("tree", ["authors", "flat"])
def test_recordings_match_the_generator(tree: str, request: pytest.FixtureRequest) -> None:
    release: StandinRelease = request.getfixturevalue(tree)
    module = make_module(release.root)
    columns = channel_columns(list(DEFAULT_CHANNELS))
    for trial in module.trials()[:4]:
        truth = release.trials[trial.name]
        reading = module.read_trial(trial)
        recording = reading.recording
        np.testing.assert_allclose(recording.time_ms, truth.time_ms, atol=1e-6)
        np.testing.assert_array_equal(recording.sensor, truth.states[:, columns])
        assert recording.fps == pytest.approx(truth.fps)
        assert recording.num_frames == truth.num_frames
        assert recording.subject == truth.subject
        assert recording.sequence_label == module.activities().index(truth.activity)
        notes = " ".join(reading.findings)
        assert "50.00 Hz measured" in notes and "25.000 fps" in notes
        if release.layout == "flat":
            assert "Unix epoch in ms" in notes
            assert f"{truth.removed_rows.size} row(s) short" in notes
            assert "empty cell(s) (held)" in notes


def test_interpolate_gap_fill_leaves_gaps_to_the_shared_interpolation(flat: StandinRelease) -> None:
    channels = ["Ktch_T1_Cupboard", "Ktch_B4_Cupboard"]
    module = make_module(flat.root, channels=channels, gap_fill="interpolate")
    trial = module.trials()[0]
    truth = flat.trials[trial.name]
    recording = module.read_trial(trial).recording
    expected = truth.states[:, channel_columns(channels)].copy()
    expected[truth.removed_rows] = np.nan
    for row, name in truth.blank_cells:
        if name in channels:
            expected[row, channels.index(name)] = np.nan
    np.testing.assert_allclose(recording.time_ms, truth.time_ms, atol=1e-6)
    np.testing.assert_array_equal(np.isnan(recording.sensor), np.isnan(expected))
    np.testing.assert_array_equal(recording.sensor[~np.isnan(expected)], expected[~np.isnan(expected)])


def test_headerless_csv_with_column_names_file_and_datetime_clock(tmp_path: Path) -> None:
    release = write_standin(
        tmp_path / "v2", subjects=(1,), activities=("tea", "laptop"), header=False,
        timestamp_format="datetime", seconds=10.0,
    )
    channels = ["TP_L_Power", "Ktch_Motion_1"]
    module = make_module(release.root, channels=channels, classes=["tea", "laptop"])
    for trial in module.trials():
        assert trial.columns.names_file is not None and not trial.columns.has_header
        truth = release.trials[trial.name]
        reading = module.read_trial(trial)
        recording = reading.recording
        np.testing.assert_allclose(recording.time_ms, truth.time_ms, atol=1e-3)
        np.testing.assert_array_equal(recording.sensor, truth.states[:, channel_columns(channels)])
        assert "date-time strings" in " ".join(reading.findings)
    info = module.data_info
    assert (info.num_channels, info.num_classes, info.num_places) == (2, 2, 3)
    assert info.place_names == ["TP_L_Power", "Ktch_Motion_1", "none"]


def test_column_names_file_formats(tmp_path: Path) -> None:
    expected = ["timestamp", "Ktch_B1_Drawer", "TP_L_Power"]
    variants = {
        "plain": "timestamp\nKtch_B1_Drawer\nTP_L_Power",
        "numbered": "1 timestamp\r\n2: Ktch_B1_Drawer\r\n3. TP_L_Power",
        "opportunity style": "Column: 1 timestamp\nColumn: 2 Ktch_B1_Drawer\nColumn: 3 TP_L_Power\n",
        "one line": "timestamp, Ktch_B1_Drawer, TP_L_Power\n",
    }
    for name, text in variants.items():
        path = tmp_path / f"{name}.txt"
        path.write_text(text)
        assert read_column_names(path) == expected, name


def test_timestamp_unit_from_name_epoch_step_and_video() -> None:
    seconds = np.arange(100) * 0.02
    assert choose_timestamp_unit("timestamp", seconds, None, "f")[0] == "s"
    assert choose_timestamp_unit("timestamp", seconds * 1000, None, "f")[0] == "ms"
    assert choose_timestamp_unit("timestamp", 1.56e12 + seconds * 1000, None, "f")[0] == "ms"
    assert choose_timestamp_unit("timestamp", 1.56e9 + seconds, None, "f")[0] == "s"
    assert choose_timestamp_unit("time_ms", seconds, None, "f")[0] == "ms"
    one_per_step = np.arange(60, dtype=np.float64)  # 1 Hz in s or 1000 Hz in ms
    with pytest.raises(ValueError, match="cannot tell the unit of column 'timestamp'.*timestamp_unit"):
        choose_timestamp_unit("timestamp", one_per_step, None, "f.csv")
    assert choose_timestamp_unit("timestamp", one_per_step, 59.0, "f")[0] == "s"
    assert choose_timestamp_unit("timestamp", one_per_step, 0.06, "f")[0] == "ms"


def test_table_without_timestamps_needs_a_rate(tmp_path: Path) -> None:
    path = tmp_path / "tea_s01.csv"
    path.write_text("Ktch_T1_Cupboard,Ktch_Motion_1\n0,1\n1,1\n1,0\n")
    with pytest.raises(ValueError, match="no timestamp column.*sensor_rate_hz"):
        read_ambient_csv(path, ["Ktch_T1_Cupboard"])
    table = read_ambient_csv(path, ["Ktch_Motion_1"], sensor_rate_hz=10.0)
    np.testing.assert_allclose(table.time_ms, [0.0, 100.0, 200.0])
    np.testing.assert_array_equal(table.values[:, 0], [1, 1, 0])


# ---- windows, places, folds, class subset ------------------------------------------------


def test_cache_windows_record_trial_subject_and_activity(
    prepared: HwuUspDataModule, authors: StandinRelease
) -> None:
    cache = prepared.cache
    assert cache is not None and sorted(cache.run_names) == sorted(authors.trials)
    for run, name in enumerate(cache.run_names):
        truth = authors.trials[name]
        windows = np.flatnonzero(cache.window_run == run)
        duration_s = truth.time_ms[-1] / 1000.0
        assert windows.size == int(np.floor(duration_s - 2.0)) + 1
        np.testing.assert_allclose(cache.start_ms[windows], 1000.0 * np.arange(windows.size))
        assert set(cache.label[windows].tolist()) == {CLASSES.index(truth.activity)}
        assert int(cache.run_attrs[name]["subject"]) == truth.subject
        assert cache.run_attrs[name]["fps"] == pytest.approx(25.0)
    report = json.loads(prepared.report_path.read_text())
    assert sorted(report["trials"]) == sorted(authors.trials) and report["skipped_trials"] == {}
    for name, found in report["trials"].items():
        assert found["windows"] == int((cache.window_run == cache.run_names.index(name)).sum())
        assert "timestamps in s" in found["found"][0] and found["video_seconds"] == pytest.approx(16.0)
    train = prepared.datasets["train"]
    assert isinstance(train, WindowDataset)
    for item in (train[0], train[len(train) - 1]):
        name = cache.run_names[int(item["sequence"])]
        assert int(item["label"]) == CLASSES.index(authors.trials[name].activity)
        assert item["video"].shape == (4, 16, 16, 3)  # (T, H, W, 3) uint8 until the device


def test_window_place_is_the_channel_changing_inside_it(
    prepared: HwuUspDataModule, authors: StandinRelease
) -> None:
    cache = prepared.cache
    assert cache is not None
    channels = list(DEFAULT_CHANNELS)
    none = len(channels)
    checked_place = checked_none = 0
    for window in range(len(cache)):
        truth = authors.trials[cache.run_names[cache.window_run[window]]]
        start, stop = cache.start_ms[window], cache.start_ms[window] + 2000.0
        inside = [(t, name) for t, name in truth.events if start <= t < stop]
        near = [name for t, name in truth.events if start - 1000.0 <= t < stop + 1000.0]
        # one change, at least 0.2 s inside the window, none other within 1 s: it covers >= 60 %
        if len(near) == 1 and len(inside) == 1 and start + 200.0 <= inside[0][0] <= stop - 200.0:
            assert cache.place[window] == channels.index(inside[0][1]), (truth.name, start)
            checked_place += 1
        if not near:
            assert cache.place[window] == none, (truth.name, start)
            checked_none += 1
    assert checked_place >= len(authors.trials) and checked_none >= len(authors.trials)
    assert prepared.data_info.num_places == 7 and prepared.data_info.place_names[-1] == "none"
    assert set(PLACE_COLUMNS) == set(channels)


@pytest.mark.parametrize("fold", [1, 2, 3])
def test_leave_two_subjects_out_folds(authors: StandinRelease, fold: int) -> None:
    module = make_module(authors.root, fold=fold)
    subject = {name: truth.subject for name, truth in authors.trials.items()}
    splits = {
        split: {subject[name] for name in module.split(f"{split}_runs")} for split in ("train", "val", "test")
    }
    assert splits["test"] == {2 * fold - 1, 2 * fold}
    following = fold % 3 + 1
    assert splits["val"] == {2 * following - 1, 2 * following}
    assert not splits["train"] & splits["test"] and not splits["train"] & splits["val"]
    assert splits["train"] | splits["val"] | splits["test"] == set(SUBJECTS)
    # every trial of a test subject is tested
    assert len(module.split("test_runs")) == 2 * len(CLASSES)
    wide = make_module(authors.root, fold=fold, val_rule="test_fold")
    assert {subject[name] for name in wide.split("train_runs")} == set(SUBJECTS) - splits["test"]


def test_fold_settings_and_explicit_runs(authors: StandinRelease) -> None:
    assert fold_subjects(8, 8) == (15, 16)
    with pytest.raises(ValueError, match="fold=9 must lie in"):
        make_module(authors.root, fold=9, num_folds=8)
    module = make_module(authors.root, fold=4, num_folds=4)
    with pytest.raises(ValueError, match=r"fold 4 of 4: no trial of subject\(s\) \[7, 8\] for data\.test_runs"):
        module.split("test_runs")
    explicit = make_module(authors.root, train_runs=["tea_s01"], test_runs=["tea_s02"])
    assert explicit.split("train_runs") == ["tea_s01"] and explicit.split("test_runs") == ["tea_s02"]


def test_class_subset_relabels_windows_and_trials(
    prepared: HwuUspDataModule, authors: StandinRelease
) -> None:
    classes = ["tea", "cereals"]
    windows = make_module(authors.root, classes=classes, purpose="probe", probe_unit="window")
    windows.setup("fit")
    cache = windows.cache
    assert cache is not None and windows.cache_path == prepared.cache_path  # no rebuild
    train = windows.datasets["train"]
    names = [cache.run_names[int(run)] for run in train.sequence]
    assert all(authors.trials[name].activity in classes for name in names)
    assert train.label.tolist() == [classes.index(authors.trials[name].activity) for name in names]
    sequences = make_module(authors.root, classes=classes, purpose="probe", probe_unit="sequence")
    sequences.setup("fit")
    for split in ("train", "val", "test"):
        dataset = sequences.datasets[split]
        assert isinstance(dataset, SequenceDataset)
        trials = [cache.run_names[run] for run in dataset.runs]
        assert sorted(trials) == sorted(
            name for name in sequences.split(f"{split}_runs") if authors.trials[name].activity in classes
        )
        for index in range(len(dataset)):
            item = dataset[index]
            name = cache.run_names[int(item["sequence"])]
            assert int(item["label"]) == classes.index(authors.trials[name].activity)
            assert item["sensor"].shape[0] == int((cache.window_run == int(item["sequence"])).sum())
    assert sequences.batch_size == sequences.trials_per_batch
    assert next(iter(sequences.val_dataloader()))["mask"].shape[0] == min(8, len(sequences.datasets["val"]))


def test_sequence_probe_pools_like_a_direct_computation(
    authors: StandinRelease, prepared: HwuUspDataModule
) -> None:
    module = make_module(authors.root, purpose="probe", probe_unit="sequence")
    module.setup("fit")
    dataset = module.datasets["train"]
    items = [dataset[index] for index in range(3)]
    items[1]["sensor"] = items[1]["sensor"][:5]  # runs of different lengths: padding must not count
    items[2]["sensor"] = items[2]["sensor"][:9]
    batch = collate_sequences(items)
    torch.manual_seed(0)
    probe = LinearProbeModule(data_info=module.data_info, encoder=tiny_encoder()).eval()
    pooled = probe.embed(batch["sensor"], batch["mask"])
    for row, item in enumerate(items):
        embeddings = torch.stack([probe.embed(window[None])[0] for window in item["sensor"]])
        torch.testing.assert_close(pooled[row], embeddings.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(probe(batch["sensor"], batch["mask"]), probe.classifier(pooled))


# ---- bad input -----------------------------------------------------------------------------


def test_missing_video_names_trial_and_can_be_skipped(small: StandinRelease) -> None:
    small.trials["tea_s02"].video.unlink()
    expected = (
        r"1 incomplete HWU-USP trial.*tea_s02: no video \(tea_s02\*\.mp4 or tea_s02/\*\.mp4 matching "
        r"'\*\*/\*\.mp4'\); found \[.*tea_s02\.csv'\].*skip_incomplete_trials"
    )
    with pytest.raises(FileNotFoundError, match=expected):
        make_small_module(small).trials()
    module = make_small_module(small, skip_incomplete_trials=True)
    assert [trial.name for trial in module.trials()] == ["tea_s01", "dishes_s01", "dishes_s02"]
    assert list(module.skipped_trials) == ["tea_s02"]
    assert module.cache_meta()["skipped_trials"] == module.skipped_trials


def test_missing_ambient_csv_names_trial(small: StandinRelease) -> None:
    small.trials["dishes_s01"].ambient.unlink()
    expected = (
        r"dishes_s01: no ambient CSV \(dishes_s01\*\.csv or dishes_s01/\*\.csv with the columns "
        r"\['Ktch_B4_Cupboard', .*\]\); only inertial CSVs: \[.*inertial/dishes/dishes_s01\.csv'\]; "
        r"found \[.*dishes_s01\.mp4'\]"
    )
    with pytest.raises(FileNotFoundError, match=expected):
        make_small_module(small).trials()


def test_csv_without_the_requested_columns_lists_what_it_has(small: StandinRelease) -> None:
    path = small.trials["tea_s01"].ambient
    path.write_text(path.read_text().replace("Ktch_T1_Cupboard", "Ktch_T1", 1))
    expected = (
        r"tea_s01: .*lacks column\(s\) \['Ktch_T1_Cupboard'\]; "
        r"it has \['timestamp', .*'Ktch_T1', .*'TP_L_Power'\]"
    )
    with pytest.raises(ValueError, match=expected):
        make_small_module(small).trials()
    with pytest.raises(ValueError, match=r"tea_s01\.csv: lacks column\(s\) \['Ktch_T1_Cupboard'\]; it has"):
        read_ambient_csv(path, list(DEFAULT_CHANNELS))


def test_non_numeric_cell_names_file_line_and_column(small: StandinRelease) -> None:
    path = small.trials["dishes_s02"].ambient
    lines = path.read_text().splitlines()
    cells = lines[9].split(",")
    cells[1 + AMBIENT_COLUMNS.index("Ktch_Motion_1")] = "open"
    lines[9] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    expected = r"dishes_s02\.csv: line 10, column 'Ktch_Motion_1': 'open' is not a number"
    with pytest.raises(ValueError, match=expected):
        read_small_trial(small, "dishes_s02")


def test_video_much_shorter_than_the_table_gives_both_durations(small: StandinRelease) -> None:
    truth = small.trials["tea_s01"]
    five_seconds = iter_scene_frames(truth.time_ms, truth.states, fps=25.0, seconds=5.0, size=32)
    write_video(truth.video, five_seconds, 25.0)
    expected = r"tea_s01: the video .*tea_s01\.mp4 lasts 5\.00 s but the ambient table .* 11\.98 s"
    with pytest.raises(ValueError, match=expected):
        read_small_trial(small, "tea_s01")


def test_class_that_no_trial_has(small: StandinRelease) -> None:
    module = make_small_module(small, classes=["tea", "yoga"])
    expected = r"classes: \['yoga'\] has no trial under .*activities found: \['dishes', 'tea'\]"
    with pytest.raises(ValueError, match=expected):
        module.prepare_data()
