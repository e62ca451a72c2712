"""Tests of the encoder config, the four encoders, their layers and build_encoders."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detach_pl.nn import (
    ENCODER_NAMES,
    CosineLinear,
    EncoderConfig,
    SelfAttentionPooling,
    SensorSpatialEncoder,
    SensorTemporalEncoder,
    VideoSpatialEncoder,
    VideoTemporalEncoder,
    build_encoders,
    joint_embedding,
)
from helpers import small_encoder

BATCH, FRAMES, CHANNELS, LENGTH = 2, 5, 37, 128
EMBED = small_encoder().embed_dim


def encoder_input(name: str, frames: int = FRAMES, size: int = 32) -> torch.Tensor:
    """A random input of the right modality for encoder ``name``."""
    if name.startswith("video"):
        return torch.rand(BATCH, frames, 3, size, size)
    return torch.randn(BATCH, CHANNELS, LENGTH)


# ---------------------------------------------------------------- config


def test_config_defaults_follow_the_released_code() -> None:
    config = EncoderConfig()
    assert config.embed_dim == 256
    assert config.video_backbone == "plain_cnn"
    assert config.video_cnn_channels == [64, 128, 256, 256]
    assert config.video_normalization == "none" and config.object_pooling == "mean"
    assert config.sensor_spatial_style == "released" and config.sensor_temporal_style == "released"
    assert config.sensor_spatial_groups == 4 and config.sensor_temporal_groups == 8
    assert not config.video_temporal_scale
    assert config.backbone_weights is None
    assert config.video_temporal_channels == [32, 64, 256]
    assert config.sensor_spatial_channels == [32, 64, 64]
    assert config.sensor_spatial_pool == 32
    assert config.sensor_temporal_channels == [32, 64, 128]
    assert config.sensor_temporal_dilations == [1, 2, 4]
    assert config.gru_hidden == 256
    assert config.amplitude_percentile == pytest.approx(0.99)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"video_backbone": "vgg"}, "video_backbone"),
        ({"video_temporal_channels": []}, "video_temporal_channels"),
        ({"sensor_spatial_channels": [8, -1]}, "sensor_spatial_channels"),
        ({"sensor_temporal_dilations": [1, 2]}, "sensor_temporal_dilations"),
        ({"amplitude_percentile": 1.5}, "amplitude_percentile"),
        ({"sensor_spatial_groups": 5}, "sensor_spatial_groups"),
        ({"sensor_temporal_groups": 3}, "sensor_temporal_groups"),
        ({"sensor_spatial_style": "resnet"}, "sensor_spatial_style"),
        ({"object_pooling": "max"}, "object_pooling"),
        ({"backbone_weights": ""}, "backbone_weights"),
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_encoder(**overrides)


def test_config_copies_sequences_to_lists() -> None:
    config = small_encoder(video_temporal_channels=(4, 8))
    assert config.video_temporal_channels == [4, 8]


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_tiny_config_output_shapes(name: str) -> None:
    encoder = build_encoders([name], small_encoder(), CHANNELS)[name]
    assert encoder(encoder_input(name)).shape == (BATCH, EMBED)


def test_default_config_output_shapes() -> None:
    torch.manual_seed(0)
    config = EncoderConfig()
    encoders = build_encoders(ENCODER_NAMES, config, CHANNELS)
    for name, encoder in encoders.items():
        output = encoder(encoder_input(name, frames=3, size=64))
        assert output.shape == (BATCH, 256), name
        assert torch.isfinite(output).all(), name


def test_resnet18_small_embedding_shape_and_attention_map() -> None:
    encoder = VideoSpatialEncoder(small_encoder(video_backbone="resnet18"))
    video = torch.rand(BATCH, 3, 3, 64, 64)
    assert encoder(video).shape == (BATCH, EMBED)
    attention = encoder.attention_map(video)
    assert attention.shape == (BATCH, 2, 2)  # ResNet-18 stride 32
    assert ((attention > 0) & (attention < 1)).all()


def test_plain_cnn_attention_map_shape() -> None:
    encoder = VideoSpatialEncoder(small_encoder())
    assert encoder.attention_map(torch.rand(BATCH, FRAMES, 3, 64, 64)).shape == (BATCH, 4, 4)


def test_video_spatial_averages_feature_maps_over_time() -> None:
    """Shuffling the frames of a clip leaves f_v unchanged (time-averaged feature maps)."""
    torch.manual_seed(0)
    encoder = VideoSpatialEncoder(small_encoder()).eval()
    video = torch.rand(BATCH, FRAMES, 3, 32, 32)
    shuffled = video[:, torch.randperm(FRAMES)]
    torch.testing.assert_close(encoder(shuffled), encoder(video), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3, 250])
def test_sensor_encoders_accept_any_channel_count(channels: int) -> None:
    config = small_encoder()
    window = torch.randn(BATCH, channels, LENGTH)
    encoders = (SensorSpatialEncoder(channels, config), SensorTemporalEncoder(channels, config))
    for encoder in encoders:
        assert encoder(window).shape == (BATCH, EMBED)


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    encoder = build_encoders([name], small_encoder(), CHANNELS)[name]
    output = encoder(encoder_input(name))
    (output * torch.randn_like(output)).sum().backward()
    for parameter_name, parameter in encoder.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


def test_gradients_reach_resnet18_parameters() -> None:
    torch.manual_seed(0)
    encoder = VideoSpatialEncoder(small_encoder(video_backbone="resnet18"))
    output = encoder(torch.rand(BATCH, 2, 3, 64, 64))
    (output * torch.randn_like(output)).sum().backward()
    missing = [n for n, p in encoder.named_parameters() if p.grad is None]
    assert not missing


# ---------------------------------------------------------------- formulas


def test_video_temporal_uses_mean_of_temporal_differences() -> None:
    torch.manual_seed(0)
    encoder = VideoTemporalEncoder(small_encoder()).eval()
    video = torch.rand(BATCH, FRAMES, 3, 32, 32)
    differences = torch.stack(
        [video[:, t + 1] - video[:, t] for t in range(FRAMES - 1)], dim=2
    )  # (B, 3, T-1, H, W)
    sequence = encoder.blocks(differences).mean(dim=(3, 4))  # (B, C, T-1)
    steps = [sequence[:, :, t + 1] - sequence[:, :, t] for t in range(FRAMES - 2)]
    net_change = sum(steps) / len(steps)
    torch.testing.assert_close(
        net_change, (sequence[:, :, -1] - sequence[:, :, 0]) / (FRAMES - 2)
    )
    torch.testing.assert_close(encoder(video), encoder.head(net_change), rtol=1e-4, atol=1e-5)


def test_static_clip_has_no_temporal_direction() -> None:
    encoder = VideoTemporalEncoder(small_encoder()).eval()
    still = torch.rand(1, 1, 3, 32, 32).expand(BATCH, FRAMES, 3, 32, 32)
    assert torch.equal(encoder(still), torch.zeros(BATCH, EMBED))


def test_amplitude_feature_is_the_percentile_of_absolute_values() -> None:
    encoder = SensorSpatialEncoder(CHANNELS, small_encoder())
    window = torch.randn(BATCH, CHANNELS, LENGTH)
    expected = torch.quantile(window.abs(), 0.99, dim=-1)
    torch.testing.assert_close(encoder.amplitude_feature(window), expected)


def test_percentile_is_robust_to_a_single_spike() -> None:
    torch.manual_seed(0)
    encoder = SensorSpatialEncoder(CHANNELS, small_encoder())
    window = torch.randn(1, CHANNELS, LENGTH)
    spiked = window.clone()
    spiked[0, 3, 50] = 50.0
    percentile_change = encoder.amplitude_feature(spiked) - encoder.amplitude_feature(window)
    max_change = spiked.abs().amax(-1) - window.abs().amax(-1)
    assert max_change[0, 3] > 40
    assert percentile_change[0, 3].abs() < 0.05 * max_change[0, 3]
    assert torch.equal(percentile_change[0, :3], torch.zeros(3))


def test_cosine_linear_matches_explicit_cosines() -> None:
    torch.manual_seed(0)
    layer = CosineLinear(6, 4, init_scale=10.0)
    x = torch.randn(3, 6)
    expected = torch.tensor(
        [
            [10.0 * F.cosine_similarity(x[i], layer.weight[j], dim=0).item() for j in range(4)]
            for i in range(3)
        ]
    )
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer(5.0 * x), layer(x))
    released = CosineLinear(6, 4)  # no scale: plain cosines, no extra parameter
    assert [name for name, _ in released.named_parameters()] == ["weight"]
    torch.testing.assert_close(released(x), F.normalize(x, dim=1) @ F.normalize(released.weight, dim=1).T)


def test_self_attention_pooling_matches_explicit_loops() -> None:
    torch.manual_seed(0)
    pool = SelfAttentionPooling(4)
    sequence = torch.randn(2, 5, 4)
    q, k, v = pool.query(sequence), pool.key(sequence), pool.value(sequence)
    expected = torch.zeros(2, 4)
    for b in range(2):
        for t in range(5):
            scores = torch.stack([q[b, t] @ k[b, s] / math.sqrt(4) for s in range(5)])
            weights = torch.softmax(scores, dim=0)
            expected[b] += sum(weights[s] * v[b, s] for s in range(5)) / 5
    torch.testing.assert_close(pool(sequence), expected, rtol=1e-5, atol=1e-6)


def test_joint_embedding_matches_definition() -> None:
    spatial, temporal = torch.randn(3, 4), torch.randn(3, 6)
    joint = joint_embedding(spatial, temporal)
    assert joint.shape == (3, 10)
    for i in range(3):
        halves = torch.cat([spatial[i] / spatial[i].norm(), temporal[i] / temporal[i].norm()])
        torch.testing.assert_close(joint[i], halves / math.sqrt(2.0))
    with pytest.raises(ValueError, match="leading shape"):
        joint_embedding(torch.randn(3, 4), torch.randn(2, 4))
    probe_input = joint_embedding(spatial, temporal, normalize_output=False)  # released probe input
    torch.testing.assert_close(probe_input, joint * math.sqrt(2.0))


# ---------------------------------------------------------------- errors and building


def test_unknown_encoder_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="sensor_temporal"):
        build_encoders(["video_spatial", "audio"], small_encoder(), CHANNELS)


def test_repeated_encoder_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="repeated"):
        build_encoders(["sensor_spatial", "sensor_spatial"], small_encoder(), CHANNELS)


def test_video_temporal_needs_three_frames() -> None:
    encoder = VideoTemporalEncoder(small_encoder())
    with pytest.raises(ValueError, match="T >= 3"):
        encoder(torch.rand(BATCH, 2, 3, 32, 32))


def test_bad_input_shapes_are_rejected() -> None:
    config = small_encoder()
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        VideoSpatialEncoder(config)(torch.rand(BATCH, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 37, L\)"):
        SensorSpatialEncoder(CHANNELS, config)(torch.randn(BATCH, 5, LENGTH))
    with pytest.raises(ValueError, match=r"\(B, 37, L\)"):
        SensorTemporalEncoder(CHANNELS, config)(torch.randn(BATCH, 5, LENGTH))


def test_build_encoders_gives_stable_state_dict_keys() -> None:
    config = small_encoder()
    first = build_encoders(ENCODER_NAMES, config, CHANNELS)
    second = build_encoders(list(reversed(ENCODER_NAMES)), config, CHANNELS)
    assert set(first.state_dict()) == set(second.state_dict())
    assert all(key.split(".")[0] in ENCODER_NAMES for key in first.state_dict())
    second.load_state_dict(first.state_dict())


def test_missing_backbone_weights_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        VideoSpatialEncoder(small_encoder(backbone_weights=str(missing)))


def test_plain_cnn_backbone_weights_load_from_local_file(tmp_path: Path) -> None:
    source = VideoSpatialEncoder(small_encoder())
    path = tmp_path / "small.pt"
    torch.save(source.backbone.state_dict(), path)
    loaded = VideoSpatialEncoder(small_encoder(backbone_weights=str(path)))
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value), key


def test_resnet18_weights_load_from_a_torchvision_state_dict(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    reference = resnet18(weights=None)
    with torch.no_grad():
        reference.layer4[1].bn2.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)  # includes fc.*, which the trunk drops
    config = small_encoder(video_backbone="resnet18", backbone_weights=str(path))
    encoder = VideoSpatialEncoder(config)
    assert torch.equal(encoder.backbone.conv1.weight, reference.conv1.weight)
    last_bn = encoder.backbone.layer4[1].bn2
    assert torch.equal(last_bn.running_var, reference.layer4[1].bn2.running_var)


def test_mismatched_backbone_weights_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(ValueError, match="other.pt"):
        VideoSpatialEncoder(small_encoder(backbone_weights=str(path)))


# ---------------------------------------------------------------- the released architectures at the paper's size


def lengths_through(encoder: nn.Module, window: torch.Tensor) -> list[int]:
    """Sequence length after every conv / pool layer of a sensor encoder's conv stack."""
    lengths = [window.shape[-1]]
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out: lengths.append(out.shape[-1]))
        for layer in encoder.conv
        if isinstance(layer, (nn.Conv1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d))
    ]
    encoder(window)
    for hook in hooks:
        hook.remove()
    return lengths


