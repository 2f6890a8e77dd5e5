"""The multiclass TRS against a dense exact oracle.

The oracle: per row, the full d×d input Hessian and the gradient of the softmax cross-entropy from
``torch.func`` (float64, the loss written with ``torch.nn.functional.cross_entropy``, independent of fastfair's
loss), and the trust-region problem max gᵀp + ½pᵀHp over ‖p‖ ≤ r solved by its own eigendecomposition
(numpy ``eigh``) and a bisection on the secular equation ‖(λI - H)⁻¹g‖ = r for λ ≥ λ_max(H) (hard case included).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import grad, hessian
from torch.nn import functional as F

from fastfair.derivatives import SOFTMAX_MLP_PATH, SOFTMAX_PATH, choose_path, quadratic_model
from fastfair.errors import FastfairError
from fastfair.inner import make_inner
from fastfair.models import build_model
from fastfair.trs import solve_trs

DT = torch.float64

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


def oracle_value(g: np.ndarray, H: np.ndarray, r: float) -> float:
    """max_{‖p‖ ≤ r} gᵀp + ½pᵀHp for symmetric H ⪰ 0 (the maximiser is on the sphere), by eigh and bisection."""
    mu, Q = np.linalg.eigh(0.5 * (H + H.T))
    c = Q.T @ g
    top = mu[-1]
    scale = max(1.0, abs(top))

    def norm(lam: float) -> float:
        with np.errstate(divide="ignore"):
            return float(np.sqrt(np.sum((c / (lam - mu)) ** 2)))

    def value_of(p_coef: np.ndarray) -> float:
        return float(c @ p_coef + 0.5 * np.sum(mu * p_coef**2))

    gnorm = float(np.linalg.norm(c))
    near = np.abs(mu - top) <= 1e-13 * scale
    if not np.any(np.abs(c[near]) > 1e-300) or gnorm == 0:
        # possibly the hard case: the step at λ = λ_max on the other eigenvectors, topped up along the top one
        rest = ~near
        p = np.zeros_like(c)
        p[rest] = c[rest] / (top - mu[rest])
        if np.linalg.norm(p) <= r:
            p[np.argmax(near)] = np.sqrt(max(r**2 - float(np.sum(p**2)), 0.0))
            return value_of(p)
    lo, hi = top, top + gnorm / r + 1e-300
    for _ in range(400):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if norm(mid) > r:
            lo = mid
        else:
            hi = mid
    p = c / (hi - mu)
    p *= r / max(np.linalg.norm(p), 1e-300)
    return value_of(p)


def dense_derivatives(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row gradient and full Hessian of F.cross_entropy through the model, by torch.func (float64)."""
    gs, Hs = [], []
    for xi, yi in zip(x, y.long(), strict=True):

        def loss(t: torch.Tensor, yi: torch.Tensor = yi) -> torch.Tensor:
            return F.cross_entropy(model(t.unsqueeze(0)), yi.reshape(1))

        gs.append(grad(loss)(xi))
        Hs.append(hessian(loss)(xi))
    return torch.stack(gs).detach(), torch.stack(Hs).detach()


def softmax_model(d: int, C: int, seed: int, *, kind: str = "random") -> nn.Module:
    model = build_model("affine", d, n_classes=C, seed=seed, dtype=DT)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if kind == "zero":
            model.linear.weight.zero_()
            model.linear.bias.zero_()
        elif kind == "certain":  # class 0 far ahead on every row
            model.linear.weight.copy_(0.1 * torch.randn(C, d, generator=gen, dtype=DT))
            model.linear.bias.copy_(torch.tensor([60.0] + [0.0] * (C - 1), dtype=DT))
        elif kind == "rank-deficient":  # two equal rows of W (and C > d possible)
            W = torch.randn(C, d, generator=gen, dtype=DT)
            W[1] = W[0]
            model.linear.weight.copy_(W)
        else:
            model.linear.weight.copy_(2 * torch.randn(C, d, generator=gen, dtype=DT))
    return model


CASES = [
    # d, C, kind, radius
    (5, 3, "random", 0.3),
    (12, 4, "random", 1.0),
    (3, 6, "random", 0.7),  # C > d: the row space is the whole input space
    (8, 5, "rank-deficient", 0.5),
    (6, 3, "zero", 0.4),
    (6, 4, "certain", 0.2),
    (7, 3, "random", 1e-7),  # tiny radius
    (7, 3, "random", 1e3),  # huge radius
]


