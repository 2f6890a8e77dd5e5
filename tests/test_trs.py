"""Tests of :mod:`fastfair.trs`: the batched exact trust-region subproblem solver.

The solver is held to an *independent* float64 oracle written here: per sample, numpy/scipy,
``scipy.linalg.eigh`` (LAPACK, not torch), the secular equation ``‖p(λ)‖ = r`` solved with
``scipy.optimize.brentq`` (derivative-free, bracket found by decimation) and a separate hard-case branch. The
oracle itself is checked by brute force on the sphere for ``d = 2, 3`` and, in the easy case, against the
one-shot generalized-eigenvalue characterisation of the multiplier (Adachi, Iwata, Nakatsukasa & Takeda 2017).

Objective tolerance. Both the solver and the oracle are backward stable, so their optimal values can only be
compared to ``O(eps)`` of the natural size of the problem, ``N = ‖g‖ r + ‖H‖₂ r²``. We assert

    |q_solver - q_oracle| <= 1e-9 * max(|q_oracle|, 1e-3 * N),

i.e. 1e-9 relative to the optimal value, with an absolute floor of 1e-12 N (≈ 5000 ulps of N) for instances
whose optimal value is far smaller than the size of their data.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from fastfair.errors import FastfairError
from fastfair.trs import TRSCertificate, TRSResult, solve_trs, solve_trs_eig, solve_trs_fast


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_linear_algebra():
    """Tiny per-sample LAPACK calls are fastest on one thread; multi-threaded BLAS and torch slow down by
    10-50x on an oversubscribed machine (shared CI runners). Restored after this module."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(torch_threads)


# ------------------------------------------------------------------------------------------------------------
# The float64 oracle (numpy / scipy, one sample at a time)
# ------------------------------------------------------------------------------------------------------------


def vnorm(x: np.ndarray) -> float:
    """Euclidean norm of a vector without under/overflow (BLAS nrm2; np.linalg.norm squares the entries)."""
    return float(scipy.linalg.norm(x))


def q_of(g: np.ndarray, H: np.ndarray, p: np.ndarray) -> float:
    """q(p) = gᵀp + ½ pᵀHp in float64."""
    return float(g @ p + 0.5 * p @ (H @ p))


def oracle_trs(g: np.ndarray, H: np.ndarray, r: float) -> tuple[np.ndarray, float, float]:
    """Global minimiser of gᵀp + ½pᵀHp over ‖p‖ ≤ r. Returns ``(p, q(p), λ)``.

    Slow and simple: eigendecomposition with scipy, then either the Newton step (H ≻ 0 and inside), the
    hard-case formula (g ⟂ eigenspace of λ₁ and the pseudo-inverse step at λ = -λ₁ inside the ball) or brentq
    on the secular equation in t = λ + λ₁ (so that the pole sits at t = 0 and is not lost to rounding).
    """
    g = np.asarray(g, dtype=np.float64)
    H = 0.5 * (np.asarray(H, dtype=np.float64) + np.asarray(H, dtype=np.float64).T)
    w, V = scipy.linalg.eigh(H)
    c = V.T @ g
    lam1 = w[0]
    hnorm = max(abs(w[0]), abs(w[-1]))
    gnorm = vnorm(g)
    # 1. interior: H positive definite and the Newton step is inside the ball
    if lam1 > 0:
        p = -V @ (c / w)
        if vnorm(p) <= r:
            return p, q_of(g, H, p), 0.0
    gap = w - lam1  # ≥ 0; denominators are gap + t with t = λ + λ₁ ≥ max(λ₁, 0)
    t_min = max(lam1, 0.0)
    # 2. hard case: (almost) no weight on the eigenspace of λ₁, pseudo-inverse step strictly inside
    cluster = gap <= 1e-12 * max(hnorm, gnorm / r)
    if lam1 <= 0 and vnorm(c[cluster]) <= 1e-14 * (gnorm + hnorm * r):
        y = np.zeros_like(c)
        rest = ~cluster
        y[rest] = -c[rest] / (gap[rest] + t_min)
        ny = vnorm(y)
        if ny <= r:
            y[0] = math.sqrt(max(r * r - ny * ny, 0.0))
            p = V @ y
            return p, q_of(g, H, p), -lam1

    # 3. easy case: ‖c / (gap + t)‖ = r for a t in (t_min, t_min + ‖c‖/r]
    def f(t: float) -> float:
        return vnorm(c / (gap + t)) - r

    b = t_min + 2.0 * gnorm / r
    a = b
    for _ in range(2000):
        a = t_min + (a - t_min) / 10.0
        if f(a) > 0:
            break
    else:  # pragma: no cover - would mean a broken instance
        raise AssertionError("oracle could not bracket the secular equation")
    t = scipy.optimize.brentq(f, a, b, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=1000)
    p = -V @ (c / (gap + t))
    p *= r / vnorm(p)  # onto the sphere (q is stationary there, so this only helps)
    return p, q_of(g, H, p), t - lam1


