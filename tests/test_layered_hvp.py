"""Closed-form (R-operator) input gradients and Hessian-vector products of the built-in MLPs of any depth, held to
``torch.func.hessian`` of the module itself in float64, and the Krylov TRS that uses them, held to the dense exact
TRS."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, hessian, vmap

from fastfair.derivatives import choose_path, has_layered_derivatives, layered_input_hessian, quadratic_model
from fastfair.derivatives.layered import mlp_layers
from fastfair.inner import make_inner
from fastfair.losses import logistic_loss
from fastfair.models import DeepMLP, build_model

DT = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


def batch(n: int, d: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=DT), torch.randint(0, 2, (n,), generator=g).to(DT)


def deep(d: int, hidden: tuple[int, ...], activation: str = "tanh", seed: int = 0, scale: float = 1.5) -> nn.Module:
    m = build_model("mlp", d, hidden=hidden, activation=activation, seed=seed, dtype=DT)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


def oracle(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ∇L and ∇²L of the module through torch.func, one row at a time."""
    params = {k: p.detach() for k, p in m.named_parameters()}

    def loss(xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return logistic_loss(functional_call(m, params, (xi.unsqueeze(0),)).reshape(()), yi)

    return vmap(grad(loss))(x, y), vmap(hessian(loss))(x, y)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus", "gelu", "relu", "leaky_relu"])
@pytest.mark.parametrize(
    "d, hidden",
    [(9, (4, 3)), (4, (7, 5)), (6, (5, 4, 3)), (3, (6,))],  # h₁ < d (row space), h₁ ≥ d, three layers, one layer
)
@pytest.mark.parametrize("basis", ["auto", "qr", "none"])
def test_gradient_and_products_equal_the_dense_input_hessian(activation, d, hidden, basis):
    m = deep(d, hidden, activation)
    x, y = batch(7, d)
    G, H = oracle(m, x, y)
    op = layered_input_hessian(m, x, y, basis=basis)
    reduced = {"auto": 2 * hidden[0] <= d, "qr": hidden[0] < d, "none": False}[basis]
    assert (op.basis is not None) == reduced
    U = op.basis if reduced else torch.eye(d, dtype=DT)
    torch.testing.assert_close(U.T @ U, torch.eye(U.shape[1], dtype=DT), rtol=0, atol=1e-12)
    torch.testing.assert_close(op.lift(op.grad), G, rtol=1e-10, atol=1e-12)
    V = torch.randn(7, d, generator=torch.Generator().manual_seed(3), dtype=DT)
    want = torch.einsum("nij,nj->ni", H, V)
    # H = U H̃ Uᵀ: the product of the reduced vector Uᵀv, lifted, is Hv for every v
    got = op.lift(op(V @ U))
    scale = want.abs().max().clamp_min(1e-300)
    assert float((got - want).abs().max() / scale) <= 1e-10
    torch.testing.assert_close(op.logits, m(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.loss, logistic_loss(m(x), y), rtol=1e-12, atol=1e-12)


def test_neg_and_restrict_share_the_cache():
    m = deep(8, (5, 4))
    x, y = batch(6, 8)
    op = layered_input_hessian(m, x, y)
    V = torch.randn(6, op.grad.shape[1], dtype=DT)
    torch.testing.assert_close(op.neg()(V), -op(V), rtol=0, atol=0)
    torch.testing.assert_close(op.neg().grad, -op.grad, rtol=0, atol=0)
    idx = torch.tensor([1, 4])
    sub = op.restrict(idx)
    torch.testing.assert_close(sub(V[idx]), op(V)[idx], rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(sub.grad, op.grad[idx], rtol=0, atol=0)


def test_built_in_deep_mlps_take_the_closed_form_products_at_every_d(monkeypatch):
    """DeepMLP: krylov with closed-form products (never the autograd operator), in the first layer's row space
    when it is at most half as wide as the input; at d = 3 too (the dense torch.func path is slower there)."""
    monkeypatch.setattr("fastfair.derivatives.quadratic.input_hessian", _refuse)
    for d, hidden in ((3, (8, 4)), (40, (16, 8))):
        m = deep(d, hidden)
        assert choose_path(m, d) == "krylov"
        quad = quadratic_model(m, *batch(5, d))
        assert quad.path == "krylov" and quad.method == "analytic"
        assert (quad.basis is None) == (2 * hidden[0] > d)
        assert quad.g.shape == (5, min(d, hidden[0]))


def test_structured_false_and_user_modules_keep_the_autograd_products():
    m = deep(20, (8, 4))
    assert choose_path(m, 20, structured=False, backend="hvp") == "krylov"
    assert quadratic_model(m, *batch(4, 20), structured=False, backend="hvp").method == "double-backward"
    seq = nn.Sequential(nn.Linear(20, 8), nn.Tanh(), nn.Linear(8, 1)).to(DT)
    assert not has_layered_derivatives(seq)
    assert quadratic_model(seq, *batch(4, 20)).method == "double-backward"


def test_altered_deep_mlps_are_not_taken_for_built_in_ones():
    class Shifted(DeepMLP):
        def forward(self, x):
            return super().forward(x) + 1.0

    assert mlp_layers(Shifted(4, (3, 2))) is None
    m = DeepMLP(4, (3, 2))
    m.net[1] = nn.ReLU()  # activation no longer the declared tanh
    assert mlp_layers(m) is None
    m = DeepMLP(4, (3, 2))
    m.net.append(nn.Sigmoid())
    assert mlp_layers(m) is None
    assert mlp_layers(DeepMLP(4, (3, 2), activation="gelu")) is not None


@pytest.mark.parametrize("r", [0.05, 1.0, 8.0])
@pytest.mark.parametrize("d, hidden", [(24, (12, 6)), (10, (16, 8))])
def test_krylov_trs_with_closed_form_products_matches_the_dense_exact_trs(r, d, hidden):
    """Certified (with the probe, certificate checked) and lean: the model value of the step equals the dense
    exact TRS's (torch.func Hessian, eigendecomposition) within 1e-9 relative, in the row space and without."""
    m = deep(d, hidden, seed=3)
    x, y = batch(48, d, seed=4)
    dense = make_inner("trs", structured=False).perturb(m, x, y, r)
    want = dense.extras["predicted_increase"]
    tol = 1e-9 * want.abs().clamp_min(1e-12)
    certified = make_inner("trs").perturb(m, x, y, r)
    assert certified.extras["path"] == "krylov" and dense.extras["path"] == "dense"
    assert bool(((certified.extras["predicted_increase"] - want).abs() <= tol).all())
    assert bool(certified.certificate.ok().all())
    lean = make_inner("trs", certify=False).perturb(m, x, y, r)
    G, H = oracle(m, x, y)
    delta = lean.x_adv - x
    value = (G * delta).sum(-1) + 0.5 * torch.einsum("ni,nij,nj->n", delta, H, delta)
    assert bool(((value - want).abs() <= tol).all())
    assert bool((delta.norm(dim=1) <= r * (1 + 1e-12)).all())


def _refuse(*args, **kwargs):
    raise AssertionError("the autograd operator was built for a built-in MLP")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lean_krylov_stops_at_the_cube_root_of_eps_and_keeps_the_model_value(monkeypatch, dtype):
    """The training path's Krylov solve stops at the relative residual eps^(1/3) (its model value is then within
    about eps^(2/3) of the optimum); the value stays within 1e-9 (float64) / 1e-4 (float32) of the certified one."""
    import fastfair.inner.trs as inner_trs

    seen = []
    original = inner_trs.solve_trs_krylov

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(inner_trs, "solve_trs_krylov", spy)
    m = deep(30, (12, 6), seed=5).to(dtype)
    x, y = (t.to(dtype) for t in batch(64, 30, seed=6))
    lean = make_inner("trs", certify=False).perturb(m, x, y, 0.5)
    assert seen[-1]["tol"] == pytest.approx(torch.finfo(dtype).eps ** (1 / 3)) and seen[-1]["probe_iter"] == 0
    certified = make_inner("trs").perturb(m, x, y, 0.5)
    assert seen[-1].get("probe_iter") is None and seen[-1]["tol"] < 1e-4
    quad = quadratic_model(m.double(), x.double(), y.double())
    m.to(dtype)

    def value(res):
        delta = quad.basis.T @ (res.x_adv.double() - x.double()).T if quad.basis is not None else None
        p = delta.T if delta is not None else res.x_adv.double() - x.double()
        return (quad.g * p).sum(-1) + 0.5 * (p * quad.hvp(p)).sum(-1)

    want = value(certified)
    rel = 1e-9 if dtype == torch.float64 else 1e-4
    assert bool(((value(lean) - want).abs() <= rel * want.abs().clamp_min(1e-6)).all())