def batch(d: int, C: int, seed: int, n: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(n, d, generator=gen, dtype=DT)
    y = torch.arange(n, dtype=DT) % C
    return x, y


@pytest.mark.parametrize(("d", "C", "kind", "r"), CASES)
def test_structured_path_matches_the_dense_exact_oracle(d: int, C: int, kind: str, r: float) -> None:
    seed = d * 10 + C
    model = softmax_model(d, C, seed, kind=kind)
    x, y = batch(d, C, seed)
    assert choose_path(model, d) == SOFTMAX_PATH
    g_full, H_full = dense_derivatives(model, x, y)

    quad = quadratic_model(model, x, y)
    assert quad.path == SOFTMAX_PATH
    U = quad.basis
    assert U.shape == (d, min(d, C))
    torch.testing.assert_close(U.T @ U, torch.eye(U.shape[1], dtype=DT), rtol=0, atol=1e-13)
    # the model lives in the row space of W: lifted, it is the full gradient and Hessian
    torch.testing.assert_close(quad.lift(quad.g), g_full, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(U @ quad.hessian() @ U.T, H_full, rtol=1e-10, atol=1e-13)

    res = make_inner("trs").perturb(model, x, y, r)
    assert res.extras["path"] == SOFTMAX_PATH
    assert bool(res.certificate.ok().all())
    assert torch.isfinite(res.x_adv).all() and torch.isfinite(res.loss).all()
    delta = res.x_adv - x  # recovered to about eps·‖x‖
    slack = 1e-14 * torch.linalg.vector_norm(x, dim=1)
    assert bool((torch.linalg.vector_norm(delta, dim=1) <= r * (1 + 1e-12) + slack).all())

    lean = make_inner("trs", certify=False).attack(model, x, y, torch.full((len(x),), r, dtype=DT))
    lean_delta = lean - x
    Wnorm = float(torch.linalg.matrix_norm(model.linear.weight.detach(), ord=2))
    for i in range(len(x)):
        g, H = g_full[i].numpy(), H_full[i].numpy()
        best = oracle_value(g, H, r)
        scale = abs(best) + Wnorm * r + (Wnorm * r) ** 2 * 0.5
        for step in (delta[i], lean_delta[i]):
            p = step.numpy()
            value = float(g @ p + 0.5 * p @ H @ p)
            assert abs(value - best) <= 1e-9 * scale, (i, value, best)
        assert abs(float(res.extras["predicted_increase"][i]) - best) <= 1e-9 * scale
        # the same problem solved densely in the full space with the certified solver
        full = solve_trs(-g_full[i : i + 1], -H_full[i : i + 1], torch.tensor([r], dtype=DT))
        assert abs(-float(full.objective[0]) - best) <= 1e-9 * scale
    if kind not in ("zero",):  # a convex model: the maximiser is on the sphere
        assert bool(((torch.linalg.vector_norm(delta, dim=1) - r).abs() <= 1e-9 * r + slack).all())


def test_structured_and_dense_paths_take_the_same_step() -> None:
    d, C, r = 6, 4, 0.5
    model = softmax_model(d, C, 3)
    x, y = batch(d, C, 3)
    fast = make_inner("trs").perturb(model, x, y, r)
    dense = make_inner("trs", structured=False).perturb(model, x, y, r)
    assert dense.extras["path"] == "dense"
    torch.testing.assert_close(fast.x_adv, dense.x_adv, rtol=0, atol=1e-9)
    torch.testing.assert_close(fast.loss, dense.loss, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("hidden", "d", "activation", "path"),
    [
        (8, 5, "tanh", SOFTMAX_MLP_PATH),  # h ≥ d: the input space itself
        (6, 20, "softplus", SOFTMAX_MLP_PATH),  # h < d: the row space of W
        (6, 20, "relu", SOFTMAX_MLP_PATH),  # φ″ = 0 almost everywhere
        (16, 20, "tanh", "krylov"),  # k = 16: the closed-form products are cheaper than a 16×16 model per row
        ((8, 6), 5, "tanh", "krylov"),  # closed-form products with the C×C softmax Hessian at the output
        ((8, 6), 20, "gelu", "krylov"),
        ((4, 6, 5), 20, "sigmoid", "krylov"),  # h_1 ≤ d/2: in the row space of the first layer
    ],
)
def test_multiclass_mlps_match_the_dense_exact_oracle(hidden, d: int, activation: str, path: str) -> None:
    C, r = 3, 0.4
    model = build_model("mlp", d, hidden=hidden, activation=activation, n_classes=C, seed=1, dtype=DT)
    x, y = batch(d, C, 7, n=6)
    assert make_inner("trs").path_for(model, d) == path
    g_full, H_full = dense_derivatives(model, x, y)
    quad = quadratic_model(model, x, y)
    assert quad.path == path
    if path == "krylov":
        assert quad.method == "analytic" and quad.multiclass
        torch.testing.assert_close(quad.lift(quad.g), g_full, rtol=1e-10, atol=1e-13)
        Hq = quad.hessian() if quad.basis is None else quad.basis @ quad.hessian() @ quad.basis.T
        torch.testing.assert_close(Hq, H_full, rtol=1e-10, atol=1e-13)
    if path == SOFTMAX_MLP_PATH:
        torch.testing.assert_close(quad.lift(quad.g), g_full, rtol=1e-10, atol=1e-13)
        Hq = quad.hessian() if quad.basis is None else quad.basis @ quad.hessian() @ quad.basis.T
        torch.testing.assert_close(Hq, H_full, rtol=1e-10, atol=1e-13)
    res = make_inner("trs").perturb(model, x, y, r)
    assert res.extras["path"] == path and bool(res.certificate.ok().all())
    lean = make_inner("trs", certify=False).attack(model, x, y, torch.full((len(x),), r, dtype=DT))
    # the exact maximiser of an indefinite model: the value of the certified dense solve in the full space
    best = -solve_trs(-g_full, -H_full, torch.full((len(x),), r, dtype=DT)).objective
    for step in (res.x_adv - x, lean - x):
        value = (g_full * step).sum(-1) + 0.5 * (step * (H_full @ step.unsqueeze(-1)).squeeze(-1)).sum(-1)
        torch.testing.assert_close(value, best, rtol=1e-8, atol=1e-12)


def test_a_user_module_with_c_outputs_is_solved_on_the_general_path() -> None:
    d, C, r = 4, 3, 0.3
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d, 5), nn.Tanh(), nn.Linear(5, C)).double()
    x, y = batch(d, C, 2, n=5)
    res = make_inner("trs").perturb(model, x, y, r)
    assert res.extras["path"] == "dense" and bool(res.certificate.ok().all())
    g_full, H_full = dense_derivatives(model, x, y)
    torch.testing.assert_close(
        res.extras["clean_loss"], F.cross_entropy(model(x), y.long(), reduction="none").detach(), rtol=1e-12, atol=0
    )
    best = -solve_trs(-g_full, -H_full, torch.full((len(x),), r, dtype=DT)).objective
    torch.testing.assert_close(res.extras["predicted_increase"], best, rtol=1e-9, atol=1e-12)


