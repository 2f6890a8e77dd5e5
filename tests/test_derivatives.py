"""Per-sample input derivatives: analytic fast paths and torch.func vs autograd vs finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fastfair.derivatives import (
    FactoredQuadratic,
    has_analytic_derivatives,
    loss_input_derivatives,
    mlp_reduced_derivatives,
    mlp_subspace_derivatives,
)
from fastfair.errors import FastfairError
from fastfair.models import MLP, Affine
from fastfair.trs import DenseQuadratic, solve_trs, solve_trs_operator
from helpers import TwoHidden, bce_reference

DT = torch.float64


def _model(kind: str, d: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "affine":
        m = Affine(d)
    elif kind == "custom":
        m = TwoHidden(d)
    else:
        m = MLP(d, hidden=3, activation=kind)
    m = m.to(DT)
    with torch.no_grad():  # larger weights: logits of several units, curvature clearly non-zero
        for p in m.parameters():
            p.mul_(2.0)
    return m


def _batch(n: int, d: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=DT)
    y = torch.randint(0, 2, (n,), generator=g).to(DT)
    return x, y


def _autograd_reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Per-sample gradient and Hessian with torch.autograd.functional (a loop: reference only)."""
    grads, hessians = [], []
    for i in range(x.shape[0]):

        def f(xi, i=i):
            return bce_reference(model(xi.unsqueeze(0)), y[i : i + 1]).sum()

        grads.append(torch.autograd.functional.jacobian(f, x[i]))
        hessians.append(torch.autograd.functional.hessian(f, x[i]))
    return torch.stack(grads), torch.stack(hessians)


def _finite_differences(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 1e-5):
    """Central differences: gradient from the loss, Hessian from the analytic-or-func gradient."""
    d = x.shape[1]
    eye = torch.eye(d, dtype=DT)
    with torch.no_grad():
        loss = lambda z: bce_reference(model(z), y)  # noqa: E731
        grad = torch.stack([(loss(x + eps * e) - loss(x - eps * e)) / (2 * eps) for e in eye], dim=1)
    cols = [
        (
            loss_input_derivatives(model, x + eps * e, y, hessian=False).grad
            - loss_input_derivatives(model, x - eps * e, y, hessian=False).grad
        )
        / (2 * eps)
        for e in eye
    ]
    return grad, torch.stack(cols, dim=2)


KINDS = ["affine", "tanh", "sigmoid", "softplus", "custom"]


