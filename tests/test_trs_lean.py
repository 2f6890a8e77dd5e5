"""The lean solvers of training, :func:`fastfair.trs.solve_trs_fast` and :func:`fastfair.trs.solve_trs_operator`:
the same minimiser as the float64 oracle of ``trs_oracle``; the certified fixed point accepts only rows it has
solved, and the rest are solved by the eigendecomposition fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from fastfair.trs import solve_trs_fast
from trs_oracle import (
    DIMS,
    fast_np,
    fixed_point_np,
    instances_for,
    make_instance,
    natural_scale,
    near_hard_instance,
    objective_close,
    oracle_trs,
    problems,
    q_of,
    solve_np,
    stack,
    vnorm,
)

pytestmark = pytest.mark.usefixtures("single_threaded_linear_algebra")


# ------------------------------------------------------------------------------------------------------------
# solve_trs_fast: the training fast path must give the same minimiser
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", DIMS)
def test_fast_solver_matches_oracle_float64(d: int) -> None:
    instances = instances_for(d, seed=2000 + d)
    G, HH, R = stack(instances)
    P = fast_np(G, HH, R)
    assert np.isfinite(P).all()
    for j, (kind, g, H, r) in enumerate(instances):
        _, q_star, _ = oracle_trs(g, H, r)
        where = f"d={d} kind={kind} r={r:.3g}"
        assert vnorm(P[j]) <= r * (1 + 1e-12), where
        assert objective_close(q_of(g, H, P[j]), q_star, g, H, r), (where, q_of(g, H, P[j]), q_star)


@pytest.mark.parametrize("c1", [1e-3, 1e-9, 1e-14])
@pytest.mark.parametrize("rho", [0.5, 1 - 1e-9])
def test_fast_solver_near_hard_case(c1: float, rho: float) -> None:
    g, H = near_hard_instance(12, c1, rho)
    p = fast_np(g, H, 1.0)[0]
    _, q_star, _ = oracle_trs(g, H, 1.0)
    assert vnorm(p) <= 1.0 and abs(q_of(g, H, p) - q_star) <= 1e-12 * abs(q_star)


def test_fast_solver_degenerate_inputs_and_extreme_radii() -> None:
    d = 4
    A = np.random.default_rng(3).standard_normal((d, d))
    H = A + A.T
    g = np.random.default_rng(4).standard_normal(d)
    cases = [
        (np.zeros(d), np.zeros((d, d)), 1.0),  # p = 0
        (np.zeros(d), A @ A.T, 1.0),  # p = 0
        (np.zeros(d), H, 2.0),  # along the lowest eigenvector
        (g, np.zeros((d, d)), 3.0),  # -r g/‖g‖
        (g, H, 1e-8),
        (g, H, 1e8),
    ]
    P = fast_np(np.stack([c[0] for c in cases]), np.stack([c[1] for c in cases]), np.array([c[2] for c in cases]))
    assert np.isfinite(P).all()
    for j, (gj, Hj, r) in enumerate(cases):
        _, q_star, _ = oracle_trs(gj, Hj, r)
        assert vnorm(P[j]) <= r * (1 + 1e-12)
        assert objective_close(q_of(gj, Hj, P[j]), q_star, gj, Hj, r), (j, q_of(gj, Hj, P[j]), q_star)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_fast_solver_properties_float32(problem: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """float32: finite, feasible, and as good as the certified solver up to float32 rounding."""
    # the float32 problem is the float64 one rounded to float32 (tiny entries may round to 0): compare on that
    G, HH, R = (a.astype(np.float32).astype(np.float64) for a in problem)
    P = fast_np(G, HH, R, dtype=torch.float32)
    ref = solve_np(G, HH, R).objective.numpy()
    assert np.isfinite(P).all()
    for j in range(len(G)):
        assert vnorm(P[j]) <= R[j] * (1 + 1e-6)
        scale = natural_scale(G[j], HH[j], R[j])
        assert q_of(G[j], HH[j], P[j]) <= ref[j] + 1e-4 * scale, j


def test_fast_solver_empty_batch() -> None:
    assert solve_trs_fast(torch.zeros(0, 3), torch.zeros(0, 3, 3), torch.zeros(0)).shape == (0, 3)


# ------------------------------------------------------------------------------------------------------------
# solve_trs_operator: the certified fixed point accepts only rows it has solved, and the rest fall back
# ------------------------------------------------------------------------------------------------------------


def test_fixed_point_accepted_rows_equal_the_oracle_minimiser() -> None:
    """Every accepted row is the oracle's (unique) minimiser; on every instance kind and dimension."""
    accepted = 0
    for d in DIMS:
        instances = instances_for(d, seed=3000 + d)
        G, HH, R = stack(instances)
        P, done = fixed_point_np(G, HH, R)
        for j, (kind, g, H, r) in enumerate(instances):
            if not done[j]:
                continue
            accepted += 1
            p_star, q_star, _ = oracle_trs(g, H, r)
            where = f"d={d} kind={kind} r={r:.3g}"
            assert vnorm(P[j]) <= r, where
            assert vnorm(P[j] - p_star) <= 1e-10 * r, (where, vnorm(P[j] - p_star) / r)
            assert objective_close(q_of(g, H, P[j]), q_star, g, H, r), where
    assert accepted >= 50  # the easy kinds are accepted (the test would be vacuous otherwise)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_fixed_point_acceptance_is_sound(problem: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Property: an accepted row is within 1e-10 r of the oracle's minimiser, whatever the instance."""
    # subnormal entries (hypothesis draws them) break the oracle's LAPACK eigh, not the solver: flush them
    G, HH, R = (np.where(np.abs(a) < 1e-290, 0.0, a) for a in problem)
    P, done = fixed_point_np(G, HH, R)
    for j in np.flatnonzero(done):
        p_star, _, _ = oracle_trs(G[j], HH[j], float(R[j]))
        assert vnorm(P[j] - p_star) <= 1e-10 * R[j] + 1e-300


