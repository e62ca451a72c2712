"""Architecture hyper-parameters shared by every training stage.

One :class:`EncoderConfig` describes all four encoders, so a later stage (or ``detach test``)
rebuilds exactly the modules of the earlier one and their state-dict keys match. Only plain types
are used (ints, floats, strings, lists of ints) so that jsonargparse can read the config from YAML
and Lightning can store it in a checkpoint's hyper-parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

VIDEO_BACKBONES: tuple[str, ...] = ("small_cnn", "resnet18")


def _positive_int_list(name: str, values: list[int]) -> list[int]:
    """Return ``values`` as a fresh list of ints, or raise if it is empty or not all positive."""
    checked = list(values)
    if not checked:
        raise ValueError(f"EncoderConfig.{name} must list at least one value, got {values!r}")
    for value in checked:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"EncoderConfig.{name} must contain positive integers, got {values!r}"
            )
    return checked


def _require_positive(name: str, value: int) -> None:
    """Raise unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"EncoderConfig.{name} must be a positive integer, got {value!r}")


@dataclass
class EncoderConfig:
    """Hyper-parameters of the four DETACH encoders (defaults follow the paper, method.md).

    Attributes:
        embed_dim: Output size d of every encoder (256 in the paper).
        video_backbone: Per-frame 2D CNN of the video spatial encoder: ``"resnet18"`` (the
            paper's, torchvision, randomly initialised) or ``"small_cnn"`` (a light 4-block CNN
            for CPU demos).
        backbone_weights: Optional path to a LOCAL state-dict file for the video backbone
            (e.g. torchvision ResNet-18 ImageNet weights saved with ``torch.save``). Nothing is
            ever downloaded.
        small_cnn_width: Channels of the first ``small_cnn`` block (doubled in each of 4 blocks).
        video_temporal_channels: Output channels of the Conv3d blocks of the video temporal
            encoder.
        sensor_spatial_channels: Output channels of the 1D-CNN blocks of the sensor spatial
            encoder (the first block has kernel 5, dilation 2 and a max-pool; the rest kernel 3).
        sensor_spatial_pool: Length the sensor spatial feature sequence is adaptively pooled to.
        sensor_temporal_channels: Output channels of the dilated conv blocks of the sensor
            temporal encoder.
        sensor_temporal_dilations: Dilation of each sensor temporal conv block (one per block).
        gru_hidden: Hidden size of the sensor GRUs (per direction).
        amplitude_percentile: Quantile q of |s| over time used as the sensor amplitude feature.
        groupnorm_groups: Groups of the GroupNorm layers in the sensor encoders; must divide the
            last channel count of both sensor encoders.
    """

    embed_dim: int = 256
    video_backbone: Literal["small_cnn", "resnet18"] = "resnet18"
    backbone_weights: str | None = None
    small_cnn_width: int = 32
    video_temporal_channels: list[int] = field(default_factory=lambda: [32, 64, 256])
    sensor_spatial_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    sensor_spatial_pool: int = 32
    sensor_temporal_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    sensor_temporal_dilations: list[int] = field(default_factory=lambda: [1, 2, 4])
    gru_hidden: int = 256
    amplitude_percentile: float = 0.99
    groupnorm_groups: int = 8

    def __post_init__(self) -> None:
        """Validate every field and normalise sequences to lists of ints."""
        _require_positive("embed_dim", self.embed_dim)
        if self.video_backbone not in VIDEO_BACKBONES:
            raise ValueError(
                f"EncoderConfig.video_backbone must be one of {list(VIDEO_BACKBONES)}, "
                f"got {self.video_backbone!r}"
            )
        if self.backbone_weights is not None and not isinstance(self.backbone_weights, str):
            raise ValueError(
                "EncoderConfig.backbone_weights must be a file path string or None, "
                f"got {self.backbone_weights!r}"
            )
        if self.backbone_weights == "":
            raise ValueError("EncoderConfig.backbone_weights must be a non-empty path or None")
        _require_positive("small_cnn_width", self.small_cnn_width)
        _require_positive("sensor_spatial_pool", self.sensor_spatial_pool)
        _require_positive("gru_hidden", self.gru_hidden)
        _require_positive("groupnorm_groups", self.groupnorm_groups)
        self.video_temporal_channels = _positive_int_list(
            "video_temporal_channels", self.video_temporal_channels
        )
        self.sensor_spatial_channels = _positive_int_list(
            "sensor_spatial_channels", self.sensor_spatial_channels
        )
        self.sensor_temporal_channels = _positive_int_list(
            "sensor_temporal_channels", self.sensor_temporal_channels
        )
        self.sensor_temporal_dilations = _positive_int_list(
            "sensor_temporal_dilations", self.sensor_temporal_dilations
        )
        if len(self.sensor_temporal_dilations) != len(self.sensor_temporal_channels):
            raise ValueError(
                "EncoderConfig.sensor_temporal_dilations needs one dilation per entry of "
                f"sensor_temporal_channels ({len(self.sensor_temporal_channels)}), got "
                f"{self.sensor_temporal_dilations!r}"
            )
        if not 0.0 < float(self.amplitude_percentile) <= 1.0:
            raise ValueError(
                "EncoderConfig.amplitude_percentile must be a quantile in (0, 1], got "
                f"{self.amplitude_percentile!r}"
            )
        for name, channels in (
            ("sensor_spatial_channels", self.sensor_spatial_channels),
            ("sensor_temporal_channels", self.sensor_temporal_channels),
        ):
            if channels[-1] % self.groupnorm_groups != 0:
                raise ValueError(
                    f"EncoderConfig.groupnorm_groups={self.groupnorm_groups} must divide the last "
                    f"entry of {name} ({channels[-1]})"
                )
