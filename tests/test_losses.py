"""The logistic loss of :mod:`fastfair.losses` against torch's BCE-with-logits and closed-form values, and its
weighted mean."""

from __future__ import annotations

import mpmath
import pytest
import torch

from fastfair.errors import FastfairError
from fastfair.losses import logistic_logit_derivatives, logistic_loss, logistic_loss_derivatives, weighted_mean
from helpers import bce_reference

DT = torch.float64


def test_logit_derivatives_keep_sign_and_accuracy_for_confident_points():
    z = torch.tensor([40.0, -40.0, 0.0, 3.0], dtype=DT)
    y = torch.tensor([1.0, 0.0, 1.0, 0.25], dtype=DT)
    loss, d1, d2 = logistic_loss_derivatives(z, y)
    # σ(40) - 1 rounds to 0 in float64; the accurate value is -σ(-40) ≈ -4.25e-18
    assert d1[0] < 0 and d1[1] > 0
    torch.testing.assert_close(d1[0], -torch.sigmoid(torch.tensor(-40.0, dtype=DT)), rtol=1e-14, atol=0)
    torch.testing.assert_close(d1[2:], torch.sigmoid(z[2:]) - y[2:])
    torch.testing.assert_close(d2, torch.sigmoid(z) * torch.sigmoid(-z))
    # ℓ(40, 1) = ℓ(-40, 0) = log1p(e^-40): relative accuracy kept (torch's BCE returns 0 for the second)
    expected = torch.log1p(torch.exp(torch.tensor(-40.0, dtype=DT)))
    torch.testing.assert_close(loss[:2], expected.expand(2), rtol=1e-14, atol=0)
    torch.testing.assert_close(loss[2:], bce_reference(z[2:], y[2:]), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(logistic_loss(z, y), loss)


def _exact(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ℓ = log(1 + eᶻ) - y z, ℓ′ = 1/(1 + e⁻ᶻ) - y and ℓ″ = eᶻ/(1 + eᶻ)², in 50-digit arithmetic (mpmath)."""
    out = []
    with mpmath.workdps(50):
        for zi, yi in zip(z.double().tolist(), y.double().tolist(), strict=True):
            zm, ym = mpmath.mpf(zi), mpmath.mpf(yi)
            s = 1 / (1 + mpmath.exp(-zm))
            out.append((mpmath.log1p(mpmath.exp(zm)) - ym * zm, s - ym, s * (1 - s)))
    return tuple(torch.tensor([float(o[j]) for o in out], dtype=DT) for j in range(3))  # type: ignore[return-value]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_and_its_derivatives_are_accurate_to_rounding(dtype):
    """ℓ, its autograd derivative, ℓ′ and ℓ″ against 50-digit values, for hard and soft labels and |z| ≤ 40:
    relative accuracy a few ulps everywhere, confident points included (where BCE-with-logits and σ(z) - y lose
    every digit)."""
    g = torch.Generator().manual_seed(0)
    z = (torch.rand(400, generator=g, dtype=DT) * 80 - 40).to(dtype)
    y = torch.cat([torch.randint(0, 2, (200,), generator=g).to(DT), torch.rand(200, generator=g, dtype=DT)])
    y = y.to(dtype)
    loss_ref, d1_ref, d2_ref = _exact(z, y)
    zv = z.clone().requires_grad_(True)
    loss = logistic_loss(zv, y)
    (grad,) = torch.autograd.grad(loss.sum(), zv)
    d1, d2 = logistic_logit_derivatives(z, y)
    # a few ulps of the result; for soft labels σ(z) - y may cancel: plus a few ulps of 1 + |z|
    eps = torch.finfo(dtype).eps
    for got, want in ((loss.detach(), loss_ref), (grad, d1_ref), (d1, d1_ref), (d2, d2_ref)):
        err = (got.double() - want).abs()
        allowed = 16 * eps * (want.abs() + (y != y.round()).double() * (1 + z.double().abs()))
        assert bool((err <= allowed).all()), float((err / allowed.clamp_min(1e-300)).max())


def test_mismatched_shapes_are_refused_not_broadcast():
    """(n, 1) logits against (n,) labels would broadcast to an (n, n) loss: a one-line error instead."""
    z = torch.zeros(4, 1, dtype=DT)
    with pytest.raises(FastfairError, match=r"same shape, got \(4, 1\) and \(4,\)") as info:
        logistic_loss(z, torch.zeros(4, dtype=DT))
    assert "\n" not in str(info.value)


def test_weighted_mean():
    values = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    assert weighted_mean(values).item() == 3.75
    assert torch.equal(weighted_mean(values, torch.ones(4, dtype=torch.float64)), values.mean())
    assert weighted_mean(values, torch.tensor([0.0, 1.0, 0.0, 3.0], dtype=torch.float64)).item() == 26 / 4
    zero = weighted_mean(values, torch.zeros(4, dtype=torch.float64))  # no weight: 0, not 0/0
    assert zero.item() == 0.0
    for dtype in (torch.float32, torch.float64):
        x = values.to(dtype).requires_grad_(True)
        weighted_mean(x, torch.zeros(4, dtype=dtype)).backward()
        assert torch.isfinite(x.grad).all() and (x.grad == 0).all()
