"""HWU-USP (Ranieri et al., Sensors 2021): the release's readers and its DataModule.

`discovery` finds the trials in any folder tree, `ambient` reads an ambient CSV onto a relative
millisecond clock (and the place of every row), `datamodule` serves the trials through the shared
window cache, with the authors' leave-two-subjects-out folds (docs/datasets/hwu_usp.md).

`detach_pl.data.hwu_usp.HwuUspDataModule` is the class path of the configs and of saved
checkpoints. The readers' names are imported from their modules (`...hwu_usp.discovery`,
`...hwu_usp.ambient`); the package names only the DataModule and what deployment uses to read a
recording without a cache (trial discovery, the ambient CSV reader and its options).
"""

from detach_pl.data.hwu_usp.ambient import GapFill, TimestampUnit, read_ambient_csv
from detach_pl.data.hwu_usp.datamodule import HwuUspDataModule
from detach_pl.data.hwu_usp.discovery import DEFAULT_CHANNELS, discover_trials

__all__ = ["DEFAULT_CHANNELS", "GapFill", "HwuUspDataModule", "TimestampUnit", "discover_trials", "read_ambient_csv"]
