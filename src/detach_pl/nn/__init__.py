"""Plain nn.Modules of DETACH: the four encoders, shared layers and the EMA helper."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from detach_pl.nn.config import EncoderConfig
from detach_pl.nn.ema import make_ema_copy, update_ema
from detach_pl.nn.layers import CosineLinear, SelfAttentionPooling, joint_embedding
from detach_pl.nn.sensor import SensorSpatialEncoder, SensorTemporalEncoder
from detach_pl.nn.video import VideoSpatialEncoder, VideoTemporalEncoder

ENCODER_NAMES: tuple[str, ...] = (
    "video_spatial",
    "video_temporal",
    "sensor_spatial",
    "sensor_temporal",
)


def build_encoder(name: str, config: EncoderConfig, num_channels: int) -> nn.Module:
    """Build one encoder by name (one of :data:`ENCODER_NAMES`)."""
    if name == "video_spatial":
        return VideoSpatialEncoder(config)
    if name == "video_temporal":
        return VideoTemporalEncoder(config)
    if name == "sensor_spatial":
        return SensorSpatialEncoder(num_channels, config)
    if name == "sensor_temporal":
        return SensorTemporalEncoder(num_channels, config)
    raise ValueError(f"unknown encoder {name!r}; valid names are {list(ENCODER_NAMES)}")


def build_encoders(names: Sequence[str], config: EncoderConfig, num_channels: int) -> nn.ModuleDict:
    """Build the named encoders into a ModuleDict keyed by name.

    Every stage builds its encoders through this function, so a module's state-dict keys
    (``<name>.<parameter>``) are the same in every stage and weights carry over by name.

    Args:
        names: Subset of :data:`ENCODER_NAMES`, no repeats.
        config: Architecture hyper-parameters.
        num_channels: Sensor channels C (used by the sensor encoders).
    """
    if isinstance(names, str):
        raise ValueError(f"build_encoders needs a sequence of names, got the string {names!r}")
    unknown = [name for name in names if name not in ENCODER_NAMES]
    if unknown:
        raise ValueError(f"unknown encoder(s) {unknown}; valid names are {list(ENCODER_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"build_encoders got repeated encoder names: {list(names)}")
    return nn.ModuleDict({name: build_encoder(name, config, num_channels) for name in names})


__all__ = [
    "ENCODER_NAMES",
    "CosineLinear",
    "EncoderConfig",
    "SelfAttentionPooling",
    "SensorSpatialEncoder",
    "SensorTemporalEncoder",
    "VideoSpatialEncoder",
    "VideoTemporalEncoder",
    "build_encoder",
    "build_encoders",
    "joint_embedding",
    "make_ema_copy",
    "update_ema",
]
