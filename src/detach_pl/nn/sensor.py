"""Ambient-sensor encoders: the spatial encoder f_s (which place) and the temporal encoder g_s."""

from __future__ import annotations

import itertools

from torch import Tensor, nn

from detach_pl.nn.config import EncoderConfig
from detach_pl.nn.layers import SelfAttentionPooling


def check_sensor(sensor: Tensor, num_channels: int, min_length: int = 1) -> None:
    """Raise ValueError unless ``sensor`` is (B, num_channels, L) with L ≥ ``min_length``."""
    if sensor.dim() != 3 or sensor.shape[1] != num_channels:
        raise ValueError(
            f"sensor window must have shape (B, {num_channels}, L), got {tuple(sensor.shape)}"
        )
    if sensor.shape[2] < min_length:
        raise ValueError(
            f"sensor windows of {sensor.shape[2]} samples are too short for this encoder's "
            f"unpadded convolutions and pooling (at least {min_length}; the released length is 128)"
        )


def temporal_quantile(values: Tensor, q: float) -> Tensor:
    """q-quantile over the last axis with linear interpolation (as ``torch.quantile``).

    Computed with a sort, which unlike ``torch.quantile`` has no limit on the input size (large
    evaluation batches of many-channel windows exceed it).

    Args:
        values: (..., L) tensor.
        q: Quantile in [0, 1].

    Returns:
        (...) tensor of quantiles; differentiable.
    """
    ordered = values.sort(dim=-1).values
    position = q * (values.shape[-1] - 1)
    lower = int(position)
    upper = min(lower + 1, values.shape[-1] - 1)
    fraction = position - lower
    return ordered[..., lower] + fraction * (ordered[..., upper] - ordered[..., lower])


def released_spatial_blocks(num_channels: int, config: EncoderConfig) -> tuple[list[nn.Module], int]:
    """Released f_s blocks: conv (no padding, dilation 2, no bias) → ReLU → BatchNorm → max-pool 2.

    Kernel 5 in the first block and 3 after it; no max-pool after the last block (the adaptive
    pool follows). For C → 32 → 64 → 64 and L = 128: 128 → 120 → 60 → 56 → 28 → 24.

    Returns:
        The layers and the shortest window length they accept.
    """
    channels = config.sensor_spatial_channels
    layers: list[nn.Module] = []
    shapes: list[tuple[int, bool]] = []
    in_channels = num_channels
    for block, out_channels in enumerate(channels):
        kernel = 5 if block == 0 else 3
        pooled = block < len(channels) - 1
        layers += [
            nn.Conv1d(in_channels, out_channels, kernel, dilation=2, bias=False),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(out_channels),
        ]
        if pooled:
            layers.append(nn.MaxPool1d(2))
        shapes.append((kernel, pooled))
        in_channels = out_channels
    min_length = 1
    for kernel, pooled in reversed(shapes):
        min_length = (2 * min_length if pooled else min_length) + 2 * (kernel - 1)
    return layers, min_length


def paper_spatial_blocks(num_channels: int, config: EncoderConfig) -> list[nn.Module]:
    """f_s blocks as the paper's text reads: kernel 5 dilation 2 "same" + max-pool, then kernel 3."""
    channels = config.sensor_spatial_channels
    layers: list[nn.Module] = [
        nn.Conv1d(num_channels, channels[0], kernel_size=5, dilation=2, padding="same"),
        nn.ReLU(inplace=True),
        nn.MaxPool1d(2),
    ]
    for in_channels, out_channels in itertools.pairwise(channels):
        layers += [nn.Conv1d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True)]
    return layers


class SensorEncoder(nn.Module):
    """Base of the two sensor encoders: both encode windows (B, C, L) of a fixed channel count C.

    Args:
        num_channels: Sensor channels C (> 0).
    """

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        if num_channels <= 0:
            raise ValueError(f"{type(self).__name__} needs num_channels > 0, got {num_channels}")
        self.num_channels = num_channels