def test_fixed_point_accepts_small_radii_and_rejects_what_it_cannot_certify() -> None:
    rng = np.random.default_rng(21)
    d, n = 6, 40
    A = rng.standard_normal((n, d, d))
    H = A + A.transpose(0, 2, 1)
    G = rng.standard_normal((n, d))
    # ‖g‖/r ≥ 4 ‖H‖_F: the contraction regime, every row is accepted within a few products
    R = np.linalg.norm(G, axis=1) / (4 * np.linalg.norm(H, axis=(1, 2)))
    _, done = fixed_point_np(G, H, R)
    assert done.all()
    # g = 0, the hard case, an interior solution and a large radius (λ* below the bound) are never accepted
    hard_g, hard_H, hard_r = make_instance(np.random.default_rng(5), "hard", d)
    inner_g, inner_H, inner_r = make_instance(np.random.default_rng(6), "interior", d)
    cases = [(np.zeros(d), H[0], 1.0), (hard_g, hard_H, hard_r), (inner_g, inner_H, inner_r), (G[0], H[0], 1e3)]
    _, done = fixed_point_np(*(np.stack([c[i] for c in cases]) for i in range(2)), np.array([c[2] for c in cases]))
    assert not done.any()
    # ... and solve_trs_fast still solves them exactly (eigendecomposition fallback), and says so
    P = fast_np(np.stack([c[0] for c in cases]), np.stack([c[1] for c in cases]), np.array([c[2] for c in cases]))
    stats: dict[str, int] = {}
    solve_trs_fast(*(torch.as_tensor(a) for a in (G, H, R)), stats=stats)
    assert stats["fallback_rows"] == 0 and 1 <= stats["products"] <= 30
    for j, (g, Hj, r) in enumerate(cases):
        _, q_star, _ = oracle_trs(g, Hj, r)
        assert objective_close(q_of(g, Hj, P[j]), q_star, g, Hj, r), j


def _documented_bound(k: int, r: float) -> float:
    """The acceptance tolerance of the fixed point, ``8 (k + 8) eps r`` (float64), plus ``8 eps r`` for the final
    rescaling to ``‖p‖ = r (1 - 4 eps)`` and the oracle's own rounding."""
    return (8 * (k + 8) + 8) * np.finfo(np.float64).eps * r


def test_fixed_point_accepted_rows_meet_the_documented_bound() -> None:
    """Accepted rows are within the documented ``8 (k + 8) eps r`` of the oracle's minimiser (not just 1e-10 r)."""
    accepted = 0
    for d in DIMS:
        for seed in (3000 + d, 4000 + d):
            instances = instances_for(d, seed=seed)
            G, HH, R = stack(instances)
            P, done = fixed_point_np(G, HH, R)
            for j in np.flatnonzero(done):
                kind, g, H, r = instances[j]
                p_star, _, _ = oracle_trs(g, H, r)
                error = vnorm(P[j] - p_star)
                assert error <= _documented_bound(d, r), (d, kind, error / (8 * (d + 8) * np.finfo(float).eps * r))
                accepted += 1
    assert accepted >= 150  # most easy-case rows of every dimension are accepted


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_fixed_point_acceptance_meets_the_documented_bound(problem: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Property: an accepted row is within ``8 (k + 8) eps r`` of the oracle's minimiser, whatever the instance."""
    G, HH, R = (np.where(np.abs(a) < 1e-290, 0.0, a) for a in problem)  # the oracle's LAPACK dislikes subnormals
    P, done = fixed_point_np(G, HH, R)
    k = G.shape[1]
    for j in np.flatnonzero(done):
        p_star, _, _ = oracle_trs(G[j], HH[j], float(R[j]))
        assert vnorm(P[j] - p_star) <= _documented_bound(k, float(R[j])) + 1e-300
