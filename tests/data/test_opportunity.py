"""Opportunity++ from the raw release, on generated stand-ins with the release's exact layout."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from detach_pl.data.decoding import iter_frames
from detach_pl.data.opportunity import OpportunityDataModule
from detach_pl.data.opportunity.labels import LabelVocabulary
from detach_pl.data.opportunity.release import (
    parse_column_names,
    parse_label_legend,
    parse_sensor_matrix,
    parse_srt,
    resolve_channels,
)
from detach_pl.data.vocabulary import AMBIENT_CHANNELS, PLACE_NAMES
from detach_pl.data.windows import (
    WindowSettings,
    interpolate_nans,
    lowpass,
    preprocess_window,
    resample_linear,
    sample_frame_indices,
    window_starts,
)
from detach_pl.testing.opportunity import (
    CLASS_IDS,
    CLASS_PLACES,
    FIXTURES,
    StandinRelease,
    legend_names,
    write_sensor_matrix,
    write_srt,
    write_standin_release,
)
from opportunity_helpers import AMBIENT, TEST, TRAIN, VAL, expected_standardisation, module, single_run

LOGGER = "detach_pl.data.opportunity"


@pytest.fixture
def release_copy(release: StandinRelease, tmp_path: Path) -> StandinRelease:
    """A private copy of the stand-in that a test may damage."""
    root = tmp_path / "release"
    shutil.copytree(release.root, root)
    copy = StandinRelease(root)
    for name, run in release.runs.items():
        folder = root / "data" / name
        copy.runs[name] = type(run)(
            name, folder, folder / run.sensor_path.name, folder / run.video_path.name,
            [folder / p.name for p in run.srt_paths], run.time_ms, run.matrix.copy(), list(run.segments),
            run.fps, run.num_frames,
        )
    return copy


def leftovers(cache_dir: Path) -> list[Path]:
    """Files in a cache folder (none when the folder was never created)."""
    return sorted(cache_dir.iterdir()) if cache_dir.exists() else []


def coverage_label(segments, start_ms: float, window_ms: float, key) -> tuple[int, float]:
    """Class (or place) with the largest time coverage of a window, from the generator's segments."""
    covered: dict[int, float] = {}
    for seg_start, seg_stop, label in segments:
        if label not in CLASS_IDS:
            continue
        overlap = min(seg_stop, start_ms + window_ms) - max(seg_start, start_ms)
        if overlap > 0:
            target = key(CLASS_IDS.index(label))
            covered[target] = covered.get(target, 0.0) + overlap / window_ms
    if not covered:
        return -1, 0.0
    best = max(covered, key=covered.get)
    return best, covered[best]


# ---- the description files -------------------------------------------------------------------


def test_column_names_and_default_channels_are_columns_195_to_231() -> None:
    names = parse_column_names(FIXTURES / "column_names.txt")
    assert len(names) == 250
    assert names[0] == "MILLISEC" and names[249] == "ML_Both_Arms" and names[243] == "Locomotion"
    assert names[1] == "Accelerometer RKN^ accX"
    assert resolve_channels(names, AMBIENT_CHANNELS) == list(range(194, 231))
    assert len(AMBIENT_CHANNELS) == 37


def test_label_legend_gives_the_14_classes_in_order_and_their_places() -> None:
    legend = parse_label_legend(FIXTURES / "label_legend.txt")
    assert len([e for e in legend if e.track == "ML_Both_Arms"]) == 17
    vocabulary = LabelVocabulary.from_legend(legend, "ML_Both_Arms", None)
    assert vocabulary.class_of_id == {label: index for index, label in enumerate(CLASS_IDS)}
    assert vocabulary.place_of_id == dict(zip(CLASS_IDS, CLASS_PLACES, strict=True))
    assert vocabulary.class_names[0] == "Open Door 1" and vocabulary.class_names[13] == "Close Drawer 3"
    assert len(vocabulary.track_ids) == 17
    locomotion = LabelVocabulary.from_legend(legend, "Locomotion", None)
    assert locomotion.class_names == ("Stand", "Walk", "Sit", "Lie")
    with pytest.raises(ValueError, match="'Open Oven'.*ML_Both_Arms"):
        LabelVocabulary.from_legend(legend, "ML_Both_Arms", ["Open Oven"])
    with pytest.raises(ValueError, match="label_track='Arms'"):
        LabelVocabulary.from_legend(legend, "Arms", None)


