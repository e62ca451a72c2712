"""LightningModules: stage 1 (spatial grounding), stage 2 (temporal alignment), linear probe, baselines."""

from detach_pl.modules.base import DetachModule
from detach_pl.modules.baselines import GlobalAlignmentModule, SupervisedSensorModule
from detach_pl.modules.probe import LinearProbeModule
from detach_pl.modules.sensor_classifier import SensorClassifierModule
from detach_pl.modules.stage1 import SpatialGroundingModule
from detach_pl.modules.stage2 import TemporalAlignmentModule

__all__ = [
    "DetachModule",
    "GlobalAlignmentModule",
    "LinearProbeModule",
    "SensorClassifierModule",
    "SpatialGroundingModule",
    "SupervisedSensorModule",
    "TemporalAlignmentModule",
]