class SensorSpatialEncoder(SensorEncoder):
    """f_s: which place (which sensors) is active in the window.

    1D-CNN blocks (`sensor_spatial_style`: the released blocks by default), adaptive average pool
    to `sensor_spatial_pool` steps, GroupNorm and a GRU whose last hidden state summarises the
    window; a linear map to embed_dim if the sizes differ. Added element-wise: Linear(C →
    embed_dim) of the per-channel amplitude, the q-quantile (default 99th percentile) of |s| over
    time. The amplitude says directly which channels fire, i.e. where. A percentile rather than the
    max is used because it is robust to single spikes: one outlier sample moves the max
    arbitrarily but moves the 99th percentile by at most one rank.

    Args:
        num_channels: Sensor channels C, the input of the first conv and of the amplitude map.
        config: Architecture hyper-parameters (the `sensor_spatial_*` settings, embed_dim, gru_hidden).
    """

    def __init__(self, num_channels: int, config: EncoderConfig) -> None:
        super().__init__(num_channels)
        self.percentile = float(config.amplitude_percentile)
        channels = config.sensor_spatial_channels
        if config.sensor_spatial_style == "released":
            layers, self.min_length = released_spatial_blocks(num_channels, config)
        else:
            layers, self.min_length = paper_spatial_blocks(num_channels, config), 2
        layers += [
            nn.AdaptiveAvgPool1d(config.sensor_spatial_pool),
            nn.GroupNorm(config.sensor_spatial_groups, channels[-1]),
        ]
        self.conv = nn.Sequential(*layers)
        self.gru = nn.GRU(channels[-1], config.gru_hidden, batch_first=True)
        self.projection: nn.Module = (
            nn.Linear(config.gru_hidden, config.embed_dim)
            if config.gru_hidden != config.embed_dim
            else nn.Identity()
        )
        self.amplitude = nn.Linear(num_channels, config.embed_dim)

    def amplitude_feature(self, sensor: Tensor) -> Tensor:
        """Per-channel q-quantile of |s| over time: (B, C, L) → (B, C)."""
        check_sensor(sensor, self.num_channels)
        return temporal_quantile(sensor.abs(), self.percentile)

    def forward(self, sensor: Tensor) -> Tensor:
        """Encode windows (B, C, L) into z_s of shape (B, embed_dim)."""
        check_sensor(sensor, self.num_channels, self.min_length)
        sequence = self.conv(sensor).transpose(1, 2)  # (B, pool, channels)
        _, last_hidden = self.gru(sequence)
        return self.projection(last_hidden[-1]) + self.amplitude(self.amplitude_feature(sensor))


def temporal_blocks(num_channels: int, config: EncoderConfig) -> list[nn.Module]:
    """g_s conv blocks of `sensor_temporal_style`, keeping (released: halving) the length.

    "released": conv (kernel 5 then 3, padding (k//2)·dilation, no bias) → BatchNorm → ReLU →
    max-pool 2 after every block but the last; "paper": kernel 3, "same" padding, ReLU.
    """
    layers: list[nn.Module] = []
    in_channels = num_channels
    blocks = list(zip(config.sensor_temporal_channels, config.sensor_temporal_dilations, strict=True))
    for block, (out_channels, dilation) in enumerate(blocks):
        if config.sensor_temporal_style == "released":
            kernel = 5 if block == 0 else 3
            layers += [
                nn.Conv1d(in_channels, out_channels, kernel, dilation=dilation,
                          padding=(kernel // 2) * dilation, bias=False),
                nn.BatchNorm1d(out_channels),
                nn.ReLU(inplace=True),
            ]
            if block < len(blocks) - 1:
                layers.append(nn.MaxPool1d(2))
        else:
            layers += [
                nn.Conv1d(in_channels, out_channels, 3, dilation=dilation, padding="same"),
                nn.ReLU(inplace=True),
            ]
        in_channels = out_channels
    return layers


class SensorTemporalEncoder(SensorEncoder):
    """g_s: how the sensor signal evolves within the window.

    Dilated temporal conv blocks (dilations 1, 2, 4 widen the receptive field; the released
    blocks also halve the length twice, so the BiGRU runs over L/4 steps), GroupNorm, a
    bidirectional GRU over time, self-attention pooling (q/k/v, softmax over time, mean over
    time) and Linear(2·gru_hidden → embed_dim).

    Args:
        num_channels: Sensor channels C, the input of the first dilated conv.
        config: Architecture hyper-parameters (the `sensor_temporal_*` settings, embed_dim, gru_hidden).
    """

    def __init__(self, num_channels: int, config: EncoderConfig) -> None:
        super().__init__(num_channels)
        pools = len(config.sensor_temporal_channels) - 1
        self.min_length = 2**pools if config.sensor_temporal_style == "released" else 1
        width = config.sensor_temporal_channels[-1]
        layers = temporal_blocks(num_channels, config)
        layers.append(nn.GroupNorm(config.sensor_temporal_groups, width))
        self.conv = nn.Sequential(*layers)
        self.gru = nn.GRU(width, config.gru_hidden, batch_first=True, bidirectional=True)
        self.pool = SelfAttentionPooling(2 * config.gru_hidden)
        self.projection = nn.Linear(2 * config.gru_hidden, config.embed_dim)

    def forward(self, sensor: Tensor) -> Tensor:
        """Encode windows (B, C, L) into h_s of shape (B, embed_dim)."""
        check_sensor(sensor, self.num_channels, self.min_length)
        sequence, _ = self.gru(self.conv(sensor).transpose(1, 2))  # (B, L', 2·gru_hidden)
        return self.projection(self.pool(sequence))
