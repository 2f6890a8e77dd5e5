r"""Batched Hessian-free trust-region subproblem solver: Lanczos / GLTR with a curvature probe.

For every row ``i`` of a batch we solve

.. math::

    \min_{p \in \mathbb{R}^d} \; q(p) = g^\top p + \tfrac12 p^\top H p
    \quad \text{s.t.} \quad \|p\|_2 \le r ,

knowing ``H`` (symmetric, possibly indefinite) only through products: ``hvp(V)`` maps an ``(n, d)`` batch of
vectors to the ``(n, d)`` batch of per-row products ``H_i v_i``. No ``(n, d, d)`` tensor is ever formed; the
memory is ``O(n d k)`` for ``k`` Krylov vectors per row. (To *maximise* a loss, pass ``g = -∇L`` and an ``hvp``
returning ``-∇²L v``.) The optimality conditions are those of :mod:`fastfair.trs` (Moré & Sorensen 1983): ``p``
is a global minimiser iff for some ``λ ≥ 0``: ``(H + λI)p = -g``, ``H + λI ⪰ 0`` and ``λ(r - ‖p‖) = 0``.

GLTR: Lanczos from the gradient (Gould, Lucidi, Roma & Toint 1999)
------------------------------------------------------------------
Starting from ``q₁ = g/‖g‖``, the Lanczos recurrence

    ``β_{j+1} q_{j+1} = H q_j - α_j q_j - β_j q_{j-1}``,   ``α_j = q_jᵀ H q_j``,   ``β_{j+1} = ‖·‖``,

builds an orthonormal basis ``Q_k = [q₁ … q_k]`` of the Krylov space ``K_k(H, g)`` with
``H Q_k = Q_k T_k + β_{k+1} q_{k+1} e_kᵀ``, ``T_k = Q_kᵀ H Q_k`` tridiagonal. In exact arithmetic the recurrence
keeps the ``q_j`` orthogonal; in floating point they lose orthogonality as Ritz values converge, so every new
vector is **fully reorthogonalised** against all stored ones -- classical Gram-Schmidt over all of them, and a
second pass where the first one cancelled more than half of the vector's norm (the Daniel-Gragg-Kaufman-Stewart
criterion; "twice is enough") -- which is cheap because ``k`` is small. GLTR restricts the TRS to the Krylov
space, ``p = Q_k u``:

    ``min ‖g‖ e₁ᵀu + ½ uᵀ T_k u   s.t.  ‖u‖ ≤ r``,

a ``k``-dimensional TRS that is solved **exactly** by the certified dense solver :func:`fastfair.trs.solve_trs`
(interior, easy and hard case; in float64 whatever the working precision, it is tiny). Its solution ``(u, λ)``
satisfies ``(T_k + λI) u = -‖g‖e₁``, hence, with ``Q_k e₁ ‖g‖ = g``,

    ``(H + λI) Q_k u + g = Q_k((T_k + λI)u + ‖g‖e₁) + β_{k+1} q_{k+1} e_kᵀu = β_{k+1} (e_kᵀu) q_{k+1}``,

so the **stationarity residual of the full problem is** ``‖(H + λI)p + g‖ = |β_{k+1}| |e_kᵀu|``, known without
another product. A row stops when ``|β_{k+1} u_k| ≤ tol·(‖g‖ + λr)``; ``β_{k+1} = 0`` (Lanczos breakdown: the
Krylov space is invariant) makes the residual exactly 0. Rows that stop are frozen and leave the batch; the
others go on (one ``hvp`` call per step for all of them), up to ``max_iter`` vectors per row. The multiplier
of the Krylov solution satisfies ``T_k + λI ⪰ 0``, which gives ``H + λI ⪰ 0`` on ``K_k`` only.

The hard case, and the curvature probe
--------------------------------------
When ``g`` has no (or almost no) weight on the eigenvector ``v₁`` of ``λ₁ = λ_min(H)``, the Krylov space from
``g`` does not see ``v₁``: the residual above goes to 0 at a multiplier ``λ < -λ₁`` -- a stationary point on
the sphere with ``H + λI`` indefinite, i.e. a *wrong* step that no quantity of the Krylov space reveals (in
exact arithmetic ``K(H, g)`` is then an invariant subspace without ``v₁``). This is the TRS's hard case (and,
for a tiny weight, its near-hard neighbourhood). It is detected and treated without forming ``H``:

1. **Probe.** Once a row's Krylov solution is stationary, a second Lanczos run starts from a random
   (seeded) vector ``z`` -- which has weight on ``v₁`` with probability 1 -- for at most ``probe_iter``
   steps. The start vector and every probe vector are orthogonalised against the basis ``Q_k`` as well: the
   probe is Lanczos on the compressed operator ``(I - Q_kQ_kᵀ) H (I - Q_kQ_kᵀ)``, the part of ``H`` the basis
   has not explored. In the exact hard case ``v₁`` lies there, while the eigenvalues the Krylov space of ``g``
   has already converged to are deflated, which widens ``λ₁``'s gap and speeds the probe up. Its leftmost
   Ritz value ``θ = min eig(T_z)`` is still a Rayleigh quotient of ``H``, so ``θ ≥ λ₁``: an *upper* bound
   that converges to ``λ₁`` from above.
2. **Detection.** ``θ < -λ - tol_c`` with ``tol_c = tol·(‖g‖/r + λ + ν)`` (``ν`` the largest ``|Ritz value|``
   seen) proves ``λ₁ < -λ``: the current step violates ``H + λI ⪰ 0``.
3. **Treatment (subspace enlargement).** The Ritz vector ``y = Z s`` of ``θ`` is added to the basis and the
   iteration goes on in the enlarged space ``span(Q_k, y, …)``: the subspace TRS now contains the negative
   curvature, its multiplier rises to ``≈ -θ`` and its solution takes the hard-case form ``p(-λ₁) + τ v₁``
   (Moré & Sorensen) *inside the subspace*, with the exact dense solver doing the hard-case algebra. The
   residual of this solution, ``τ (H - θ) y + …``, is the next expansion direction, so the same iteration
   refines the eigenvector approximation and the step together until the stationarity test holds again.

A row with ``g = 0`` starts its basis from a random vector instead of ``g`` (``c = 0`` in the subspace): its
subspace solution is ``p = 0`` while the Ritz values are ``≥ 0`` and ``r`` times the leftmost Ritz vector
otherwise, i.e. ``p = 0`` for ``H ⪰ 0`` and ``p = r v₁`` otherwise, as the dense solver's ``g = 0`` case.

With ``probe_iter = 0`` no probe runs: cheaper, and exact whenever ``g`` has weight on ``v₁`` (the generic
case; Lanczos finds extreme eigenvalues first), but an exact hard case then goes undetected. No probe of a
finite number of steps can *prove* ``H + λI ⪰ 0`` from products alone: a probe that finds nothing is strong
evidence, not a certificate (a Krylov method gives upper bounds on ``λ₁`` only).

The enlarged basis: residual expansion with a leftover basis
------------------------------------------------------------
To hold the Krylov vectors and the injected vectors in one basis ``V`` (``m`` orthonormal columns), the
solver keeps the products in the form

    ``H V = V P + Wᵀ C``,    ``P = Vᵀ H V`` (``m×m``),   ``W`` (``b×d``, orthonormal rows ``⟂ V``),

where ``Wᵀ C = (I - VVᵀ) H V`` is the *leftover* of the products outside the basis (``b ≤ 2`` or 3 rows). A new
basis vector ``v = Wᵀa`` (``‖a‖ = 1``) has ``Vᵀ H v = Cᵀ a`` (no new product needed for the coupling, by
symmetry); its product ``H v`` (one ``hvp``) gives ``vᵀHv`` and, orthogonalised against ``V`` and ``W``, the new
leftover. A Householder reflection of ``W`` that maps ``a`` to a coordinate vector frees the slot of ``v`` for
it. For the subspace solution ``(u, λ)`` the residual is ``(H + λI)Vu + g = Wᵀ(C u)``, so

    ``‖(H + λI)p + g‖ = ‖C u‖``,

and the next vector is ``v = Wᵀ(Cu)/‖Cu‖``, the residual direction. With one leftover row (``b = 1``, before any
probe vector is injected) ``C = β_{k+1} e_kᵀ`` and this *is* the Lanczos/GLTR iteration above, including the
residual ``|β_{k+1} u_k|``; after an injection it is a Galerkin iteration on the block Krylov space of
``[g, y]`` (every expansion vector lies in ``span(V, HV)``).

Certificate
-----------
:meth:`KrylovTRSResult.certificate` returns a :class:`fastfair.trs.TRSCertificate` without forming ``H``:
``stationarity = ‖Hp + λp + g‖`` from one extra ``hvp`` of the returned step; ``complementarity`` and
``feasibility`` exactly; ``min_eigenvalue = θ_min + λ`` with ``θ_min`` the smallest Ritz value of all the
spaces explored (the basis and the probe) -- an **estimate from the Krylov spaces**, an upper bound on the true
``λ_min(H) + λ``; ``scale = ‖g‖ + (ν + λ) r`` with ``ν`` the largest ``|Ritz value|`` seen, a lower bound on
``‖H‖₂`` (so the relative violations are never understated on that account).

Numerics
--------
* The small problems (``P``, ``T_z``) are solved in float64 whatever the working dtype; the basis, the products
  and the step stay in the dtype of ``grad`` (float32 or float64), on its device (CPU or CUDA).
* Rows have different basis sizes; the batched small problems are padded with inert directions (zero
  gradient, curvature ``‖P‖_F`` ≥ every eigenvalue of the row's ``P``), which never carry weight in the
  solution.
* Steps on the boundary are returned at ``‖p‖ = r(1 - 4 eps)``; no returned step is outside the ball, none is
  NaN for finite input (``hvp`` output with NaN/Inf raises :class:`~fastfair.errors.FastfairError`).
* ``hvp`` must not modify its argument in place (the vectors it is given are the basis vectors themselves).
* Operators with a ``restrict(index)`` method (e.g. :class:`fastfair.derivatives.InputHessian`) are restricted
  to the rows still iterating once those are at most half of the rows it covers, so that a few slow rows do
  not pay for the whole batch; any other callable is applied to the whole batch with zero vectors for the
  finished rows.

References: N. Gould, S. Lucidi, M. Roma, Ph. Toint, *Solving the trust-region subproblem using the Lanczos
method*, SIAM J. Optim. 9 (1999); J. Moré, D. Sorensen, *Computing a trust region step*, SIAM J. Sci. Stat.
Comput. 4 (1983); scipy's ``optimize/_trustregion_krylov.py`` (the same Krylov approach for one problem at a
time, through the trlib library).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import FastfairError
from ._checks import radius_tensor
from .certified import TRSCertificate, solve_trs
from .gltr import GLTRIteration
from .lanczos import (
    BREAKDOWN_ULPS,
    HVP,
    checked_product,
    combine,
    fast_norm,
    orthogonalise,
    pad_inert,
    safe_norm,
    tridiagonal_trs,
)

__all__ = ["DEFAULT_MAX_ITER", "DEFAULT_PROBE_ITER", "KrylovTRSResult", "solve_trs_krylov"]

#: Default cap on the basis size per row (Krylov vectors from g plus injected probe vectors), and on d.
DEFAULT_MAX_ITER = 100
#: Default number of curvature-probe Lanczos steps per row (capped at d). Each costs one product; see the
#: module docs for what the probe does and what it cannot do.
DEFAULT_PROBE_ITER = 10


# ----------------------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CertificateData:
    """What :meth:`KrylovTRSResult.certificate` needs (internal)."""

    grad: Tensor  # (n, d)
    hvp: HVP
    radius: Tensor  # (n,)
    min_ritz: Tensor | None  # (n,) smallest Ritz value of H seen (upper bound on λ_min(H))
    norm_estimate: Tensor | None  # (n,) largest |Ritz value| seen (lower bound on ‖H‖₂)
    #: computes (min_ritz, norm_estimate) on demand where they are None (the plain path's final tridiagonals)
    ritz: Callable[[], tuple[Tensor, Tensor]] | None = None


@dataclass(frozen=True)
class KrylovTRSResult:
    """Solution of a batch of trust-region subproblems by :func:`solve_trs_krylov` (all fields ``(n,)`` but
    ``step``).

    Attributes:
        step: ``(n, d)`` the step ``p`` (``‖p‖ ≤ r`` always holds in floating point; never NaN).
        multiplier: the Lagrange multiplier ``λ ≥ 0`` of the subspace solution.
        objective: ``q(p) = gᵀp + ½pᵀHp``, evaluated in the subspace (exact up to rounding).
        converged: True where the stationarity test ``‖(H + λI)p + g‖ ≤ tol·(‖g‖ + λr)`` holds (Lanczos
            estimate) and the curvature probe, if any, found no curvature below ``-λ``. False rows hit
            ``max_iter`` (their step is the best of the subspace, feasible, but not certified).
        hard_case: True where negative curvature outside the Krylov space of ``g`` was found by the probe and
            added to the basis (hard or near-hard case), or where the subspace solution is itself a hard case
            (e.g. ``g = 0`` with an indefinite ``H``).
        residual: the stationarity residual estimate ``‖C u‖`` (``|β_{k+1} u_k|`` for plain Lanczos).
        iterations: products with ``H`` spent on the row (basis vectors plus probe steps; the certificate's
            extra product is not counted).
        krylov_dim: the size of the row's basis ``k``.
        probe_steps: the curvature-probe Lanczos steps of the row.
    """

    step: Tensor
    multiplier: Tensor
    objective: Tensor
    converged: Tensor
    hard_case: Tensor
    residual: Tensor
    iterations: Tensor
    krylov_dim: Tensor
    probe_steps: Tensor
    _data: _CertificateData | None = field(default=None, repr=False, compare=False)

    def certificate(self) -> TRSCertificate:
        r"""The KKT certificate of the returned steps, without forming ``H`` (one ``hvp`` of the whole batch).

        ``stationarity = ‖Hp + λp + g‖`` (computed, not estimated), ``complementarity = |λ(r - ‖p‖)|``,
        ``feasibility = max(0, ‖p‖ - r)``; ``min_eigenvalue = θ_min + λ`` where ``θ_min`` is the smallest Ritz
        value of all the Krylov spaces explored for the row -- an **estimate**, an upper bound on the true
        ``λ_min(H) + λ`` (a Krylov method cannot bound ``λ_min`` from below); ``scale = ‖g‖ + (ν + λ) r`` with
        ``ν ≤ ‖H‖₂`` the largest ``|Ritz value|`` seen.
        """
        data = self._data
        if data is None:
            raise FastfairError("this KrylovTRSResult carries no problem data; cannot compute its certificate")
        with torch.no_grad():
            p = self.step
            lam = self.multiplier
            min_ritz, norm_estimate = data.min_ritz, data.norm_estimate
            if min_ritz is None or norm_estimate is None:
                min_ritz, norm_estimate = data.ritz()  # type: ignore[misc]
            if p.shape[0] == 0:
                hp = torch.zeros_like(p)
            else:
                hp = checked_product(data.hvp, p, p.shape)
            return TRSCertificate.of_step(
                p,
                lam,
                hp,
                data.grad,
                data.radius,
                lam_min=min_ritz,
                hess_norm=norm_estimate,
                vector_norm=safe_norm,
            )


# ----------------------------------------------------------------------------------------------------------
# Public solver
# ----------------------------------------------------------------------------------------------------------


@torch.no_grad()
def solve_trs_krylov(
    grad: Tensor,
    hvp: HVP,
    radius: float | Tensor,
    *,
    max_iter: int | None = None,
    tol: float | None = None,
    probe_iter: int | None = None,
    seed: int = 0,
) -> KrylovTRSResult:
    r"""Solve ``min gᵀp + ½pᵀHp  s.t. ‖p‖ ≤ r`` for every row, with ``H`` known through products only.

    GLTR (Lanczos from ``g``, the ``k×k`` tridiagonal TRS solved exactly by :func:`fastfair.trs.solve_trs`),
    batched over rows, with per-row stopping on the residual ``|β_{k+1} u_k|``, a curvature probe from a
    random start, and the hard case handled inside the Krylov iteration; see the module docs for the math.

    Args:
        grad: ``(n, d)`` gradients ``g`` (float32 or float64, any device).
        hvp: ``hvp(V) -> HV``: maps an ``(n, d)`` batch of vectors (same dtype/device as ``grad``) to the
            ``(n, d)`` per-row products ``H_i v_i``. Called once per iteration for the whole batch (rows that
            have stopped get zero vectors), or restricted to the active rows if it has a ``restrict(index)``
            method returning the operator of the rows ``index`` of the original batch.
        radius: a positive float, or an ``(n,)`` tensor of positive radii.
        max_iter: cap on the basis size per row (Krylov vectors plus injected probe vectors); default
            ``min(d, 100)``. ``k = d`` spans the whole space, so the answer is then exact.
        tol: relative stationarity tolerance: a row stops when ``‖(H + λI)p + g‖ ≤ tol·(‖g‖ + λr)``;
            default ``eps^(2/3)`` of the dtype (3.7e-11 for float64, 2.4e-5 for float32).
        probe_iter: Lanczos steps of the curvature probe per row, one product each (0: no probe, the hard
            case then goes undetected; see the module docs for what the probe can and cannot establish);
            default ``min(d, 10)``.
        seed: seed of the random start vectors (probe, and rows with ``g = 0``).

    Returns:
        A :class:`KrylovTRSResult`; ``result.certificate()`` checks the optimality conditions (one more
        product).

    Raises:
        FastfairError: a malformed ``grad``, radius or option, or an ``hvp`` that returns the wrong shape,
            dtype or device, or NaN/Inf.

    Cost per row: ``k + probe steps`` products; ``O(d k²)`` for the orthogonalisation and ``O(k³)`` per
    iteration for the small problem. Memory ``O(n d (k + probe))``.
    """
    _check_grad(grad)
    if not callable(hvp):
        raise FastfairError(f"hvp must be callable (V -> HV), got {type(hvp).__name__}")
    n, d = grad.shape
    r = radius_tensor(radius, n, grad)
    max_iter = min(_count("max_iter", max_iter, min(d, DEFAULT_MAX_ITER), minimum=1), d)
    probe_iter = min(_count("probe_iter", probe_iter, min(d, DEFAULT_PROBE_ITER), minimum=0), d)
    if tol is None:
        tol = torch.finfo(grad.dtype).eps ** (2.0 / 3.0)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol >= 0):
        raise FastfairError(f"tol must be a finite number >= 0, got {tol!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise FastfairError(f"seed must be an integer, got {seed!r}")
    if probe_iter == 0:
        return _plain_gltr(grad, hvp, r, max_iter, float(tol), seed)
    it = GLTRIteration(grad, hvp, r, max_iter, probe_iter, float(tol), seed).run()
    dt = grad.dtype
    data = _CertificateData(grad=grad, hvp=hvp, radius=r, min_ritz=it.out_theta.to(dt), norm_estimate=it.out_nu.to(dt))
    return KrylovTRSResult(
        step=it.out_step,
        multiplier=it.out_lam.to(dt),
        objective=it.out_obj.to(dt),
        converged=it.out_conv,
        hard_case=it.out_hard,
        residual=it.out_res.to(dt),
        iterations=it.out_iter,
        krylov_dim=it.out_dim,
        probe_steps=it.out_probe,
        _data=data,
    )


def _check_grad(grad: object) -> None:
    if not isinstance(grad, Tensor):
        raise FastfairError(f"grad must be a torch.Tensor, got {type(grad).__name__}")
    if grad.ndim != 2 or grad.shape[1] == 0:
        raise FastfairError(f"grad must have shape (n, d) with d >= 1, got {tuple(grad.shape)}")
    if grad.dtype not in (torch.float32, torch.float64):
        raise FastfairError(f"grad must be float32 or float64, got {grad.dtype}")
    if grad.numel() and not bool(torch.isfinite(grad.sum())) and not bool(torch.isfinite(grad).all()):
        raise FastfairError("grad contains NaN or Inf")


def _count(name: str, value: object, default: int, *, minimum: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FastfairError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------------------
# probe_iter = 0: plain GLTR, with the least work per product
# ----------------------------------------------------------------------------------------------------------


def _plain_gltr(grad: Tensor, hvp: HVP, r: Tensor, max_iter: int, tol: float, seed: int) -> KrylovTRSResult:
    r"""GLTR without the probe (``probe_iter = 0``): the iteration of :class:`~.gltr.GLTRIteration` with one
    leftover slot, written out as plain Lanczos so that a step costs one product, one reorthogonalisation and
    one tridiagonal TRS and nothing else (the training path's solver).

    Lanczos from ``q₁ = g/‖g‖``, fully reorthogonalised (:func:`~.lanczos.orthogonalise`); after the ``k``-th
    product the tridiagonal TRS ``min ‖g‖e₁ᵀu + ½uᵀT_k u, ‖u‖ ≤ r`` is solved exactly in float64 -- by Newton
    on the secular equation with ``O(k)`` tridiagonal factorisations (:func:`~.lanczos.tridiagonal_trs`, warm
    started from the previous multiplier), and by the certified dense solver :func:`fastfair.trs.solve_trs` for
    the rows Newton does not settle to ``(k + 8)`` ulps (near-hard subproblems) -- and a row stops when
    ``|β_{k+1} u_k| ≤ tol·(‖g‖ + λr)``, at a breakdown (``β_{k+1}`` at rounding level: the Krylov space is
    invariant) or at ``k = max_iter``; ``p = Q_k u``.
    Stopped rows leave the batch; an operator with ``restrict(index)`` is restricted to the rows still iterating
    once they are at most three quarters of the rows it covers. The certificate data (smallest and largest Ritz
    values) come from one batched eigendecomposition of the final tridiagonals, on the first call of
    :meth:`KrylovTRSResult.certificate`. Rows with ``g = 0`` (or ``‖g‖``
    beyond the dtype's range) take :class:`~.gltr.GLTRIteration` (random start, scaled division).
    """
    n, d = grad.shape
    f64 = torch.float64
    dev, dt = grad.device, grad.dtype
    eps = torch.finfo(dt).eps
    out_step = torch.zeros_like(grad)
    out = {name: torch.zeros(n, dtype=f64, device=dev) for name in ("lam", "obj", "res", "theta", "nu")}
    out_conv = torch.zeros(n, dtype=torch.bool, device=dev)
    out_hard = torch.zeros(n, dtype=torch.bool, device=dev)
    out_iter = torch.zeros(n, dtype=torch.int64, device=dev)
    gnorm_all = fast_norm(grad)
    special = (gnorm_all == 0) | ~torch.isfinite(gnorm_all.to(dt))
    if bool(special.any()):
        zi = special.nonzero().squeeze(1)
        it = GLTRIteration(grad[zi], _restricted(hvp, zi, n), r[zi], max_iter, 0, tol, seed).run()
        out_step[zi] = it.out_step
        for name in ("lam", "obj", "res", "theta", "nu"):
            out[name][zi] = getattr(it, f"out_{name}")
        out_conv[zi], out_hard[zi], out_iter[zi] = it.out_conv, it.out_hard, it.out_iter
    rows = (~special).nonzero().squeeze(1)
    a_final = torch.zeros(rows.numel(), max_iter, dtype=f64, device=dev)  # the final tridiagonals' diagonals
    b_final = torch.zeros(rows.numel(), max_iter, dtype=f64, device=dev)  # and off-diagonals
    k_final = torch.zeros(rows.numel(), dtype=torch.int64, device=dev)
    slot = torch.arange(rows.numel(), device=dev)  # row -> its place in T_final
    if rows.numel():
        all_rows = rows.numel() == n
        op: HVP = hvp if all_rows else _restricted(hvp, rows, n)
        op_rows = None if all_rows else rows.clone()  # the original rows the operator covers (None: all n)
        gnorm = gnorm_all[rows]
        rr = r[rows].to(f64)
        q = grad[rows] / gnorm.to(dt).unsqueeze(-1)
        Q: list[Tensor] = []
        alpha = torch.zeros(rows.numel(), max_iter, dtype=f64, device=dev)
        beta = torch.zeros(rows.numel(), max_iter, dtype=f64, device=dev)  # β_{j+1} couples q_j and q_{j+1}
        lam_prev = torch.zeros(rows.numel(), dtype=f64, device=dev)  # warm start of the subproblem's multiplier
        for k in range(1, max_iter + 1):
            w = rows.numel()
            covered = n if op_rows is None else op_rows.numel()
            if w == covered:
                hq = checked_product(op, q, q.shape)
            else:
                pos = rows if op_rows is None else torch.searchsorted(op_rows, rows)
                full = q.new_zeros(covered, d)
                full[pos] = q
                hq = checked_product(op, full, full.shape)[pos]
            Q.append(q)
            coef, f, nu = orthogonalise(hq, Q)
            alpha[:, k - 1] = coef[:, k - 1]
            hqn = torch.sqrt(nu * nu + (coef * coef).sum(-1))
            grow = (nu > BREAKDOWN_ULPS * eps * hqn) & (nu > 0) & (k < d)
            beta[:, k - 1] = torch.where(grow, nu, 0.0)
            T = torch.diag_embed(alpha[:, :k])
            if k > 1:
                off = beta[:, : k - 1]
                T = T + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
            u, lam, obj, solved = tridiagonal_trs(alpha[:, :k], beta[:, : k - 1], gnorm, rr, lam_prev)
            hard = torch.zeros_like(solved)
            if not bool(solved.all()):  # near-hard subproblems: the certified dense solver
                fi = (~solved).nonzero().squeeze(1)
                c = torch.zeros(fi.numel(), k, dtype=f64, device=dev)
                c[:, 0] = gnorm[fi]
                sub = solve_trs(c, T[fi], rr[fi])
                u[fi], lam[fi], obj[fi], hard[fi] = sub.step, sub.multiplier, sub.objective, sub.hard_case
            lam_prev = lam
            rho = beta[:, k - 1] * u[:, k - 1].abs()
            ok = (rho <= tol * (gnorm + lam * rr)) | ~grow
            stop = ok | (k >= max_iter)
            if not bool(stop.any()):
                q = f / nu.to(dt).unsqueeze(-1)
                continue
            si = stop.nonzero().squeeze(1)
            orig = rows[si]
            p = combine(u[si].to(dt), [col[si] for col in Q])
            pnorm = fast_norm(p).to(dt)
            rad = r[orig]
            shrink = torch.where(pnorm > rad * (1 - 2 * eps), rad * (1 - 4 * eps) / pnorm.clamp_min(1e-300), 1.0)
            out_step[orig] = p * shrink.unsqueeze(-1)
            out["lam"][orig], out["obj"][orig], out["res"][orig] = lam[si], obj[si], rho[si]
            out_conv[orig], out_hard[orig], out_iter[orig] = ok[si], hard[si], k
            a_final[slot[si], :k] = alpha[si, :k]
            b_final[slot[si], : k - 1] = beta[si, : k - 1]
            k_final[slot[si]] = k
            if bool(stop.all()):
                break
            keep = (~stop).nonzero().squeeze(1)
            rows, gnorm, rr, slot, lam_prev = rows[keep], gnorm[keep], rr[keep], slot[keep], lam_prev[keep]
            alpha, beta = alpha[keep], beta[keep]
            Q = [col[keep] for col in Q]
            q = f[keep] / nu[keep].to(dt).unsqueeze(-1)
            restrict = getattr(hvp, "restrict", None)
            if callable(restrict) and rows.numel() <= (3 * covered) // 4:
                op, op_rows = restrict(rows.clone()), rows.clone()

    def ritz() -> tuple[Tensor, Tensor]:
        """θ_min (upper bound on λ_min(H)) and max |θ| (lower bound on ‖H‖₂) of the final tridiagonals."""
        theta, nu = out["theta"].clone(), out["nu"].clone()
        if k_final.numel():
            done = (~special).nonzero().squeeze(1)
            kmax = int(k_final.max())
            off = b_final[:, : kmax - 1]
            Tf = torch.diag_embed(a_final[:, :kmax]) + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
            theta[done] = torch.linalg.eigvalsh(pad_inert(Tf, k_final))[:, 0]
            nu[done] = torch.linalg.eigvalsh(Tf).abs().amax(-1)
        return theta.to(dt), nu.to(dt)

    data = _CertificateData(grad=grad, hvp=hvp, radius=r, min_ritz=None, norm_estimate=None, ritz=ritz)
    return KrylovTRSResult(
        step=out_step,
        multiplier=out["lam"].to(dt),
        objective=out["obj"].to(dt),
        converged=out_conv,
        hard_case=out_hard,
        residual=out["res"].to(dt),
        iterations=out_iter,
        krylov_dim=out_iter.clone(),
        probe_steps=torch.zeros_like(out_iter),
        _data=data,
    )


def _restricted(hvp: HVP, index: Tensor, n: int) -> HVP:
    """The operator of the rows ``index`` of an ``n``-row batch: ``hvp.restrict(index)`` where it exists, else
    ``hvp`` applied to zero-padded vectors."""
    restrict = getattr(hvp, "restrict", None)
    if callable(restrict):
        return restrict(index.clone())

    def sub(V: Tensor) -> Tensor:
        full = V.new_zeros(n, V.shape[1])
        full[index] = V
        return hvp(full)[index]

    return sub