def parameter_count(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters())


def test_released_sensor_spatial_encoder_at_paper_size() -> None:
    """f_s for 37 channels: 128 → 120 → 60 → 56 → 28 → 24 → 32 and 281,824 parameters.

    Counted by hand: convs 37·32·5 + 32·64·3 + 64·64·3 = 24,352; three BatchNorms 64 + 128 + 128;
    GroupNorm 128; GRU(64 → 256) 3·(256·64 + 256·256 + 2·256) = 247,296; amplitude Linear 37·256 + 256
    = 9,728.
    """
    encoder = SensorSpatialEncoder(37, EncoderConfig()).eval()
    lengths = lengths_through(encoder, torch.randn(2, 37, 128))
    print("f_s lengths", lengths, "parameters", parameter_count(encoder))
    assert lengths == [128, 120, 60, 56, 28, 24, 32]
    assert parameter_count(encoder) == 281_824
    assert sum(isinstance(m, nn.BatchNorm1d) for m in encoder.modules()) == 3
    groupnorm = [m for m in encoder.modules() if isinstance(m, nn.GroupNorm)]
    assert [m.num_groups for m in groupnorm] == [4]
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv1d)]
    layout = [(c.kernel_size[0], c.dilation[0], c.padding[0], c.bias) for c in convs]
    assert layout == [(5, 2, 0, None), (3, 2, 0, None), (3, 2, 0, None)]
    order = [type(m).__name__ for m in encoder.conv][:4]
    assert order == ["Conv1d", "ReLU", "BatchNorm1d", "MaxPool1d"]  # ReLU before BatchNorm
    with pytest.raises(ValueError, match="at least 36"):
        encoder(torch.randn(1, 37, 35))


