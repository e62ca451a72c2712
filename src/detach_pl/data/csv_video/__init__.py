"""One's own sensors and camera: a sensor CSV and a video per run (`CsvVideoDataModule`)."""

from detach_pl.data.csv_video.datamodule import CsvVideoDataModule
from detach_pl.data.csv_video.runs import VIDEO_SUFFIXES, CsvVideoRun, find_runs

__all__ = ["VIDEO_SUFFIXES", "CsvVideoDataModule", "CsvVideoRun", "find_runs"]
