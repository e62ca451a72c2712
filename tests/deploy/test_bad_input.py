"""Bad input: each a clear error or a stated warning, never a silent wrong answer (generic CSV)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from detach_pl.cli import main
from detach_pl.data.sensor_csv import read_sensor_csv
from detach_pl.data.synthetic import CLASS_NAMES, generate_run
from detach_pl.deploy.contract import load_probe
from detach_pl.deploy.data import CsvRecordings
from detach_pl.deploy.readers import world_of
from helpers import DEMO


def write_csv(path: Path, time_s: np.ndarray, columns: dict[str, np.ndarray], labels: list[str] | None = None) -> Path:
    """A generic sensor CSV: timestamp (s), one column per channel, optional label column."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", *columns, *(["label"] if labels is not None else [])])
        for row in range(time_s.size):
            cells = ["" if np.isnan(v[row]) else repr(float(v[row])) for v in columns.values()]
            writer.writerow([repr(float(time_s[row])), *cells, *([labels[row]] if labels is not None else [])])
    return path


@pytest.fixture
def run02(probe_ckpt):
    contract = load_probe(probe_ckpt).contract
    run = generate_run(world_of(contract.extra["source"]), 2)
    columns = {name: run.sensor[:, c] for c, name in enumerate(contract.channel_names)}
    return run, columns, contract


def prepared(path: Path, probe_ckpt: Path, **kwargs):
    data = CsvRecordings(root=str(path), checkpoint=str(probe_ckpt), **kwargs)
    data.setup("predict")
    return data.prepared


def test_csv_recording_equals_the_same_rows_given_in_memory(run02, probe_ckpt, tmp_path) -> None:
    run, columns, contract = run02
    labels = [CLASS_NAMES[k] if k >= 0 else "" for k in run.row_label]
    (recording,) = prepared(write_csv(tmp_path / "kitchen.csv", run.time_ms / 1000.0, columns, labels), probe_ckpt)
    from detach_pl.deploy.data import SyntheticRecordings

    reference = SyntheticRecordings(checkpoint=str(probe_ckpt), recordings=["run02"])
    reference.setup("predict")
    np.testing.assert_allclose(recording.windows.start_ms, reference.prepared[0].windows.start_ms, atol=1e-6)
    np.testing.assert_allclose(recording.windows.sensor, reference.prepared[0].windows.sensor, atol=1e-5)
    np.testing.assert_array_equal(recording.windows.label, reference.prepared[0].windows.label)


def test_missing_channels_are_listed(run02, probe_ckpt, tmp_path) -> None:
    run, columns, contract = run02
    dropped = contract.channel_names[3:5]
    kept = {name: values for name, values in columns.items() if name not in dropped}
    needs = r"lacks 2 of the 41 channels the model needs: \[" + ".*".join(map(repr, dropped))
    with pytest.raises(ValueError, match=needs):
        prepared(write_csv(tmp_path / "k.csv", run.time_ms / 1000.0, kept), probe_ckpt)


def test_extra_channels_are_ignored_and_named_once(run02, probe_ckpt, tmp_path, caplog) -> None:
    run, columns, _ = run02
    plain = prepared(write_csv(tmp_path / "plain.csv", run.time_ms / 1000.0, columns), probe_ckpt)[0]
    extra = {"KETTLE": np.ones(run.time_ms.size), **dict(reversed(list(columns.items())))}
    with caplog.at_level(logging.WARNING, logger="detach_pl.deploy.preprocess"):
        (recording,) = prepared(write_csv(tmp_path / "extra.csv", run.time_ms / 1000.0, extra), probe_ckpt)
    notes = [r.getMessage() for r in caplog.records if "not trained on" in r.getMessage()]
    assert len(notes) == 1 and "['KETTLE']" in notes[0]
    np.testing.assert_array_equal(recording.windows.sensor, plain.windows.sensor)  # reordered by name


def test_another_sensor_rate_is_resampled_with_a_warning_or_refused(run02, probe_ckpt, tmp_path, caplog) -> None:
    run, columns, _ = run02
    slow = {name: values[::2] for name, values in columns.items()}  # 15 Hz instead of 30
    path = write_csv(tmp_path / "slow.csv", run.time_ms[::2] / 1000.0, slow)
    with caplog.at_level(logging.WARNING, logger="detach_pl.deploy.preprocess"):
        (recording,) = prepared(path, probe_ckpt)
    assert any("resampled linearly to 30" in r.getMessage() for r in caplog.records)
    steps = np.diff(recording.time_ms)
    np.testing.assert_allclose(steps, steps[0]) and np.testing.assert_allclose(1000.0 / steps[0], 30.0, rtol=0.05)
    assert np.isfinite(recording.windows.sensor).all()
    refused = r"sensor rate 1[45]\.\d+ Hz, the model was trained at 30\.\d+ Hz \(data\.init_args\.rate_mismatch=error"
    with pytest.raises(ValueError, match=refused):
        prepared(path, probe_ckpt, rate_mismatch="error")


def test_a_recording_shorter_than_one_window_is_refused(run02, probe_ckpt, tmp_path) -> None:
    run, columns, _ = run02
    rows = run.time_ms < 1500.0
    short = {name: values[rows] for name, values in columns.items()}
    with pytest.raises(ValueError, match=r"shorter than one 2-s window: nothing to predict"):
        prepared(write_csv(tmp_path / "short.csv", run.time_ms[rows] / 1000.0, short), probe_ckpt)