@pytest.mark.parametrize("kind", KINDS)
def test_derivatives_match_autograd_and_finite_differences(kind):
    d = 5
    model = _model(kind, d)
    x, y = _batch(6, d)
    g_ref, h_ref = _autograd_reference(model, x, y)
    g_fd, h_fd = _finite_differences(model, x, y)
    backends = ["auto", "func"] + (["analytic"] if kind != "custom" else [])
    for backend in backends:
        der = loss_input_derivatives(model, x, y, backend=backend)
        assert der.grad.shape == (6, d) and der.hessian.shape == (6, d, d)
        torch.testing.assert_close(der.grad, g_ref, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(der.hessian, h_ref, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(der.loss, bce_reference(model(x), y).detach(), rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(der.grad, g_fd, rtol=1e-7, atol=1e-8)
        torch.testing.assert_close(der.hessian, h_fd, rtol=1e-7, atol=1e-8)
        torch.testing.assert_close(der.hessian, der.hessian.mT, rtol=0, atol=1e-14)


def test_affine_closed_form_is_rank_one_along_w():
    model = _model("affine", 4)
    x, y = _batch(8, 4)
    der = loss_input_derivatives(model, x, y)
    w = model.linear.weight.detach()[0]
    s = torch.sigmoid(model(x).detach())
    torch.testing.assert_close(der.grad, (s - y)[:, None] * w)
    torch.testing.assert_close(der.hessian, (s * (1 - s))[:, None, None] * torch.outer(w, w))
    assert torch.linalg.matrix_rank(der.hessian).max() == 1


def test_softplus_linear_region_matches_autograd():
    """F.softplus is the identity above z = 20; the analytic φ′, φ″ must follow it there."""
    model = _model("softplus", 3)
    with torch.no_grad():
        model.hidden.bias.copy_(torch.tensor([25.0, -3.0, 30.0], dtype=DT))
    x, y = _batch(4, 3)
    g_ref, h_ref = _autograd_reference(model, x, y)
    der = loss_input_derivatives(model, x, y, backend="analytic")
    torch.testing.assert_close(der.grad, g_ref, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(der.hessian, h_ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
@pytest.mark.parametrize("d, h", [(9, 3), (4, 4), (3, 6)])
def test_subspace_reduction_reproduces_full_derivatives(activation, d, h):
    torch.manual_seed(3)
    model = MLP(d, hidden=h, activation=activation).to(DT)
    x, y = _batch(7, d)
    full = loss_input_derivatives(model, x, y, backend="analytic")
    sub = mlp_subspace_derivatives(model, x, y)
    k = min(d, h)
    U = sub.basis
    assert U.shape == (d, k) and sub.grad.shape == (7, k) and sub.hessian.shape == (7, k, k)
    torch.testing.assert_close(U.T @ U, torch.eye(k, dtype=DT), rtol=0, atol=1e-14)
    torch.testing.assert_close(sub.full_grad(), full.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(sub.full_hessian(), full.hessian, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(sub.grad, full.grad @ U, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(sub.hessian, U.T @ full.hessian @ U, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(sub.loss, full.loss)


def test_subspace_handles_rank_deficient_W():
    torch.manual_seed(4)
    model = MLP(8, hidden=3).to(DT)
    with torch.no_grad():
        model.hidden.weight[2] = 2.0 * model.hidden.weight[0]  # rank 2
    x, y = _batch(5, 8)
    full = loss_input_derivatives(model, x, y)
    sub = mlp_subspace_derivatives(model, x, y)
    torch.testing.assert_close(sub.full_grad(), full.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(sub.full_hessian(), full.hessian, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_no_gradients_left_and_requires_grad_untouched(kind):
    model = _model(kind, 4)
    frozen = next(iter(model.parameters()))
    frozen.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    x, y = _batch(5, 4)
    x.requires_grad_(True)
    for ctx in (torch.enable_grad, torch.no_grad):
        with ctx():
            der = loss_input_derivatives(model, x, y)
        assert not der.grad.requires_grad and not der.hessian.requires_grad and not der.loss.requires_grad
    if kind in ("tanh", "sigmoid", "softplus"):
        sub = mlp_subspace_derivatives(model, x, y)
        assert not sub.hessian.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert x.requires_grad and x.grad is None


@pytest.mark.parametrize("kind", ["affine", "tanh", "custom"])
def test_float32_follows_input_dtype(kind):
    model = _model(kind, 4).float()
    x, y = _batch(5, 4)
    der32 = loss_input_derivatives(model, x.float(), y.long())
    der64 = loss_input_derivatives(_model(kind, 4), x, y)
    assert der32.grad.dtype == torch.float32 and der32.hessian.dtype == torch.float32
    torch.testing.assert_close(der32.hessian.double(), der64.hessian, rtol=1e-4, atol=1e-5)


def test_gradient_only_and_analytic_detection():
    model = _model("custom", 4)
    x, y = _batch(5, 4)
    der = loss_input_derivatives(model, x, y, hessian=False)
    assert der.hessian is None and der.grad.shape == (5, 4)
    assert has_analytic_derivatives(_model("affine", 3)) and has_analytic_derivatives(_model("tanh", 3))
    assert not has_analytic_derivatives(model)

    class Shifted(Affine):
        def forward(self, x):
            return super().forward(x) + 1.0

    assert not has_analytic_derivatives(Shifted(3))  # a changed forward must not use the closed form


def test_user_errors():
    model = _model("custom", 4)
    x, y = _batch(5, 4)
    with pytest.raises(FastfairError, match="no analytic derivatives"):
        loss_input_derivatives(model, x, y, backend="analytic")
    with pytest.raises(FastfairError, match="unknown derivative backend"):
        loss_input_derivatives(model, x, y, backend="jax")
    with pytest.raises(FastfairError, match="2-d"):
        loss_input_derivatives(model, x[0], y)
    with pytest.raises(FastfairError, match="labels"):
        loss_input_derivatives(model, x, y[:3])
    with pytest.raises(FastfairError, match="MLP"):
        mlp_subspace_derivatives(_model("affine", 4), x, y)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
@pytest.mark.parametrize("d,hidden", [(12, 4), (4, 4), (3, 16)])
def test_mlp_reduced_derivatives_lift_to_the_autograd_derivatives(activation, d, hidden):
    """The training fast path: U g̃ and U H̃ Uᵀ (or g̃, H̃ when h ≥ d) equal autograd's, in float64."""
    torch.manual_seed(3)
    m = MLP(d, hidden=hidden, activation=activation).double()
    x = torch.randn(16, d, dtype=torch.float64) * 2
    y = torch.randint(0, 2, (16,)).double()
    U, quad = mlp_reduced_derivatives(m, x, y)
    g, H = quad.g, quad.hessian()
    assert (U is None) == (hidden >= d)
    if U is not None:
        assert U.shape == (d, hidden)
        g, H = g @ U.T, U @ H @ U.T
    ref = loss_input_derivatives(m, x, y, backend="func")
    torch.testing.assert_close(g, ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(H, ref.hessian, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------------------
# FactoredQuadratic: the MLP's quadratic model without its dense Hessian
# ------------------------------------------------------------------------------------------------------------


@st.composite
def factored(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """Random ``(a, b, c, e, M)`` with entries across many scales (and exact zeros)."""
    n, k, h = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** rng.integers(-4, 5, size=5).astype(float)
    a = rng.standard_normal((n, k)) * scale[0]
    b, c = rng.standard_normal(n) * scale[1], rng.standard_normal(n) * scale[2]
    e = rng.standard_normal((n, h)) * scale[3]
    M = rng.standard_normal((h, k)) * scale[4]
    for arr in (a, b, c, e):  # some exact zeros: a zero gradient, a vanishing curvature term
        arr[rng.uniform(size=arr.shape) < 0.2] = 0.0
    return a, b, c, e, M


@settings(max_examples=60, deadline=None)
@given(factored())
def test_factored_quadratic_matches_its_dense_form(data: tuple[np.ndarray, ...]) -> None:
    """g, H, ∇q(p) and -q against numpy, and the curvature bound against numpy's eigenvalues."""
    a, b, c, e, M = data
    quad = FactoredQuadratic(*(torch.as_tensor(t, dtype=DT) for t in data))
    H = c[:, None, None] * a[:, :, None] * a[:, None, :] + np.einsum("lk,nl,lj->nkj", M, e, M)
    g = b[:, None] * a
    size = np.abs(H).max() + np.abs(g).max() + 1e-300
    np.testing.assert_allclose(quad.g.numpy(), g, rtol=1e-13, atol=1e-13 * size)
    np.testing.assert_allclose(quad.hessian().numpy(), H, rtol=1e-12, atol=1e-13 * size)
    p = np.random.default_rng(1).standard_normal(a.shape)
    want = g + np.einsum("nkj,nj->nk", H, p)
    got = quad.gradient(torch.as_tensor(p)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * size * (1 + np.abs(p).max()))
    np.testing.assert_allclose(quad.neg().gradient(torch.as_tensor(p)).numpy(), -got, rtol=0, atol=0)
    rows = torch.tensor([a.shape[0] - 1, 0])
    g_rows, H_rows = quad.rows(rows)
    torch.testing.assert_close(g_rows, quad.g[rows], rtol=0, atol=0)
    torch.testing.assert_close(H_rows, quad.hessian()[rows], rtol=1e-14, atol=1e-14 * size)
    lam_min = np.linalg.eigvalsh(H)[:, 0]
    bound = quad.curvature_bound().numpy()
    assert (bound >= 0).all()
    assert (bound >= -lam_min - 1e-10 * np.abs(H).max(axis=(1, 2))).all(), (bound, lam_min)


@pytest.mark.parametrize("d,hidden", [(5, 16), (40, 16), (12, 3)])
@pytest.mark.parametrize("r", [0.05, 2.0])
def test_factored_and_dense_forms_give_the_certified_step(d, hidden, r):
    """solve_trs_operator on the factored model, on its dense form and solve_trs agree (the maximiser of the
    loss model), whichever form ``prefers_dense`` picks."""
    torch.manual_seed(5)
    m = MLP(d, hidden=hidden).double()
    x = torch.randn(48, d, dtype=DT) * 2
    y = torch.randint(0, 2, (48,)).double()
    _, quad = mlp_reduced_derivatives(m, x, y)
    neg = quad.neg()
    rad = torch.full((48,), r, dtype=DT)
    k = neg.M.shape[1]
    assert neg.prefers_dense() == (k * (hidden + 10) < 20 * hidden)  # k ≤ 12 at h = 16
    factored_step = solve_trs_operator(neg, rad)
    dense_step = solve_trs_operator(DenseQuadratic(neg.g, neg.hessian()), rad)
    ref = solve_trs(neg.g, neg.hessian(), rad)
    for step in (factored_step, dense_step):
        q = (neg.g * step).sum(-1) + 0.5 * (step * (neg.hessian() @ step.unsqueeze(-1)).squeeze(-1)).sum(-1)
        size = neg.g.norm(dim=-1) * r + torch.linalg.matrix_norm(neg.hessian(), 2) * r * r
        assert bool((q - ref.objective <= 1e-12 * size).all())
        assert bool((step.norm(dim=-1) <= rad).all())