def natural_scale(g: np.ndarray, H: np.ndarray, r: float) -> float:
    """N = ‖g‖ r + ‖H‖₂ r²: the size of the terms of q on the ball."""
    return float(vnorm(g) * r + np.linalg.norm(H, 2) * r * r)


def objective_close(q: float, q_star: float, g: np.ndarray, H: np.ndarray, r: float) -> bool:
    """|q - q*| <= 1e-9 max(|q*|, 1e-3 N): see the module docstring."""
    return abs(q - q_star) <= 1e-9 * max(abs(q_star), 1e-3 * natural_scale(g, H, r))


# ------------------------------------------------------------------------------------------------------------
# Random instances of every kind
# ------------------------------------------------------------------------------------------------------------

KINDS = (
    "easy",
    "psd_boundary",
    "interior",
    "negdef",
    "hard",
    "hard_repeated",
    "near_hard",
    "repeated_min",
    "psd_singular_hard",
    "rank_one",
    "zero_grad",
    "zero_hess",
    "wild",
)


def rand_orth(rng: np.random.Generator, d: int) -> np.ndarray:
    q, rr = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(rr))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(10 ** rng.uniform(lo, hi))


def make_instance(rng: np.random.Generator, kind: str, d: int) -> tuple[np.ndarray, np.ndarray, float]:
    """One (g, H, r) of the given kind; H = Q diag(w) Qᵀ, g = Q c with a random orthogonal Q."""
    Q = rand_orth(rng, d)
    hs = log_uniform(rng, -3, 3)  # size of H
    r = log_uniform(rng, -8, 8)
    w = rng.standard_normal(d) * hs
    c = rng.standard_normal(d)

    def spectral(w: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        H = (Q * w) @ Q.T
        return Q @ c, 0.5 * (H + H.T)

    if kind == "easy":  # indefinite, ‖g‖/r comparable to ‖H‖: a genuine boundary solution
        c *= hs * r * log_uniform(rng, -1, 1)
    elif kind == "psd_boundary":  # H ≻ 0 but the Newton step is too long
        w = np.abs(w) + 0.1 * hs
        c *= hs * r
        r = float(np.linalg.norm(c / w)) * rng.uniform(0.05, 0.95)
    elif kind == "interior":
        w = np.abs(w) + 0.1 * hs
        c *= hs * r
        r = float(np.linalg.norm(c / w)) * rng.uniform(1.05, 10.0)
    elif kind == "negdef":
        w = -np.abs(w) - 0.01 * hs
        c *= hs * r * log_uniform(rng, -3, 3)
    elif kind in ("hard", "hard_repeated", "near_hard", "psd_singular_hard"):
        m = 1 if kind in ("hard", "near_hard", "psd_singular_hard") else min(3, max(1, d - 1))
        w = np.sort(w)
        lam1 = 0.0 if kind == "psd_singular_hard" else -abs(w[0]) - 0.1 * hs
        w[:m] = lam1
        w[m:] = np.maximum(w[m:], lam1 + 0.05 * hs)
        c[:m] = 0.0
        if d > m:  # scale so that ‖p(-λ₁)‖ = ρ r with ρ < 1
            c *= r * rng.uniform(0.1, 0.95) / np.linalg.norm(c[m:] / (w[m:] - lam1))
        if kind == "near_hard":  # tiny, non-zero weight on q₁: an easy case at δ ≈ |c₁|
            scale = max(np.linalg.norm(c), hs * r)
            c[0] = rng.choice([-1.0, 1.0]) * scale * log_uniform(rng, -9, -4)
    elif kind == "repeated_min":  # multiplicity 2-3 of λ₁ with weight on it: easy case
        m = min(3, d)
        w = np.sort(w)
        w[:m] = w[0]
        c *= hs * r
    elif kind == "rank_one":
        a = rng.standard_normal(d)
        sign = rng.choice([-1.0, 1.0])
        H = sign * hs * np.outer(a, a)
        g = rng.standard_normal(d) * hs * r * log_uniform(rng, -2, 2)
        if rng.uniform() < 0.3:
            g = a * rng.standard_normal() * hs * r
        return g, H, r
    elif kind == "zero_grad":
        if rng.uniform() < 0.5:
            w = np.abs(w)
        c[:] = 0.0
    elif kind == "zero_hess":
        w[:] = 0.0
        c *= log_uniform(rng, -6, 6)
    elif kind == "wild":  # unrelated scales of g, H and r; huge and tiny entries
        w *= log_uniform(rng, -12, 12) / hs
        c *= log_uniform(rng, -12, 12)
    else:  # pragma: no cover
        raise ValueError(kind)
    g, H = spectral(w, c)
    return g, H, r


DIMS = (1, 2, 3, 5, 10, 50, 100)


def instances_for(d: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    rng = np.random.default_rng(seed)
    per_kind = 4 if d <= 10 else 2
    out = []
    for kind in KINDS:
        for _ in range(per_kind):
            g, H, r = make_instance(rng, kind, d)
            out.append((kind, g, H, r))
    return out


def solve_np(
    g: np.ndarray, H: np.ndarray, r: np.ndarray | float, dtype: torch.dtype = torch.float64, **kw: object
) -> TRSResult:
    gt = torch.as_tensor(np.atleast_2d(g), dtype=dtype)
    Ht = torch.as_tensor(H if np.ndim(H) == 3 else H[None], dtype=dtype)
    rt = torch.as_tensor(np.atleast_1d(r), dtype=dtype).expand(gt.shape[0])
    return solve_trs(gt, Ht, rt, **kw)


def stack(
    instances: list[tuple[str, np.ndarray, np.ndarray, float]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.stack([i[1] for i in instances]),
        np.stack([i[2] for i in instances]),
        np.array([i[3] for i in instances]),
    )


# ------------------------------------------------------------------------------------------------------------
# The oracle checked on its own
# ------------------------------------------------------------------------------------------------------------


def brute_force_min(g: np.ndarray, H: np.ndarray, r: float) -> float:
    """min q over the ball for d = 2 or 3, by brute force: q on a dense set of points of the sphere, then
    zooming in around the best few (local grids in the tangent plane, 8x finer per round), plus the interior
    Newton point when H ≻ 0 (an interior minimum needs H ⪰ 0; a singular H attains it on the sphere too)."""
    d = g.shape[0]

    def q_many(x: np.ndarray) -> np.ndarray:
        return x @ g + 0.5 * np.einsum("ni,ij,nj->n", x, H, x)

    if d == 2:
        t = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], -1)
    else:  # Fibonacci sphere
        k = np.arange(40000) + 0.5
        z = 1 - 2 * k / k.size
        phi = np.pi * (1 + 5**0.5) * k
        pts = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], -1)
    vals = q_many(r * pts)
    best = float(vals.min())
    offsets = np.arange(-16, 17) / 16.0
    grid = offsets[:, None] if d == 2 else np.stack(np.meshgrid(offsets, offsets), -1).reshape(-1, 2)
    for i in np.argsort(vals)[:3]:
        x, h = pts[i], 0.02
        for _ in range(12):
            tangent = scipy.linalg.null_space(x[None])  # (d, d-1) orthonormal basis of the tangent plane
            cand = x + (h * grid) @ tangent.T
            cand /= np.linalg.norm(cand, axis=1, keepdims=True)
            cv = q_many(r * cand)
            x, h = cand[np.argmin(cv)], h / 8
            best = min(best, float(cv.min()))
    w, V = np.linalg.eigh(H)
    if w[0] > 0:
        p = -V @ ((V.T @ g) / w)
        if np.linalg.norm(p) <= r:
            best = min(best, q_of(g, H, p))
    return best


