r"""Column-list linear algebra of the batched Krylov solver: a basis of ``k`` vectors per row, stored as a list
of ``(w, d)`` columns (row ``i`` of column ``j`` is the ``j``-th basis vector of row ``i``).

Why columns: appending a vector costs nothing, no padded capacity is ever multiplied, and every row-wise dot
product and update is a single memory-bound pass (batched ``(k×d)·(d×1)`` products are several times slower on
CPU). The reorthogonalisation is classical Gram-Schmidt against all stored vectors, repeated once where the first
pass cancelled more than half of the vector (:func:`orthogonalise`; Daniel, Gragg, Kaufman & Stewart 1976:
"twice is enough"). Small problems are held in float64, the vectors in the working dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import FastfairError

__all__ = [
    "BREAKDOWN_ULPS",
    "HVP",
    "Index",
    "checked_product",
    "combine",
    "dots",
    "fast_norm",
    "orthogonalise",
    "pad_inert",
    "put_column",
    "safe_norm",
    "scatter",
    "take",
    "tridiagonal_trs",
    "unit_positive",
]

#: ``hvp(V) -> HV``: per-row products of an ``(n, d)`` batch of vectors.
HVP = Callable[[Tensor], Tensor]
#: Rows to work on: every row (``slice(None)``, views) or an index tensor (copies).
Index = slice | Tensor
#: A new Lanczos/leftover vector whose norm is below this many ulps of its product's norm is rounding noise:
#: the space is (numerically) invariant and the vector is dropped (breakdown).
BREAKDOWN_ULPS = 8.0


def take(cols: list[Tensor], ix: Index) -> list[Tensor]:
    """The rows ``ix`` of every column (views when ``ix`` is ``slice(None)``)."""
    return list(cols) if isinstance(ix, slice) else [c[ix] for c in cols]


def scatter(cols: list[Tensor], ix: Index, new: list[Tensor], w: int) -> list[Tensor]:
    """Write the rows ``ix`` of the columns ``new`` into ``cols`` (columns beyond ``len(cols)`` start at zero)."""
    if isinstance(ix, slice):
        return new
    out = list(cols)
    for j, c in enumerate(new):
        if j == len(out):
            out.append(c.new_zeros(w, c.shape[1]))
        out[j].index_copy_(0, ix, c)  # columns are never shared between live lists: in place is safe
    return out


def put_column(cols: list[Tensor], index: Tensor, x: Tensor) -> list[Tensor]:
    """Row ``i`` of ``x`` into column ``index[i]`` (appending a column where ``index[i] = len(cols)``)."""
    cols = list(cols)
    values = torch.unique(index).tolist()
    if len(values) == 1 and values[0] == len(cols):
        cols.append(x)  # the common case: every row appends; no copy
        return cols
    for j in values:
        mask = (index == j).unsqueeze(-1)
        if j == len(cols):
            cols.append(torch.where(mask, x, 0.0))
        else:
            cols[j] = torch.where(mask, x, cols[j])
    return cols


def dots(cols: list[Tensor], x: Tensor) -> Tensor:
    """``(w, len(cols))``: the row-wise dot products of ``x`` with every column."""
    if not cols:
        return x.new_zeros(x.shape[0], 0)
    return torch.stack([torch.linalg.vecdot(c, x) for c in cols], dim=-1)


def combine(coef: Tensor, cols: list[Tensor]) -> Tensor:
    """``Σ_j coef[:, j] · cols[j]`` (``(w, d)``); ``coef`` is cast to the columns' dtype."""
    coef = coef.to(cols[0].dtype)
    out = cols[0] * coef[:, :1]
    for j in range(1, len(cols)):
        out.addcmul_(coef[:, j : j + 1], cols[j])
    return out


