"""Architecture hyper-parameters shared by every training stage.

One :class:`EncoderConfig` describes all four encoders, so a later stage (or ``detach test``)
rebuilds exactly the modules of the earlier one and their state-dict keys match. Only plain types
are used (ints, floats, strings, lists of ints) so that jsonargparse can read the config from YAML
and Lightning can store it in a checkpoint's hyper-parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

VIDEO_BACKBONES: tuple[str, ...] = ("plain_cnn", "resnet18")
SENSOR_STYLES: tuple[str, ...] = ("released", "paper")
LEGACY_KEYS: tuple[str, ...] = ("groupnorm_groups", "small_cnn_width")
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Settings that change how the encoders are built or run, not the weights they hold: a later stage
# may set them differently from the checkpoint it starts from.
NON_ARCHITECTURE_KEYS: tuple[str, ...] = ("backbone_weights", "channels_last", "compile", "compile_mode")


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
    """Hyper-parameters of the four DETACH encoders; defaults are the released code's (docs/method.md).

    Attributes:
        embed_dim: Output size d of every encoder (256).
        video_backbone: Per-frame 2D CNN of f_v: ``"plain_cnn"`` (released: conv 7×7 stride 2,
            then 3×3 stride-2 convs, each with BatchNorm + ReLU, no bias; 256×14×14 at 224 px)
            or ``"resnet18"`` (torchvision, randomly initialised or from `backbone_weights`).
        video_cnn_channels: Output channels of the ``plain_cnn`` convs ([64, 128, 256, 256]).
        backbone_weights: Optional path to a LOCAL state-dict file for the video backbone
            (e.g. torchvision ResNet-18 ImageNet weights saved with ``torch.save``). Nothing is
            ever downloaded.
        video_normalization: Frames enter f_v as [0, 1] values (``"none"``, released) or
            standardised with the ImageNet mean/std (``"imagenet"``, for ImageNet weights).
        object_pooling: Object head pooling: ``"mean"`` of a·f over the H·W positions (released)
            or the attention-weighted average Σa·f / Σa (``"weighted"``).
        video_temporal_channels: Output channels of the Conv3d blocks of g_v.
        video_temporal_scale: A learnable output scale on g_v's cosine-normalised head (the
            released head has none; u_v and S^tm only use h_v's direction either way).
        sensor_spatial_style: f_s blocks. ``"released"``: conv without padding, dilation 2,
            no bias → ReLU → BatchNorm, max-pool 2 after every block but the last (kernel 5, then
            3); ``"paper"``: "same" padding, kernel 5 dilation 2 + max-pool in the first block,
            then kernel-3 dilation-1 blocks, no BatchNorm.
        sensor_spatial_channels: Output channels of the f_s conv blocks.
        sensor_spatial_pool: Length the f_s feature sequence is adaptively pooled to (32).
        sensor_spatial_groups: GroupNorm groups of f_s (4).
        sensor_temporal_style: g_s blocks. ``"released"``: conv with padding (k//2)·dilation, no
            bias → BatchNorm → ReLU, max-pool 2 after every block but the last (kernel 5, then 3;
            128 → 64 → 32 → 32 steps); ``"paper"``: kernel 3, "same" padding, ReLU, no BatchNorm,
            no pooling (the BiGRU runs over all L steps).
        sensor_temporal_channels: Output channels of the g_s conv blocks.
        sensor_temporal_dilations: Dilation of each g_s conv block (one per block).
        sensor_temporal_groups: GroupNorm groups of g_s (8).
        gru_hidden: Hidden size of the sensor GRUs (per direction).
        amplitude_percentile: Quantile q of |s| over time used as the sensor amplitude feature.
        channels_last: Throughput option (off = released): the video encoders keep their conv
            weights and inputs channels-last (NHWC; NDHWC for g_v's Conv3d), the layout cuDNN's
            fast convolutions and bf16 tensor cores want. Same outputs up to rounding.
        compile: Throughput option (off = released): `torch.compile` every encoder of the stage
            in place (`nn.Module.compile`, so state-dict keys stay the same), applied in the
            LightningModule's `configure_model`. Same outputs up to rounding; the first steps
            compile.
        compile_mode: `torch.compile` mode when `compile` is on: "default", "reduce-overhead"
            (CUDA graphs), "max-autotune" or "max-autotune-no-cudagraphs".
    """

    embed_dim: int = 256
    video_backbone: Literal["plain_cnn", "resnet18"] = "plain_cnn"
    video_cnn_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 256])
    backbone_weights: str | None = None
    video_normalization: Literal["none", "imagenet"] = "none"
    object_pooling: Literal["mean", "weighted"] = "mean"
    video_temporal_channels: list[int] = field(default_factory=lambda: [32, 64, 256])
    video_temporal_scale: bool = False
    sensor_spatial_style: Literal["released", "paper"] = "released"
    sensor_spatial_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    sensor_spatial_pool: int = 32
    sensor_spatial_groups: int = 4
    sensor_temporal_style: Literal["released", "paper"] = "released"
    sensor_temporal_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    sensor_temporal_dilations: list[int] = field(default_factory=lambda: [1, 2, 4])
    sensor_temporal_groups: int = 8
    gru_hidden: int = 256
    amplitude_percentile: float = 0.99
    channels_last: bool = False
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"

    def __post_init__(self) -> None:
        """Validate every field and normalise sequences to lists of ints."""
        _require_positive("embed_dim", self.embed_dim)
        choices = {
            "video_backbone": VIDEO_BACKBONES,
            "video_normalization": ("none", "imagenet"),
            "object_pooling": ("mean", "weighted"),
            "sensor_spatial_style": SENSOR_STYLES,
            "sensor_temporal_style": SENSOR_STYLES,
            "compile_mode": COMPILE_MODES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"EncoderConfig.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}"
                )
        if self.backbone_weights is not None and not isinstance(self.backbone_weights, str):
            raise ValueError(
                "EncoderConfig.backbone_weights must be a file path string or None, "
                f"got {self.backbone_weights!r}"
            )
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"EncoderConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if self.backbone_weights == "":
            raise ValueError("EncoderConfig.backbone_weights must be a non-empty path or None")
        for name in ("sensor_spatial_pool", "gru_hidden", "sensor_spatial_groups", "sensor_temporal_groups"):
            _require_positive(name, getattr(self, name))
        for name in (
            "video_cnn_channels",
            "video_temporal_channels",
            "sensor_spatial_channels",
            "sensor_temporal_channels",
            "sensor_temporal_dilations",
        ):
            setattr(self, name, _positive_int_list(name, getattr(self, name)))
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
        for groups, channels in (
            ("sensor_spatial_groups", "sensor_spatial_channels"),
            ("sensor_temporal_groups", "sensor_temporal_channels"),
        ):
            if getattr(self, channels)[-1] % getattr(self, groups) != 0:
                raise ValueError(
                    f"EncoderConfig.{groups}={getattr(self, groups)} must divide the last entry of "
                    f"{channels} ({getattr(self, channels)[-1]})"
                )

    @classmethod
    def from_dict(cls, values: dict) -> EncoderConfig:
        """Build from a plain dict (a YAML file or a checkpoint's hyper-parameters).

        Raises:
            ValueError: The dict is from before the released-code encoders (it has
                `groupnorm_groups` or `small_cnn_width`): those weights fit other layers.
        """
        legacy = [key for key in LEGACY_KEYS if key in values]
        if legacy:
            raise ValueError(
                f"this encoder configuration has {legacy}, settings of the encoders before they "
                "followed the released code (sensor_spatial_groups / sensor_temporal_groups, "
                "video_backbone plain_cnn with video_cnn_channels now); its weights do not fit the "
                "current layers: retrain the stages, or update the encoder YAML"
            )
        return cls(**values)
