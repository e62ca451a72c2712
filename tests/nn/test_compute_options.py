"""Throughput options of the encoders (channels-last, torch.compile) give the plain path's outputs.

Tolerances: channels-last and compiled encoders reorder float32 sums (another conv algorithm, fused
kernels), so outputs and gradients agree to 1e-5 absolute / 1e-4 relative, not bit for bit.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from detach_pl.data.info import DataInfo
from detach_pl.modules import SpatialGroundingModule
from detach_pl.modules.base import copy_encoder_weights
from detach_pl.nn import build_encoder
from helpers import small_encoder

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def _input(name: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    if name.startswith("video"):
        return torch.rand(2, 4, 3, 32, 32, generator=generator)
    return torch.randn(2, 5, 64, generator=generator)


def _outputs_and_gradients(encoder: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Output, parameter gradients and input gradient of one forward + backward of sum(out²)."""
    inputs = inputs.clone().requires_grad_()
    encoder.zero_grad()
    output = encoder(inputs)
    output.pow(2).sum().backward()
    return output.detach(), {k: p.grad.clone() for k, p in encoder.named_parameters()}, inputs.grad.clone()


def _assert_same_path(plain: nn.Module, other: nn.Module, inputs: torch.Tensor) -> None:
    expected, expected_grads, expected_input_grad = _outputs_and_gradients(plain, inputs)
    output, grads, input_grad = _outputs_and_gradients(other, inputs)
    torch.testing.assert_close(output, expected, **TOLERANCE)
    torch.testing.assert_close(input_grad, expected_input_grad, **TOLERANCE)
    assert grads.keys() == expected_grads.keys()
    for key, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[key], **TOLERANCE, msg=key)


@pytest.mark.parametrize("name", ["video_spatial", "video_temporal"])
@pytest.mark.parametrize("training", [True, False])
def test_channels_last_video_encoders_match_the_plain_layout(name: str, training: bool) -> None:
    torch.manual_seed(0)
    plain = build_encoder(name, small_encoder(), 5)
    fast = build_encoder(name, small_encoder(channels_last=True), 5)
    fast.load_state_dict(plain.state_dict())
    layout = torch.channels_last if name == "video_spatial" else torch.channels_last_3d
    convs = [m.weight for m in fast.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.weight.dim() > 3]
    assert convs and all(w.is_contiguous(memory_format=layout) for w in convs if w.shape[-1] > 1)
    plain.train(training)
    fast.train(training)
    _assert_same_path(plain, fast, _input(name))
    assert set(fast.state_dict()) == set(plain.state_dict())


@pytest.mark.parametrize(
    "name",
    # Compiling the video encoder with inductor on CPU takes about 1 min here: `make test-slow`.
    [pytest.param("video_spatial", marks=pytest.mark.slow), "sensor_spatial"],
)
def test_compiled_encoder_matches_eager(name: str) -> None:
    torch.manual_seed(0)
    eager = build_encoder(name, small_encoder(), 5)
    compiled = build_encoder(name, small_encoder(), 5)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile()
    _assert_same_path(eager, compiled, _input(name))
    assert set(compiled.state_dict()) == set(eager.state_dict())


def test_configure_model_compiles_the_encoders_only_when_asked() -> None:
    info = DataInfo(num_channels=5, num_classes=3, num_places=4)
    plain = SpatialGroundingModule(data_info=info, encoder=small_encoder())
    plain.configure_model()
    assert all(encoder._compiled_call_impl is None for encoder in plain.encoders.values())
    module = SpatialGroundingModule(data_info=info, encoder=small_encoder(compile=True, compile_mode="default"))
    keys = set(module.state_dict())
    module.configure_model()
    module.configure_model()  # a second call (e.g. another fit) compiles nothing twice
    assert all(encoder._compiled_call_impl is not None for encoder in module.encoders.values())
    assert set(module.state_dict()) == keys


def test_a_checkpoint_hands_its_encoders_over_whatever_the_throughput_options() -> None:
    info = DataInfo(num_channels=5, num_classes=3, num_places=4)
    source = SpatialGroundingModule(data_info=info, encoder=small_encoder())
    target = SpatialGroundingModule(data_info=info, encoder=small_encoder(channels_last=True, compile=True))
    checkpoint = {
        "hyper_parameters": {
            "encoder": dataclasses.asdict(source.encoder_config), "data_info": dataclasses.asdict(info)
        },
        "state_dict": source.state_dict(),
    }
    copy_encoder_weights(target, checkpoint, ["video_spatial", "sensor_spatial"], "model.stage1_checkpoint", "x.ckpt")
    for name in ("video_spatial", "sensor_spatial"):
        for key, value in source.encoders[name].state_dict().items():
            assert torch.equal(target.encoders[name].state_dict()[key], value), key
    architecture = dataclasses.asdict(source.encoder_config) | {"embed_dim": 8}
    with pytest.raises(ValueError, match="embed_dim"):
        copy_encoder_weights(
            target, checkpoint | {"hyper_parameters": {"encoder": architecture}}, ["sensor_spatial"], "s", "x.ckpt"
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"compile_mode": "fast"}, "compile_mode"),
        ({"channels_last": "yes"}, "channels_last"),
        ({"compile": 1}, "compile"),
    ],
)
def test_bad_throughput_options_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_encoder(**overrides)