def orthogonalise(x: Tensor, cols: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Classical Gram-Schmidt of ``x`` against orthonormal ``cols``, repeated once where the first pass lost more
    than half of ``‖x‖²`` (the Daniel-Gragg-Kaufman-Stewart test with η = 1/√2: then the result is orthogonal to
    working precision). Returns ``(coefficients (w, k) float64, remainder (w, d), ‖remainder‖ float64)``."""
    coef = dots(cols, x)
    if not cols:
        f = x.clone()
    for j, c in enumerate(cols):
        if j == 0:
            f = torch.addcmul(x, coef[:, :1], c, value=-1)
        else:
            f.addcmul_(coef[:, j : j + 1], c, value=-1)
    coef = coef.to(torch.float64)
    nu = fast_norm(f)
    if cols and bool((nu * nu < (coef * coef).sum(-1)).any()):
        again = dots(cols, f)
        for j, c in enumerate(cols):
            f.addcmul_(again[:, j : j + 1], c, value=-1)
        coef = coef + again.to(torch.float64)
        nu = fast_norm(f)
    return coef, f, nu


def fast_norm(x: Tensor) -> Tensor:
    """Row norms in float64: one pass, with the overflow-safe scaled norm only where the plain one overflows."""
    nrm = torch.linalg.vector_norm(x, dim=-1)
    if not bool(torch.isfinite(nrm).all()):
        nrm = safe_norm(x.to(torch.float64))
    return nrm.to(torch.float64)


def unit_positive(a: Tensor) -> Tensor:
    """``a/‖a‖`` per row, signed so that its largest entry is positive (zero rows stay zero)."""
    nrm = torch.linalg.vector_norm(a, dim=-1, keepdim=True)
    j = a.abs().argmax(-1, keepdim=True)
    sign = torch.where(a.gather(-1, j) < 0, -1.0, 1.0).to(a.dtype)
    return a * sign / torch.where(nrm > 0, nrm, 1.0)


def pad_inert(A: Tensor, m: Tensor) -> Tensor:
    """Symmetric ``(w, M, M)`` matrices with ``m`` valid leading rows/columns (zero beyond): the padded diagonal
    is set to ``‖A‖_F`` (≥ every eigenvalue of the valid block), so padded coordinates -- zero gradient, no
    coupling -- never carry weight in a TRS solution or the leftmost eigenpair."""
    M = A.shape[-1]
    valid = torch.arange(M, device=A.device) < m.unsqueeze(-1)
    frob = torch.linalg.matrix_norm(A)
    out = A.clone()
    diag = out.diagonal(dim1=-2, dim2=-1)
    diag.copy_(torch.where(valid, diag, frob.unsqueeze(-1)))
    return out


def checked_product(hvp: HVP, x: Tensor, shape: torch.Size) -> Tensor:
    out = hvp(x)
    if not isinstance(out, Tensor):
        raise FastfairError(f"hvp must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != shape or out.dtype != x.dtype or out.device != x.device:
        raise FastfairError(
            f"hvp must return a tensor of shape {tuple(shape)}, dtype {x.dtype} on {x.device}; got "
            f"{tuple(out.shape)}, {out.dtype} on {out.device}"
        )
    if out.numel() and not bool(torch.isfinite(out.sum())) and not bool(torch.isfinite(out).all()):
        raise FastfairError("hvp returned NaN or Inf")
    return out.detach()


def safe_norm(x: Tensor) -> Tensor:
    """Euclidean norm over the last axis, scaled by the largest entry so that it cannot overflow."""
    mx = x.abs().amax(-1)
    safe = torch.where((mx > 0) & torch.isfinite(mx), mx, torch.ones_like(mx))
    return torch.linalg.vector_norm(x / safe.unsqueeze(-1), dim=-1) * safe


def tridiagonal_trs(
    alpha: Tensor, beta: Tensor, gnorm: Tensor, r: Tensor, lam0: Tensor, *, max_iter: int = 12
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""The GLTR subproblem ``min γu₁ + ½uᵀTu, ‖u‖ ≤ r`` for tridiagonal ``T`` (diagonal ``alpha`` (w, k),
    off-diagonal ``beta`` (w, k-1), all > 0), ``γ = gnorm`` > 0, by Moré-Sorensen Newton on the secular equation
    with ``LDLᵀ`` factorisations of ``T + λI`` (O(k) per factorisation, no eigendecomposition). float64.

    ``T + λI = LDLᵀ`` with ``d₁ = α₁ + λ``, ``d_j = α_j + λ - β_{j-1}²/d_{j-1}``: positive definite iff every
    ``d_j > 0`` (Sylvester). ``u(λ) = -(T + λI)⁻¹γe₁`` by two triangular sweeps. The solution is ``λ = 0`` and
    ``u(0)`` where ``T ≻ 0`` and ``‖u(0)‖ ≤ r`` (interior); otherwise the root ``λ > max(0, -θ₁)`` of
    ``φ(λ) = 1/‖u(λ)‖ - 1/r``, by Newton ``λ ← λ + (‖u‖/‖w‖)²(‖u‖ - r)/r`` (``w = D^{-1/2}L⁻¹u``, so that
    ``‖w‖² = uᵀ(T + λI)⁻¹u``) from the warm start ``lam0``, kept inside a bracket ``[lo, hi]`` by bisection:
    ``lo`` starts at ``max(0, -min α_j)`` (``θ₁ ≤ α_j``) and rises at every λ where ``T + λI`` is not positive
    definite or ``‖u‖ > r``; ``hi`` starts at ``γ/r + max(0, -G)`` with ``G ≤ θ₁`` the Gershgorin bound (there
    ``‖u‖ ≤ γ/(λ + θ₁) ≤ r``) and falls where ``‖u‖ < r``.
    A row counts as solved with ``T + λI ≻ 0`` and ``|‖u‖ - r| ≤ (k + 8)·eps·r``, or ``≤ 1e4·(k + 8)·eps·r`` once the
    Newton correction is below 16 ulps of λ (the root to the precision the arithmetic resolves; near ``-θ₁`` the
    norm is ill-conditioned in λ, and rows that do not get there go to the caller's fallback).
    Because ``T`` is unreduced (β > 0), ``e₁`` has weight on every eigenvector: the subproblem has no exact hard
    case.

    ``k = 1`` is solved in closed form. Boundary solutions are scaled onto the sphere. Returns
    ``(u (w, k), λ (w,), objective (w,), solved (w,) bool)``;
    rows not solved within ``max_iter``
    iterations (near-hard cases) are for the caller to solve otherwise (their values are meaningless).
    """
    w, k = alpha.shape
    if k == 1:  # min γu + ½αu² on [-r, r] (γ > 0): the Newton step -γ/α if it is a minimum inside, else u = -r
        a = alpha[:, 0]
        inside = (a > 0) & (gnorm <= a * r)
        u1 = torch.where(inside, -gnorm / torch.where(inside, a, 1.0), -r)
        lam = torch.where(inside, 0.0, gnorm / r - a)
        return u1.unsqueeze(-1), lam, gnorm * u1 + 0.5 * a * u1 * u1, torch.ones_like(inside)
    eps = torch.finfo(alpha.dtype).eps
    tol = (k + 8) * eps
    b2 = beta * beta
    absb = beta.abs()
    radius = alpha.new_zeros(w, k)
    if k > 1:
        radius[:, 1:] += absb
        radius[:, :-1] += absb
    lo = (-alpha).amax(-1).clamp_min(0)  # θ₁ ≤ min α_j (a Rayleigh quotient): -θ₁ ≥ -min α_j
    gersh = (radius - alpha).amax(-1).clamp_min(0)  # θ₁ ≥ min(α_j - |β_{j-1}| - |β_j|) (Gershgorin)
    hi = (gnorm / r + gersh) * (1 + 4 * k * eps) + torch.finfo(alpha.dtype).tiny

    def factor_solve(lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(pd, u, ‖w‖²) at λ (u, w meaningless where not pd)."""
        d = [alpha[:, 0] + lam]
        for j in range(1, k):
            d.append(alpha[:, j] + lam - b2[:, j - 1] / d[j - 1])
        D = torch.stack(d, -1)
        pd = (D > 0).all(-1)
        Ds = torch.where(D > 0, D, 1.0)
        ell = beta / Ds[:, :-1]  # L's sub-diagonal
        y = [-gnorm]
        for j in range(1, k):
            y.append(-ell[:, j - 1] * y[j - 1])
        z = torch.stack(y, -1) / Ds
        u = [z[:, k - 1]]
        for j in range(k - 2, -1, -1):
            u.append(z[:, j] - ell[:, j] * u[-1])
        u = torch.stack(u[::-1], -1)
        t = [u[:, 0]]
        for j in range(1, k):
            t.append(u[:, j] - ell[:, j - 1] * t[j - 1])
        wv = torch.stack(t, -1)
        return pd, u, (wv * wv / Ds).sum(-1)

    pd0, u0, _ = factor_solve(torch.zeros_like(gnorm))
    n0 = torch.linalg.vector_norm(u0, dim=-1)
    interior = pd0 & (n0 <= r)
    lam = torch.where(interior, 0.0, torch.maximum(lam0.clamp_min(0), lo))
    lam = torch.where(lam >= hi, 0.5 * (lo + hi), lam)
    solved = interior.clone()
    u = torch.where(interior.unsqueeze(-1), u0, 0.0)
    for _ in range(max_iter):
        if bool(solved.all()):
            break
        pd, ut, ww = factor_solve(lam)
        un = torch.linalg.vector_norm(ut, dim=-1)
        newton = lam + (un * un / ww.clamp_min(1e-300)) * (un - r) / r
        gap = (un - r).abs()
        stalled = ((newton - lam).abs() <= 16 * eps * lam.abs()) & (gap <= 1e4 * tol * r)  # rounding level
        done = pd & ~solved & ((gap <= tol * r) | stalled)
        u = torch.where(done.unsqueeze(-1), ut, u)
        solved = solved | done
        lo = torch.where(~solved & (~pd | (un > r)), torch.maximum(lo, lam), lo)
        hi = torch.where(~solved & pd & (un < r), torch.minimum(hi, lam), hi)
        nxt = torch.where(pd & (newton > lo) & (newton <= hi), newton, 0.5 * (lo + hi))
        lam = torch.where(solved, lam, nxt)
    lam = torch.where(interior, 0.0, lam)
    solved = solved & torch.isfinite(u).all(-1)
    un = torch.linalg.vector_norm(u, dim=-1)
    u = torch.where((solved & ~interior & (un > 0)).unsqueeze(-1), u * (r / un.clamp_min(1e-300)).unsqueeze(-1), u)
    obj = 0.5 * (gnorm * u[:, 0] - lam * (u * u).sum(-1))  # q(u) = γu₁ + ½uᵀTu with (T + λI)u = -γe₁
    return u, lam, obj, solved
