"""Opportunity++ (Ciliberto et al. 2021): the release's readers and its DataModule.

`release` parses the release's files (description files, sensor matrices, SRT tracks, run
folders), `labels` maps label ids to DETACH's classes and places and sums up what it found,
`datamodule` serves it through the shared window cache (docs/datasets/opportunity.md).

`detach_pl.data.opportunity.OpportunityDataModule` is the class path of the configs and of saved
checkpoints. The readers' names are imported from their modules (`...opportunity.release`,
`...opportunity.labels`); the package names only the DataModule and the reader deployment uses
(`locate_run`).
"""

from detach_pl.data.opportunity.datamodule import PARSER_VERSION, OpportunityDataModule, SensorRun
from detach_pl.data.opportunity.release import locate_run

__all__ = ["PARSER_VERSION", "OpportunityDataModule", "SensorRun", "locate_run"]
