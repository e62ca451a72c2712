"""Video encoders: the spatial encoder f_v (where) and the temporal encoder g_v (how)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet18

from detach_pl.checkpoints import read_checkpoint
from detach_pl.nn.config import EncoderConfig
from detach_pl.nn.layers import CosineLinear

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
RESNET18_CHANNELS = 512


def check_video(video: Tensor, min_frames: int = 1) -> None:
    """Raise ValueError unless ``video`` is (B, T, 3, H, W) with at least ``min_frames`` frames."""
    if video.dim() != 5 or video.shape[2] != 3:
        raise ValueError(f"video must have shape (B, T, 3, H, W), got {tuple(video.shape)}")
    if video.shape[1] < min_frames:
        raise ValueError(
            f"video needs at least {min_frames} frames per clip (T >= {min_frames}), "
            f"got T={video.shape[1]}"
        )


def _load_backbone_weights(
    backbone: nn.Module, path: str, ignored_prefixes: tuple[str, ...]
) -> None:
    """Load a local state dict into ``backbone``, dropping keys that start with ``ignored_prefixes``.

    Accepts a bare state dict or a dict holding one under ``"state_dict"``.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"EncoderConfig.backbone_weights: no such file {str(file)!r} (weights are only read "
            "from local files, never downloaded)"
        )
    loaded = read_checkpoint(file, "EncoderConfig.backbone_weights")
    if isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    state = {k: v for k, v in loaded.items() if not k.startswith(ignored_prefixes)}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{str(file)!r} does not match the video backbone: missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]}"
        )


