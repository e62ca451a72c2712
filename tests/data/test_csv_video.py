"""One's own recordings (a sensor CSV and a video per run) read like the built-in kitchen they were written from."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from detach_pl.data.csv_video import CsvVideoDataModule
from detach_pl.data.decoding import iter_frames
from detach_pl.data.sequences import SequenceDataset
from detach_pl.data.synthetic import CLASS_NAMES, SyntheticKitchenConfig, SyntheticKitchenDataModule, channel_names
from detach_pl.data.windows import WindowSettings
from detach_pl.testing.csv_video import write_csv_video_runs

WORLD = SyntheticKitchenConfig(num_runs=3, run_seconds=50.0, image_size=16)
SHARED = dict(windows=WindowSettings(image_size=16), num_frames=4, batch_size=8, num_workers=0, progress=False)
#: Largest mean |Δ| of a cached frame (0–255) after the round trip through an MPEG-4 file at 2 Mbit/s
#: (16 × 16 frames, chroma subsampled to 8 × 8: measured 9.3 on average, 9.9 at most).
FRAME_TOLERANCE = 12.0


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own") / "recordings"
    write_csv_video_runs(root, WORLD)
    return root


def own(root: Path, cache: Path, **kwargs: object) -> CsvVideoDataModule:
    return CsvVideoDataModule(root=str(root), num_places=7, time_unit="ms", cache_dir=str(cache), **SHARED, **kwargs)


def test_the_runs_read_as_the_kitchen_they_were_written_from(recordings: Path, tmp_path: Path) -> None:
    ours = own(recordings, tmp_path / "own")
    kitchen = SyntheticKitchenDataModule(world=WORLD, cache_dir=str(tmp_path / "kitchen"), **SHARED)
    info = ours.data_info
    assert info.channel_names == channel_names(WORLD) and info.num_places == 7
    # Classes found in the label columns, sorted: the kitchen's that occur in these runs.
    assert info.class_names == sorted(info.class_names) and set(info.class_names) <= set(CLASS_NAMES)
    assert ours.default_splits() == {"train_runs": ["run00"], "val_runs": ["run01"], "test_runs": ["run02"]}
    for module in (ours, kitchen):
        module.prepare_data()
    assert "  run01: 1500 rows over 50.0 s (30.00 Hz); " in ours.summary()
    a, b = ours.open_cache(), kitchen.open_cache()
    assert a.run_names == b.run_names and len(a) == len(b)
    every = np.arange(len(a))
    sensor_a, zeros_a, _ = a.read_sensor(every)
    sensor_b, zeros_b, _ = b.read_sensor(every)
    np.testing.assert_array_equal(sensor_a, sensor_b)  # the CSV holds every float64 exactly
    np.testing.assert_array_equal(zeros_a, zeros_b)
    names_b = np.array([CLASS_NAMES[k] if k >= 0 else "" for k in b.label])
    names_a = np.array([info.class_names[k] if k >= 0 else "" for k in a.label])
    np.testing.assert_array_equal(names_a, names_b)
    assert (a.place == -1).all()  # no place annotations in one's own files
    for window in (0, len(a) // 2, len(a) - 1):
        np.testing.assert_array_equal(a.frame_picks(window, 4), b.frame_picks(window, 4))
        difference = np.abs(a.read_frames(window, 4).astype(float) - b.read_frames(window, 4).astype(float))
        assert difference.mean() < FRAME_TOLERANCE
    # What the cache holds of a run is exactly what its video file decodes to, frame for frame.
    for run in a.run_names:
        np.testing.assert_array_equal(np.stack(list(a.iter_run_frames(run))),
                                      np.stack(list(iter_frames(recordings / f"{run}.mp4", 16))))
        np.testing.assert_allclose(a.frame_times(run), b.frame_times(run), atol=1e-6)


def test_a_chosen_subset_of_channels_is_matched_by_name_and_kept_in_its_order(recordings: Path, tmp_path: Path) -> None:
    chosen = [channel_names(WORLD)[5], channel_names(WORLD)[0]]
    module = own(recordings, tmp_path, channels=chosen)
    assert module.data_info.channel_names == chosen
    module.prepare_data()
    full = own(recordings, tmp_path / "full")
    full.prepare_data()
    every = np.arange(len(full.open_cache()))
    subset, whole = module.open_cache().read_sensor(every)[0], full.open_cache().read_sensor(every)[0]
    np.testing.assert_array_equal(subset, whole[:, [5, 0]])


def copy_of(recordings: Path, target: Path) -> Path:
    shutil.copytree(recordings, target)
    return target


def test_bad_folders_are_named_with_what_is_wrong(recordings: Path, tmp_path: Path) -> None:
    root = copy_of(recordings, tmp_path / "copy")
    (root / "run01.mp4").unlink()
    without_video = r"1 sensor CSV\(s\) without a video of the same name .*\['run01.csv'\]"
    with pytest.raises(FileNotFoundError, match=without_video):
        _ = own(root, tmp_path).data_info
    shutil.copy(recordings / "run01.mp4", root / "run01.mp4")
    header, *rows = (root / "run02.csv").read_text().splitlines()
    (root / "run02.csv").write_text("\n".join([header.replace("REED SWITCH", "REED"), *rows]) + "\n")
    with pytest.raises(ValueError, match=r"1 run\(s\) lack channels of the first run's CSV \(run00.csv\): \{'run02'"):
        _ = own(root, tmp_path).data_info
    with pytest.raises(ValueError, match=r"data.init_args.num_places=None must be >= 1: how many instrumented places"):
        CsvVideoDataModule(root=str(recordings))
    with pytest.raises(ValueError, match=r"video_offsets_ms names \['run07'\]"):
        _ = own(recordings, tmp_path, video_offsets_ms={"run07": 10.0}).data_info
    with pytest.raises(ValueError, match=r"the default split needs 3"):
        two = copy_of(recordings, tmp_path / "two")
        for suffix in (".csv", ".mp4"):
            (two / f"run02{suffix}").unlink()
        own(two, tmp_path).default_splits()


def test_every_unreadable_run_is_named_before_any_frame_is_decoded(recordings: Path, tmp_path: Path) -> None:
    root = copy_of(recordings, tmp_path / "copy")
    lines = (root / "run02.csv").read_text().splitlines()
    lines[5] = lines[5].replace(",", ",x", 1)  # line 6: the first channel's cell is not a number
    (root / "run02.csv").write_text("\n".join(lines) + "\n")
    (root / "run00.mp4").write_bytes(b"not a video")
    lines = (root / "run01.csv").read_text().splitlines()
    lines[10], lines[11] = lines[11], lines[10]  # data rows 10 and 11 swapped: time goes back
    (root / "run01.csv").write_text("\n".join(lines) + "\n")
    module = own(root, tmp_path, classes=list(CLASS_NAMES))
    with pytest.raises(ValueError) as error:
        module.prepare_data()
    message = str(error.value)
    assert "3 of 3 run(s) cannot be read, found before building the cache" in message
    assert "run00: video" in message and "unreadable" in message
    assert "run01: " in message and "run01.csv: data row 11: the timestamp goes from" in message
    assert "run02: " in message and "run02.csv:6" in message
    assert not list(tmp_path.glob("*.h5"))


def test_a_label_outside_the_configured_classes_names_file_and_line(recordings: Path, tmp_path: Path) -> None:
    module = own(recordings, tmp_path, classes=["Open Door 1"])
    outside = r"run00.csv:\d+: label '.*' is not one of data.init_args.classes \['Open Door 1'\]"
    with pytest.raises(ValueError, match=outside):
        _ = module.data_info
    assert not list(tmp_path.rglob("*.h5"))


def test_other_classes_reuse_the_cache_with_each_label_mapped_to_its_class(recordings: Path, tmp_path: Path) -> None:
    found = own(recordings, tmp_path)
    found.prepare_data()
    assert found.open_cache().meta["class_names"] == found.label_vocabulary == found.class_names
    classes = ["Idle", *reversed(found.label_vocabulary)]
    other = own(recordings, tmp_path, classes=classes, probe_unit="sequence", run_classes={"run01": "Idle"})
    assert other.class_names == classes and other.cache_path == found.cache_path
    labels, mapped = found.open_cache().label, other.open_cache().label
    assert (labels >= 0).sum() > 10
    named = np.array([found.class_names[k] if k >= 0 else "" for k in labels])
    np.testing.assert_array_equal(named, [classes[k] if k >= 0 else "" for k in mapped])
    assert not list(tmp_path.glob("csv_video-*.h5"))[1:]  # one cache for both


def test_an_edited_recording_builds_a_new_cache(recordings: Path, tmp_path: Path) -> None:
    root = copy_of(recordings, tmp_path / "copy")
    before = own(root, tmp_path).cache_path
    assert own(root, tmp_path).cache_path == before
    stat = (root / "run01.mp4").stat()
    os.utime(root / "run01.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = own(root, tmp_path).cache_path
    assert touched != before
    (root / "run01.csv").write_text((root / "run01.csv").read_text() + "\n")
    assert own(root, tmp_path).cache_path not in (before, touched)


def test_whole_runs_take_their_configured_class_for_the_sequence_probe(recordings: Path, tmp_path: Path) -> None:
    run_classes = {"run00": "Breakfast", "run01": "Cleaning", "run02": "Breakfast"}
    splits = dict(train_runs=["run00", "run01"], val_runs=["run01"], test_runs=["run02"])
    module = own(recordings, tmp_path, probe_unit="sequence", run_classes=run_classes, purpose="probe", **splits)
    names = module.data_info.class_names
    # The run classes join the label column's classes, sorted.
    assert {"Breakfast", "Cleaning"} < set(names) and names == sorted(names)
    module.setup()
    cache = module.open_cache()
    assert "run classes (data.init_args.run_classes, the sequence probe):\n  run00: Breakfast\n  run01: Cleaning\n" \
        "  run02: Breakfast" in module.summary()
    for split, runs in (("train", ["run00", "run01"]), ("test", ["run02"])):
        dataset = module.datasets[split]
        assert isinstance(dataset, SequenceDataset) and len(dataset) == len(runs)
        for position, run in enumerate(runs):
            item = dataset[position]
            assert names[int(item["label"])] == run_classes[run]
            assert cache.run_names[int(item["sequence"])] == run
            # Every window of the run, labelled or not: the run is one item.
            assert item["sensor"].shape[0] == cache.windows_of_runs([run]).size
    # The run classes are read when the splits are made: other run classes, even a new name, same cache.
    swapped = {"run00": "Cleaning", "run01": "Breakfast", "run02": "Lunch"}
    again = own(recordings, tmp_path, probe_unit="sequence", run_classes=swapped, purpose="probe", **splits)
    assert again.cache_path == module.cache_path
    again.setup()
    assert again.class_names[int(again.datasets["test"][0]["label"])] == "Lunch"
    # Runs not named are left out of the sequence probe; a split left with none is refused.
    few = dict(run_classes={"run00": "Breakfast", "run01": "Cleaning"}, classes=names, purpose="probe")
    left_out = own(recordings, tmp_path, probe_unit="sequence", train_runs=["run00", "run02"], val_runs=["run01"],
                   test_runs=["run01"], **few)
    left_out.setup()
    assert left_out.summary().endswith("  run01: Cleaning\n  run02: (none: left out)")
    assert [cache.run_names[int(item["sequence"])] for item in left_out.datasets["train"]] == ["run00"]
    with pytest.raises(ValueError, match=r"data.test_runs \['run02'\]: no run with a sequence label"):
        own(recordings, tmp_path, probe_unit="sequence", **splits, **few).setup()


def test_run_classes_that_cannot_be_used_are_named(recordings: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^data.init_args.run_classes=None must be the class of each whole run for "
                                         r"probe_unit=sequence"):
        own(recordings, tmp_path, probe_unit="sequence")
    with pytest.raises(ValueError, match=r"^data.init_args.run_classes names \['run7'\], which are not runs under .*"
                                         r"\(found: \['run00', 'run01', 'run02'\]\)"):
        _ = own(recordings, tmp_path, probe_unit="sequence", run_classes={"run7": "Breakfast"}).data_info
    classes = [*own(recordings, tmp_path).label_vocabulary, "Breakfast"]
    with pytest.raises(ValueError, match=r"^data.init_args.run_classes: \{'run01': 'Lunch'\} are not among the "
                                         r"classes \[.*'Breakfast'\]$"):
        _ = own(recordings, tmp_path, classes=classes, run_classes={"run00": "Breakfast", "run01": "Lunch"},
                probe_unit="sequence").data_info


def test_a_window_probe_ignores_run_classes_with_a_warning(recordings: Path, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        module = own(recordings, tmp_path, run_classes={"run00": "Breakfast"})
    assert "data.init_args.run_classes are read for probe_unit: sequence only (here 'window'): ignored" in caplog.text
    assert module.class_names == module.label_vocabulary and "Breakfast" not in module.class_names