@pytest.mark.parametrize("d", [2, 3])
def test_oracle_matches_brute_force_on_the_sphere(d: int) -> None:
    rng = np.random.default_rng(20 + d)
    for kind in KINDS:
        for _ in range(3 if d == 2 else 2):
            g, H, r = make_instance(rng, kind, d)
            _, q_star, _ = oracle_trs(g, H, r)
            q_bf = brute_force_min(g, H, r)
            scale = max(abs(q_star), 1e-3 * natural_scale(g, H, r))
            # the oracle is never beaten by sampling, and sampling + refinement reaches it
            assert q_star <= q_bf + 1e-12 * scale, (kind, q_star, q_bf)
            assert q_bf - q_star <= 1e-9 * scale, (kind, q_star, q_bf)


def generalized_eig_multiplier(g: np.ndarray, H: np.ndarray, r: float) -> float:
    """Rightmost real root of det((H + λI)² - ggᵀ/r²) via the linear pencil M0 + λ M1 (Adachi et al. 2017),
    M0 = [[-I, H], [H, -ggᵀ/r²]], M1 = [[0, I], [I, 0]]; in the easy case it is the TRS multiplier."""
    d = g.shape[0]
    s = max(np.linalg.norm(H, 2), vnorm(g) / r)  # work with unit radius and unit-size data
    Hs, gs = H / s, g / (s * r)
    eye = np.eye(d)
    M0 = np.block([[-eye, Hs], [Hs, -np.outer(gs, gs)]])
    M1 = np.block([[np.zeros((d, d)), eye], [eye, np.zeros((d, d))]])
    lam = scipy.linalg.eigvals(-M1 @ M0)  # M0 v = -λ M1 v and M1⁻¹ = M1
    real = lam[np.abs(lam.imag) <= 1e-8 * (1 + np.abs(lam.real))].real
    return float(real.max()) * s


