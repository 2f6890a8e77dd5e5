"""Test support for :mod:`fastfair.trs`: an independent float64 oracle, instance generators, strategies.

The solvers are held to an *independent* float64 oracle written here: per sample, numpy/scipy,
``scipy.linalg.eigh`` (LAPACK, not torch), the secular equation ``‖p(λ)‖ = r`` solved with
``scipy.optimize.brentq`` (derivative-free, bracket found by decimation) and a separate hard-case branch. The
oracle itself is checked by brute force on the sphere for ``d = 2, 3`` and, in the easy case, against the
one-shot generalized-eigenvalue characterisation of the multiplier (Adachi, Iwata, Nakatsukasa & Takeda 2017)
in ``test_trs_oracle.py``.

Objective tolerance. Both the solver and the oracle are backward stable, so their optimal values can only be
compared to ``O(eps)`` of the natural size of the problem, ``N = ‖g‖ r + ‖H‖₂ r²``. We assert

    |q_solver - q_oracle| <= 1e-9 * max(|q_oracle|, 1e-3 * N),

i.e. 1e-9 relative to the optimal value, with an absolute floor of 1e-12 N (≈ 5000 ulps of N) for instances
whose optimal value is far smaller than the size of their data.

The tests import this module by name (pytest puts ``tests/`` on ``sys.path``: the test directory has no
``__init__.py``).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.optimize
import torch
from hypothesis import strategies as st

from fastfair.trs import TRSResult, solve_trs, solve_trs_fast
from fastfair.trs.operator import DenseQuadratic, _fixed_point

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
    """One (g, H, r) of the given kind: H = Q diag(w) Qᵀ, g = Q c with a random orthogonal Q, sizes of H from
    1e-3 to 1e3 and radii from 1e-8 to 1e8."""
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


# ------------------------------------------------------------------------------------------------------------
# Hypothesis strategy: small random batches over twelve decades of scale
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


# ------------------------------------------------------------------------------------------------------------
# Calling the solvers on numpy data
# ------------------------------------------------------------------------------------------------------------


def t64(x: object) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


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


def fast_np(g: np.ndarray, H: np.ndarray, r: np.ndarray | float, dtype: torch.dtype = torch.float64) -> np.ndarray:
    gt = torch.as_tensor(np.atleast_2d(g), dtype=dtype)
    Ht = torch.as_tensor(H if np.ndim(H) == 3 else H[None], dtype=dtype)
    rt = torch.as_tensor(np.atleast_1d(r), dtype=dtype).expand(gt.shape[0]).contiguous()
    return solve_trs_fast(gt, Ht, rt).double().numpy()


def fixed_point_np(G: np.ndarray, HH: np.ndarray, R: np.ndarray, max_iter: int = 30) -> tuple[np.ndarray, np.ndarray]:
    g, H, r = (torch.as_tensor(a, dtype=torch.float64) for a in (G, HH, R))
    quad = DenseQuadratic(g, H)
    p, done, _ = _fixed_point(quad, r, quad.curvature_bound() * r, g.norm(dim=-1), max_iter=max_iter)
    return p.numpy(), done.numpy()
