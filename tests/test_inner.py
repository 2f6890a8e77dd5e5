"""Inner maximisers: exactness of TRS on affine models, subspace = dense, feasibility, degenerate inputs."""

from __future__ import annotations

import math

import pytest
import torch

from fastfair.derivatives import loss_input_derivatives
from fastfair.errors import FastfairError
from fastfair.inner import (
    SOLVERS,
    InnerMaximizer,
    TrustRegionAdversary,
    make_inner,
    solver_options,
)
from fastfair.models import MLP
from helpers import bce_reference
from inner_cases import DT, SPEC_IDS, SPECS, affine, batch, model, norms, true_loss

# ------------------------------------------------------------------------------------------------------
# TRS on the affine model: the exact maximiser
# ------------------------------------------------------------------------------------------------------


def test_affine_trs_is_the_exact_maximiser():
    d, r = 4, 0.7
    m = model("affine", d)
    x, y = batch(64, d)
    res = make_inner("trs").perturb(m, x, y, r)
    assert res.extras["path"] == "affine-closed-form"
    # oracle: the loss sees δ only through the logit, which ranges over z ± r‖w‖ on the ball
    w = m.linear.weight.detach()[0]
    z = m(x).detach()
    best = torch.maximum(bce_reference(z + r * w.norm(), y), bce_reference(z - r * w.norm(), y))
    torch.testing.assert_close(res.loss, best, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(norms(res, x), torch.full((64,), r, dtype=DT))
    cert = res.certificate
    assert bool(cert.ok().all()) and bool((cert.min_eigenvalue >= 0).all())


def test_affine_trs_beats_every_pgd_run():
    d, r = 3, 0.5
    m = model("affine", d, seed=2)
    x, y = batch(50, d, seed=3)
    trs = make_inner("trs").perturb(m, x, y, r).loss
    runs = [
        make_inner("pgd"),
        make_inner("pgd", steps=50, rel_step=0.05),
        make_inner("pgd", steps=20, random_start=True, seed=0),
        make_inner("pgd", steps=20, random_start=True, seed=1),
        make_inner("pgd-paper"),
        make_inner("random", seed=0),
    ]
    for inner in runs:
        other = inner.perturb(m, x, y, r).loss
        assert bool((trs >= other - 1e-7).all()), inner
    # and no feasible point of a dense random sample of the ball does better
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        delta = torch.randn(50, d, generator=g, dtype=DT)
        delta = delta * (r * torch.rand(50, 1, generator=g, dtype=DT) / delta.norm(dim=1, keepdim=True))
        assert bool((trs >= true_loss(m, x + delta, y) - 1e-12).all())


def test_reference_failure_case_gets_a_loss_increasing_step():
    """w = (6, 8), b = 0: a confidently classified point (z = 14, y = 1) and r = 0.2."""
    m = affine([6.0, 8.0])
    x = torch.tensor([[1.0, 1.0]], dtype=DT)
    y = torch.tensor([1.0], dtype=DT)
    r = 0.2
    clean = true_loss(m, x, y)
    # the defect: the reference accepts the interior Newton step of the model whenever ‖p‖ ≤ r, without
    # checking that H = -∇²L is positive definite (here it is negative semidefinite)
    der = loss_input_derivatives(m, x, y)
    g, H = -der.grad[0], -der.hessian[0]
    newton = -torch.linalg.pinv(H) @ g
    assert newton.norm() <= r  # ... so the reference would take it
    assert true_loss(m, x + newton, y) < clean  # ... and it DEcreases the loss
    for structured in (True, False):
        res = TrustRegionAdversary(structured=structured).perturb(m, x, y, r)
        assert res.loss.item() > clean.item()
        torch.testing.assert_close(res.x_adv - x, -r * torch.tensor([[0.6, 0.8]], dtype=DT))
        assert bool(res.certificate.ok().all())


@pytest.mark.parametrize("label", [0.0, 1.0, 0.3])
def test_affine_direction_for_extreme_logits_and_soft_labels(label):
    """sign(σ - y) is exact even where σ rounds to y; soft labels pick the end point of larger loss."""
    m = affine([3.0, -4.0])
    x = torch.tensor([[40.0, -20.0], [-40.0, 20.0], [0.0, 0.0], [0.3, 0.1]], dtype=DT)  # z = 200, -200, 0, .5
    y = torch.full((4,), label, dtype=DT)
    r = 0.1
    res = make_inner("trs").perturb(m, x, y, r)
    z = m(x).detach()
    up, down = bce_reference(z + r * 5, y), bce_reference(z - r * 5, y)
    dz = m(res.x_adv).detach() - z
    if label in (0.0, 1.0):  # monotone loss: always move the logit away from the label
        expected = torch.full((4,), 0.5 if label == 0.0 else -0.5, dtype=DT)
        torch.testing.assert_close(dz, expected)
        assert bool(res.certificate.ok().all())
    best = torch.maximum(up, down)
    assert bool((res.loss >= best * (1 - 1e-14)).all()) and torch.isfinite(res.loss).all()


# ------------------------------------------------------------------------------------------------------
# TRS on MLPs and other modules
# ------------------------------------------------------------------------------------------------------


def _model_value(m, x, y, delta):
    """The quadratic model's predicted increase ∇Lᵀδ + ½δᵀ∇²Lδ, from the full derivatives."""
    der = loss_input_derivatives(m, x, y)
    return (der.grad * delta).sum(1) + 0.5 * torch.einsum("ni,nij,nj->n", delta, der.hessian, delta)


@pytest.mark.parametrize(
    "activation, r", [("tanh", 1e-3), ("sigmoid", 0.3), ("softplus", 5.0), ("tanh", 0.3), ("sigmoid", 5.0)]
)
def test_mlp_subspace_path_equals_dense_path(activation, r):
    d, h = 9, 3
    torch.manual_seed(5)
    m = MLP(d, hidden=h, activation=activation).to(DT)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    x, y = batch(40, d, seed=6)
    sub = make_inner("trs").perturb(m, x, y, r)
    gen = make_inner("trs", structured=False).perturb(m, x, y, r)
    assert sub.extras["path"] == "mlp-subspace" and gen.extras["path"] == "dense"
    # optimal values of the quadratic model agree (steps may differ by sign / hard-case freedom)
    torch.testing.assert_close(
        sub.extras["predicted_increase"], gen.extras["predicted_increase"], rtol=1e-9, atol=1e-12
    )
    # the reported value is the model value of the returned step
    for res in (sub, gen):
        torch.testing.assert_close(
            _model_value(m, x, y, res.x_adv - x), res.extras["predicted_increase"], rtol=1e-9, atol=1e-12
        )
        assert bool(res.certificate.ok().all())
        assert bool((norms(res, x) <= r * (1 + 1e-12)).all())
    # no point of the ball has a larger model value than the TRS step
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        delta = torch.randn(40, d, generator=g, dtype=DT)
        delta = delta * (r / delta.norm(dim=1, keepdim=True))
        assert bool((_model_value(m, x, y, delta) <= sub.extras["predicted_increase"] + 1e-12).all())
    # the reported loss is the true loss at x_adv
    torch.testing.assert_close(sub.loss, true_loss(m, sub.x_adv, y))


def test_mlp_subspace_certificate_counts_the_complement():
    """λ_min of the full H + λI is min(reduced λ_min, λ): compare with an explicit full eigendecomposition."""
    d, h, r = 7, 2, 0.4
    m = model("mlp", d, hidden=h, seed=8)
    x, y = batch(30, d, seed=9)
    res = make_inner("trs").perturb(m, x, y, r)
    der = loss_input_derivatives(m, x, y)
    lam = res.extras["multiplier"]
    full = -der.hessian + lam[:, None, None] * torch.eye(d, dtype=DT)
    expected = torch.linalg.eigvalsh(full)[:, 0]
    torch.testing.assert_close(res.certificate.min_eigenvalue, expected, atol=1e-10, rtol=1e-9)


def test_mlp_wide_hidden_layer_takes_the_factored_path_and_custom_module_works():
    m = model("mlp", 3, hidden=5)
    x, y = batch(20, 3)
    res = make_inner("trs").perturb(m, x, y, 0.5)
    assert res.extras["path"] == "mlp-subspace" and bool(res.certificate.ok().all())
    c = model("custom", 4)
    x, y = batch(20, 4)
    res = make_inner("trs").perturb(c, x, y, 0.5)
    assert res.extras["path"] == "dense" and bool(res.certificate.ok().all())
    assert bool((res.loss >= res.extras["clean_loss"] - 0.1).all())
    torch.testing.assert_close(res.loss, true_loss(c, res.x_adv, y))


# ------------------------------------------------------------------------------------------------------
# Every solver: feasibility, shapes, dtypes, radius tensors, degenerate inputs
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, options", SPECS, ids=SPEC_IDS)
@pytest.mark.parametrize("kind", ["affine", "mlp", "custom"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_solver_feasible_and_well_formed(name, options, kind, dtype):
    n, d = 16, 5
    m = model(kind, d, dtype=dtype)
    x, y = batch(n, d, dtype=dtype)
    r = torch.linspace(0.05, 2.0, n, dtype=torch.float64)  # per-sample radii, other dtype on purpose
    flags = [p.requires_grad for p in m.parameters()]
    with torch.no_grad():  # the training loop may call perturb under no_grad
        res = make_inner(name, **options).perturb(m, x, y.long(), r)
    assert res.x_adv.shape == (n, d) and res.x_adv.dtype == dtype and res.x_adv.device == x.device
    assert res.loss.shape == (n,) and res.loss.dtype == dtype
    assert res.iterations.shape == (n,) and res.iterations.dtype == torch.int64
    assert not res.x_adv.requires_grad and not res.loss.requires_grad
    assert torch.isfinite(res.x_adv).all() and torch.isfinite(res.loss).all()
    tol = 1e-6 if dtype == torch.float64 else 1e-5
    assert bool((norms(res, x) <= r.to(dtype) * (1 + tol)).all())
    torch.testing.assert_close(res.loss, true_loss(m, res.x_adv, y), rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in m.parameters())
    assert [p.requires_grad for p in m.parameters()] == flags
    if name == "trs":
        assert bool(res.certificate.ok().all())
    else:
        assert res.certificate is None
    if name == "random" and options.get("mode", "sphere") == "sphere":
        torch.testing.assert_close(norms(res, x), r.to(dtype))


@pytest.mark.parametrize("name, options", SPECS, ids=SPEC_IDS)
@pytest.mark.parametrize("r", [1e-8, 1e8])
def test_every_solver_degenerate_inputs(name, options, r):
    d = 3
    zero = affine([0.0, 0.0, 0.0], b=0.5)  # w = 0: nothing to gain, δ must be harmless
    mlp_zero = model("mlp", d)
    with torch.no_grad():
        mlp_zero.hidden.weight.zero_()
    boundary = affine([1.0, -2.0, 0.5])  # points on the decision boundary z = 0
    x_boundary = torch.tensor([[0.0, 0.0, 0.0], [2.0, 1.0, 0.0], [1.0, 1.0, 2.0]], dtype=DT)
    x, y = batch(3, d)
    cases = [(zero, x, y), (mlp_zero, x, y), (boundary, x_boundary, y), (boundary, x_boundary, 1 - y)]
    for m, xx, yy in cases:
        res = make_inner(name, **options).perturb(m, xx, yy, r)
        assert torch.isfinite(res.x_adv).all() and torch.isfinite(res.loss).all()
        assert bool((norms(res, xx) <= r * (1 + 1e-6) + 1e-12 * xx.norm(dim=1)).all())
        clean = true_loss(m, xx, yy)
        if name in ("trs", "pgd", "pgd-paper"):
            assert bool((res.loss >= clean - 1e-12).all())
        if name == "trs":
            assert bool(res.certificate.ok(1e-8).all())
            if m is boundary:  # loss convex in z with ℓ′ ≠ 0 at z = 0: the step must gain
                assert bool((res.loss > clean).all())


def test_trs_at_decision_boundary_with_soft_label_moves_either_way():
    """σ(z) = y exactly (ℓ′ = 0): the quadratic model is convex along w, both ends gain; we take one."""
    m = affine([2.0, 0.0])
    x = torch.tensor([[0.0, 1.0]], dtype=DT)
    y = torch.tensor([0.5], dtype=DT)
    res = make_inner("trs").perturb(m, x, y, 0.25)
    assert res.loss.item() > true_loss(m, x, y).item()
    assert bool(res.extras["hard_case"].all()) and bool(res.certificate.ok().all())
    torch.testing.assert_close(norms(res, x), torch.tensor([0.25], dtype=DT))


# ------------------------------------------------------------------------------------------------------
# Registry and errors
# ------------------------------------------------------------------------------------------------------


def test_make_inner_registry():
    assert SOLVERS == ("none", "auto", "trs", "trs-paper", "pgd-paper", "pgd", "random")  # the vocabulary's order
    assert make_inner("none") is None
    for name in SOLVERS[1:]:
        inner = make_inner(name)
        assert isinstance(inner, InnerMaximizer) and inner.name == name
    assert solver_options("pgd")["steps"] == 10
    paper = {"step": 0.1, "shrink": 1.5, "max_backtracks": 40, "tol": 1e-4, "max_iter": 5000, "batch_shared": False}
    assert solver_options("pgd-paper") == paper
    assert "steps=20" in repr(make_inner("pgd", steps=20))


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("fgsm", {}, "unknown solver"),
        (None, {}, "unknown solver"),
        ("none", {"steps": 3}, "unknown option"),
        ("trs", {"steps": 3}, "unknown option 'steps' for solver 'trs'"),
        ("trs", {"structured": "yes"}, "structured"),
        ("trs", {"backend": "jax"}, "backend"),
        ("trs", {"max_iter": 0}, "max_iter"),
        ("pgd", {"steps": 0}, "steps"),
        ("pgd", {"steps": 2.5}, "steps"),
        ("pgd", {"steps": math.inf}, "steps"),
        ("pgd", {"steps": math.nan}, "steps"),
        ("trs", {"tol": -1.0}, "tol"),
        ("pgd", {"rel_step": -1.0}, "rel_step"),
        ("pgd", {"rel_step": math.nan}, "rel_step"),
        ("pgd", {"seed": 1, "generator": torch.Generator()}, "either seed or generator"),
        ("pgd", {"seed": "one"}, "seed"),
        ("pgd-paper", {"shrink": 1.0}, "shrink"),
        ("pgd-paper", {"tol": 0}, "tol"),
        ("pgd-paper", {"max_backtracks": -1}, "max_backtracks"),
        ("random", {"mode": "cube"}, "unknown random mode"),
    ],
)
def test_make_inner_errors(name, options, match):
    with pytest.raises(FastfairError, match=match):
        make_inner(name, **options)


BAD_RADII = [0.0, -1.0, math.nan, math.inf, "big", True, torch.tensor([0.1, 0.0, 0.2])]


@pytest.mark.parametrize("radius", BAD_RADII)
def test_bad_radius_raises(radius):
    m = model("affine", 2)
    x, y = batch(3, 2)
    for name in SOLVERS[1:]:
        with pytest.raises(FastfairError, match="radius"):
            make_inner(name).perturb(m, x, y, radius)


def test_bad_batch_raises():
    m = model("affine", 2)
    x, y = batch(3, 2)
    inner = make_inner("trs")
    with pytest.raises(FastfairError, match="radius"):
        inner.perturb(m, x, y, torch.ones(4))
    with pytest.raises(FastfairError, match="labels"):
        inner.perturb(m, x, y[:2], 0.1)
    with pytest.raises(FastfairError, match="2-d"):
        inner.perturb(m, x[0], y, 0.1)
    with pytest.raises(FastfairError, match="float"):
        inner.perturb(m, x.long(), y, 0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name, options", SPECS, ids=SPEC_IDS)
@pytest.mark.parametrize("kind", ["affine", "mlp", "custom"])
def test_cuda_follows_device(name, options, kind):
    m = model(kind, 6, dtype=torch.float32, hidden=3).cuda()
    x, y = batch(64, 6, dtype=torch.float32)
    res = make_inner(name, **options).perturb(m, x.cuda(), y.cuda(), 0.3)
    assert res.x_adv.is_cuda and res.loss.is_cuda and res.iterations.is_cuda
    cpu = make_inner(name, **options).perturb(m.cpu(), x, y, 0.3)
    if name != "random" and not options.get("random_start"):
        torch.testing.assert_close(res.loss.cpu(), cpu.loss, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------------------------------------------------
# the training fast path (attack / certify=False) takes the certified path's step
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,d,hidden,structured",
    [
        ("affine", 5, 3, True),
        ("affine", 5, 3, False),
        ("mlp", 12, 3, True),  # h < d: row-space reduction (k = 3: dense reduced Hessian)
        ("mlp", 40, 16, True),  # k = h = 16: factored products, H̃ never formed
        ("mlp", 4, 16, True),  # h >= d: full d×d analytic Hessian
        ("mlp", 12, 3, False),
        ("two-hidden", 4, 3, True),  # torch.func derivatives
    ],
)
@pytest.mark.parametrize("r", [0.05, 1.0])
def test_attack_and_uncertified_perturb_equal_the_certified_step(kind, d, hidden, structured, r):
    m = model(kind, d, seed=4, hidden=hidden)
    x, y = batch(64, d, seed=5)
    certified = TrustRegionAdversary(structured=structured).perturb(m, x, y, r)
    lean = TrustRegionAdversary(structured=structured, certify=False)
    x_adv = lean.attack(m, x, y, torch.full((64,), r, dtype=DT))
    res = lean.perturb(m, x, y, r)
    assert res.certificate is None and res.extras["path"] == certified.extras["path"]
    torch.testing.assert_close(x_adv, res.x_adv, rtol=0, atol=0)
    # same optimum of the quadratic model: the true loss agrees to rounding (steps may differ in a hard case)
    torch.testing.assert_close(res.loss, certified.loss, rtol=1e-9, atol=1e-12)
    assert bool((norms(res, x) <= r * (1 + 1e-12)).all())


def test_uncertified_perturb_reports_the_lean_solver_work():
    """iterations = fixed-point products; rows the fixed point cannot certify (a large radius) are counted."""
    m = model("mlp", 40, seed=4, hidden=16)
    x, y = batch(64, 40, seed=5)
    lean = TrustRegionAdversary(certify=False)
    small = lean.perturb(m, x, y, 0.05)
    assert small.extras["fallback_rows"] == 0 and small.extras["products"] >= 2
    assert bool((small.iterations == small.extras["products"]).all())
    large = lean.perturb(m, x, y, 50.0)
    assert large.extras["fallback_rows"] > 0
    torch.testing.assert_close(large.loss, TrustRegionAdversary().perturb(m, x, y, 50.0).loss, rtol=1e-9, atol=1e-12)
    affine_res = TrustRegionAdversary(certify=False).perturb(model("affine", 5, seed=4), *batch(8, 5, seed=5), 0.1)
    assert affine_res.extras == {"path": "affine-closed-form"} and bool((affine_res.iterations == 1).all())


def test_attack_affine_soft_labels_and_zero_weights():
    m = affine([3.0, -4.0], b=0.5)
    x, _ = batch(32, 2, seed=6)
    y = torch.rand(32, generator=torch.Generator().manual_seed(7), dtype=DT)
    r = torch.full((32,), 0.3, dtype=DT)
    lean = TrustRegionAdversary(certify=False)
    torch.testing.assert_close(lean.attack(m, x, y, r), TrustRegionAdversary().perturb(m, x, y, r).x_adv)
    zero = affine([0.0, 0.0])
    torch.testing.assert_close(lean.attack(zero, x, y.round(), r), x, rtol=0, atol=0)
