"""The quadratic-model protocol of :mod:`fastfair.derivatives` and the TRS adversary that solves it.

Oracles: ``torch.func`` per-row gradients and Hessians of the loss of an explicitly written model (float64), the
dense exact TRS (:func:`fastfair.trs.solve_trs` through ``structured=False``), and spies on the functions that
build each kind of model and on the solvers, which show the path actually taken.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, hessian, vmap
from torch.nn import functional as F

import fastfair.derivatives.quadratic as quadratic
import fastfair.inner.trs as inner_trs
from fastfair.derivatives import (
    ANALYTIC_ACTIVATIONS,
    DENSE_MAX_DIM,
    PATHS,
    activation_derivatives,
    mlp_parameters,
    quadratic_model,
)
from fastfair.errors import FastfairError
from fastfair.inner import TrustRegionAdversary, make_inner
from fastfair.losses import logistic_loss
from fastfair.models import MLP, Affine
from fastfair.trs import solve_trs, solve_trs_operator
from helpers import TwoHidden

DT = torch.float64

# torch.func's forward-mode AD loads its decompositions through the deprecated torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


def scaled(m: nn.Module, scale: float = 2.0) -> nn.Module:
    """``m`` in float64 with its weights multiplied by ``scale`` (logits of several units: clear curvature)."""
    m = m.to(DT)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


def three_layer(d: int, widths: tuple[int, int] = (16, 8), seed: int = 0) -> nn.Module:
    """A user's own ``nn.Sequential`` of three Linear layers with tanh, one logit per row as an (n, 1) output."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(d, widths[0]), nn.Tanh(), nn.Linear(widths[0], widths[1]), nn.Tanh(), nn.Linear(widths[1], 1)
    )


def batch(n: int, d: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=DT), torch.randint(0, 2, (n,), generator=g).to(DT)