def test_oracle_multiplier_matches_generalized_eigenvalue_formulation() -> None:
    rng = np.random.default_rng(7)
    checked = 0
    for d in (1, 2, 3, 5, 10, 20):
        for kind in ("easy", "psd_boundary", "negdef", "repeated_min", "near_hard"):
            for _ in range(3):
                g, H, r = make_instance(rng, kind, d)
                _, _, lam = oracle_trs(g, H, r)
                lam_ge = generalized_eig_multiplier(g, H, r)
                scale = np.linalg.norm(H, 2) + vnorm(g) / r
                assert abs(lam - lam_ge) <= 1e-7 * scale, (d, kind, lam, lam_ge)
                checked += 1
    assert checked == 90


# ------------------------------------------------------------------------------------------------------------
# The solver against the oracle: hundreds of float64 instances, every kind, d up to 100, r over 16 decades
# ------------------------------------------------------------------------------------------------------------

ALWAYS_HARD = ("hard", "hard_repeated")  # c = 0 on the eigenspace of λ₁ < 0 and ‖p(-λ₁)‖ < r


@pytest.mark.parametrize("d", DIMS)
def test_solver_matches_oracle_float64(d: int) -> None:
    instances = instances_for(d, seed=1000 + d)
    G, HH, R = stack(instances)
    res = solve_np(G, HH, R)  # one batched call for all kinds at once
    assert res.step.shape == (len(instances), d) and res.step.dtype == torch.float64
    for t in (res.step, res.multiplier, res.objective):
        assert torch.isfinite(t).all()
    violation = res.certificate().max_violation().numpy()
    for j, (kind, g, H, r) in enumerate(instances):
        p = res.step[j].numpy()
        _, q_star, lam_star = oracle_trs(g, H, r)
        where = f"d={d} kind={kind} r={r:.3g}"
        assert vnorm(p) <= r * (1 + 1e-12), where
        assert objective_close(q_of(g, H, p), q_star, g, H, r), (where, q_of(g, H, p), q_star)
        assert objective_close(float(res.objective[j]), q_star, g, H, r), (
            where,
            float(res.objective[j]),
            q_star,
        )
        lam = float(res.multiplier[j])
        assert lam >= 0, where
        assert abs(lam - lam_star) <= 1e-9 * (np.linalg.norm(H, 2) + vnorm(g) / r), (
            where,
            lam,
            lam_star,
        )
        assert violation[j] <= 1e-12, (where, violation[j])
        if kind in ALWAYS_HARD:
            assert bool(res.hard_case[j]), where
        if kind == "interior":
            assert lam == 0 and vnorm(p) < r and not bool(res.hard_case[j]), where
        if kind in ("easy", "psd_boundary", "near_hard", "repeated_min", "zero_hess"):
            assert not bool(res.hard_case[j]), where


