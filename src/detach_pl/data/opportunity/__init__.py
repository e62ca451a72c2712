"""Opportunity++ (Ciliberto et al. 2021): the release's readers and its DataModule.

`release` parses the release's files (description files, sensor matrices, SRT tracks, run
folders), `labels` maps label ids to DETACH's classes and places and sums up what it found,
`datamodule` serves it through the shared window cache (docs/datasets/opportunity.md).

`detach_pl.data.opportunity.OpportunityDataModule` is the class path of the configs and of saved
checkpoints; the readers' public names are importable from here too.
"""

from detach_pl.data.opportunity.datamodule import PARSER_VERSION, OpportunityDataModule, SensorRun
from detach_pl.data.opportunity.labels import (
    DETACH_CLASSES,
    PLACE_TRACK,
    LabelReport,
    LabelVocabulary,
    RunLabels,
    map_label_ids,
)
from detach_pl.data.opportunity.release import (
    RUN_NAMES,
    TIME_COLUMN,
    LegendEntry,
    RunFiles,
    Subtitle,
    check_sensor_matrix,
    find_release_file,
    locate_run,
    parse_column_names,
    parse_label_legend,
    parse_sensor_matrix,
    parse_srt,
    resolve_channels,
    run_sort_key,
    subject_of,
    subtitle_rows,
)
from detach_pl.data.vocabulary import AMBIENT_CHANNELS, PLACE_NAMES

__all__ = [
    "AMBIENT_CHANNELS",
    "DETACH_CLASSES",
    "PARSER_VERSION",
    "PLACE_NAMES",
    "PLACE_TRACK",
    "RUN_NAMES",
    "TIME_COLUMN",
    "LabelReport",
    "LabelVocabulary",
    "LegendEntry",
    "OpportunityDataModule",
    "RunFiles",
    "RunLabels",
    "SensorRun",
    "Subtitle",
    "check_sensor_matrix",
    "find_release_file",
    "locate_run",
    "map_label_ids",
    "parse_column_names",
    "parse_label_legend",
    "parse_sensor_matrix",
    "parse_srt",
    "resolve_channels",
    "run_sort_key",
    "subject_of",
    "subtitle_rows",
]