def plain_cnn(channels: list[int]) -> nn.Sequential:
    """The released per-frame CNN: conv 7×7 stride 2, then 3×3 stride-2 convs; BN + ReLU, no bias.

    With channels [64, 128, 256, 256] a 224-px frame gives a 256×14×14 map (0.97 M parameters).
    """
    layers: list[nn.Module] = []
    in_channels = 3
    for block, out_channels in enumerate(channels):
        kernel = 7 if block == 0 else 3
        layers += [
            nn.Conv2d(in_channels, out_channels, kernel, stride=2, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
        in_channels = out_channels
    return nn.Sequential(*layers)


def build_video_backbone(config: EncoderConfig) -> tuple[nn.Module, int]:
    """Build the per-frame 2D CNN trunk (no pooling, no classifier).

    Returns:
        The module mapping (N, 3, H, W) to a feature map (N, C_b, H/16, W/16) for ``plain_cnn``
        with four convs or (N, C_b, H/32, W/32) for ``resnet18``, and C_b.
    """
    if config.video_backbone == "resnet18":
        net = resnet18(weights=None)
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        backbone: nn.Module = nn.Sequential(OrderedDict((n, getattr(net, n)) for n in names))
        channels = RESNET18_CHANNELS
        ignored: tuple[str, ...] = ("fc.",)
    else:
        backbone = plain_cnn(config.video_cnn_channels)
        channels = config.video_cnn_channels[-1]
        ignored = ()
    if config.backbone_weights is not None:
        _load_backbone_weights(backbone, config.backbone_weights, ignored)
    return backbone, channels


def _conv_bn_relu_2d(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 conv + BatchNorm + ReLU keeping the spatial size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class VideoSpatialEncoder(nn.Module):
    """f_v: where in the scene something happens.

    Every frame goes through a shared 2D CNN; the feature maps are averaged over time (a static
    camera sees one scene, so the average keeps the places that change and the background).
    Two heads read the averaged map: a *scene* head (conv, global average pool) and an *object*
    head (conv, 1×1-conv sigmoid attention a, pooled as the mean of a·f over the positions,
    released; or Σ a·f / Σ a with `object_pooling: weighted`) that can focus on the small region of
    a drawer or door (P1 in docs/method.md). Their concatenation goes through Linear → LayerNorm.
    Frames enter as [0, 1] values (released) unless `video_normalization: imagenet`. With
    `channels_last` the convs and frames are NHWC (a throughput option; same outputs up to rounding).

    Args:
        config: Architecture hyper-parameters.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.backbone, backbone_channels = build_video_backbone(config)
        self.scene_head = _conv_bn_relu_2d(backbone_channels, config.embed_dim)
        self.object_head = _conv_bn_relu_2d(backbone_channels, config.embed_dim)
        self.object_attention = nn.Conv2d(config.embed_dim, 1, kernel_size=1)
        self.projection = nn.Sequential(
            nn.Linear(2 * config.embed_dim, config.embed_dim), nn.LayerNorm(config.embed_dim)
        )
        self.object_pooling = config.object_pooling
        imagenet = config.video_normalization == "imagenet"
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else ((0.0,) * 3, (1.0,) * 3)
        self.normalize_input = imagenet
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.channels_last = config.channels_last
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def feature_map(self, video: Tensor) -> Tensor:
        """Time-averaged backbone feature map: (B, T, 3, H, W) in [0, 1] → (B, C_b, h, w)."""
        check_video(video)
        batch, frames = video.shape[:2]
        images = video.flatten(0, 1)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.normalize_input:
            images = (images - self.mean) / self.std
        features = self.backbone(images)
        return features.view(batch, frames, *features.shape[1:]).mean(dim=1)

    def _object_features_and_attention(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Object-head features (B, d, h, w) and sigmoid attention (B, 1, h, w)."""
        object_features = self.object_head(features)
        return object_features, torch.sigmoid(self.object_attention(object_features))

    def attention_map(self, video: Tensor) -> Tensor:
        """Object-head attention of each clip: (B, T, 3, H, W) → (B, h, w) in (0, 1)."""
        _, attention = self._object_features_and_attention(self.feature_map(video))
        return attention.squeeze(1)

    def forward(self, video: Tensor) -> Tensor:
        """Encode clips (B, T, 3, H, W) with values in [0, 1] into z_v of shape (B, embed_dim)."""
        features = self.feature_map(video)
        scene = self.scene_head(features).mean(dim=(2, 3))
        object_features, attention = self._object_features_and_attention(features)
        if self.object_pooling == "mean":
            object_pooled = (attention * object_features).mean(dim=(2, 3))
        else:
            weight_sum = attention.sum(dim=(2, 3)).clamp_min(1e-6)
            object_pooled = (attention * object_features).sum(dim=(2, 3)) / weight_sum
        return self.projection(torch.cat([scene, object_pooled], dim=1))


class VideoTemporalEncoder(nn.Module):
    """g_v: how things change over the clip, from frame differences.

    Frame differences v_{t+1} − v_t (3 channels) pass through Conv3d blocks (kernel 3, stride
    (1, 2, 2), BN + ReLU); a spatial average pool gives a sequence x_1..x_{T'} (T' = T − 1). The
    sequence is differenced over time and averaged, mean_t (x_{t+1} − x_t), which telescopes to
    (x_{T'} − x_1) / (T' − 1): the net direction of change over the clip. That direction is what
    separates opening from closing the same object (whose frame-difference magnitudes are alike).
    A cosine-normalised linear layer maps it to embed_dim (no scale, as released, unless
    `video_temporal_scale`). With `channels_last` the Conv3d blocks and their input are NDHWC.

    Args:
        config: Architecture hyper-parameters.
    """

    min_frames = 3

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        in_channels = 3
        for out_channels in config.video_temporal_channels:
            blocks += [
                nn.Conv3d(in_channels, out_channels, 3, stride=(1, 2, 2), padding=1, bias=False),
                nn.BatchNorm3d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = CosineLinear(
            in_channels, config.embed_dim, init_scale=10.0 if config.video_temporal_scale else None
        )
        self.channels_last = config.channels_last
        if self.channels_last:
            self.blocks.to(memory_format=torch.channels_last_3d)

    def forward(self, video: Tensor) -> Tensor:
        """Encode clips (B, T, 3, H, W), T ≥ 3, values in [0, 1], into h_v (B, embed_dim)."""
        check_video(video, min_frames=self.min_frames)
        differences = (video[:, 1:] - video[:, :-1]).transpose(1, 2)  # (B, 3, T-1, H, W)
        if self.channels_last:
            differences = differences.contiguous(memory_format=torch.channels_last_3d)
        sequence = self.blocks(differences).mean(dim=(3, 4)).transpose(1, 2)  # (B, T-1, C)
        net_change = (sequence[:, 1:] - sequence[:, :-1]).mean(dim=1)  # (B, C)
        return self.head(net_change)