def test_trs_paper_refuses_a_multiclass_model_in_one_line() -> None:
    model = build_model("affine", 4, n_classes=3, dtype=DT)
    x, y = batch(4, 3, 0)
    for m in (model, nn.Linear(4, 3).double()):
        with pytest.raises(FastfairError, match="multiclass") as info:
            make_inner("trs-paper").perturb(m, x, y, 0.1)
        assert "\n" not in str(info.value)


def test_a_model_with_two_outputs_is_refused() -> None:
    x, y = batch(4, 2, 0)
    with pytest.raises(FastfairError, match="logits"):
        make_inner("pgd").perturb(nn.Linear(4, 2).double(), x, y, 0.1)


@pytest.mark.parametrize(
    ("name", "hidden", "path"),
    [
        ("affine", 16, SOFTMAX_PATH),
        ("mlp", 8, SOFTMAX_MLP_PATH),
        pytest.param("mlp", (16, 8), "krylov", marks=pytest.mark.slow),  # about a second per certified Krylov solve
    ],
)
def test_float32_solves_are_certified_across_radii(name: str, hidden, path: str) -> None:
    gen = torch.Generator().manual_seed(4)
    model = build_model(name, 12, hidden=hidden, n_classes=5, seed=2)
    x = 2 * torch.randn(20, 12, generator=gen)
    y = (torch.arange(20) % 5).float()
    for r in (1e-4, 1e-2, 1.0, 100.0):
        res = make_inner("trs").perturb(model, x, y, r)
        assert res.extras["path"] == path
        assert bool(res.certificate.ok().all()), r
        assert torch.isfinite(res.x_adv).all() and torch.isfinite(res.loss).all()
