r"""The lean TRS solvers of training: only the step, as few tensor operations as possible, no ``H`` needed.

:func:`solve_trs_fast` (dense ``H``) and :func:`solve_trs_operator` (any :class:`QuadraticBatch`, e.g. the
factored MLP Hessian of :class:`fastfair.derivatives.FactoredQuadratic`, never formed) return only the step.
They first run the boundary fixed point ``p ← -r ∇q(p)/‖∇q(p)‖`` -- one product with ``H`` per step, no
eigendecomposition -- and accept a row only when its own a-posteriori bound ``‖p - p*‖ ≤ 2‖e‖/(λ - B)``
(``e`` the change of ``∇q`` over the last step, ``B ≥ -λ₁`` a cheap curvature bound) is below ``8 (k + 8) eps
· r``; see :func:`solve_trs_operator` for the proof. That is the common case of adversarial training
(``λ ≈ ‖g‖/r`` far above the curvature; a handful of steps). Every other row -- interior, hard and near-hard
cases, ``g = 0``, large radii -- is solved through one batched ``eigh`` by the same spectral core as the
certified solver (:func:`.spectral.solve_spectral`), without the multiplier, objective and certificate.

The solvers run under :func:`torch.no_grad`. The radius must be an ``(n,)`` tensor of the data's dtype within
:func:`~fastfair.trs.radius_bounds` (checked with one reduction); ``g`` and ``H`` are not validated (this is
the training path: they come from the model's derivatives).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ._checks import check_lean_radius
from .spectral import place_step, solve_spectral

__all__ = ["DenseQuadratic", "QuadraticBatch", "solve_trs_fast", "solve_trs_operator"]


class QuadraticBatch(Protocol):
    r"""A batch of ``n`` quadratic models ``q(p) = gᵀp + ½ pᵀHp`` in ``k`` variables, known through products.

    The input of :func:`solve_trs_operator`: ``H`` need never be formed. Implementations: :class:`DenseQuadratic`
    (``H`` given as an ``(n, k, k)`` tensor) and :class:`fastfair.derivatives.FactoredQuadratic` (the one-hidden-
    layer network's rank-one-plus-congruence Hessian).
    """

    @property
    def g(self) -> Tensor:
        """``(n, k)`` the gradients ``g`` (= :meth:`gradient` at ``p = 0``)."""
        ...

    def gradient(self, p: Tensor) -> Tensor:
        """``(n, k)`` the model gradients ``∇q(p) = g + Hp`` of the rows of ``p`` (``(n, k)``)."""
        ...

    def curvature_bound(self) -> Tensor:
        """``(n,)`` an upper bound ``B ≥ max(0, -λ_min(H))`` per row (any valid bound; tighter certifies more)."""
        ...

    def rows(self, index: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(g, H)`` of the rows ``index`` (``None``: all rows), dense: ``(m, k)`` and ``(m, k, k)``."""
        ...


@dataclass(frozen=True)
class DenseQuadratic:
    """:class:`QuadraticBatch` of explicit ``g`` (``(n, k)``) and symmetric ``H`` (``(n, k, k)``).

    ``∇q(p)`` is one batched mat-vec; the curvature bound is the Frobenius norm ``‖H‖_F ≥ ‖H‖₂ ≥ -λ_min(H)``.
    """

    g: Tensor
    H: Tensor

    def gradient(self, p: Tensor) -> Tensor:
        return torch.baddbmm(self.g.unsqueeze(-1), self.H, p.unsqueeze(-1)).squeeze(-1)

    def curvature_bound(self) -> Tensor:
        return torch.linalg.matrix_norm(self.H)

    def rows(self, index: Tensor | None) -> tuple[Tensor, Tensor]:
        return (self.g, self.H) if index is None else (self.g[index], self.H[index])


@torch.no_grad()
def solve_trs_fast(
    g: Tensor, H: Tensor, radius: Tensor, *, max_iter: int = 50, stats: dict[str, int] | None = None
) -> Tensor:
    r"""The minimiser ``p`` of the same TRS as :func:`solve_trs`, with as few tensor operations as possible.

    This is the training fast path: :func:`solve_trs_operator` on :class:`DenseQuadratic` ``(g, H)`` -- the
    certified fixed-point iteration, and the eigendecomposition for the rows it cannot certify. ``g`` and ``H``
    are not validated; ``radius`` must be an ``(n,)`` tensor of ``g``'s dtype within
    :func:`~fastfair.trs.radius_bounds` (FastfairError otherwise). The result is feasible (``‖p‖ ≤ r``), never
    NaN for finite input, and equal to :func:`solve_trs`'s step to working precision.
    """
    return solve_trs_operator(DenseQuadratic(g, H), radius, max_iter=max_iter, stats=stats)


@torch.no_grad()
def solve_trs_operator(
    quad: QuadraticBatch,
    radius: Tensor,
    *,
    max_iter: int = 50,
    fixed_point_iter: int = 30,
    stats: dict[str, int] | None = None,
) -> Tensor:
    r"""Minimise ``q(p) = gᵀp + ½ pᵀHp`` over ``‖p‖ ≤ r`` for a :class:`QuadraticBatch`, without forming ``H``.

    **Fixed point.** On the boundary, stationarity ``(H + λI)p = -g`` says that ``p`` points against the
    model gradient: ``p = -r ∇q(p)/‖∇q(p)‖`` with ``λ = ‖∇q(p)‖/r``. We iterate exactly this map from
    ``p₀ = 0`` (so ``p₁ = -r g/‖g‖``):

        ``λⱼ = ‖∇q(pⱼ)‖/r``,   ``pⱼ₊₁ = -∇q(pⱼ)/λⱼ``.

    Each step is one product with ``H`` (for the one-hidden-layer network, two ``(n, h)×(h, k)`` products
    instead of an ``(n, k, k)`` eigendecomposition). Near the solution the error contracts by
    ``‖(I - p̂p̂ᵀ)H‖/λ``; the rank-one part of a loss Hessian along ``g`` is projected out, so for small radii
    (``λ ≈ ‖g‖/r`` large) a handful of steps reach rounding level.

    **Certificate** (per row, from quantities the iteration has anyway). Write ``e = ∇q(pⱼ) - ∇q(pⱼ₊₁) =
    H(pⱼ - pⱼ₊₁)``. Then ``(H + λⱼI) pⱼ₊₁ = -(g + e)`` and ``‖pⱼ₊₁‖ = r``: ``pⱼ₊₁`` satisfies the Moré-Sorensen
    conditions of the TRS with gradient ``g + e``, provided ``H + λⱼI ⪰ γI`` with ``γ = λⱼ - B > 0``
    (``B`` = :meth:`QuadraticBatch.curvature_bound`). Both problems then have the global minimisers ``pⱼ₊₁``
    and ``p*``, and for feasible ``p`` the perturbed model grows at least ``½γ‖p - pⱼ₊₁‖²`` away from its
    minimiser (``q(p) - q(pⱼ₊₁) = ½λⱼ(r² - ‖p‖²) + ½(p - pⱼ₊₁)ᵀ(H + λⱼI)(p - pⱼ₊₁)``); comparing the two
    optimal values gives

        ``‖pⱼ₊₁ - p*‖ ≤ 2‖e‖/(λⱼ - B)``.

    A row is accepted when this bound is below ``tol·r`` with ``tol = 8 (k + 8) eps`` (the accuracy of the
    eigendecomposition path) and ``‖∇q(pⱼ)‖ ≤ r eps/tiny`` (finite, and the step ``-r ∇q/‖∇q‖`` has not lost an
    entry that matters to underflow). The bound is rigorous: the hard and near-hard cases
    (``λ* ≤ -λ₁ + small``), interior solutions, ``g = 0`` and rows whose bound ``B`` is too loose are simply
    never accepted. Iteration stops when every row is accepted, after ``fixed_point_iter`` steps, or when no
    row left is contracting fast enough to be accepted within the steps left (checks are scheduled by the
    observed contraction rate, see ``_fixed_point``).

    **Fallback.** Rows not accepted are solved exactly through one batched ``eigh`` of their dense ``H``
    (:meth:`QuadraticBatch.rows`) by the spectral core of :func:`solve_trs`
    (:func:`~fastfair.trs.spectral.solve_spectral`: the interior / easy / hard-case logic with the same
    scaling, shifted multiplier and safeguarded root finder) to relative accuracy ``8 (k + 8) eps`` of
    ``‖p‖ = r``. A small batch (``n·k³ ≤ 20000``) with a row where ``‖g‖/r ≤ B`` (such rows are rarely
    accepted: larger radii) skips the fixed point and goes to ``eigh`` whole, which then costs less than the
    fixed point's small operations.

    Every step returned on the boundary is rescaled to ``‖p‖ = r (1 - 4 eps)``, so it is feasible in floating
    point. ``radius`` must be an ``(n,)`` tensor of ``g``'s dtype within :func:`~fastfair.trs.radius_bounds`
    (one reduction checks it; FastfairError otherwise); ``g`` and ``H`` are not validated (this is the training
    path). A ``stats`` dict, if given, receives ``products`` (fixed-point steps taken) and ``fallback_rows``.
    """
    g = quad.g
    n, k = g.shape
    check_lean_radius(radius, g)
    rb = quad.curvature_bound() * radius
    gnorm = torch.linalg.vector_norm(g, dim=-1)
    if n * k**3 <= _SMALL_EIGH_WORK and bool((gnorm <= rb).any()):
        # a row with ‖g‖/r ≤ B will most likely need the fallback; on a small batch one eigh of every row costs
        # less than the fixed point's ~100 small operations would
        if stats is not None:
            stats.update(products=0, fallback_rows=n)
        return _solve_dense(*quad.rows(None), radius, max_iter)
    p, done, products = _fixed_point(quad, radius, rb, gnorm, max_iter=fixed_point_iter)
    fallback = 0
    if not bool(done.all()):
        index = (~done).nonzero().squeeze(-1)
        fallback = index.numel()
        g_rows, H_rows = quad.rows(index)
        p = p.index_copy(0, index, _solve_dense(g_rows, H_rows, radius[index], max_iter))
    if stats is not None:
        stats.update(products=products, fallback_rows=fallback)
    return p


#: Batches with ``n·k³`` at most this (k³: the work of one small eigendecomposition) go straight to ``eigh``
#: when one of their rows looks uncertifiable (k = 5: up to 160 rows; k = 16: up to 4).
_SMALL_EIGH_WORK = 20_000


def _fixed_point(
    quad: QuadraticBatch, r: Tensor, rb: Tensor, gnorm: Tensor, *, max_iter: int, check_from: int = 3
) -> tuple[Tensor, Tensor, int]:
    """The certified fixed-point iteration of :func:`solve_trs_operator`: ``(p, accepted, products)``, ``p``
    rescaled, ``products`` the number of steps taken.

    ``rb`` is ``r·B`` per row (:meth:`QuadraticBatch.curvature_bound`), ``gnorm`` is ``‖g‖``. Acceptance is
    checked at step ``check_from`` and then when the observed contraction ``θ`` of ``‖e‖`` (per step, since the
    last check) predicts that the slowest row still *on course* -- ``λⱼ > B``, ``θ < 1`` and predicted to pass
    within the steps left -- will pass; checks cost a norm and a sync, and the iteration contracts steadily, so
    this saves most of them. It stops when every row is accepted or none is on course. (Scheduling only saves
    work: a row not accepted is solved by the fallback.)
    """
    g = quad.g
    n, k = g.shape
    eps = torch.finfo(g.dtype).eps
    tiny = torch.finfo(g.dtype).tiny
    half_tol = 4 * (k + 8) * eps  # accept when 2‖e‖ ≤ tol (λ - B) r, i.e. ‖e‖ ≤ (tol/2)(‖∇q‖ - r B)
    neg_r = r.neg()
    # accept only where ‖∇q‖ tiny/eps ≤ r: no entry of p that matters has underflowed, and ‖∇q‖ is finite
    tiny_eps = tiny / eps
    q, qnorm = g, gnorm
    p = torch.zeros_like(g)
    done = torch.zeros(n, dtype=torch.bool, device=g.device)
    next_check, last_check, change_before, products = check_from, check_from - 1, None, 0
    for it in range(max_iter):
        products = it + 1
        p = q * (neg_r / qnorm.clamp_min(tiny)).unsqueeze(-1)
        q_next = quad.gradient(p)
        if it in (next_check, check_from - 1):
            change = torch.linalg.vector_norm(q_next - q, dim=-1)  # ‖e‖ of the step just taken
            if it == next_check:
                allowed = half_tol * (qnorm - rb)
                done = (change < allowed) & (qnorm * tiny_eps <= r)
                if bool(done.all()):
                    break
                theta = (change / change_before.clamp_min(tiny)).pow(1.0 / (it - last_check))
                steps = torch.log(allowed / change) / torch.log(theta)  # to acceptance, at rate θ
                left = max_iter - 1 - it
                on_course = (allowed > 0) & (theta < 1) & (steps <= left) & ~done
                if not bool(on_course.any()):
                    break
                next_check = it + max(1, min(left, math.ceil(float(steps.masked_fill(~on_course, 0).amax()))))
                last_check = it
            change_before = change
        q = q_next
        qnorm = torch.linalg.vector_norm(q, dim=-1)
    # ‖p‖ = r up to rounding: put accepted steps at r (1 - 4 eps), inside the ball however the norm is computed
    # (measured in units of r: ‖p‖² may exceed the float range)
    factor = (1 - 4 * eps) / torch.linalg.vector_norm(p / r.unsqueeze(-1), dim=-1).clamp_min(tiny)
    return p * factor.unsqueeze(-1), done, products


def _solve_dense(g: Tensor, H: Tensor, radius: Tensor, max_iter: int) -> Tensor:
    """The eigendecomposition fallback of :func:`solve_trs_operator`: the spectral core on ``eigh(H)``, step only.

    ``H`` is taken as symmetric (its lower triangle is used). Accuracy ``8 (k + 8) eps`` of ``‖p‖ = r`` in the
    easy case, as for the rows the fixed point accepts.
    """
    k = g.shape[-1]
    lam, Q = torch.linalg.eigh(H)
    c = (Q.mT @ g.unsqueeze(-1)).squeeze(-1)
    sol = solve_spectral(c, lam, radius, tol=8 * (k + 8) * torch.finfo(g.dtype).eps, max_iter=max_iter)
    return place_step(sol.u, radius, Q)