def reference_derivatives(forward, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ∇L and ∇²L of ``forward`` (one row -> one logit) by ``torch.func``, one row at a time."""

    def loss(xi, yi):
        return logistic_loss(forward(xi.unsqueeze(0)).reshape(()), yi)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return vmap(grad(loss))(x, y), vmap(hessian(loss))(x, y)


def module_forward(m: nn.Module):
    params = {k: p.detach() for k, p in m.named_parameters()}
    return lambda t: functional_call(m, params, (t,))


# (label, model factory, d, TrustRegionAdversary options, expected path)
CASES = [
    ("affine", lambda d: scaled(Affine(d)), 5, {}, "affine-closed-form"),
    ("mlp h<d", lambda d: scaled(MLP(d, hidden=3)), 12, {}, "mlp-subspace"),
    ("mlp h>=d", lambda d: scaled(MLP(d, hidden=16)), 4, {}, "mlp-subspace"),
    ("mlp forced dense", lambda d: scaled(MLP(d, hidden=3)), 12, {"structured": False}, "dense"),
    ("custom tiny d", lambda d: scaled(TwoHidden(d)), 5, {}, "dense"),
    ("custom d > DENSE_MAX_DIM", lambda d: scaled(three_layer(d), 1.5), DENSE_MAX_DIM + 4, {}, "krylov"),
    ("affine through products", lambda d: scaled(Affine(d)), 5, {"structured": False, "backend": "hvp"}, "krylov"),
]
IDS = [c[0] for c in CASES]
#: the cases whose model has a k×k Hessian (all but krylov)
MATRIX_CASES = [c for c in CASES if c[4] != "krylov"]
#: the function of :mod:`fastfair.derivatives.quadratic` that builds each path's model
BUILDERS = {
    "affine-closed-form": "affine_parameters",
    "mlp-subspace": "mlp_factored",
    "dense": "loss_input_derivatives",
    "krylov": "input_hessian",
}
#: the solver of :mod:`fastfair.inner.trs` each path calls: (certified, lean)
SOLVERS = {
    "affine-closed-form": (None, None),
    "mlp-subspace": ("solve_trs", "solve_trs_operator"),
    "dense": ("solve_trs", "solve_trs_operator"),
    "krylov": ("solve_trs_krylov", "solve_trs_krylov"),
}


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """Record every call of the model builders and of the TRS solvers (name, keyword arguments)."""
    calls: list[tuple[str, dict]] = []
    solvers = ("solve_trs", "solve_trs_operator", "solve_trs_krylov")
    for module, names in ((quadratic, BUILDERS.values()), (inner_trs, solvers)):
        for name in names:
            original = getattr(module, name)

            def spy(*args, _name=name, _original=original, **kwargs):
                calls.append((_name, kwargs))
                return _original(*args, **kwargs)

            monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize("label, factory, d, options, path", CASES, ids=IDS)
@pytest.mark.parametrize("certify", [True, False])
def test_reported_path_is_the_path_taken(spies, label, factory, d, options, path, certify):
    """``extras["path"]`` and ``path_for`` name the model that was built and the solver that ran, for every model
    kind, certified and lean, and :meth:`attack` takes the same path."""
    m = factory(d)
    x, y = batch(24, d)
    adv = TrustRegionAdversary(certify=certify, **options)
    assert adv.path_for(m, d) == path
    res = adv.perturb(m, x, y, 0.3)
    assert res.extras["path"] == path
    certified_solver, lean_solver = SOLVERS[path]
    solver = certified_solver if certify else lean_solver
    assert [name for name, _ in spies] == [BUILDERS[path]] + ([solver] if solver else [])
    if path == "krylov":  # the lean path skips the curvature probe, the certified path keeps it
        assert spies[-1][1].get("probe_iter") == (None if certify else 0)
    spies.clear()
    adv.attack(m, x, y, torch.full((24,), 0.3, dtype=DT))
    assert [name for name, _ in spies] == [BUILDERS[path]] + ([lean_solver] if lean_solver else [])


def test_wide_mlp_reports_the_factored_path_it_takes():
    """A one-hidden-layer MLP with h ≥ d: certified and lean both take (and say) the factored form."""
    m = scaled(MLP(4, hidden=16))
    x, y = batch(32, 4)
    certified = TrustRegionAdversary().perturb(m, x, y, 0.5)
    lean = TrustRegionAdversary(certify=False).perturb(m, x, y, 0.5)
    assert certified.extras["path"] == lean.extras["path"] == "mlp-subspace"
    assert bool(certified.certificate.ok().all())
    torch.testing.assert_close(lean.loss, certified.loss, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("label, factory, d, options, path", CASES, ids=IDS)
def test_every_path_is_the_quadratic_model_of_the_loss(label, factory, d, options, path):
    """g, H (lifted through the basis), products, the loss and -L, against torch.func on the module itself."""
    m = factory(d)
    x, y = batch(6, d)
    quad = quadratic_model(m, x, y, structured=options.get("structured", True), backend=options.get("backend", "auto"))
    assert quad.path == path and path in PATHS
    g_ref, H_ref = reference_derivatives(module_forward(m), x, y)
    U = quad.basis
    k = d if U is None else U.shape[1]
    assert quad.g.shape == (6, k) and quad.hessian().shape == (6, k, k)
    g, H = quad.g, quad.hessian()
    if U is not None:
        torch.testing.assert_close(U.T @ U, torch.eye(k, dtype=DT), rtol=0, atol=1e-13)
        g, H = g @ U.T, U @ H @ U.T
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(H, H_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(quad.lift(quad.g), g_ref, rtol=1e-10, atol=1e-12)
    V = torch.randn(6, k, generator=torch.Generator().manual_seed(3), dtype=DT)
    torch.testing.assert_close(quad.hvp(V), (quad.hessian() @ V.unsqueeze(-1)).squeeze(-1), rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(quad.loss, logistic_loss(m(x).reshape(-1), y), rtol=1e-13, atol=1e-15)
    neg = quad.neg()
    torch.testing.assert_close(neg.g, -quad.g, rtol=0, atol=0)
    torch.testing.assert_close(neg.hvp(V), -quad.hvp(V), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(neg.loss, quad.loss, rtol=0, atol=0)


@pytest.mark.parametrize("label, factory, d, options, path", MATRIX_CASES, ids=[c[0] for c in MATRIX_CASES])
@pytest.mark.parametrize("r", [0.05, 3.0])
def test_the_matrix_models_are_quadratic_batches(label, factory, d, options, path, r):
    """Rank-one, factored and dense models (and their negations) go straight into solve_trs_operator, which then
    attains the dense exact TRS's optimal value of -L's model; the curvature bound holds."""
    m = factory(d)
    x, y = batch(16, d, seed=5)
    quad = quadratic_model(m, x, y, structured=options.get("structured", True)).neg()
    g, H = quad.rows(None)
    torch.testing.assert_close(g, quad.g, rtol=0, atol=0)
    torch.testing.assert_close(H, quad.hessian(), rtol=0, atol=0)
    p = torch.randn(16, g.shape[1], generator=torch.Generator().manual_seed(6), dtype=DT)
    torch.testing.assert_close(quad.gradient(p), g + (H @ p.unsqueeze(-1)).squeeze(-1), rtol=1e-12, atol=1e-13)
    assert bool((quad.curvature_bound() >= -torch.linalg.eigvalsh(H)[:, 0] - 1e-12).all())
    rad = torch.full((16,), r, dtype=DT)
    step = solve_trs_operator(quad, rad)
    value = (g * step).sum(-1) + 0.5 * (step * (H @ step.unsqueeze(-1)).squeeze(-1)).sum(-1)
    ref = solve_trs(g, H, rad).objective
    size = g.norm(dim=-1) * r + torch.linalg.matrix_norm(H, 2) * r * r
    assert bool(((value - ref).abs() <= 1e-10 * size).all())


# ------------------------------------------------------------------------------------------------------------
# Krylov: a user's own deep module at image size, and the objective against the dense exact TRS
# ------------------------------------------------------------------------------------------------------------


def test_a_users_deep_module_at_d_784_takes_the_krylov_path_without_a_dense_hessian(monkeypatch):
    """nn.Sequential(Linear, tanh, Linear, tanh, Linear) at d = 784, n = 256 through make_inner("trs"): the dense
    derivative builders are disabled, so any (n, d, d) Hessian would raise; certified and lean both succeed."""

    def no_dense(*args, **kwargs):
        raise AssertionError("the dense (n, d, d) Hessian was requested")

    monkeypatch.setattr(quadratic, "loss_input_derivatives", no_dense)
    monkeypatch.setattr("fastfair.derivatives.analytic._func_derivatives", no_dense)
    d, n, r = 784, 256, 0.5
    m = three_layer(d, widths=(64, 64))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, d, generator=g), torch.randint(0, 2, (n,), generator=g).float()
    res = make_inner("trs").perturb(m, x, y, r)
    assert res.extras["path"] == "krylov" and res.x_adv.dtype == torch.float32
    assert bool(res.extras["converged"].all()) and bool(res.certificate.ok().all())
    assert bool(((res.x_adv - x).norm(dim=1) <= r * (1 + 1e-6)).all())
    assert bool((res.loss >= res.extras["clean_loss"]).all())
    assert bool((res.iterations >= 1).all()) and bool((res.iterations <= d).all())
    lean = make_inner("trs", certify=False).perturb(m, x, y, r)
    assert lean.extras["path"] == "krylov"
    torch.testing.assert_close(lean.loss, res.loss, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("r", [0.05, 1.0, 8.0])
def test_krylov_objective_matches_the_dense_exact_trs_float64(r):
    """At d = 24 (> DENSE_MAX_DIM: krylov by default) the Krylov model value equals the dense exact TRS's within
    1e-6 relative, certified (with the probe) and lean (without); the certificate holds."""
    d = 24
    m = scaled(three_layer(d, widths=(12, 6), seed=3), 1.5)
    x, y = batch(64, d, seed=4)
    krylov = make_inner("trs").perturb(m, x, y, r)
    dense = make_inner("trs", structured=False).perturb(m, x, y, r)
    assert krylov.extras["path"] == "krylov" and dense.extras["path"] == "dense"
    want = dense.extras["predicted_increase"]
    tol = 1e-6 * want.abs().clamp_min(1e-12)
    assert bool(((krylov.extras["predicted_increase"] - want).abs() <= tol).all())
    assert bool(krylov.certificate.ok().all())
    lean = make_inner("trs", certify=False).perturb(m, x, y, r)
    quad = quadratic_model(m, x, y)
    delta = lean.x_adv - x
    value = (quad.g * delta).sum(-1) + 0.5 * (delta * quad.hvp(delta)).sum(-1)
    assert bool(((value - want).abs() <= tol).all())


def test_krylov_refuses_a_batchnorm_in_training_mode():
    m = nn.Sequential(nn.Linear(20, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1)).double()
    x, y = batch(16, 20)
    with pytest.raises(FastfairError, match=r"model\.eval\(\)"):
        make_inner("trs").perturb(m, x, y, 0.1)
    m.eval()
    assert make_inner("trs").perturb(m, x, y, 0.1).extras["path"] == "krylov"


# ------------------------------------------------------------------------------------------------------------
# Activations of the one-hidden-layer MLP: closed forms against torch.func
# ------------------------------------------------------------------------------------------------------------

TORCH_ACTIVATIONS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "gelu": F.gelu,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
}


@pytest.mark.parametrize("name", ANALYTIC_ACTIVATIONS)
def test_activation_derivatives_match_torch_func(name):
    """φ, φ′, φ″ against torch's function and its autograd derivatives, the kink z = 0 and softplus's switch
    included (relu and leaky_relu: φ″ = 0, and φ′ at 0 as torch's autograd has it)."""
    phi = TORCH_ACTIVATIONS[name]
    # softplus switches to the identity above z = 20: both sides of the switch (at exactly 20 torch's own first
    # and second derivatives take different branches, σ(20) and 0; the closed form follows the forward's branch)
    z = torch.linspace(-30, 30, 601, dtype=DT)
    z = torch.cat([z[z != 20], torch.tensor([0.0, 19.999, 20.001, -1e-300], dtype=DT)])
    f, d1, d2 = activation_derivatives(name, z)
    first = vmap(grad(lambda t: phi(t)))(z)
    second = vmap(grad(grad(lambda t: phi(t))))(z)
    torch.testing.assert_close(f, phi(z), rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(d1, first, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(d2, second, rtol=1e-12, atol=1e-15)
    if name in ("relu", "leaky_relu"):
        assert bool((d2 == 0).all())


@pytest.mark.parametrize("name", ANALYTIC_ACTIVATIONS)
@pytest.mark.parametrize("d, hidden", [(9, 4), (3, 6)])
def test_factored_path_of_every_activation_matches_torch_func(name, d, hidden):
    """The one-hidden-layer MLP's factored model with each activation against torch.func's Hessian of
    f(x) = vᵀφ(Wx + b) + c written out with torch's own φ."""
    torch.manual_seed(7)
    m = scaled(MLP(d, hidden=hidden))
    m.activation = name  # the closed forms follow the name; the reference below uses torch's φ directly
    x, y = batch(8, d, seed=8)
    W, b, v, c = mlp_parameters(m, x)
    phi = TORCH_ACTIVATIONS[name]
    g_ref, H_ref = reference_derivatives(lambda t: phi(t @ W.T + b) @ v + c, x, y)
    quad = quadratic_model(m, x, y)
    assert quad.path == "mlp-subspace"
    U = quad.basis
    g, H = (quad.g, quad.hessian()) if U is None else (quad.g @ U.T, U @ quad.hessian() @ U.T)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(H, H_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ANALYTIC_ACTIVATIONS)
def test_mlp_with_every_activation_against_its_own_forward(name):
    """Where the model family supports the activation, the factored path differentiates the model's own forward."""
    try:
        m = scaled(MLP(6, hidden=4, activation=name))
    except FastfairError:
        pytest.skip(f"this MLP has no {name!r} activation")
    x, y = batch(8, 6, seed=9)
    g_ref, H_ref = reference_derivatives(module_forward(m), x, y)
    quad = quadratic_model(m, x, y)
    assert quad.path == "mlp-subspace"
    torch.testing.assert_close(quad.lift(quad.g), g_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(quad.basis @ quad.hessian() @ quad.basis.T, H_ref, rtol=1e-10, atol=1e-12)
