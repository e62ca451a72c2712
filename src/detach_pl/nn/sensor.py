"""Ambient-sensor encoders: the spatial encoder f_s (which place) and the temporal encoder g_s."""

from __future__ import annotations

from torch import Tensor, nn

from detach_pl.nn.config import EncoderConfig
from detach_pl.nn.layers import SelfAttentionPooling


def check_sensor(sensor: Tensor, num_channels: int) -> None:
    """Raise ValueError unless ``sensor`` is (B, num_channels, L)."""
    if sensor.dim() != 3 or sensor.shape[1] != num_channels:
        raise ValueError(
            f"sensor window must have shape (B, {num_channels}, L), got {tuple(sensor.shape)}"
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


class SensorSpatialEncoder(nn.Module):
    """f_s: which place (which sensors) is active in the window.

    A 1D CNN (first block kernel 5, dilation 2, max-pool 2; then kernel-3 blocks), adaptive
    average pool, GroupNorm and a GRU whose last hidden state summarises the window; a linear
    map to embed_dim if the sizes differ. Added element-wise: Linear(C → embed_dim) of the
    per-channel amplitude, the q-quantile (default 99th percentile) of |s| over time. The
    amplitude says directly which channels fire, i.e. where. A percentile rather than the max is
    used because it is robust to single spikes: one outlier sample moves the max arbitrarily but
    moves the 99th percentile by at most one rank.

    Args:
        num_channels: Sensor channels C.
        config: Architecture hyper-parameters.
    """

    def __init__(self, num_channels: int, config: EncoderConfig) -> None:
        super().__init__()
        if num_channels <= 0:
            raise ValueError(f"SensorSpatialEncoder needs num_channels > 0, got {num_channels}")
        self.num_channels = num_channels
        self.percentile = float(config.amplitude_percentile)
        channels = config.sensor_spatial_channels
        layers: list[nn.Module] = [
            nn.Conv1d(num_channels, channels[0], kernel_size=5, dilation=2, padding="same"),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
        ]
        for in_channels, out_channels in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv1d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True)]
        layers += [
            nn.AdaptiveAvgPool1d(config.sensor_spatial_pool),
            nn.GroupNorm(config.groupnorm_groups, channels[-1]),
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
        check_sensor(sensor, self.num_channels)
        sequence = self.conv(sensor).transpose(1, 2)  # (B, pool, channels)
        _, last_hidden = self.gru(sequence)
        return self.projection(last_hidden[-1]) + self.amplitude(self.amplitude_feature(sensor))


class SensorTemporalEncoder(nn.Module):
    """g_s: how the sensor signal evolves within the window.

    Dilated temporal conv blocks (kernel 3, dilations 1, 2, 4, length kept, ReLU) widen the
    receptive field without pooling; GroupNorm; a bidirectional GRU over time; self-attention
    pooling (q/k/v, softmax over time, mean over time); Linear(2·gru_hidden → embed_dim).

    Args:
        num_channels: Sensor channels C.
        config: Architecture hyper-parameters.
    """

    def __init__(self, num_channels: int, config: EncoderConfig) -> None:
        super().__init__()
        if num_channels <= 0:
            raise ValueError(f"SensorTemporalEncoder needs num_channels > 0, got {num_channels}")
        self.num_channels = num_channels
        layers: list[nn.Module] = []
        in_channels = num_channels
        for out_channels, dilation in zip(
            config.sensor_temporal_channels, config.sensor_temporal_dilations
        ):
            layers += [
                nn.Conv1d(in_channels, out_channels, 3, dilation=dilation, padding="same"),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        layers.append(nn.GroupNorm(config.groupnorm_groups, in_channels))
        self.conv = nn.Sequential(*layers)
        self.gru = nn.GRU(in_channels, config.gru_hidden, batch_first=True, bidirectional=True)
        self.pool = SelfAttentionPooling(2 * config.gru_hidden)
        self.projection = nn.Linear(2 * config.gru_hidden, config.embed_dim)

    def forward(self, sensor: Tensor) -> Tensor:
        """Encode windows (B, C, L) into h_s of shape (B, embed_dim)."""
        check_sensor(sensor, self.num_channels)
        sequence, _ = self.gru(self.conv(sensor).transpose(1, 2))  # (B, L, 2·gru_hidden)
        return self.projection(self.pool(sequence))
