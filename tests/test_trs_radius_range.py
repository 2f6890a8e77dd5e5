"""Radii at the ends of the float range: every TRS solver either solves them (working in units of r) or refuses
them with a one-line FastfairError, and never returns NaN.

The accepted range is ``[tiny/eps, max·eps]`` of the data's dtype (:func:`fastfair.trs.radius_bounds`). A
solution inside it is checked against the float64 oracle of ``trs_oracle`` on the problem in units of r: with
``p = r u``, ``q(p) = r²((g/r)ᵀu + ½ uᵀHu)``, so ``p* = r u*``, ``λ* = λ*(g/r, H, 1)`` and ``q* = r² q*(g/r, H, 1)``
(computed in float64 from the very values the solver sees).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastfair.errors import FastfairError
from fastfair.trs import (
    DenseQuadratic,
    radius_bounds,
    solve_trs,
    solve_trs_eig,
    solve_trs_fast,
    solve_trs_operator,
)
from trs_oracle import oracle_trs, vnorm

pytestmark = pytest.mark.usefixtures("single_threaded_linear_algebra")


F32, F64 = torch.float32, torch.float64


def test_radius_bounds_are_tiny_over_eps_and_max_times_eps() -> None:
    assert radius_bounds(F32) == (2.0**-103, (2 - 2.0**-23) * 2.0**104)
    assert radius_bounds(F64) == (2.0**-970, (2 - 2.0**-52) * 2.0**971)
    for dtype in (F32, F64):  # both ends are numbers of the dtype itself
        for end in radius_bounds(dtype):
            assert torch.tensor(end, dtype=dtype).item() == end


def _entries(dtype: torch.dtype, radius: float | torch.Tensor):
    """Each solver entry called on the same small problem (n = 3, d = 4) with ``radius``."""
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(3, 4, generator=gen, dtype=F64).to(dtype)
    A = torch.randn(3, 4, 4, generator=gen, dtype=F64)
    H = (A + A.mT).to(dtype)
    lam, V = torch.linalg.eigh(H)
    c = (V.mT @ g.unsqueeze(-1)).squeeze(-1)
    r_tensor = radius if isinstance(radius, torch.Tensor) else torch.tensor(radius, dtype=F64).to(dtype).expand(3)
    return {
        "solve_trs": lambda: solve_trs(g, H, radius),
        "solve_trs_eig": lambda: solve_trs_eig(c, lam, V, radius),
        "solve_trs_fast": lambda: solve_trs_fast(g, H, r_tensor),
        "solve_trs_operator": lambda: solve_trs_operator(DenseQuadratic(g, H), r_tensor),
    }


# radii that are zero, subnormal or infinite in the dtype, or too close to those ends (outside the bounds)
REFUSED = [
    (F32, 1e-50),  # 0 in float32
    (F32, 1e-320),  # 0 in float32, subnormal in float64
    (F32, 1e-40),  # subnormal in float32
    (F32, 1e-38),  # subnormal in float32
    (F32, 1e-33),  # normal, below 2^-103
    (F32, 1e32),  # finite, above (2 - 2^-23) 2^104
    (F32, 1e39),  # inf in float32
    (F64, 1e-320),  # subnormal in float64
    (F64, 1e-300),  # normal, below 2^-970
    (F64, 1e300),  # finite, above (2 - 2^-52) 2^971
    (F64, math.inf),
]


@pytest.mark.parametrize(("dtype", "radius"), REFUSED)
@pytest.mark.parametrize("entry", ["solve_trs", "solve_trs_eig", "solve_trs_fast", "solve_trs_operator"])
def test_unsolvable_radius_is_refused_with_one_line(entry: str, dtype: torch.dtype, radius: float) -> None:
    with pytest.raises(FastfairError) as info:
        _entries(dtype, radius)[entry]()
    assert "\n" not in str(info.value) and "radius" in str(info.value)


@pytest.mark.parametrize("radius", [1e-50, 1e39])
def test_radius_tensor_of_another_dtype_is_judged_after_conversion(radius: float) -> None:
    # a float64 tensor that becomes 0 or inf in the float32 problem
    r64 = torch.full((3,), radius, dtype=F64)
    for entry in ("solve_trs", "solve_trs_eig"):
        with pytest.raises(FastfairError, match="radius"):
            _entries(F32, r64)[entry]()
    # the lean entries take the radius in the data's dtype only
    for entry in ("solve_trs_fast", "solve_trs_operator"):
        with pytest.raises(FastfairError, match="radius"):
            _entries(F32, r64)[entry]()


def _instance(scale_g: str, r: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(g, H, r)`` in ``dtype``: H of size 1 (indefinite), g either of size r (``"r"``: gradient and curvature
    terms of q comparable) or of size 1 (``"1"``: the gradient dominates for tiny r, the curvature for huge r)."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((5, 5))
    H = 0.25 * (A + A.T)
    g = rng.standard_normal(5) * (r if scale_g == "r" else 1.0)
    r_d = torch.tensor(r, dtype=F64).to(dtype).item()  # the radius as the dtype holds it
    return torch.as_tensor(g[None], dtype=dtype), torch.as_tensor(H[None], dtype=dtype), r_d


SOLVED = [(F32, r) for r in (radius_bounds(F32)[0], 1e-31, 1e-25, 1e-19, 1e19, 1e25, 1e30, radius_bounds(F32)[1])] + [
    (F64, r) for r in (radius_bounds(F64)[0], 1e-200, 1e-50, 1e39, 1e200, radius_bounds(F64)[1])
]


@pytest.mark.parametrize(("dtype", "radius"), SOLVED)
@pytest.mark.parametrize("scale_g", ["r", "1"])
def test_extreme_radius_is_solved_in_units_of_r(dtype: torch.dtype, radius: float, scale_g: str) -> None:
    g, H, r = _instance(scale_g, radius, dtype)
    g1, H1 = g[0].double().numpy() / r, H[0].double().numpy()  # the problem in units of r, float64
    _, q1_star, lam_star = oracle_trs(g1, H1, 1.0)
    n1 = vnorm(g1) + np.linalg.norm(H1, 2)  # natural size of q in units of r
    tol = 1e-5 if dtype == F32 else 1e-12
    info = torch.finfo(dtype)

    res = solve_trs(g, H, r)
    steps = {
        "solve_trs": res.step,
        "solve_trs_fast": solve_trs_fast(g, H, torch.full((1,), r, dtype=dtype)),
        "solve_trs_operator": solve_trs_operator(DenseQuadratic(g, H), torch.full((1,), r, dtype=dtype)),
    }
    for name, p in steps.items():
        assert p.dtype == dtype and not bool(torch.isnan(p).any()), name
        u = p[0].double().numpy() / r  # in units of r (float64: ‖p‖² may overflow the dtype)
        assert np.linalg.norm(u) <= 1 + 1e-12, name
        # the optimal value (the step itself is not unique where the curvature term dominates: ±q₁)
        assert abs(g1 @ u + 0.5 * u @ H1 @ u - q1_star) <= tol * n1, name

    lam = float(res.multiplier[0])
    assert abs(lam - lam_star) <= tol * n1, (lam, lam_star)
    q_star = q1_star * r * r  # float64; may lie beyond the range of the dtype
    q = float(res.objective[0])
    if abs(q_star) > info.max:
        assert q == -math.inf  # correctly rounded: q* < 0 overflows the dtype
    elif abs(q_star) < info.tiny / info.eps:
        assert abs(q - q_star) <= info.tiny  # underflows: zero or subnormal
    else:
        assert abs(q - q_star) <= tol * abs(q_star), (q, q_star)
    cert = res.certificate()
    for field in ("stationarity", "complementarity", "feasibility", "min_eigenvalue", "scale"):
        assert not bool(torch.isnan(getattr(cert, field)).any()), field
    assert bool(cert.ok().all()), float(cert.max_violation()[0])


@pytest.mark.parametrize("dtype", [F32, F64])
def test_lean_solvers_take_no_nan_and_keep_tiny_steps_normal(dtype: torch.dtype) -> None:
    # the smallest radius with a large gradient: -r ∇q/‖∇q‖ must not underflow to a zero step
    lo = radius_bounds(dtype)[0]
    g = torch.tensor([[3e6, -4e6]], dtype=dtype)
    H = torch.tensor([[[1.0, 0.5], [0.5, -2.0]]], dtype=dtype)
    r = torch.full((1,), lo, dtype=dtype)
    for p in (solve_trs_fast(g, H, r), solve_trs_operator(DenseQuadratic(g, H), r)):
        u = p[0].double() / lo
        torch.testing.assert_close(u, torch.tensor([-0.6, 0.8], dtype=F64), rtol=1e-5, atol=1e-6)
