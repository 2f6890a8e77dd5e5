"""Edge cases of the certified TRS solver: each case with a closed-form answer, the near-hard case, extreme
radii and data, iteration caps, and bad input (one-line FastfairError)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastfair.errors import FastfairError
from fastfair.trs import solve_trs, solve_trs_eig
from trs_oracle import (
    instances_for,
    natural_scale,
    near_hard_instance,
    oracle_trs,
    q_of,
    rand_orth,
    solve_np,
    stack,
    t64,
)

pytestmark = pytest.mark.usefixtures("single_threaded_linear_algebra")


# ------------------------------------------------------------------------------------------------------------
# Each case with a closed-form answer
# ------------------------------------------------------------------------------------------------------------


def test_zero_gradient_psd_hessian_gives_zero_step() -> None:
    H = t64([[[2.0, 1.0], [1.0, 3.0]], [[1.0, 0.0], [0.0, 0.0]]])
    res = solve_trs(torch.zeros(2, 2, dtype=torch.float64), H, 0.7)
    assert torch.equal(res.step, torch.zeros(2, 2, dtype=torch.float64))
    assert torch.equal(res.multiplier, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(res.objective, torch.zeros(2, dtype=torch.float64))


def test_zero_gradient_indefinite_hessian_steps_along_lowest_eigenvector() -> None:
    r = 0.7
    res = solve_trs(torch.zeros(1, 3, dtype=torch.float64), t64([[[2.0, 0, 0], [0, -1.5, 0], [0, 0, 1.0]]]), r)
    assert bool(res.hard_case[0])
    torch.testing.assert_close(res.step[0].abs(), t64([0.0, r, 0.0]), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(res.multiplier, t64([1.5]))
    torch.testing.assert_close(res.objective, t64([-0.75 * r * r]))


def test_zero_hessian_gives_scaled_negative_gradient() -> None:
    g = t64([[3.0, -4.0], [0.0, 1e-30]])
    r = t64([2.0, 1e8])
    res = solve_trs(g, torch.zeros(2, 2, 2, dtype=torch.float64), r)
    expected = -r[:, None] * g / g.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(res.step, expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(res.multiplier, g.norm(dim=-1) / r)
    torch.testing.assert_close(res.objective, -g.norm(dim=-1) * r)


def test_zero_gradient_and_zero_hessian() -> None:
    res = solve_trs(torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, 4, 4, dtype=torch.float64), 1.0)
    assert torch.equal(res.step, torch.zeros(3, 4, dtype=torch.float64))
    assert torch.equal(res.objective, torch.zeros(3, dtype=torch.float64))
    assert bool(res.certificate().ok().all())


def test_hard_case_with_eigenvalue_of_multiplicity_three() -> None:
    w = t64([-2.0, -2.0, -2.0, 1.0, 3.0])
    c = t64([0.0, 0.0, 0.0, 0.3, -0.5])
    rng = np.random.default_rng(0)
    Q = t64(rand_orth(rng, 5))
    H = (Q * w) @ Q.T
    g = Q @ c
    res = solve_trs(g[None], H[None], 1.0)
    y_rest = -c[3:] / (w[3:] + 2.0)  # p(-λ₁) in eigen-coordinates
    tau2 = 1.0 - float(y_rest @ y_rest)
    q_expected = float(c[3:] @ y_rest + 0.5 * (w[3:] * y_rest**2).sum() + 0.5 * (-2.0) * tau2)
    assert bool(res.hard_case[0])
    torch.testing.assert_close(res.multiplier, t64([2.0]), rtol=1e-13, atol=0)
    assert abs(float(res.objective[0]) - q_expected) <= 1e-13 * abs(q_expected)
    assert abs(float(res.step.norm()) - 1.0) <= 1e-14
    assert bool(res.certificate().ok(1e-13).all())


def test_numerically_repeated_lowest_eigenvalue_is_one_eigenspace() -> None:
    # λ₁ = -1 "twice", the copies a few ulps apart, and g ⟂ that eigenspace up to a few ulps (as eigh leaves
    # it): this is the hard case. Treating the copies as distinct would turn ulp-sized c_i / (λ_i - λ₁) into
    # O(1) step components and call it an easy case.
    e = np.finfo(float).eps
    w = np.array([-1.0, -1.0 + 4 * e, -1.0 + 8 * e, 0.5, 2.0])
    c = np.array([0.0, 3 * e, -2 * e, 0.4, 0.9])
    res = solve_trs_eig(t64(c[None]), t64(w[None]), None, 1.0)
    assert bool(res.hard_case[0])
    torch.testing.assert_close(res.multiplier, t64([1.0]))
    y = res.step[0].numpy()
    assert abs(np.linalg.norm(y) - 1) <= 1e-15 and abs(y[1]) + abs(y[2]) == 0 and abs(y[0]) > 0.1
    y_rest = -c[3:] / (w[3:] + 1)
    q_expected = float(c[3:] @ y_rest + 0.5 * w[3:] @ y_rest**2 - 0.5 * (1 - y_rest @ y_rest))
    assert abs(float(res.objective[0]) - q_expected) <= 1e-14


def test_indefinite_hessian_never_takes_the_newton_step() -> None:
    # The reference code accepts -H⁻¹g whenever it lies inside the ball. For H ≺ 0 that step *increases* q.
    H = t64([[[-1.0, 0.0], [0.0, -3.0]]])
    g = t64([[0.01, 0.02]])
    r = 1.0
    newton = -torch.linalg.solve(H[0], g[0])
    assert float(newton.norm()) < r
    q_newton = float(g[0] @ newton + 0.5 * newton @ H[0] @ newton)
    res = solve_trs(g, H, r)
    assert float(res.objective[0]) < q_newton - 1.0
    assert abs(float(res.step.norm()) - r) <= 1e-14


def test_logistic_rank_one_negative_semidefinite_matches_closed_form() -> None:
    # Maximising the logistic loss of an affine model: g = -(σ - y) w, H = -σ(1 - σ) w wᵀ; §3.2 of the design.
    rng = np.random.default_rng(3)
    n, d = 64, 7
    w = t64(rng.standard_normal(d))
    sig = t64(rng.uniform(0.01, 0.99, n))
    y = t64(rng.integers(0, 2, n).astype(float))
    g = -(sig - y)[:, None] * w
    H = -(sig * (1 - sig))[:, None, None] * torch.outer(w, w)
    r = 0.3
    res = solve_trs(g, H, r)
    expected = r * torch.sign(sig - y)[:, None] * w / w.norm()
    torch.testing.assert_close(res.step, expected, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------------------------
# The near-hard case, extreme radii and data, iteration caps
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c1", [1e-3, 1e-6, 1e-9, 1e-12, 1e-14])
@pytest.mark.parametrize("rho", [0.5, 0.999, 1 - 1e-9])
def test_near_hard_case_objective_is_accurate(c1: float, rho: float) -> None:
    g, H = near_hard_instance(11, c1, rho)
    res = solve_np(g, H, 1.0, max_iter=16)  # the safeguarded iteration needs ≤ 13 here (plain Newton: ≤ 28)
    _, q_star, _ = oracle_trs(g, H, 1.0)
    assert abs(float(res.objective[0]) - q_star) <= 1e-13 * abs(q_star)
    assert abs(q_of(g, H, res.step[0].numpy()) - q_star) <= 1e-13 * abs(q_star)
    assert bool(res.certificate().ok(1e-13).all())


def test_extreme_radii_follow_the_asymptotics() -> None:
    rng = np.random.default_rng(5)
    g = rng.standard_normal(6)
    A = rng.standard_normal((6, 6))
    H = A + A.T
    lam1 = np.linalg.eigvalsh(H)[0]
    assert lam1 < 0
    res = solve_np(np.stack([g, g]), np.stack([H, H]), np.array([1e-8, 1e8]))
    # tiny ball: q ≈ -‖g‖ r (first order); huge ball: q ≈ ½ λ₁ r² (the curvature wins)
    assert abs(float(res.objective[0]) / (-np.linalg.norm(g) * 1e-8) - 1) < 1e-6
    assert abs(float(res.objective[1]) / (0.5 * lam1 * 1e16) - 1) < 1e-6


def test_float32_huge_radius_does_not_overflow_the_norm() -> None:
    g = torch.tensor([[3e18, -4e18]], dtype=torch.float32)  # ‖g‖² overflows float32
    res = solve_trs(g, torch.zeros(1, 2, 2), 1e20)
    torch.testing.assert_close(res.step, torch.tensor([[-6e19, 8e19]]))
    assert torch.isfinite(res.certificate().max_violation()).all()


def test_huge_finite_entries_are_not_mistaken_for_inf() -> None:
    H = torch.diag_embed(t64([[1e308, -1e308], [1e308, 2e307]]))  # their sum overflows, H + Hᵀ would too
    g = t64([[1.0, 0.0], [1e300, -1e300]])
    res = solve_trs(g, H, 1.0)
    assert torch.isfinite(res.step).all() and torch.isfinite(res.objective).all()
    torch.testing.assert_close(res.step[0], t64([0.0, 1.0]))  # along the huge negative curvature


def test_max_iter_zero_is_still_feasible_and_finite() -> None:
    instances = instances_for(5, seed=3)
    G, HH, R = stack(instances)
    for max_iter in (0, 1, 2):
        res = solve_np(G, HH, R, max_iter=max_iter)
        assert torch.isfinite(res.step).all() and torch.isfinite(res.objective).all()
        assert bool((res.step.norm(dim=-1) <= torch.as_tensor(R)).all())


def test_loose_tol_gives_loose_but_sound_answers() -> None:
    instances = instances_for(10, seed=4)
    G, HH, R = stack(instances)
    tight, loose = solve_np(G, HH, R), solve_np(G, HH, R, tol=1e-3)
    assert bool((loose.step.norm(dim=-1) <= torch.as_tensor(R)).all())
    # q(p) is stationary on the sphere: a 1e-3 error in ‖p‖ moves q by at most O(1e-3) of its scale
    N = torch.as_tensor([natural_scale(g, H, r) for _, g, H, r in instances])
    assert bool(((loose.objective - tight.objective).abs() <= 1e-2 * N).all())
    assert bool((tight.objective <= loose.objective + 1e-12 * N).all())


# ------------------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("g", "H", "radius"),
    [
        (torch.zeros(2, 3), torch.zeros(2, 3, 3), 0.0),
        (torch.zeros(2, 3), torch.zeros(2, 3, 3), -1.0),
        (torch.zeros(2, 3), torch.zeros(2, 3, 3), float("nan")),
        (torch.zeros(2, 3), torch.zeros(2, 3, 3), float("inf")),
        (torch.zeros(2, 3), torch.zeros(2, 3, 3), torch.tensor([1.0, 0.0])),
        (torch.zeros(2, 3), torch.zeros(2, 3, 3), torch.ones(3)),
        (torch.zeros(2, 3), torch.zeros(2, 3, 3), "one"),
        (torch.zeros(2, 3), torch.zeros(2, 3, 3), True),
        (torch.zeros(2, 3), torch.zeros(2, 4, 4), 1.0),
        (torch.zeros(2, 3), torch.zeros(3, 3, 3), 1.0),
        (torch.zeros(3), torch.zeros(3, 3), 1.0),
        (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, 3, dtype=torch.int64), 1.0),
        (torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3, 3), 1.0),
        (torch.full((2, 3), float("nan")), torch.zeros(2, 3, 3), 1.0),
        (torch.zeros(2, 3), torch.full((2, 3, 3), float("inf")), 1.0),
        (np.zeros((2, 3)), torch.zeros(2, 3, 3), 1.0),
        (torch.zeros(2, 0), torch.zeros(2, 0, 0), 1.0),
    ],
)
def test_bad_input_raises_one_line_error(g: object, H: object, radius: object) -> None:
    with pytest.raises(FastfairError) as info:
        solve_trs(g, H, radius)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_solve_trs_eig_bad_input() -> None:
    c, lam, V = torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 5, 3)
    with pytest.raises(FastfairError):
        solve_trs_eig(c, torch.zeros(2, 4), V, 1.0)
    with pytest.raises(FastfairError):
        solve_trs_eig(c, lam, torch.zeros(2, 2, 3), 1.0)
    with pytest.raises(FastfairError):
        solve_trs_eig(c, lam, V, torch.zeros(2))
    assert solve_trs_eig(c, lam, V, 1.0).step.shape == (2, 5)


@pytest.mark.parametrize("radius", ["0.5", "1e-3", b"1", [0.5], None, torch.tensor([True, True])])
@pytest.mark.parametrize("entry", ["solve_trs", "solve_trs_eig"])
def test_radius_must_be_a_number(entry: str, radius: object) -> None:
    call = {
        "solve_trs": lambda: solve_trs(torch.zeros(2, 3), torch.eye(3).expand(2, 3, 3), radius),
        "solve_trs_eig": lambda: solve_trs_eig(torch.zeros(2, 3), torch.ones(2, 3), None, radius),
    }[entry]
    with pytest.raises(FastfairError, match="radius") as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("tol", -1e-8),
        ("tol", float("nan")),
        ("tol", float("inf")),
        ("tol", "1e-8"),
        ("tol", True),
        ("max_iter", -1),
        ("max_iter", 2.5),
        ("max_iter", True),
        ("max_iter", "60"),
    ],
)
@pytest.mark.parametrize("entry", ["solve_trs", "solve_trs_eig"])
def test_tol_and_max_iter_are_checked(entry: str, option: str, value: object) -> None:
    g, H = t64([[1.0, -2.0]]), t64([[[1.0, 0.0], [0.0, -1.0]]])
    kw = {option: value}
    call = {
        "solve_trs": lambda: solve_trs(g, H, 1.0, **kw),
        "solve_trs_eig": lambda: solve_trs_eig(g, t64([[1.0, -1.0]]), None, 1.0, **kw),
    }[entry]
    with pytest.raises(FastfairError, match=option) as info:
        call()
    assert "\n" not in str(info.value)


def test_tol_zero_and_integer_options_are_accepted() -> None:
    g, H = t64([[1.0, -2.0]]), t64([[[1.0, 0.0], [0.0, -1.0]]])
    ref = solve_trs(g, H, 1.0)
    for kw in ({"tol": 0}, {"tol": 0.0}, {"max_iter": np.int64(60)}, {"tol": np.float32(1e-6)}):
        res = solve_trs(g, H, 1.0, **kw)
        torch.testing.assert_close(res.objective, ref.objective, rtol=1e-6, atol=0)