def test_an_all_nan_channel_follows_the_training_nan_policy_and_is_reported(
    run02, probe_ckpt, tmp_path, caplog
) -> None:
    run, columns, contract = run02
    name = contract.channel_names[0]
    broken = dict(columns, **{name: np.full(run.time_ms.size, np.nan)})
    with caplog.at_level(logging.WARNING, logger="detach_pl.deploy.preprocess"):
        (recording,) = prepared(write_csv(tmp_path / "nan.csv", run.time_ms / 1000.0, broken), probe_ckpt)
    windows = recording.windows.sensor.shape[0]
    assert any(f"{name} ({windows} windows)" in r.getMessage() and "nan_policy zero_nans" in r.getMessage()
               for r in caplog.records)
    assert np.isfinite(recording.windows.sensor).all()
    # zero_nans: the channel's NaNs become 0, which standardisation keeps at 0 (keep_zeros).
    np.testing.assert_array_equal(recording.windows.sensor[:, 0], 0.0)


def test_unknown_class_names_and_bad_cells_name_file_and_line(run02, probe_ckpt, tmp_path) -> None:
    run, columns, _ = run02
    labels = ["Open Door 1"] * run.time_ms.size
    labels[7] = "Make Coffee"
    with pytest.raises(ValueError, match=r"bad\.csv:9: label 'Make Coffee' is not one of the model's classes"):
        prepared(write_csv(tmp_path / "bad.csv", run.time_ms / 1000.0, columns, labels), probe_ckpt)
    text = (tmp_path / "bad.csv").read_text().splitlines()
    text[4] = text[4].replace(text[4].split(",")[1], "open", 1)
    (tmp_path / "cell.csv").write_text("\n".join(text).replace("Make Coffee", ""))
    with pytest.raises(ValueError, match=r"cell\.csv:5: column .* holds 'open', expected a number"):
        prepared(tmp_path / "cell.csv", probe_ckpt)


def test_run_classes_give_each_csv_its_truth_and_bad_ones_are_named(run02, probe_ckpt, tmp_path) -> None:
    run, columns, _ = run02
    for name in ("a", "b"):
        write_csv(tmp_path / f"{name}.csv", run.time_ms / 1000.0, columns)
    first, second = prepared(tmp_path, probe_ckpt, run_classes={"b": CLASS_NAMES[3]})
    assert (first.name, first.sequence_label) == ("a", -1)
    assert (second.name, second.sequence_label) == ("b", 3)
    # Only the named recordings are read, but a class may be given for any CSV under root.
    (only_a,) = prepared(tmp_path, probe_ckpt, recordings=["a"], run_classes={"b": CLASS_NAMES[3]})
    assert only_a.name == "a"
    unknown = r"run_classes names \['c'\], which are not runs under .* \(found: \['a', 'b'\]"
    with pytest.raises(ValueError, match=unknown):
        prepared(tmp_path, probe_ckpt, run_classes={"c": CLASS_NAMES[0]})
    outside = r"run_classes: \{'a': 'Make Coffee'\} are not among the classes \['Open Door 1'"
    with pytest.raises(ValueError, match=outside):
        prepared(tmp_path, probe_ckpt, run_classes={"a": "Make Coffee"})


def test_predict_with_a_stage_checkpoint_says_which_it_is(probe_ckpt, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    checkpoint = torch.load(probe_ckpt, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "detach_pl.modules.SpatialGroundingModule"
    torch.save(checkpoint, tmp_path / "stage1.ckpt")
    with pytest.raises(ValueError, match=r"stage1\.ckpt is a stage-1 .* prediction needs a linear-probe checkpoint"):
        main(["predict", "--config", str(DEMO / "predict.yaml"), "--ckpt_path", str(tmp_path / "stage1.ckpt")])
    with pytest.raises(ValueError, match="needs the probe checkpoint: --ckpt_path"):
        main(["predict", "--config", str(DEMO / "predict.yaml")])


def reference_table(path: Path) -> tuple[list[str], np.ndarray]:
    """Header and numbers of a CSV read cell by cell (csv module, empty cell → NaN, blank rows skipped)."""
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    return rows[0], np.array([[float(cell) if cell.strip() else np.nan for cell in row] for row in rows[1:]])


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_csv_numbers_equal_a_cell_by_cell_reading_with_or_without_blank_rows(tmp_path, line_end) -> None:
    rng = np.random.default_rng(1)
    values = np.round(rng.normal(0, 100, (40, 4)), 4)
    values[rng.random(values.shape) < 0.2] = np.nan  # empty cells, first and last columns included
    lines = ["timestamp,a,b,c"] + [",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in values]
    for name, body in (("plain", lines), ("blank", lines[:9] + [",,,", ""] + lines[9:])):
        path = tmp_path / f"{name}.csv"
        path.write_text(line_end.join(body) + line_end)
        recording = read_sensor_csv(path, CLASS_NAMES)
        header, table = reference_table(path)
        assert recording.channel_names == header[1:]
        np.testing.assert_array_equal(recording.time_ms, table[:, 0] * 1000.0)
        np.testing.assert_array_equal(recording.sensor, table[:, 1:])  # NaN where the reference has NaN


def test_prediction_settings_out_of_range_are_named_at_once() -> None:
    with pytest.raises(ValueError) as error:
        CsvRecordings(root="new", batch_size=0, rate_mismatch="drop", rate_tolerance=1.0, num_workers=-1)
    assert str(error.value) == (
        "data.init_args.batch_size=0 must be >= 1; "
        "data.init_args.rate_mismatch='drop' must be one of ['resample', 'error']; "
        "data.init_args.rate_tolerance=1.0 must be in [0, 1); data.init_args.num_workers=-1 must be >= 0"
    )
    CsvRecordings(root="new", batch_size=1, rate_tolerance=0.0, num_workers=0)  # the edges are accepted