@pytest.mark.slow
def test_solver_matches_oracle_float64_many() -> None:
    for d in (1, 2, 4, 8, 16, 32, 64, 128, 200):
        for seed in range(8):
            instances = instances_for(d, seed=50_000 + 100 * d + seed)
            G, HH, R = stack(instances)
            res = solve_np(G, HH, R)
            assert bool(res.certificate().ok(1e-12).all())
            for j, (kind, g, H, r) in enumerate(instances):
                _, q_star, _ = oracle_trs(g, H, r)
                assert objective_close(float(res.objective[j]), q_star, g, H, r), (d, seed, kind)
                assert float(res.step[j].norm()) <= r


# ------------------------------------------------------------------------------------------------------------
# Each case with a closed-form answer
# ------------------------------------------------------------------------------------------------------------


def t64(x: object) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def test_zero_gradient_psd_hessian_gives_zero_step() -> None:
    H = t64([[[2.0, 1.0], [1.0, 3.0]], [[1.0, 0.0], [0.0, 0.0]]])
    res = solve_trs(torch.zeros(2, 2, dtype=torch.float64), H, 0.7)
    assert torch.equal(res.step, torch.zeros(2, 2, dtype=torch.float64))
    assert torch.equal(res.multiplier, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(res.objective, torch.zeros(2, dtype=torch.float64))


def test_zero_gradient_indefinite_hessian_steps_along_lowest_eigenvector() -> None:
    r = 0.7
    res = solve_trs(
        torch.zeros(1, 3, dtype=torch.float64), t64([[[2.0, 0, 0], [0, -1.5, 0], [0, 0, 1.0]]]), r
    )
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


def near_hard_instance(seed: int, c1: float, rho: float, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``(g, H)`` with λ₁ = -1 simple, ‖p(-λ₁)‖ = ρ r for r = 1 without the q₁ component, and weight ``c1`` on q₁:
    an easy case whose multiplier sits ``≈ |c1|`` above -λ₁."""
    rng = np.random.default_rng(seed)
    Q = rand_orth(rng, d)
    w = np.concatenate([[-1.0], rng.uniform(-0.5, 2.0, d - 1)])
    c = rng.standard_normal(d)
    c[0] = 0.0
    c *= rho / np.linalg.norm(c[1:] / (w[1:] + 1.0))  # ‖p(-λ₁)‖ = ρ r with r = 1
    c[0] = c1
    H = (Q * w) @ Q.T
    return Q @ c, 0.5 * (H + H.T)


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
# Properties (hypothesis)
# ------------------------------------------------------------------------------------------------------------


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 4))
    d = draw(st.integers(1, 6))
    elems = st.one_of(
        st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, 1.0, -1.0, 1e-9, -1e6]),
    )
    A = np.array(draw(st.lists(elems, min_size=n * d * d, max_size=n * d * d))).reshape(n, d, d)
    hexp = np.array(draw(st.lists(st.integers(-6, 6), min_size=n, max_size=n)), dtype=float)
    H = (A + A.transpose(0, 2, 1)) * 10.0 ** hexp[:, None, None]
    G = np.array(draw(st.lists(elems, min_size=n * d, max_size=n * d))).reshape(n, d)
    gexp = np.array(draw(st.lists(st.integers(-6, 6), min_size=n, max_size=n)), dtype=float)
    G = G * 10.0 ** gexp[:, None]
    rexp = np.array(draw(st.lists(st.floats(-6, 6), min_size=n, max_size=n)))
    return G, H, 10.0**rexp


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**31 - 1))
def test_properties(problem: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int) -> None:
    G, HH, R = problem
    res = solve_np(G, HH, R)
    assert torch.isfinite(res.step).all() and torch.isfinite(res.objective).all()
    assert torch.isfinite(res.multiplier).all() and bool((res.multiplier >= 0).all())
    assert bool((res.step.norm(dim=-1) <= torch.as_tensor(R)).all())  # feasible, exactly
    assert bool(res.certificate().ok(1e-10).all())
    rng = np.random.default_rng(seed)
    for j in range(G.shape[0]):
        g, H, r = G[j], HH[j], float(R[j])
        p = res.step[j].numpy()
        N = natural_scale(g, H, r)
        q = q_of(g, H, p)
        assert abs(q - float(res.objective[j])) <= 1e-12 * N + 1e-300
        assert q <= 1e-13 * N  # q(0) = 0 is feasible
        d = g.shape[0]
        z = rng.standard_normal((64, d))
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        z *= r * np.concatenate([np.ones(32), rng.uniform(0, 1, 32) ** (1 / d)])[:, None]  # sphere + ball
        z = np.concatenate([z, r * np.eye(d), -r * np.eye(d)])
        if vnorm(g) > 0:
            z = np.concatenate([z, -r * g[None] / vnorm(g)])
        qz = z @ g + 0.5 * np.einsum("ni,ij,nj->n", z, H, z)
        assert q <= qz.min() + 1e-12 * N


@settings(max_examples=40, deadline=None)
@given(problems())
def test_float32_properties(problem: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    G, HH, R = problem
    res = solve_np(G, HH, R, dtype=torch.float32)
    assert res.step.dtype == torch.float32
    assert torch.isfinite(res.step).all() and torch.isfinite(res.objective).all()
    assert bool((res.step.norm(dim=-1) <= torch.as_tensor(R, dtype=torch.float32)).all())
    assert bool(res.certificate().ok().all())


# ------------------------------------------------------------------------------------------------------------
# float32, batching, the eigendecomposition entry point
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3, 10, 50])
def test_float32_close_to_float64_oracle(d: int) -> None:
    instances = instances_for(d, seed=300 + d)
    G, HH, R = stack(instances)
    G32, H32, R32 = G.astype(np.float32), HH.astype(np.float32), R.astype(np.float32)
    res = solve_np(G32, H32, R32, dtype=torch.float32)
    assert res.step.dtype == res.objective.dtype == res.multiplier.dtype == torch.float32
    assert torch.isfinite(res.step).all() and torch.isfinite(res.objective).all()
    assert bool((res.step.norm(dim=-1) <= torch.as_tensor(R32)).all())
    assert bool(res.certificate().ok().all())  # 1e4 eps = 1.2e-3 relative
    for j, (kind, *_) in enumerate(instances):
        g, H, r = G32[j].astype(np.float64), H32[j].astype(np.float64), float(R32[j])
        _, q_star, _ = oracle_trs(g, H, r)  # the oracle on the float32-rounded data
        scale = max(abs(q_star), 1e-2 * natural_scale(g, H, r))
        assert abs(float(res.objective[j]) - q_star) <= 1e-4 * scale, (kind, float(res.objective[j]), q_star)
        assert abs(q_of(g, H, res.step[j].double().numpy()) - q_star) <= 1e-4 * scale, kind


def test_batch_equals_one_by_one() -> None:
    instances = instances_for(5, seed=77)
    G, HH, R = stack(instances)
    batch = solve_np(G, HH, R)
    for j in range(len(instances)):
        single = solve_np(G[j], HH[j], R[j])
        r = float(R[j])
        torch.testing.assert_close(single.step[0], batch.step[j], rtol=1e-12, atol=1e-13 * r)
        torch.testing.assert_close(single.multiplier[0], batch.multiplier[j], rtol=1e-12, atol=1e-300)
        N = natural_scale(G[j], HH[j], r)
        assert abs(float(single.objective[0]) - float(batch.objective[j])) <= 1e-13 * N
        assert bool(single.hard_case[0]) == bool(batch.hard_case[j])


def test_scalar_radius_forms_agree() -> None:
    instances = instances_for(4, seed=8)
    G, HH, _ = stack(instances)
    g, H = t64(G), t64(HH)
    a = solve_trs(g, H, 0.25)
    for radius in (torch.tensor(0.25, dtype=torch.float64), torch.full((len(instances),), 0.25), 1 / 4):
        b = solve_trs(g, H, radius)
        assert torch.equal(a.step, b.step) and torch.equal(a.objective, b.objective)


def test_asymmetric_input_is_symmetrised() -> None:
    rng = np.random.default_rng(9)
    A = rng.standard_normal((6, 4, 4))
    G = rng.standard_normal((6, 4))
    sym = solve_np(G, 0.5 * (A + A.transpose(0, 2, 1)), 0.5)
    asym = solve_np(G, A, 0.5)
    torch.testing.assert_close(asym.objective, sym.objective, rtol=1e-14, atol=1e-15)


def test_solve_trs_eig_full_decomposition_equals_solve_trs() -> None:
    instances = instances_for(6, seed=12)
    G, HH, R = stack(instances)
    g, H, r = t64(G), t64(HH), t64(R)
    ref = solve_trs(g, H, r)
    evals, evecs = torch.linalg.eigh(H)
    c = (evecs.mT @ g[..., None])[..., 0]
    res = solve_trs_eig(c, evals, evecs, r)
    torch.testing.assert_close(res.step, ref.step, rtol=1e-12, atol=1e-12 * float(r.max()))
    torch.testing.assert_close(res.objective, ref.objective)
    assert torch.equal(res.hard_case, ref.hard_case)
    assert bool(res.certificate().ok(1e-12).all())
    # without eigenvectors the step comes back in eigen-coordinates
    diag = solve_trs_eig(c, evals, None, r)
    torch.testing.assert_close(
        (evecs @ diag.step[..., None])[..., 0], ref.step, rtol=1e-12, atol=1e-12 * r.max()
    )
    # the eigenvalues need not be sorted
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    shuffled = solve_trs_eig(c[:, perm], evals[:, perm], evecs[:, :, perm], r)
    torch.testing.assert_close(shuffled.objective, ref.objective)


@pytest.mark.parametrize("psd", [True, False])
def test_solve_trs_eig_on_a_subspace_equals_the_full_problem(psd: bool) -> None:
    # gradient and Hessian living in a k-dimensional subspace (the structured fast paths)
    rng = np.random.default_rng(13 + psd)
    n, d, k = 16, 12, 3
    V = np.stack([rand_orth(rng, d)[:, :k] for _ in range(n)])
    lam = rng.uniform(0.1, 2.0, (n, k)) if psd else rng.standard_normal((n, k))
    c = rng.standard_normal((n, k)) * 10.0 ** rng.uniform(-2, 2, (n, 1))
    H = np.einsum("nik,nk,njk->nij", V, lam, V)
    g = np.einsum("nik,nk->ni", V, c)
    R = 10.0 ** rng.uniform(-2, 2, n)
    full = solve_np(g, H, R)
    sub = solve_trs_eig(t64(c), t64(lam), t64(V), t64(R))
    assert sub.step.shape == (n, d)
    N = torch.as_tensor([natural_scale(g[j], H[j], R[j]) for j in range(n)])
    assert bool(((sub.objective - full.objective).abs() <= 1e-12 * N).all())
    torch.testing.assert_close(sub.multiplier, full.multiplier, rtol=1e-10, atol=1e-12)
    cert = sub.certificate()
    assert bool(cert.ok(1e-12).all())
    if psd:  # H is zero on the complement of span(V): λ_min(H + λI) = λ, not λ₁ + λ
        torch.testing.assert_close(cert.min_eigenvalue, sub.multiplier)


# ------------------------------------------------------------------------------------------------------------
# The certificate, the API, bad input
# ------------------------------------------------------------------------------------------------------------


def test_certificate_detects_a_wrong_step() -> None:
    rng = np.random.default_rng(21)
    G, HH, R = stack(instances_for(4, seed=21))
    res = solve_np(G, HH, R)
    cert = res.certificate()
    assert isinstance(cert, TRSCertificate)
    assert cert.stationarity.shape == cert.min_eigenvalue.shape == (len(R),)
    assert bool(cert.ok(1e-12).all())
    assert bool((cert.feasibility == 0).all())
    assert bool((cert.min_eigenvalue >= -1e-12 * (cert.scale / cert.radius)).all())
    # perturb the steps: the certificate must notice
    noise = t64(rng.standard_normal(res.step.shape)) * t64(R)[:, None] * 1e-3
    bad = TRSResult(
        step=res.step + noise,
        multiplier=res.multiplier,
        hard_case=res.hard_case,
        objective=res.objective,
        _data=res._data,
    )
    assert not bool(bad.certificate().ok(1e-6).any())
    too_long = TRSResult(res.step * 2, res.multiplier, res.hard_case, res.objective, _data=res._data)
    assert bool((too_long.certificate().feasibility > 0).any())


def test_results_are_frozen_and_detached() -> None:
    g = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    H = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    res = solve_trs(g, H, 1.0)
    assert not res.step.requires_grad and not res.objective.requires_grad
    with pytest.raises(AttributeError):
        res.step = res.step  # type: ignore[misc]


def test_float32_huge_radius_does_not_overflow_the_norm() -> None:
    g = torch.tensor([[3e18, -4e18]], dtype=torch.float32)  # ‖g‖² overflows float32
    res = solve_trs(g, torch.zeros(1, 2, 2), 1e20)
    torch.testing.assert_close(res.step, torch.tensor([[-6e19, 8e19]]))
    assert torch.isfinite(res.certificate().max_violation()).all()


def test_empty_batch() -> None:
    res = solve_trs(torch.zeros(0, 3), torch.zeros(0, 3, 3), 1.0)
    assert res.step.shape == (0, 3) and res.objective.shape == (0,)
    assert res.certificate().ok().shape == (0,)


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


def test_huge_finite_entries_are_not_mistaken_for_inf() -> None:
    H = torch.diag_embed(t64([[1e308, -1e308], [1e308, 2e307]]))  # their sum overflows, H + Hᵀ would too
    g = t64([[1.0, 0.0], [1e300, -1e300]])
    res = solve_trs(g, H, 1.0)
    assert torch.isfinite(res.step).all() and torch.isfinite(res.objective).all()
    torch.testing.assert_close(res.step[0], t64([0.0, 1.0]))  # along the huge negative curvature


def test_solve_trs_eig_bad_input() -> None:
    c, lam, V = torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 5, 3)
    with pytest.raises(FastfairError):
        solve_trs_eig(c, torch.zeros(2, 4), V, 1.0)
    with pytest.raises(FastfairError):
        solve_trs_eig(c, lam, torch.zeros(2, 2, 3), 1.0)
    with pytest.raises(FastfairError):
        solve_trs_eig(c, lam, V, torch.zeros(2))
    assert solve_trs_eig(c, lam, V, 1.0).step.shape == (2, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    instances = instances_for(10, seed=99)
    G, HH, R = stack(instances)
    for dtype in (torch.float64, torch.float32):
        cpu = solve_np(G, HH, R, dtype=dtype)
        g, H, r = (torch.as_tensor(a, dtype=dtype, device="cuda") for a in (G, HH, R))
        gpu = solve_trs(g, H, r)
        assert gpu.step.device.type == "cuda" and gpu.step.dtype == dtype
        assert bool((gpu.step.norm(dim=-1) <= r).all())
        assert bool(gpu.certificate().ok().all())
        N = torch.as_tensor([natural_scale(g_, H_, r_) for _, g_, H_, r_ in instances], dtype=dtype)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        assert bool(((gpu.objective.cpu() - cpu.objective).abs() <= tol * N).all())


# ------------------------------------------------------------------------------------------------------------
# solve_trs_fast: the training fast path must give the same minimiser
# ------------------------------------------------------------------------------------------------------------


def fast_np(g: np.ndarray, H: np.ndarray, r: np.ndarray | float, dtype: torch.dtype = torch.float64) -> np.ndarray:
    gt = torch.as_tensor(np.atleast_2d(g), dtype=dtype)
    Ht = torch.as_tensor(H if np.ndim(H) == 3 else H[None], dtype=dtype)
    rt = torch.as_tensor(np.atleast_1d(r), dtype=dtype).expand(gt.shape[0]).contiguous()
    return solve_trs_fast(gt, Ht, rt).double().numpy()


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


# ------------------------------------------------------------------------------------------------------------
# solve_trs_operator: the certified fixed point accepts only rows it has solved, and the rest fall back
# ------------------------------------------------------------------------------------------------------------


def fixed_point_np(G: np.ndarray, HH: np.ndarray, R: np.ndarray, max_iter: int = 30) -> tuple[np.ndarray, np.ndarray]:
    from fastfair.trs.operator import DenseQuadratic, _fixed_point

    g, H, r = (torch.as_tensor(a, dtype=torch.float64) for a in (G, HH, R))
    quad = DenseQuadratic(g, H)
    p, done, _ = _fixed_point(quad, r, quad.curvature_bound() * r, g.norm(dim=-1), max_iter=max_iter)
    return p.numpy(), done.numpy()


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


def test_fast_solver_empty_batch() -> None:
    assert solve_trs_fast(torch.zeros(0, 3), torch.zeros(0, 3, 3), torch.zeros(0)).shape == (0, 3)
