"""Prediction never opens a video: stand-in releases give the same outputs with their videos deleted."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

from detach_pl.cli import main
from detach_pl.data.hwu_usp import DEFAULT_CHANNELS
from detach_pl.data.opportunity import OpportunityDataModule
from detach_pl.testing.hwu_usp import write_standin
from detach_pl.testing.opportunity import write_standin_release
from detach_pl.testing.probe import probe_checkpoint
from helpers import REPO, tiny_encoder

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def predict_in(folder: Path, config: str, ckpt: Path, root: Path, *extra: str) -> dict[str, bytes]:
    """Run `detach predict` with the working directory `folder`; the CSV outputs by name."""
    folder.mkdir()
    previous = Path.cwd()
    os.chdir(folder)
    try:
        main(["predict", "--config", str(REPO / "configs" / config / "predict.yaml"), "--ckpt_path", str(ckpt),
              "--data.root", str(root), *QUIET, *extra])
    finally:
        os.chdir(previous)
    out = folder / "runs" / config / "predict"
    return {path.name: path.read_bytes() for path in sorted(out.glob("*.csv"))}


def forbid_video(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of opening a video raise."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"prediction opened a video: {args[:1]}")

    monkeypatch.setattr(av, "open", refuse)


def delete_videos(root: Path, suffix: str) -> int:
    videos = list(root.rglob(f"*{suffix}"))
    for video in videos:
        video.unlink()
    return len(videos)


def test_opportunity_prediction_reads_sensors_only(tmp_path, monkeypatch) -> None:
    release = write_standin_release(tmp_path / "opp", ["S1-ADL1", "S2-ADL4"], seconds=12.0)
    reader = OpportunityDataModule(root=str(release.root), runs=["S1-ADL1"], progress=False, num_workers=0)
    columns = [c + 1 for c in reader.channel_columns()]
    rows = release.runs["S1-ADL1"].matrix[:, reader.channel_columns()]
    ckpt = probe_checkpoint(tmp_path / "opp.ckpt", "opportunity", reader.channel_labels(),
                            list(reader.vocabulary.class_names), rows, 30.0, tiny_encoder(),
                            source={"channel_columns": columns, "label_track": "ML_Both_Arms"})
    forbid_video(monkeypatch)
    with_video = predict_in(tmp_path / "a", "opp", ckpt, release.root)
    assert sorted(with_video) == [
        "S1-ADL1.events.csv", "S1-ADL1.windows.csv", "S2-ADL4.events.csv", "S2-ADL4.windows.csv"]
    assert with_video["S1-ADL1.windows.csv"].count(b"\n") == 11  # header + 10 windows of a 12-s run
    assert delete_videos(release.root, ".avi") == 2
    assert predict_in(tmp_path / "b", "opp", ckpt, release.root) == with_video
    only = predict_in(tmp_path / "c", "opp", ckpt, release.root, "--data.recordings", "[S2-ADL4]")
    assert only == {name: data for name, data in with_video.items() if name.startswith("S2-ADL4")}
    png = tmp_path / "a/runs/opp/predict/S1-ADL1.timeline.png"
    assert png.stat().st_size > 5000
    with pytest.raises(ValueError, match=r"class list .* differs from the checkpoint's"):
        predict_in(tmp_path / "d", "opp", ckpt, release.root, "--data.classes", "[Open Door 1, Open Door 2]")


def test_hwu_sequence_prediction_reads_sensors_only(tmp_path, monkeypatch) -> None:
    release = write_standin(tmp_path / "hwu", subjects=(1, 2), activities=("tea", "dishes"), seconds=8.0)
    trial = next(iter(release.trials.values()))
    channels = list(DEFAULT_CHANNELS)
    rows = np.stack([trial.column(name) for name in channels], axis=1)
    ckpt = probe_checkpoint(tmp_path / "hwu.ckpt", "hwu_usp", channels, ["tea", "dishes"], rows,
                            trial.sensor_rate_hz, tiny_encoder(), probe_unit="sequence")
    forbid_video(monkeypatch)
    with_video = predict_in(tmp_path / "a", "hwu", ckpt, release.root)
    lines = with_video["predictions.csv"].decode().splitlines()
    assert lines[0].startswith("recording,predicted,probability,truth,p_tea,p_dishes")
    assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(release.trials)
    assert {line.split(",")[3] for line in lines[1:]} == {"tea", "dishes"}
    assert delete_videos(release.root, ".mp4") == 4
    assert predict_in(tmp_path / "b", "hwu", ckpt, release.root) == with_video