def test_channel_selection_by_name_rejects_unknown_ambiguous_and_repeated_names() -> None:
    names = parse_column_names(FIXTURES / "column_names.txt")
    with pytest.raises(ValueError, match="no column named 'REED SWITCH OVEN'"):
        resolve_channels(names, ["REED SWITCH OVEN"])
    with pytest.raises(ValueError, match=r"names columns \[190, 191, 192\].*column:190"):
        resolve_channels(names, ["Accelerometer GLASS accX"])
    assert resolve_channels(names, ["column:191", "Accelerometer HIP accY"]) == [190, 5]
    with pytest.raises(ValueError, match="more than once"):
        resolve_channels(names, ["column:6", "Accelerometer HIP accY"])
    with pytest.raises(ValueError, match="between 1 and 250"):
        resolve_channels(names, ["column:251"])


# ---- parsing the matrix and the SRTs ---------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_sensor_matrix_is_parsed_exactly_as_written(release: StandinRelease, tmp_path: Path, newline: str) -> None:
    run = release.runs["S1-ADL1"]
    path = tmp_path / "m.txt"
    write_sensor_matrix(path, run.matrix, newline)
    parsed = parse_sensor_matrix(path, 250)
    np.testing.assert_array_equal(parsed, run.matrix)  # NaN positions must agree too
    assert np.isnan(parsed).any() and np.diff(parsed[:, 0]).min() == 33 and np.diff(parsed[:, 0]).max() == 34


def _damage_line(path: Path, line_number: int, edit) -> None:
    lines = path.read_text().split("\n")
    tokens = lines[line_number - 1].split(" ")
    lines[line_number - 1] = " ".join(edit(tokens))
    path.write_text("\n".join(lines))


def test_row_with_a_missing_column_names_file_and_line(release: StandinRelease, tmp_path: Path) -> None:
    path = tmp_path / "S1-ADL1_sensors_data.txt"
    shutil.copyfile(release.runs["S1-ADL1"].sensor_path, path)
    _damage_line(path, 5, lambda tokens: tokens[:-1])
    with pytest.raises(ValueError, match=rf"{path.name}:5: 249 columns, expected 250"):
        parse_sensor_matrix(path, 250)


def test_token_that_is_not_a_number_names_file_line_and_column(release: StandinRelease, tmp_path: Path) -> None:
    path = tmp_path / "S1-ADL1_sensors_data.txt"
    shutil.copyfile(release.runs["S1-ADL1"].sensor_path, path)
    _damage_line(path, 7, lambda tokens: tokens[:2] + ["12a"] + tokens[3:])
    with pytest.raises(ValueError, match=rf"{path.name}:7: column 3 holds '12a', which is not a number"):
        parse_sensor_matrix(path, 250)


def test_every_row_with_the_wrong_width_is_reported_at_line_1(release: StandinRelease, tmp_path: Path) -> None:
    path = tmp_path / "narrow.txt"
    write_sensor_matrix(path, release.runs["S1-ADL1"].matrix[:, :249])
    with pytest.raises(ValueError, match=r"narrow.txt:1: 249 columns, expected 250"):
        parse_sensor_matrix(path, 250)


def test_srt_is_parsed_back_to_the_generated_segments(release: StandinRelease) -> None:
    run = release.runs["S2-ADL3"]
    subtitles = parse_srt(run.srt_paths[0])
    expected = [tuple(map(float, seg[:2])) + (seg[2],) for seg in run.segments]
    assert [(s.start_ms, s.stop_ms, s.label_id) for s in subtitles] == expected


