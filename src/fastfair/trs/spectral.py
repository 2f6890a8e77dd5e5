r"""The eigen-space core of the TRS solvers: scaling, the secular equation, the hard case.

For every row of a batch we solve, in the eigen-coordinates of ``H = Q Λ Qᵀ`` (``c = Qᵀg``),

.. math::

    \min_{y} \; c^\top y + \tfrac12 y^\top \Lambda y \quad \text{s.t.} \quad \|y\|_2 \le r ,

and ``p = Q y``. Both the certified solver (:mod:`.certified`) and the eigendecomposition fallback of the lean
solvers (:mod:`.operator`) call :func:`solve_spectral`; only what they do with its answer differs (the
certified one also returns the multiplier, the objective and a certificate).

Optimality conditions (Moré & Sorensen 1983; Gay 1981)
------------------------------------------------------
``p*`` is a *global* minimiser if and only if there is a multiplier ``λ ≥ 0`` with

1. ``(H + λI) p* = -g``                        (stationarity)
2. ``H + λI ⪰ 0``                              (second-order condition)
3. ``λ (r - ‖p*‖) = 0`` and ``‖p*‖ ≤ r``       (complementarity, feasibility)

With ``λ₁ ≤ … ≤ λ_d`` the conditions decouple: ``p(λ) = -Q (Λ + λI)⁻¹ c`` and
``‖p(λ)‖² = Σᵢ cᵢ² / (λᵢ + λ)²``, which decreases strictly on ``(-λ₁, ∞)``. Condition 2 forces
``λ ≥ λ_lo := max(0, -λ₁)``. The cases, per row:

* **Interior** (``λ = 0``): only when ``H ⪰ 0`` and the (pseudo-)Newton step ``p = -H⁺g`` has ``‖p‖ ≤ r``. For
  ``λ₁ > 0`` this is the Newton step ``-H⁻¹g``; an indefinite ``H`` is *never* accepted here, however short
  its Newton step (the defect of the reference implementation).
* **Easy case** (``λ > λ_lo``): the unique root of the secular equation ``‖p(λ)‖ = r`` on ``(λ_lo, ∞)``. We
  run Newton's method on ``φ(λ) = 1/‖p(λ)‖ - 1/r`` (concave and increasing, almost linear), started from the
  left inside an analytic bracket and safeguarded by (geometric) bisection, so that it can never leave the
  admissible interval (:func:`secular_root`).
* **Hard case** (``λ = -λ₁ > 0``): ``c`` has (numerically) no weight on the eigenspace of ``λ₁`` -- *all*
  eigenvalues within a tolerance of ``λ₁``, so multiplicity is handled -- and the pseudo-inverse step
  ``p(-λ₁) = -Σ_{i∉S} cᵢ/(λᵢ - λ₁) qᵢ`` is strictly inside the ball. Then ``p = p(-λ₁) + τ q₁`` with
  ``τ = sqrt(r² - ‖p(-λ₁)‖²) ≥ 0`` (``q₁ ⟂ p(-λ₁)``, so this is exact and cancellation-free).
* Special instances fall out of the above: ``g = 0, H ⪰ 0`` gives ``p = 0`` (interior); ``g = 0`` with
  ``λ₁ < 0`` gives ``p = r q₁`` (hard case); ``H = 0`` gives ``p = -r g/‖g‖`` (easy case, ``λ = ‖g‖/r``).

Numerics
--------
* Everything here is ``O(n k)`` vectorised work per Newton iteration (a Python loop runs over *iterations*,
  never over rows, and stops once all converged).
* **Scaling.** Each row is rescaled to unit radius and unit size: with ``s = max(max|λᵢ|, ‖c‖/r)`` we solve
  for ``u = y/r`` with eigenvalues ``λᵢ/s`` and gradient ``c/(s r)`` (both of size ≤ 1) and multiplier
  ``μ = λ/s``. ``s r = max(max|λᵢ| r, ‖c‖)`` is formed directly (never ``‖c‖/r`` times ``r``), so radii from
  the bottom to the top of the float range (see :func:`fastfair.trs.radius_bounds`) and huge/tiny entries
  are all the same problem to the iteration.
* **Shifted multiplier.** The unknown is ``δ = μ - μ_lo ≥ 0`` and the denominators are ``(λᵢ/s + μ_lo) + δ``
  with the gaps ``λᵢ/s + μ_lo ≥ 0`` formed once. A near-hard case (tiny but non-zero ``c₁``, root at
  ``δ ≈ |c₁|``) is therefore resolved to full *relative* precision instead of being lost in ``λ₁ + λ``.
* **Objective.** ``q(p)`` is evaluated in eigen-coordinates as
  ``Σᵢ uᵢ(cᵢ + Dᵢuᵢ) - ½ Σᵢ (Dᵢ + μ) uᵢ²`` with ``Dᵢ = λᵢ + μ ≥ 0`` (times ``s r²``). This is an algebraic
  identity for any ``u``; at a solution the first sum is a tiny residual and the second has no cancellation.
* **Feasibility.** The returned step always satisfies ``‖p‖ ≤ r`` in floating point: boundary steps are
  returned at ``‖p‖ = r (1 - 4 eps)``, so no way of computing the norm finds them outside
  (:func:`place_step`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["SpectralSolution", "norm", "objective", "place_step", "secular_root", "solve_spectral"]


class SpectralSolution(NamedTuple):
    """The solution of a batch of TRS in eigen-coordinates, in scaled units (all ``(n,)`` unless noted).

    The step is ``y = r u`` and the multiplier ``λ = s μ``; :func:`objective` gives ``q``.
    """

    u: Tensor  #: (n, k) the scaled step, ``‖u‖ = 1`` on the boundary, ``≤ 1`` inside
    mu: Tensor  #: ``μ = λ/s ≥ 0``
    s: Tensor  #: the scale ``s = max(max|λᵢ|, ‖c‖/r)`` (``tiny`` where ``g = 0`` and ``H = 0``)
    sr: Tensor  #: ``s r = max(max|λᵢ| r, ‖c‖)``, formed directly (``‖c‖/r`` may overflow where this does not)
    hard: Tensor  #: bool, the hard case was taken (``λ = -λ₁``, step completed along ``q₁``)
    interior: Tensor  #: bool, ``λ = 0`` with ``H ⪰ 0`` (the step may be strictly inside)
    cs: Tensor  #: (n, k) the scaled gradient ``c/(s r)``
    dgap: Tensor  #: (n, k) ``Dᵢ = λᵢ/s + μ ≥ 0`` at the solution


def solve_spectral(c: Tensor, eigvals: Tensor, r: Tensor, *, tol: float, max_iter: int) -> SpectralSolution:
    r"""Solve ``min cᵀy + ½ yᵀ diag(Λ) y, ‖y‖ ≤ r`` per row (module docs for the cases).

    ``c`` and ``eigvals`` are ``(n, k)`` (eigenvalues in any order), ``r`` is ``(n,)``. ``tol`` is the relative
    accuracy of ``‖u‖ = 1`` in the easy case and ``max_iter`` caps the root finder's iterations.

    Works on the scaled problem (unit radius, data of size ≤ 1) in the shifted multiplier ``δ = μ - μ_lo``.
    Thresholds (relative to the scaled problem, i.e. to ``‖H‖ + ‖g‖/r`` for eigenvalues and ``‖H‖r + ‖g‖``
    for ``c``): eigenvalues within ``4 k eps`` of ``λ₁`` form its (numerical) eigenspace ``S``; ``c`` counts as
    orthogonal to ``S`` when ``‖c_S‖ ≤ 4 √k eps`` (below the accuracy ``c`` is computed with, so zeroing it
    moves ``q`` by at most that much).
    """
    k = c.shape[-1]
    eps = torch.finfo(c.dtype).eps
    tiny = torch.finfo(c.dtype).tiny

    # ---- scale: unit radius, max(|Λ|, ‖c‖/r) = 1 ---------------------------------------------------------
    cnorm = norm(c)  # overflow-safe: ‖g‖ may exceed the float range even when every entry does not
    lam_abs = eigvals.abs().amax(-1)
    s = torch.maximum(lam_abs, cnorm / r).clamp_min(tiny)  # g = 0 and H = 0: anything works, p = 0
    sr = torch.maximum(lam_abs * r, cnorm)  # 0 only where c = 0 (then so is cs)
    lam = eigvals / s.unsqueeze(-1)
    cs = c / sr.clamp_min(tiny).unsqueeze(-1)

    # ---- shift: μ_lo = max(0, -λ₁); gaps ("base") D_i(δ) = base_i + δ -------------------------------------
    l1, i1 = lam.min(-1, keepdim=True)  # (n, 1)
    mu_lo = l1.squeeze(-1).neg().clamp_min(0)
    base = (lam + mu_lo.unsqueeze(-1)).clamp_min(0)  # exactly 0 at i1 when λ₁ ≤ 0

    # ---- (numerical) eigenspace S of λ₁ and the hard-case test ----------------------------------------------
    out_s = base > 4 * k * eps
    degenerate = torch.linalg.vector_norm(cs.masked_fill(out_s, 0), dim=-1) <= 4 * math.sqrt(k) * eps
    cz = cs.masked_fill(degenerate.unsqueeze(-1) & ~out_s, 0)
    w0 = cz / base.clamp_min(tiny)  # 0 where cz = 0; huge where c has weight on a zero gap
    psi0 = (w0 * w0).sum(-1)  # ‖u(δ=0)‖², pseudo-inverse on S
    at_lo = psi0 <= 1  # the solution sits at δ = 0
    interior = at_lo & (mu_lo == 0)
    hard = at_lo & (mu_lo > 0)
    easy = ~at_lo

    # ---- easy case: the root of the secular equation ------------------------------------------------------
    delta = secular_root(cz, base, easy, tol, max_iter).masked_fill(at_lo, 0)
    dgap = base + delta.unsqueeze(-1)
    u = (cz / dgap.clamp_min(tiny)).neg()
    # hard case: complete along q₁ (u has no weight on S there, so ‖u‖² = psi0 + τ²)
    if bool(hard.any()):
        tau = (1 - psi0).clamp_min(0).sqrt().masked_fill(~hard, 0)
        u = u.scatter_add(-1, i1, tau.unsqueeze(-1))
    # boundary solutions have ‖u‖ = 1 up to the root-finding tolerance: put them exactly on the sphere;
    # interior ones may only be pulled in (never pushed out by rounding); u = 0 stays 0
    inv = torch.linalg.vector_norm(u, dim=-1).clamp_min(tiny).reciprocal()
    u = u * torch.where(interior, inv.clamp_max(1), inv).unsqueeze(-1)
    return SpectralSolution(u=u, mu=mu_lo + delta, s=s, sr=sr, hard=hard, interior=interior, cs=cs, dgap=dgap)


def objective(sol: SpectralSolution, r: Tensor) -> Tensor:
    r"""``q(p) = cᵀy + ½ yᵀΛy`` at the solution, ``(n,)``, evaluated stably (module docs).

    ``q/(s r²) = Σ u (c + D u) - ½ Σ (D + μ) u²`` with ``D = λ + μ ≥ 0`` (an identity; stable at the solution).
    A value beyond the float range is ``±inf`` (a zero objective stays 0, never ``0·inf``).
    """
    u, dgap = sol.u, sol.dgap
    q = (u * (sol.cs + dgap * u)).sum(-1) - 0.5 * ((dgap + sol.mu.unsqueeze(-1)) * u * u).sum(-1)
    return torch.where(q == 0, 0.0, q * sol.sr * r)


def place_step(u: Tensor, r: Tensor, basis: Tensor | None) -> Tensor:
    r"""The step ``p = r · V u`` (``V = basis`` with orthonormal columns, or the identity when ``None``).

    Rounding in ``‖V u‖`` (and in however the caller computes a norm) may put a boundary step a few ulps
    outside the ball: steps with ``‖V u‖ > 1 - 2 eps`` are returned at ``‖p‖ = r (1 - 4 eps)`` instead (moves
    ``q`` by ``O(eps λ r²)``). The norm is taken of ``V u`` (entries ≤ 1), never of ``p``, so it cannot
    overflow whatever ``r``.
    """
    eps = torch.finfo(u.dtype).eps
    pu = u if basis is None else (basis @ u.unsqueeze(-1)).squeeze(-1)
    nu = torch.linalg.vector_norm(pu, dim=-1)
    factor = torch.where(nu > 1 - 2 * eps, (1 - 4 * eps) / nu, 1.0) * r
    return pu * factor.unsqueeze(-1)


def secular_root(cz: Tensor, base: Tensor, active: Tensor, tol: float, max_iter: int) -> Tensor:
    r"""Root ``δ > 0`` of ``ψ(δ) = Σᵢ cᵢ²/(baseᵢ + δ)² = 1`` for the rows in ``active`` (others: arbitrary).

    Bracket (from ``|cᵢ|/(baseᵢ+δ) ≤ ‖u‖`` and ``‖c‖/(max base + δ) ≤ ‖u‖ ≤ ‖c‖/(min base + δ)``, bases taken
    over ``cᵢ ≠ 0``)::

        lo = max(0, maxᵢ(|cᵢ| - baseᵢ), ‖c‖ - max base)  ≤  δ*  ≤  hi = ‖c‖ - min base.

    On ``δ ≥ lo`` every ``|cᵢ|/(baseᵢ + δ) ≤ 1``, so nothing overflows. ``φ(δ) = 1/‖u(δ)‖ - 1`` is concave and
    increasing, so Newton started at ``lo`` (left of the root) increases monotonically to ``δ*``; its step
    is ``δ⁺ = δ + ‖u‖²(‖u‖ - 1)/Σᵢ uᵢ²/Dᵢ``.

    Newton *crawls* in the near-hard case (root many orders of magnitude above ``lo``, ``‖p(-λ₁)‖ ≈ r``): it
    gains a constant factor (about 1.5) in ``δ`` per step. We call a step crawling when it reduces
    ``|‖u‖ - 1|`` by less than a factor 4 *and* by less than the step before it did (the first Newton steps from
    far left are often slower than 4 but accelerate). While no row crawls, the iteration is plain Newton. From
    the first crawling row on, every row is safeguarded: a step that crawls or leaves the bracket ``(lo, hi)``
    (updated by replacing one end with each iterate) is replaced by bisection -- geometric, ``sqrt(lo·hi)``,
    which bounds the iteration count however far the root is. Converged: ``|‖u‖ - 1| ≤ tol`` or the bracket
    has shrunk to a few ulps.
    """
    eps = torch.finfo(cz.dtype).eps
    tiny = torch.finfo(cz.dtype).tiny
    if not bool(active.any()):
        return torch.zeros_like(base[..., 0])
    zero = cz == 0
    cnorm = torch.linalg.vector_norm(cz, dim=-1)
    lo = torch.maximum((cz.abs() - base).amax(-1), cnorm - base.masked_fill(zero, 0).amax(-1))
    lo = lo.clamp_min(0) * (1 - 4 * eps)
    x = lo
    hi = None  # formed once a row crawls: plain Newton from the left needs no bracket
    prev = prev2 = torch.zeros_like(x)  # |‖u‖-1| one and two Newton steps back (0: not known)
    for it in range(max_iter):
        if not bool(active.any()):
            break
        dgap = (base + x.unsqueeze(-1)).clamp_min(tiny)
        w = cz / dgap
        w2 = w * w
        psi = w2.sum(-1)
        res = psi.sqrt() - 1  # > 0: left of the root
        err = res.abs()
        # Newton on φ = 1/‖u‖ - 1:  δ⁺ = δ + ψ (‖u‖ - 1) / Σ w²/D  (NaN or ±inf fail the bracket test)
        xn = x + psi * res / (w2 / dgap).sum(-1)
        was = active  # rows that converge now still take this Newton step (quadratic: it only helps)
        if hi is None:
            active = active & (err > tol)
            # rate err/prev above 1/4 and above the rate before (prev/prev2); needs two steps of history
            crawl = (err > 0.25 * prev) & (err * prev2 > prev * prev) if it >= 2 else None
            if crawl is None or not bool((crawl & active).any()):
                x = torch.where(was, xn, x)
                prev2, prev = prev, err
                continue
            hi = torch.maximum((cnorm - base.masked_fill(zero, math.inf).amin(-1)).clamp_min(0) * (1 + 4 * eps), lo)
        else:
            crawl = (err > 0.25 * prev) & (err * prev2 > prev * prev)
        left = res > 0
        lo = torch.where(left, x, lo)
        hi = torch.where(left, hi, x)
        active = active & (err > tol) & (lo < hi * (1 - 4 * eps))
        good = (xn > lo) & (xn < hi) & ~crawl
        prev2 = prev.masked_fill(~good, 0)  # after a bisection both rates are unknown again
        prev = err.masked_fill(~good, 0)
        mid = torch.where(lo > 0, (lo * hi).sqrt(), 0.5 * hi)
        x = torch.where(good & was, xn, torch.where(active, mid, x))
    return x


def norm(x: Tensor) -> Tensor:
    """Euclidean norm over the last axis of finite ``x``, scaled by the largest entry: no overflow, no underflow.

    (``torch.linalg.vector_norm`` squares the entries: 1e20 and 1e-25 are lost in float32.) A non-finite entry
    gives NaN.
    """
    m = x.abs().amax(-1).clamp_min(torch.finfo(x.dtype).tiny)
    return torch.linalg.vector_norm(x / m.unsqueeze(-1), dim=-1) * m
