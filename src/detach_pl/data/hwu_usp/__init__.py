"""HWU-USP (Ranieri et al., Sensors 2021): the release's readers and its DataModule.

`discovery` finds the trials in any folder tree, `ambient` reads an ambient CSV onto a relative
millisecond clock (and the place of every row), `datamodule` serves the trials through the shared
window cache, with the authors' leave-two-subjects-out folds (docs/datasets/hwu_usp.md).

`detach_pl.data.hwu_usp.HwuUspDataModule` is the class path of the configs and of saved
checkpoints; the readers' public names are importable from here too.
"""

from detach_pl.data.hwu_usp.ambient import (
    UNIT_MS,
    AmbientTable,
    GapFill,
    TimestampUnit,
    choose_timestamp_unit,
    fill_gaps,
    find_time_column,
    forward_fill,
    place_per_row,
    read_ambient_csv,
    state_change_times,
)
from detach_pl.data.hwu_usp.datamodule import HwuUspDataModule, ValRule, fold_subjects
from detach_pl.data.hwu_usp.discovery import (
    ACTIVITIES,
    DEFAULT_CHANNELS,
    NONE_PLACE,
    CsvColumns,
    Discovery,
    Trial,
    csv_columns,
    discover_trials,
    parse_trial_name,
    read_column_names,
    trial_name,
    trial_of_path,
)

__all__ = [
    "ACTIVITIES",
    "DEFAULT_CHANNELS",
    "NONE_PLACE",
    "UNIT_MS",
    "AmbientTable",
    "CsvColumns",
    "Discovery",
    "GapFill",
    "HwuUspDataModule",
    "TimestampUnit",
    "Trial",
    "ValRule",
    "choose_timestamp_unit",
    "csv_columns",
    "discover_trials",
    "fill_gaps",
    "find_time_column",
    "fold_subjects",
    "forward_fill",
    "parse_trial_name",
    "place_per_row",
    "read_ambient_csv",
    "read_column_names",
    "state_change_times",
    "trial_name",
    "trial_of_path",
]