def test_malformed_srt_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.srt"
    path.write_text("1\n00:00:01,000 --> 00:00:02,000\n406516 - Open Door 1\n\n2\n00:00:03 -> 00:00:04\n406516 - x\n")
    with pytest.raises(ValueError, match=r"bad.srt:5: expected a subtitle counter"):
        parse_srt(path)
    path.write_text("1\n00:00:01,000 --> 00:00:02,000\nOpen Door 1\n")
    with pytest.raises(ValueError, match=r"bad.srt:3: subtitle text 'Open Door 1' does not start with a label id"):
        parse_srt(path)


# ---- the DataModule ----------------------------------------------------------------------------


def test_data_info_needs_only_the_description_files(release: StandinRelease, tmp_path: Path) -> None:
    dm = module(release.root, tmp_path / "cache")
    info = dm.data_info
    assert (info.num_channels, info.num_classes, info.num_places) == (37, 14, 7)
    assert info.channel_names == list(AMBIENT_CHANNELS)
    assert info.place_names == list(PLACE_NAMES)
    assert info.class_names[4] == "Open Fridge"
    assert not (tmp_path / "cache").exists()


def test_missing_root_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data.init_args.root=.*is not a folder"):
        _ = module(tmp_path / "nowhere", tmp_path / "cache").data_info


def test_default_split_is_the_challenge_split_with_adl3_held_out() -> None:
    splits = OpportunityDataModule(root="unused").default_splits()
    train, val, test = (set(splits[k]) for k in ("train_runs", "val_runs", "test_runs"))
    classic_train = {f"S1-{k}" for k in ("ADL1", "ADL2", "ADL3", "ADL4", "ADL5", "Drill")} | {
        f"S{s}-{k}" for s in (2, 3) for k in ("ADL1", "ADL2", "ADL3", "Drill")
    }
    assert train | val == classic_train and not train & val
    assert val == {"S2-ADL3", "S3-ADL3"}
    assert test == {"S2-ADL4", "S2-ADL5", "S3-ADL4", "S3-ADL5"}
    assert not any(run.startswith("S4") for run in train | val | test)


def test_windows_read_from_the_cache_equal_a_direct_computation(release: StandinRelease, tmp_path: Path) -> None:
    dm = module(release.root, tmp_path / "cache", augment_video=False)
    dm.prepare_data()
    dm.setup("fit")
    cache = dm.cache
    settings = dm.windows
    mean, std = expected_standardisation(release, TRAIN, AMBIENT)
    np.testing.assert_allclose(dm.mean, mean, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dm.std, std, rtol=1e-5)
    checked_labels = 0
    for split, runs in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        dataset = dm.datasets[split]
        position = 0
        for run_name in runs:
            run = release.runs[run_name]
            raw = run.matrix[:, AMBIENT]
            frames = np.stack(list(iter_frames(run.video_path, settings.image_size)))
            starts = window_starts(run.time_ms, settings)
            assert len(starts) == 28
            for start in starts:
                item = dataset[position]
                window = int(dataset.windows[position])
                assert cache.run_names[cache.window_run[window]] == run_name and cache.start_ms[window] == start
                first, last = np.searchsorted(run.time_ms, [start, start + 2000.0])
                expected = preprocess_window(raw[first:last], run.time_ms[first:last], mean, std, settings)
                np.testing.assert_allclose(item["sensor"].numpy(), expected, rtol=1e-4, atol=1e-4)
                frame_span = (int(np.ceil(start * run.fps / 1000)), int(np.ceil((start + 2000) * run.fps / 1000)))
                picks = sample_frame_indices(*frame_span, 4)
                clip = frames[picks]  # (T, H, W, 3): the batch contract's loader layout
                np.testing.assert_array_equal(item["video"].numpy(), clip)
                label, share = coverage_label(run.segments, start, 2000.0, lambda c: c)
                if abs(share - 0.5) > 0.05:
                    assert int(item["label"]) == (label if share > 0.5 else -1)
                    checked_labels += 1
                place, share = coverage_label(run.segments, start, 2000.0, lambda c: CLASS_PLACES[c])
                if abs(share - 0.5) > 0.05:
                    assert int(item["place"]) == (place if share > 0.5 else -1)
                assert int(item["sequence"]) == cache.run_names.index(run_name)
                position += 1
        assert position == len(dataset)
    assert checked_labels > 100
    assert (cache.label >= 0).sum() > 30 and len(set(cache.label[cache.label >= 0].tolist())) >= 10