def test_released_sensor_temporal_encoder_at_paper_size() -> None:
    """g_s for 37 channels: 128 → 64 → 32 → 32 steps into the BiGRU; 1,549,536 parameters.

    By hand: convs 37·32·5 + 32·64·3 + 64·128·3 = 36,640; BatchNorms 64 + 128 + 256; GroupNorm 256;
    BiGRU(128 → 256) 2·3·(256·128 + 256·256 + 2·256) = 592,896; q, k, v 3·(512² + 512) = 787,968;
    Linear(512 → 256) 131,328.
    """
    encoder = SensorTemporalEncoder(37, EncoderConfig()).eval()
    lengths = lengths_through(encoder, torch.randn(2, 37, 128))
    print("g_s lengths", lengths, "parameters", parameter_count(encoder))
    assert lengths == [128, 128, 64, 64, 32, 32]
    assert parameter_count(encoder) == 1_549_536
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.kernel_size[0], c.dilation[0], c.padding[0]) for c in convs] == [(5, 1, 2), (3, 2, 2), (3, 4, 4)]
    assert [type(m).__name__ for m in encoder.conv][:4] == ["Conv1d", "BatchNorm1d", "ReLU", "MaxPool1d"]


def test_paper_styles_keep_the_text_reading() -> None:
    config = EncoderConfig(sensor_spatial_style="paper", sensor_temporal_style="paper")
    spatial, temporal = SensorSpatialEncoder(37, config), SensorTemporalEncoder(37, config)
    window = torch.randn(2, 37, 128)
    assert lengths_through(spatial, window) == [128, 128, 64, 64, 64, 32]
    assert lengths_through(temporal, window) == [128, 128, 128, 128]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in [*spatial.modules(), *temporal.modules()])


