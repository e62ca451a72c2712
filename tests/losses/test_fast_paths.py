"""The fast loss paths against the straightforward ones: fused weights, bounded weighted InfoNCE."""

from __future__ import annotations

import pytest
import torch

from detach_pl.losses import (
    alignment_weights,
    info_nce,
    pair_weights,
    spatial_similarity,
    temporal_similarity,
    unit_gram,
    weighted_info_nce,
)
from detach_pl.losses import weights as weights_module
from losses.test_contrastive import reference_loss


def features(num: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(num, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def assert_loss_and_gradients_close(
    got: torch.Tensor,
    expected: torch.Tensor,
    inputs: tuple[torch.Tensor, ...],
    *,
    rtol: float,
    atol: float,
    grad_rtol: float,
    grad_atol: float,
) -> None:
    """`got` equals `expected` within (rtol, atol), and so do their gradients w.r.t. `inputs`."""
    torch.testing.assert_close(got, expected, rtol=rtol, atol=atol)
    pairs = zip(torch.autograd.grad(got, inputs), torch.autograd.grad(expected, inputs), strict=True)
    for grad, expected_grad in pairs:
        torch.testing.assert_close(grad, expected_grad, rtol=grad_rtol, atol=grad_atol)


@pytest.mark.parametrize("mode", ["within", "cross"])
@pytest.mark.parametrize(("use_spatial", "use_temporal"), [(True, True), (True, False), (False, True), (False, False)])
def test_pair_weights_equal_the_composed_functions(mode: str, use_spatial: bool, use_temporal: bool) -> None:
    z_v, z_s, h_v, h_s = (features(10, 6, seed) for seed in range(4))
    z_s[3] = z_s[4]  # identical rows: cosine 1 (+ rounding), clamped
    expected = alignment_weights(
        spatial_similarity(z_v, z_s), temporal_similarity(h_v, h_s, mode), 3.0, use_spatial, use_temporal
    )
    got = pair_weights(z_v, z_s, h_v, h_s, 3.0, mode, use_spatial, use_temporal)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert torch.all(got.diagonal() == 0) and torch.all(got >= 0)


@pytest.mark.parametrize(("use_spatial", "use_temporal"), [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("gram_dtype", ["float32", "bfloat16"])
def test_strip_wise_pair_weights_equal_the_blocked_composition(
    monkeypatch: pytest.MonkeyPatch, use_spatial: bool, use_temporal: bool, gram_dtype: str
) -> None:
    """Strips of 4 rows (10 strips, the last partial): W is bit-identical to the formula of
    docs/method.md applied to the blocked symmetric Gram matrices, and exactly symmetric."""
    monkeypatch.setattr(weights_module, "_GRAM_BLOCK", 4)
    z_v, z_s, h_v, h_s = (features(37, 6, seed).float() + 0.5 for seed in range(4))
    z_s[3] = z_s[4]
    mm_dtype = torch.bfloat16 if gram_dtype == "bfloat16" else torch.float32

    def gram(x: torch.Tensor) -> torch.Tensor:
        unit = torch.nn.functional.normalize(x, dim=1).to(mm_dtype)
        return weights_module._symmetric_product(unit, block=4).clamp(-1.0, 1.0).float()

    s_sp = torch.maximum(gram(z_v), gram(z_s)).relu()
    s_tm = (0.5 * (gram(h_v) + gram(h_s))).relu()
    expected = torch.ones(37, 37)
    if use_spatial:
        expected = expected * (1.0 + (3.0 - 1.0) * s_sp)
    if use_temporal:
        expected = expected * (1.0 - s_sp * s_tm)
    expected.fill_diagonal_(0.0)
    got = pair_weights(z_v, z_s, h_v, h_s, 3.0, "within", use_spatial, use_temporal, gram_dtype)  # type: ignore[arg-type]
    assert torch.equal(got, expected)
    assert torch.equal(got, got.T)


def test_strips_stay_few_off_the_cpu() -> None:
    """64-row strips on the CPU; on a GPU at least N/4 rows (4 or 5 strips, few kernel launches)."""
    assert weights_module._strip_rows(4096, torch.device("cpu")) == 64
    assert weights_module._strip_rows(4096, torch.device("cuda")) == 1024
    assert weights_module._strip_rows(1030, torch.device("cuda")) == 257  # 4 strips + 2 rows: still mirrored
    assert weights_module._strip_rows(256, torch.device("cuda")) == 64


def test_blocked_symmetric_gram_equals_the_full_product(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights_module, "_GRAM_BLOCK", 4)
    x = torch.randn(37, 9, generator=torch.Generator().manual_seed(0))
    u = torch.nn.functional.normalize(x, dim=1)
    blocked = weights_module._symmetric_product(u, block=4)  # 10 strips, last one partial
    torch.testing.assert_close(blocked, u @ u.T, rtol=0, atol=1e-6)
    assert torch.equal(blocked, blocked.T)
    assert unit_gram(x).max() <= 1.0


@pytest.mark.parametrize("temperature", [0.1, 0.05, 0.04])
@pytest.mark.parametrize("anchors", [None, slice(2, 5), slice(0, None, 2), slice(5, 1, -1)])
def test_bounded_fast_path_matches_loop_reference(temperature: float, anchors: slice | None) -> None:
    """float τ with 2/τ ≤ 60 takes the one-exp closed-form path: value and gradients as the loops."""
    video, sensor = features(6, 5, 10).requires_grad_(), features(6, 5, 11).requires_grad_()
    weights = 3.0 * torch.rand(6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    weights[weights < 0.6] = 0.0
    loss = weighted_info_nce(video, sensor, weights, temperature, anchors=anchors)
    assert loss.grad_fn is not None and "Bounded" in type(loss.grad_fn).__name__
    expected = reference_loss(video, sensor, weights, temperature, anchors)
    assert_loss_and_gradients_close(loss, expected, (video, sensor), rtol=0, atol=1e-12, grad_rtol=0, grad_atol=1e-12)


@pytest.mark.parametrize("anchors", [None, slice(1, 4)])
def test_bounded_path_normalisation_backward_equals_f_normalize_autograd(anchors: slice | None) -> None:
    """The fused normalisation backward equals autograd of `F.normalize` (general path, tensor τ) in
    float64 within 1e-10, also for a zero row and a row shorter than F.normalize's eps, and
    with only one input requiring grad."""
    video, sensor = features(6, 5, 20), features(6, 5, 21)
    video[2] = 0.0
    sensor[4] = 1e-14
    weights = 3.0 * torch.rand(6, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for needs in ((True, True), (True, False), (False, True)):
        v, s = video.clone().requires_grad_(needs[0]), sensor.clone().requires_grad_(needs[1])
        inputs = tuple(x for x in (v, s) if x.requires_grad)
        fast = weighted_info_nce(v, s, weights, 0.1, anchors=anchors)
        general = weighted_info_nce(v, s, weights, torch.tensor(0.1, dtype=torch.float64), anchors=anchors)
        assert "Bounded" in type(fast.grad_fn).__name__ and "Bounded" not in type(general.grad_fn).__name__
        assert_loss_and_gradients_close(fast, general, inputs, rtol=0, atol=1e-10, grad_rtol=1e-10, grad_atol=1e-10)


def test_info_nce_fast_path_equals_cross_entropy_form() -> None:
    """`info_nce` (W ≡ 1, no weight multiply) equals ½(CE rows + CE columns) written with
    `F.cross_entropy`: float32 value within 1e-6, gradients within 1e-5 relative."""
    gen = torch.Generator().manual_seed(6)
    video = torch.randn(96, 16, generator=gen).requires_grad_()
    sensor = torch.randn(96, 16, generator=gen).requires_grad_()
    logits = torch.nn.functional.normalize(video, dim=1) @ torch.nn.functional.normalize(sensor, dim=1).T / 0.1
    targets = torch.arange(96)
    plain = 0.5 * (
        torch.nn.functional.cross_entropy(logits, targets) + torch.nn.functional.cross_entropy(logits.T, targets)
    )
    fast = info_nce(video, sensor, 0.1, check=False)
    assert_loss_and_gradients_close(fast, plain, (video, sensor), rtol=1e-6, atol=1e-6, grad_rtol=1e-5, grad_atol=1e-7)


def test_fast_path_equals_the_general_path_in_float32() -> None:
    """The same loss through the bounded path (float τ) and the log-sum-exp path (tensor τ)."""
    gen = torch.Generator().manual_seed(3)
    video = torch.randn(64, 16, generator=gen).requires_grad_()
    sensor = torch.randn(64, 16, generator=gen).requires_grad_()
    weights = pair_weights(*(torch.randn(64, 8, generator=gen) for _ in range(4)))
    fast = weighted_info_nce(video, sensor, weights, 0.1, check=False)
    general = weighted_info_nce(video, sensor, weights, torch.tensor(0.1), check=False)
    assert_loss_and_gradients_close(
        fast, general, (video, sensor), rtol=1e-6, atol=1e-6, grad_rtol=1e-5, grad_atol=1e-7
    )


def test_bf16_autocast_loss_within_tolerance_of_fp32() -> None:
    """Under bf16 autocast the cosines are bf16 (8-bit mantissa); the loss stays within 2 % of fp32."""
    gen = torch.Generator().manual_seed(4)
    video, sensor = torch.randn(128, 32, generator=gen), torch.randn(128, 32, generator=gen)
    weights = pair_weights(*(torch.randn(128, 16, generator=gen) for _ in range(4)))
    fp32 = weighted_info_nce(video, sensor, weights, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = weighted_info_nce(video, sensor, weights, 0.1)
    assert bf16.dtype in (torch.bfloat16, torch.float32)
    assert abs(bf16.float().item() - fp32.item()) <= 0.02 * fp32.item()


def test_bf16_gram_weights_and_loss_within_stated_bounds_of_the_loop_reference() -> None:
    """`gram_dtype="bfloat16"`: cosines off by ≤ ~4e-3 (bf16 inputs and product), so W (≤ 3 × 1)
    is off by ≤ 2e-2; the loss stays within 1e-3 relative of the float64 loop reference and the
    gradients within 2e-3 of the largest gradient entry."""
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        # A shared offset makes the cosines spread over [0, 1], not cluster at 0.
        z_v, z_s, h_v, h_s = (
            torch.randn(48, 32, generator=gen) + 1.5 * torch.randn(1, 32, generator=gen) for _ in range(4)
        )
        video = torch.randn(48, 24, generator=gen).requires_grad_()
        sensor = torch.randn(48, 24, generator=gen).requires_grad_()
        exact = alignment_weights(
            spatial_similarity(z_v.double(), z_s.double()), temporal_similarity(h_v.double(), h_s.double())
        )
        fast = pair_weights(z_v, z_s, h_v, h_s, gram_dtype="bfloat16")
        assert fast.dtype == torch.float32 and torch.all(fast >= 0) and torch.all(fast.diagonal() == 0)
        torch.testing.assert_close(fast.double(), exact, rtol=0, atol=2e-2)
        assert not torch.equal(fast, pair_weights(z_v, z_s, h_v, h_s))  # the option does something
        loss = weighted_info_nce(video, sensor, fast, 0.1, check=False)
        expected = reference_loss(video.double(), sensor.double(), exact, 0.1)
        assert abs(loss.item() - expected.item()) <= 1e-3 * expected.item()
        grads = torch.autograd.grad(loss, (video, sensor))
        expected_grads = torch.autograd.grad(expected, (video, sensor))
        for grad, ref in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(grad, ref, rtol=0, atol=2e-3 * ref.abs().max().item())


def test_unknown_gram_dtype_is_named() -> None:
    with pytest.raises(ValueError, match="gram_dtype must be one of"):
        unit_gram(torch.randn(4, 3), "float16")  # type: ignore[arg-type]