def test_video_is_stored_once_per_run_at_the_cache_size_with_measured_fps(tmp_path: Path) -> None:
    release = write_standin_release(tmp_path / "r15", runs=["S1-ADL1"], seconds=12.0, fps=15.0, frame_size=(40, 30))
    dm = module(release.root, tmp_path / "cache", **single_run("S1-ADL1"))
    dm.prepare_data()
    with h5py.File(dm.cache_path, "r") as h5:
        frames = h5["runs/S1-ADL1/frames"]
        assert frames.shape == (180, 16, 16, 3) and frames.chunks == (1, 16, 16, 3)
        assert h5["runs/S1-ADL1"].attrs["fps"] == pytest.approx(15.0)
        assert h5["windows/sensor"].chunks == (1, 37, 128)
        assert set(h5["windows"]) == {
            "sensor", "zeros", "dead", "run", "frame_start", "frame_stop", "label", "place", "start_ms"
        }
        np.testing.assert_array_equal(h5["windows/frame_start"][:], np.arange(10) * 15)
    assert dm.label_report.video["S1-ADL1"]["fps"] == pytest.approx(15.0)
    assert dm.label_report.video["S1-ADL1"]["decoded_frames"] == 180


def test_cache_key_follows_root_channels_and_label_settings(release: StandinRelease, tmp_path: Path) -> None:
    base = module(release.root, tmp_path / "c")
    assert base.source_settings()["root"] == str(release.root.resolve())
    copy = tmp_path / "elsewhere"
    shutil.copytree(release.root, copy)
    variants = [
        module(copy, tmp_path / "c"),
        module(release.root, tmp_path / "c", channels=list(AMBIENT_CHANNELS[:13])),
        module(release.root, tmp_path / "c", classes=["Open Door 1", "Close Door 1"]),
        module(release.root, tmp_path / "c", windows=WindowSettings(image_size=16, min_label_fraction=0.3)),
    ]
    paths = {base.cache_path} | {dm.cache_path for dm in variants}
    assert len(paths) == 5
    assert module(release.root, tmp_path / "c", val_runs=VAL).cache_path == base.cache_path