def test_released_video_cnn_at_paper_size() -> None:
    """The per-frame CNN: 969,280 parameters, 256 × 14 × 14 at 224 px, no input normalisation.

    By hand: 3·64·49 + 64·128·9 + 128·256·9 + 256·256·9 = 967,872 conv weights and 2·(64 + 128 +
    256 + 256) = 1,408 BatchNorm parameters.
    """
    encoder = VideoSpatialEncoder(EncoderConfig()).eval()
    count = parameter_count(encoder.backbone)
    frames = torch.rand(1, 2, 3, 224, 224)
    feature_map = encoder.feature_map(frames)
    print("f_v backbone parameters", count, "feature map", tuple(feature_map.shape))
    assert count == 969_280
    assert feature_map.shape == (1, 256, 14, 14)
    convs = [m for m in encoder.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.bias) for c in convs] == [((7, 7), (2, 2), None)] + [((3, 3), (2, 2), None)] * 3
    raw = encoder.backbone(frames.flatten(0, 1)).view(1, 2, 256, 14, 14).mean(1)
    torch.testing.assert_close(feature_map, raw)  # frames enter as [0, 1] values


def test_object_head_pooling_modes() -> None:
    torch.manual_seed(0)
    video = torch.rand(BATCH, FRAMES, 3, 64, 64)
    for pooling in ("mean", "weighted"):
        encoder = VideoSpatialEncoder(small_encoder(object_pooling=pooling)).eval()
        features = encoder.feature_map(video)
        f = encoder.object_head(features)
        a = torch.sigmoid(encoder.object_attention(f))
        positions = f.shape[2] * f.shape[3]
        pooled = (a * f).sum(dim=(2, 3)) / (positions if pooling == "mean" else a.sum(dim=(2, 3)))
        scene = encoder.scene_head(features).mean(dim=(2, 3))
        expected = encoder.projection(torch.cat([scene, pooled], dim=1))
        torch.testing.assert_close(encoder(video), expected, rtol=1e-5, atol=1e-5)


def test_imagenet_normalisation_is_an_option() -> None:
    torch.manual_seed(0)
    encoder = VideoSpatialEncoder(small_encoder(video_normalization="imagenet")).eval()
    video = torch.rand(1, 2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = encoder.backbone((video.flatten(0, 1) - mean) / std).view(1, 2, 16, 2, 2).mean(1)
    torch.testing.assert_close(encoder.feature_map(video), expected)


def test_configs_from_before_the_released_encoders_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="groupnorm_groups.*released code"):
        EncoderConfig.from_dict({"embed_dim": 64, "groupnorm_groups": 8})
    assert EncoderConfig.from_dict({"embed_dim": 64}).embed_dim == 64