def test_body_sensor_subset_is_chosen_by_name(release: StandinRelease, tmp_path: Path) -> None:
    channels = ["Accelerometer HIP accX", "Accelerometer HIP accY", "column:191"]
    legacy = WindowSettings(image_size=16, nan_policy="zero_channel", filter_scope="run", resample_grid="endpoints")
    dm = module(
        release.root, tmp_path / "cache", channels=channels, windows=legacy, standardize="affine",
        **single_run("S1-ADL1"),
    )
    assert dm.data_info.num_channels == 3
    assert dm.data_info.channel_names[2] == "Accelerometer GLASS accX [column 191]"
    dm.prepare_data()
    dm.setup("fit")
    run = release.runs["S1-ADL1"]
    columns = [4, 5, 190]
    mean, std = expected_standardisation(release, ["S1-ADL1"], columns)
    filtered = lowpass(interpolate_nans(run.matrix[:, columns], run.time_ms))
    start = dm.cache.start_ms[5]
    first, last = np.searchsorted(run.time_ms, [start, start + 2000.0])
    expected = (resample_linear(filtered[first:last], 128, "endpoints") - mean[:, None]) / std[:, None]
    expected[np.isnan(run.matrix[first:last, columns]).mean(axis=0) > 0.5] = 0.0
    np.testing.assert_allclose(dm.datasets["train"][5]["sensor"].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_centre_label_rule_and_labelled_only_pretraining(release: StandinRelease, tmp_path: Path) -> None:
    dm = module(
        release.root, tmp_path / "cache", windows=WindowSettings(image_size=16, label_rule="center"),
        pretrain_windows="labelled", **single_run("S1-Drill"),
    )
    dm.prepare_data()
    dm.setup("fit")
    run = release.runs["S1-Drill"]
    for window in range(len(dm.cache)):
        start = dm.cache.start_ms[window]
        first, last = np.searchsorted(run.time_ms, [start, start + 2000.0])
        centre_id = int(run.matrix[first + (last - first) // 2, 249])
        expected = CLASS_IDS.index(centre_id) if centre_id in CLASS_IDS else -1
        assert dm.cache.label[window] == expected
    train, val, test = (dm.datasets[split] for split in ("train", "val", "test"))
    assert len(train) == int((dm.cache.label >= 0).sum()) and bool((train.label >= 0).all())
    assert len(val) == len(train) and bool((val.label >= 0).all())  # validation follows training
    assert len(test) == len(dm.cache) and bool((test.label < 0).any())  # the test keeps every window


def test_flat_layout_with_both_text_files_in_the_root(tmp_path: Path) -> None:
    release = write_standin_release(tmp_path / "flat", runs=["S3-ADL4"], seconds=10.0, layout="flat")
    assert (release.root / "column_names.txt").is_file() and not (release.root / "data").exists()
    dm = module(release.root, tmp_path / "cache", **single_run("S3-ADL4"))
    dm.prepare_data()
    assert dm.reports[0].windows == 8


# ---- bad input ---------------------------------------------------------------------------------


def test_missing_run_folder_is_named_unless_skipping_is_allowed(
    release_copy: StandinRelease, tmp_path: Path, caplog
) -> None:
    shutil.rmtree(release_copy.root / "data" / "S3-ADL4")
    with pytest.raises(FileNotFoundError, match=r"S3-ADL4: missing run folder .*data/S3-ADL4.*skip_incomplete_runs"):
        module(release_copy.root, tmp_path / "cache").prepare_data()
    assert leftovers(tmp_path / "cache") == []
    dm = module(release_copy.root, tmp_path / "cache", skip_incomplete_runs=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dm.prepare_data()
        dm.setup("fit")
    assert "skipping run S3-ADL4" in caplog.text
    assert list(dm.label_report.skipped_runs) == ["S3-ADL4"]
    assert dm.split("test_runs") == ["S2-ADL4"]
    assert dm.cache.run_names == ["S1-ADL1", "S1-Drill", "S2-ADL3", "S2-ADL4"]


@pytest.mark.parametrize("victim", ["sensor", "video"])
def test_missing_file_of_a_run_is_named(release_copy: StandinRelease, tmp_path: Path, victim: str) -> None:
    run = release_copy.runs["S2-ADL3"]
    path = run.sensor_path if victim == "sensor" else run.video_path
    path.unlink()
    with pytest.raises(FileNotFoundError, match=rf"S2-ADL3: missing .*{path.name}"):
        module(release_copy.root, tmp_path / "cache").prepare_data()


def test_video_shorter_or_longer_than_the_sensors_is_reported_and_the_overlap_used(tmp_path: Path, caplog) -> None:
    release = write_standin_release(
        tmp_path / "r", runs=["S1-ADL1", "S1-ADL2"], video_seconds={"S1-ADL1": 20.0, "S1-ADL2": 40.0}
    )
    dm = module(release.root, tmp_path / "cache", train_runs=["S1-ADL1"], val_runs=["S1-ADL2"], test_runs=["S1-ADL2"])
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
    short, long = dm.reports
    assert (short.windows, short.windows_without_video) == (19, 9)
    assert (long.windows, long.windows_without_video) == (28, 0)
    assert "lasts 20.0 s" in caplog.text and "ends at 30.0 s" in caplog.text
    assert "lasts 40.0 s" in caplog.text
    assert any("20.0 s" in note and "30.0 s" in note for note in short.notes)
    assert any("9 window(s) outside the video were dropped" in note for note in short.notes)


def test_unreadable_video_names_the_file_and_no_cache_is_left(release_copy: StandinRelease, tmp_path: Path) -> None:
    path = release_copy.runs["S1-Drill"].video_path
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(ValueError, match=rf"video {path}: unreadable"):
        module(release_copy.root, tmp_path / "cache").prepare_data()
    assert leftovers(tmp_path / "cache") == []


def test_damaged_video_names_the_file_and_frame(release_copy: StandinRelease, tmp_path: Path) -> None:
    path = release_copy.runs["S2-ADL3"].video_path
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = np.random.default_rng(1).bytes(3000)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"video {path}: decoding failed at frame \d+"):
        module(release_copy.root, tmp_path / "cache").prepare_data()
    assert leftovers(tmp_path / "cache") == []


def test_unknown_label_ids_are_counted_reported_and_stored(
    release_copy: StandinRelease, tmp_path: Path, caplog
) -> None:
    run = release_copy.runs["S1-ADL1"]
    run.matrix[100:130, 249] = 406599
    run.matrix[200:205, 249] = 777
    write_sensor_matrix(run.sensor_path, run.matrix)
    dm = module(release_copy.root, tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dm.prepare_data()
    assert dm.label_report.unknown_ids == {406599: 30, 777: 5}
    assert "406599" in caplog.text and "S1-ADL1" in caplog.text
    excluded = sum(int((r.matrix[:, 249] == 408512).sum()) for r in release_copy.runs.values())
    assert dm.label_report.excluded_ids.get(408512) == excluded > 0
    stored = json.loads(dm.report_path.read_text())
    assert stored["labels"]["unknown_ids"] == {"406599": 30, "777": 5}
    again = module(release_copy.root, tmp_path / "cache")
    again.prepare_data()
    assert again.label_report.unknown_ids == {406599: 30, 777: 5}


def test_non_increasing_clock_names_file_and_line(release_copy: StandinRelease, tmp_path: Path) -> None:
    run = release_copy.runs["S1-ADL1"]
    run.matrix[10, 0] = run.matrix[9, 0]
    write_sensor_matrix(run.sensor_path, run.matrix)
    with pytest.raises(ValueError, match=rf"{run.sensor_path.name}:11: MILLISEC goes from 300 to 300 ms"):
        module(release_copy.root, tmp_path / "cache").prepare_data()


def test_interrupted_build_leaves_no_cache_and_the_next_build_succeeds(release: StandinRelease, tmp_path: Path) -> None:
    dm = module(release.root, tmp_path / "cache")
    original = dm.recordings

    def interrupted():
        generator = original()
        yield next(generator)
        yield next(generator)
        raise KeyboardInterrupt("stopped by the user")

    dm.recordings = interrupted
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_data()
    assert not dm.cache_path.exists()
    assert leftovers(tmp_path / "cache") == []
    fresh = module(release.root, tmp_path / "cache")
    fresh.prepare_data()
    fresh.setup("fit")
    assert fresh.cache.run_names == TRAIN + VAL + TEST


def test_srt_disagreement_warns_and_a_missing_srt_is_fine(release_copy: StandinRelease, tmp_path: Path, caplog) -> None:
    run = release_copy.runs["S1-Drill"]
    shifted = [(start + 700.0, stop + 700.0, label) for start, stop, label in run.segments]
    write_srt(run.srt_paths[0], shifted, legend_names())
    release_copy.runs["S2-ADL3"].srt_paths[0].unlink()
    dm = module(release_copy.root, tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dm.prepare_data()
    assert dm.label_report.srt_agreement["S1-Drill"] < 0.95
    assert dm.label_report.srt_agreement["S1-ADL1"] == 1.0
    assert dm.label_report.runs_without_srt == ["S2-ADL3"]
    assert "S1-Drill" in caplog.text and "agrees with the matrix's ML_Both_Arms column on only" in caplog.text


def test_empty_label_column_falls_back_to_the_srt(
    release_copy: StandinRelease, release: StandinRelease, tmp_path: Path
) -> None:
    run = release_copy.runs["S1-ADL1"]
    run.matrix[:, 249] = np.nan
    write_sensor_matrix(run.sensor_path, run.matrix)
    reference = module(release.root, tmp_path / "reference", **single_run("S1-ADL1"))
    reference.prepare_data()
    reference.setup("fit")
    dm = module(release_copy.root, tmp_path / "cache", **single_run("S1-ADL1"))
    dm.prepare_data()
    dm.setup("fit")
    assert dm.label_report.srt_fallback_runs == ["S1-ADL1"]
    np.testing.assert_array_equal(dm.cache.label, reference.cache.label)
    assert (dm.cache.label >= 0).any()
