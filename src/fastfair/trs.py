r"""Batched exact solver for the trust-region subproblem (TRS).

For every sample ``i`` of a batch we solve

.. math::

    \min_{p \in \mathbb{R}^d} \; q(p) = g^\top p + \tfrac12 p^\top H p
    \quad \text{s.t.} \quad \|p\|_2 \le r ,

with ``H`` symmetric but possibly indefinite. (To *maximise* a loss with gradient ``∇L`` and Hessian ``∇²L``,
pass ``g = -∇L`` and ``H = -∇²L``.)

Optimality conditions (Moré & Sorensen 1983; Gay 1981)
------------------------------------------------------
``p*`` is a *global* minimiser if and only if there is a multiplier ``λ ≥ 0`` with

1. ``(H + λI) p* = -g``                        (stationarity)
2. ``H + λI ⪰ 0``                              (second-order condition)
3. ``λ (r - ‖p*‖) = 0`` and ``‖p*‖ ≤ r``       (complementarity, feasibility)

With the eigendecomposition ``H = Q Λ Qᵀ`` (``λ₁ ≤ … ≤ λ_d``) and ``c = Qᵀg`` the conditions decouple:
``p(λ) = -Q (Λ + λI)⁻¹ c`` and ``‖p(λ)‖² = Σᵢ cᵢ² / (λᵢ + λ)²``, which decreases strictly on ``(-λ₁, ∞)``.
Condition 2 forces ``λ ≥ λ_lo := max(0, -λ₁)``. The cases, per sample:

* **Interior** (``λ = 0``): only when ``H ⪰ 0`` and the (pseudo-)Newton step ``p = -H⁺g`` has ``‖p‖ ≤ r``. For
  ``λ₁ > 0`` this is the Newton step ``-H⁻¹g``; an indefinite ``H`` is *never* accepted here, however short
  its Newton step (the defect of the reference implementation).
* **Easy case** (``λ > λ_lo``): the unique root of the secular equation ``‖p(λ)‖ = r`` on ``(λ_lo, ∞)``. We
  run Newton's method on ``φ(λ) = 1/‖p(λ)‖ - 1/r`` (concave and increasing, almost linear), started from the
  left inside an analytic bracket and safeguarded by (geometric) bisection, so that it can never leave the
  admissible interval.
* **Hard case** (``λ = -λ₁ > 0``): ``c`` has (numerically) no weight on the eigenspace of ``λ₁`` -- *all*
  eigenvalues within a tolerance of ``λ₁``, so multiplicity is handled -- and the pseudo-inverse step
  ``p(-λ₁) = -Σ_{i∉S} cᵢ/(λᵢ - λ₁) qᵢ`` is strictly inside the ball. Then ``p = p(-λ₁) + τ q₁`` with
  ``τ = sqrt(r² - ‖p(-λ₁)‖²) ≥ 0`` (``q₁ ⟂ p(-λ₁)``, so this is exact and cancellation-free).
* Special instances fall out of the above: ``g = 0, H ⪰ 0`` gives ``p = 0`` (interior); ``g = 0`` with
  ``λ₁ < 0`` gives ``p = r q₁`` (hard case); ``H = 0`` gives ``p = -r g/‖g‖`` (easy case, ``λ = ‖g‖/r``).

Numerics
--------
* One batched :func:`torch.linalg.eigh` on ``(n, d, d)``; everything else is ``O(n d)`` vectorised work per
  Newton iteration (a Python loop runs over *iterations*, never over samples, and stops once all converged).
* **Scaling.** Each sample is rescaled to unit radius and unit size: with ``s = max(max|λᵢ|, ‖c‖/r)`` we solve
  for ``u = p/r`` with eigenvalues ``λᵢ/s`` and gradient ``c/(s r)`` (both of size ≤ 1) and multiplier
  ``μ = λ/s``. Radii from 1e-8 to 1e8 and huge/tiny entries are then all the same problem to the iteration.
* **Shifted multiplier.** The unknown is ``δ = μ - μ_lo ≥ 0`` and the denominators are ``(λᵢ/s + μ_lo) + δ``
  with the gaps ``λᵢ/s + μ_lo ≥ 0`` formed once. A near-hard case (tiny but non-zero ``c₁``, root at
  ``δ ≈ |c₁|``) is therefore resolved to full *relative* precision instead of being lost in ``λ₁ + λ``.
* **Objective.** ``q(p)`` is evaluated in eigen-coordinates as
  ``Σᵢ uᵢ(cᵢ + Dᵢuᵢ) - ½ Σᵢ (Dᵢ + μ) uᵢ²`` with ``Dᵢ = λᵢ + μ ≥ 0`` (times ``s r²``). This is an algebraic
  identity for any ``u``; at a solution the first sum is a tiny residual and the second has no cancellation.
* **Feasibility.** The returned step always satisfies ``‖p‖ ≤ r`` in floating point: boundary steps are
  returned at ``‖p‖ = r (1 - 4 eps)``, so no way of computing the norm finds them outside.
* **Input.** NaN/Inf entries, non-positive radii or mismatched shapes raise
  :class:`~fastfair.errors.FastfairError`.

Lean path (training)
--------------------
:func:`solve_trs_fast` (dense ``H``) and :func:`solve_trs_operator` (any :class:`QuadraticBatch`, e.g. the
factored MLP Hessian of :class:`fastfair.derivatives.FactoredQuadratic`, never formed) return only the step.
They first run the boundary fixed point ``p ← -r ∇q(p)/‖∇q(p)‖`` -- one product with ``H`` per step, no
eigendecomposition -- and accept a row only when its own a-posteriori bound ``‖p - p*‖ ≤ 2‖e‖/(λ - B)``
(``e`` the change of ``∇q`` over the last step, ``B ≥ -λ₁`` a cheap curvature bound) is below ``8 (k + 8) eps
· r``; see :func:`solve_trs_operator` for the proof. That is the common case of adversarial training
(``λ ≈ ‖g‖/r`` far above the curvature; a handful of steps). Every other row -- interior, hard and near-hard
cases, ``g = 0``, large radii -- is solved by the eigendecomposition path above.

The solver runs under :func:`torch.no_grad`: its outputs carry no autograd graph. Device and dtype follow the
inputs (float32 or float64, CPU or CUDA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from fastfair.errors import FastfairError

__all__ = [
    "DenseQuadratic",
    "QuadraticBatch",
    "TRSCertificate",
    "TRSResult",
    "solve_trs",
    "solve_trs_eig",
    "solve_trs_fast",
    "solve_trs_operator",
]


# ----------------------------------------------------------------------------------------------------------
# Result containers
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TRSCertificate:
    r"""A-posteriori optimality certificate of a batch of TRS solutions (all fields have shape ``(n,)``).

    The absolute residuals of the Moré-Sorensen conditions, evaluated on the returned step ``p`` and
    multiplier ``λ``:

    * ``stationarity``   = ``‖(H + λI) p + g‖``
    * ``complementarity`` = ``|λ (r - ‖p‖)|``
    * ``feasibility``    = ``max(0, ‖p‖ - r)``
    * ``min_eigenvalue`` = ``λ_min(H + λI)`` (must be ``≥ 0`` up to rounding)

    plus the per-sample ``radius`` and ``scale = ‖g‖ + (‖H‖₂ + λ) r``, the natural size of the terms of
    ``(H + λI) p + g``, used to make the residuals relative (see :meth:`max_violation`).
    """

    stationarity: Tensor
    complementarity: Tensor
    feasibility: Tensor
    min_eigenvalue: Tensor
    scale: Tensor
    radius: Tensor

    def max_violation(self) -> Tensor:
        r"""Largest *relative* violation per sample, shape ``(n,)``.

        ``max(stationarity / scale, complementarity / scale, feasibility / r, max(0, -min_eigenvalue) r /
        scale)``. As ``λ r ≤ scale`` and ``‖H‖ r ≤ scale``, every term is a dimensionless relative residual,
        invariant under rescaling ``g``, ``H`` and ``r``; a sample with
        ``g = 0`` and ``H = 0`` (``scale = 0``) has violation 0 when its step is 0.
        """
        tiny = torch.finfo(self.scale.dtype).tiny
        scale = self.scale.clamp_min(tiny)
        r = self.radius
        terms = torch.stack(
            [
                self.stationarity / scale,
                self.complementarity / scale,
                self.feasibility / r,
                (-self.min_eigenvalue).clamp_min(0) * r / scale,
            ]
        )
        return terms.amax(0)

    def ok(self, tol: float | None = None) -> Tensor:
        """``(n,)`` bool: ``max_violation() <= tol``; default ``tol = 1e4 eps(dtype)`` (2.2e-12 / 1.2e-3)."""
        if tol is None:
            tol = 1e4 * torch.finfo(self.scale.dtype).eps
        return self.max_violation() <= tol


@dataclass(frozen=True)
class _CertificateData:
    """What :meth:`TRSResult.certificate` needs: the problem as the solver saw it (internal)."""

    grad: Tensor  # (n, d)  g
    radius: Tensor  # (n,)
    lam_min: Tensor  # (n,)  λ_min(H)
    hess_norm: Tensor  # (n,)  ‖H‖₂
    hess: Tensor | None  # (n, d, d) symmetrised H, or None: use the eigendecomposition below
    eigvals: Tensor  # (n, k)
    eigvecs: Tensor | None  # (n, d, k) or None (then H = diag(eigvals), d = k)


@dataclass(frozen=True)
class TRSResult:
    """Solution of a batch of trust-region subproblems.

    Attributes:
        step: ``(n, d)`` the minimiser ``p`` (``‖p‖ ≤ r`` always holds in floating point).
        multiplier: ``(n,)`` the Lagrange multiplier ``λ ≥ 0`` (0 for interior solutions).
        hard_case: ``(n,)`` bool, True where the hard case was taken (``λ = -λ₁``, step completed along the
            eigenvector of ``λ₁``; this includes ``g = 0`` with an indefinite ``H``).
        objective: ``(n,)`` ``q(step) = gᵀp + ½ pᵀHp``, evaluated stably (see module docs).

    The result keeps references to the problem data (``g``, the symmetrised ``H`` or the eigenvectors) for
    :meth:`certificate`; drop the result to free them.
    """

    step: Tensor
    multiplier: Tensor
    hard_case: Tensor
    objective: Tensor
    _data: _CertificateData | None = field(default=None, repr=False, compare=False)

    def certificate(self) -> TRSCertificate:
        """Compute the KKT certificate of this solution (lazily; costs one batched mat-vec)."""
        data = self._data
        if data is None:
            raise FastfairError("this TRSResult carries no problem data; cannot compute its certificate")
        with torch.no_grad():
            p = self.step
            lam = self.multiplier
            if data.hess is not None:
                hp = (data.hess @ p.unsqueeze(-1)).squeeze(-1)
            elif data.eigvecs is not None:
                v = data.eigvecs
                hp = (v @ (data.eigvals * (v.mT @ p.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1)).squeeze(-1)
            else:
                hp = data.eigvals * p
            resid = hp + lam.unsqueeze(-1) * p + data.grad
            pnorm = _norm(p)
            r = data.radius
            gnorm = _norm(data.grad)
            return TRSCertificate(
                stationarity=_norm(resid),
                complementarity=(lam * (r - pnorm)).abs(),
                feasibility=(pnorm - r).clamp_min(0),
                min_eigenvalue=data.lam_min + lam,
                scale=gnorm + (data.hess_norm + lam) * r,
                radius=r,
            )


# ----------------------------------------------------------------------------------------------------------
# Public solvers
# ----------------------------------------------------------------------------------------------------------


@torch.no_grad()
def solve_trs(
    g: Tensor, H: Tensor, radius: float | Tensor, *, tol: float | None = None, max_iter: int = 60
) -> TRSResult:
    r"""Solve ``min gᵀp + ½pᵀHp  s.t. ‖p‖ ≤ r`` exactly for a batch of samples.

    Args:
        g: ``(n, d)`` gradients.
        H: ``(n, d, d)`` Hessians; symmetrised defensively as ``½(H + Hᵀ)``. May be indefinite or singular.
        radius: a positive float, or an ``(n,)`` tensor of positive radii.
        tol: relative accuracy of the boundary condition ``‖p‖ = r`` in the easy case. Default
            ``(d + 8) · eps(dtype)``, i.e. full working precision.
        max_iter: cap on the safeguarded Newton iterations (typically 3-10 are used).

    Returns:
        A :class:`TRSResult`; ``result.certificate()`` checks the optimality conditions.

    Raises:
        FastfairError: mismatched shapes, unsupported dtype, non-finite ``g``/``H``, or a radius that is not
            positive and finite.

    Cost: one batched :func:`torch.linalg.eigh` (``O(n d³)``) plus ``O(n d)`` per Newton iteration.
    """
    _check_tensor("g", g, 2)
    _check_tensor("H", H, 3)
    n, d = g.shape
    if H.shape != (n, d, d):
        raise FastfairError(
            f"H must have shape {(n, d, d)} to match g {tuple(g.shape)}, got {tuple(H.shape)}"
        )
    _check_same(g, H, "g", "H")
    _check_finite("g", g)
    _check_finite("H", H)
    r = radius_tensor(radius, n, g)
    hs = (0.5 * H).add_(H.mT, alpha=0.5)  # ½H + ½Hᵀ: cannot overflow where H + Hᵀ would
    eigvals, eigvecs = torch.linalg.eigh(hs)
    c = (eigvecs.mT @ g.unsqueeze(-1)).squeeze(-1)
    return _solve(c, eigvals, eigvecs, r, tol, max_iter, grad=g, hess=hs)


@torch.no_grad()
def solve_trs_eig(
    c: Tensor,
    eigvals: Tensor,
    eigvecs: Tensor | None,
    radius: float | Tensor,
    *,
    tol: float | None = None,
    max_iter: int = 60,
) -> TRSResult:
    r"""Solve the TRS from a precomputed (possibly partial) eigendecomposition.

    The problem is ``min cᵀy + ½ yᵀΛy  s.t. ‖y‖ ≤ r`` in eigen-coordinates, mapped back as ``p = V y``. With
    ``V`` of shape ``(n, d, k)`` having orthonormal columns, this is the TRS of ``g = V c`` and
    ``H = V diag(Λ) Vᵀ``; when ``k < d``, ``H`` is taken to be **zero on the orthogonal complement** of
    ``span(V)`` (and ``g`` to have no component there) -- exactly the situation of the structured fast paths,
    where gradient and Hessian live in a low-dimensional subspace (e.g. the row space of the first layer).
    Such a zero block never changes the minimiser, so solving the ``k``-dimensional problem is exact.

    Args:
        c: ``(n, k)`` the gradient in eigen-coordinates, ``Vᵀg``.
        eigvals: ``(n, k)`` eigenvalues (any order; they need not be sorted).
        eigvecs: ``(n, d, k)`` orthonormal eigenvectors as columns, or ``None`` to return the step in
            eigen-coordinates (``d = k``, ``H = diag(eigvals)``).
        radius, tol, max_iter: as in :func:`solve_trs`.

    Returns:
        A :class:`TRSResult` whose ``step`` has shape ``(n, d)`` (``(n, k)`` when ``eigvecs is None``). Its
        certificate applies ``H`` through ``V`` (and counts the zero eigenvalue of the complement when
        ``k < d``).
    """
    _check_tensor("c", c, 2)
    _check_tensor("eigvals", eigvals, 2)
    n, k = c.shape
    if eigvals.shape != (n, k):
        raise FastfairError(f"eigvals must have shape {(n, k)} to match c, got {tuple(eigvals.shape)}")
    _check_same(c, eigvals, "c", "eigvals")
    if eigvecs is not None:
        _check_tensor("eigvecs", eigvecs, 3)
        if eigvecs.shape[0] != n or eigvecs.shape[2] != k or eigvecs.shape[1] < k:
            raise FastfairError(
                f"eigvecs must have shape (n, d, k) with n={n}, k={k} <= d, got {tuple(eigvecs.shape)}"
            )
        _check_same(c, eigvecs, "c", "eigvecs")
        _check_finite("eigvecs", eigvecs)
    _check_finite("c", c)
    _check_finite("eigvals", eigvals)
    r = radius_tensor(radius, n, c)
    return _solve(c, eigvals, eigvecs, r, tol, max_iter, grad=None, hess=None)


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
    certified fixed-point iteration, and the eigendecomposition for the rows it cannot certify. No input
    validation: ``radius`` must already be an ``(n,)`` tensor of positive radii. The result is feasible
    (``‖p‖ ≤ r``), never NaN for finite input, and equal to :func:`solve_trs`'s step to working precision.
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
    eigendecomposition path) and ``‖∇q(pⱼ)‖`` is finite. The bound is rigorous: the hard and near-hard cases
    (``λ* ≤ -λ₁ + small``), interior solutions, ``g = 0`` and rows whose bound ``B`` is too loose are simply
    never accepted. Iteration stops when every row is accepted, after ``fixed_point_iter`` steps, or when no
    row left is contracting fast enough to be accepted within the steps left (checks are scheduled by the
    observed contraction rate, see ``_fixed_point``).

    **Fallback.** Rows not accepted are solved exactly through one batched ``eigh`` of their dense ``H``
    (:meth:`QuadraticBatch.rows`): the interior / easy / hard-case logic of :func:`solve_trs` (module docs),
    with the same scaling, shifted multiplier and plain monotone Newton started at
    ``δ₀ = max(maxᵢ |cᵢ| - baseᵢ, ‖c‖ - max base) ≤ δ*``. A small batch (``n·k³ ≤ 20000``) with a row where
    ``‖g‖/r ≤ B`` (such rows are rarely accepted: larger radii) skips the fixed point and goes to ``eigh`` whole,
    which then costs less than the fixed point's small operations.

    Every step returned on the boundary is rescaled to ``‖p‖ = r (1 - 4 eps)``, so it is feasible in floating
    point; ``radius`` must be an ``(n,)`` tensor of positive radii (no validation: this is the training path).
    A ``stats`` dict, if given, receives ``products`` (fixed-point steps taken) and ``fallback_rows``.
    """
    g = quad.g
    n, k = g.shape
    rb = quad.curvature_bound() * radius
    gnorm = torch.linalg.vector_norm(g, dim=-1)
    if n * k**3 <= _SMALL_EIGH_WORK and bool((gnorm <= rb).any()):
        # a row with ‖g‖/r ≤ B will most likely need the fallback; on a small batch one eigh of every row costs
        # less than the fixed point's ~100 small operations would
        if stats is not None:
            stats.update(products=0, fallback_rows=n)
        return _solve_eigh_lean(*quad.rows(None), radius, max_iter)
    p, done, products = _fixed_point(quad, radius, rb, gnorm, max_iter=fixed_point_iter)
    fallback = 0
    if not bool(done.all()):
        index = (~done).nonzero().squeeze(-1)
        fallback = index.numel()
        g_rows, H_rows = quad.rows(index)
        p = p.index_copy(0, index, _solve_eigh_lean(g_rows, H_rows, radius[index], max_iter))
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
                done = (change < allowed) & torch.isfinite(qnorm)  # ‖∇q‖ = inf (overflow) would accept anything
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
    factor = r * (1 - 4 * eps) / torch.linalg.vector_norm(p, dim=-1).clamp_min(tiny)
    return p * factor.unsqueeze(-1), done, products


def _solve_eigh_lean(g: Tensor, H: Tensor, radius: Tensor, max_iter: int) -> Tensor:
    """The lean eigendecomposition path of :func:`solve_trs_operator` (its docstring; module docs)."""
    eps = torch.finfo(g.dtype).eps
    tiny = torch.finfo(g.dtype).tiny
    k = g.shape[-1]
    lam, Q = torch.linalg.eigh(H)
    c = (Q.mT @ g.unsqueeze(-1)).squeeze(-1)
    s = torch.maximum(lam.abs().amax(-1), torch.linalg.vector_norm(c, dim=-1) / radius).clamp_min(tiny)
    lam = lam / s.unsqueeze(-1)
    cs = c / (s * radius).unsqueeze(-1)
    mu_lo = lam[:, 0].neg().clamp_min(0)
    base = (lam + mu_lo.unsqueeze(-1)).clamp_min(0)
    # weight of c on the numerical eigenspace S of λ₁ below the accuracy c has: the hard case
    out_s = base > 4 * k * eps
    small = torch.linalg.vector_norm(cs.masked_fill(out_s, 0), dim=-1) <= 4 * math.sqrt(k) * eps
    cz = cs.masked_fill(small.unsqueeze(-1) & ~out_s, 0)
    # δ₀ = max(maxᵢ |cᵢ| - baseᵢ, ‖c‖ - max base) ≤ δ*: each bound makes ‖u(δ₀)‖ ≥ 1; at δ = 0 (u = p(μ_lo)/r,
    # pseudo-inverse on S, huge where c has weight on a zero gap) the solution is interior or hard when ‖u‖ ≤ 1
    delta0 = torch.maximum((cz.abs() - base).amax(-1), torch.linalg.vector_norm(cz, dim=-1) - base.amax(-1))
    w = cz / base.clamp_min(tiny)
    psi0 = (w * w).sum(-1)
    at_lo = psi0 <= 1
    easy = ~at_lo
    delta = delta0.clamp_min(0).masked_fill(at_lo, 0)
    tol = 8 * (k + 8) * eps
    for _ in range(max_iter):
        gap = (base + delta.unsqueeze(-1)).clamp_min(tiny)
        w = cz / gap
        w2 = w * w
        psi = w2.sum(-1)
        res = psi.sqrt() - 1
        if not bool(((res.abs() > tol) & easy).any()):
            break
        delta = delta + (psi * res / (w2 / gap).sum(-1).clamp_min(tiny)).masked_fill(at_lo, 0)
    else:
        w = cz / (base + delta.unsqueeze(-1)).clamp_min(tiny)
    u = w.neg()  # w is cz / gap at the final δ (δ = 0 on the rows at_lo)
    # hard case: complete along q₁ (u ⟂ q₁ there); easy case: exactly on the sphere; interior: never outside
    hard = at_lo & (mu_lo > 0)
    u[:, 0] += (1 - psi0).clamp_min(0).sqrt().masked_fill(~hard, 0)
    factor = (1 - 4 * eps) / torch.linalg.vector_norm(u, dim=-1).clamp_min(tiny)
    factor = torch.where(at_lo & ~hard, factor.clamp_max(1), factor)
    return (Q @ (u * (factor * radius).unsqueeze(-1)).unsqueeze(-1)).squeeze(-1)


# ----------------------------------------------------------------------------------------------------------
# The one implementation
# ----------------------------------------------------------------------------------------------------------


def _solve(
    c: Tensor,
    eigvals: Tensor,
    eigvecs: Tensor | None,
    r: Tensor,
    tol: float | None,
    max_iter: int,
    *,
    grad: Tensor | None,
    hess: Tensor | None,
) -> TRSResult:
    """Shared back end: spectral solve, map back to the original coordinates, guard feasibility."""
    eps = torch.finfo(c.dtype).eps
    y, lam, hard, objective = _solve_spectral(c, eigvals, r, tol, max_iter)
    step = y if eigvecs is None else (eigvecs @ y.unsqueeze(-1)).squeeze(-1)
    # Rounding in ‖V y‖ (and in however the caller computes a norm) may put a boundary step a few ulps outside
    # the ball: boundary steps are returned at ‖p‖ = r (1 - 4 eps) instead (moves q by O(eps λ r²)).
    pnorm = _norm(step)
    shrink = torch.where(pnorm > r * (1 - 2 * eps), (r / pnorm) * (1 - 4 * eps), torch.ones_like(pnorm))
    step = step * shrink.unsqueeze(-1)

    lam_min = eigvals.amin(-1)
    if eigvecs is not None and eigvecs.shape[1] > eigvecs.shape[2]:
        lam_min = lam_min.clamp_max(0)  # H is zero on the complement of span(V)
    if grad is None:
        grad = c if eigvecs is None else (eigvecs @ c.unsqueeze(-1)).squeeze(-1)
    data = _CertificateData(
        grad=grad,
        radius=r,
        lam_min=lam_min,
        hess_norm=eigvals.abs().amax(-1),
        hess=hess,
        eigvals=eigvals,
        eigvecs=eigvecs,
    )
    return TRSResult(step=step, multiplier=lam, hard_case=hard, objective=objective, _data=data)


def _solve_spectral(
    c: Tensor, eigvals: Tensor, r: Tensor, tol: float | None, max_iter: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Solve ``min cᵀy + ½ yᵀ diag(Λ) y, ‖y‖ ≤ r`` per row. Returns ``(y, λ, hard_case, objective)``.

    Works on the scaled problem (unit radius, data of size ≤ 1) in the shifted multiplier ``δ = μ - μ_lo``;
    see the module docstring for the cases. Thresholds (relative to the scaled problem, i.e. to
    ``‖H‖ + ‖g‖/r`` for eigenvalues and ``‖H‖r + ‖g‖`` for ``c``): eigenvalues within ``4 k eps`` of ``λ₁``
    form its (numerical) eigenspace ``S``; ``c`` counts as orthogonal to ``S`` when ``‖c_S‖ ≤ 4 √k eps``
    (below the accuracy ``c`` is computed with, so zeroing it moves ``q`` by at most that much).
    """
    k = c.shape[-1]
    dtype = c.dtype
    eps = torch.finfo(dtype).eps
    if tol is None:
        tol = (k + 8) * eps
    tol = max(float(tol), 0.0)

    # ---- scale: unit radius, max(|Λ|, ‖c‖/r) = 1 ---------------------------------------------------------
    cnorm = _norm(c)  # overflow-safe: ‖g‖ may exceed the float range even when every entry does not
    s = torch.maximum(eigvals.abs().amax(-1), cnorm / r)
    s = torch.where(s > 0, s, torch.ones_like(s))  # g = 0 and H = 0: anything works, the answer is p = 0
    lam = eigvals / s.unsqueeze(-1)
    cs = c / (s * r).unsqueeze(-1)

    # ---- shift: μ_lo = max(0, -λ₁); gaps ("base") D_i(δ) = base_i + δ -------------------------------------
    i1 = lam.argmin(-1, keepdim=True)  # (n, 1)
    l1 = lam.gather(-1, i1).squeeze(-1)
    mu_lo = (-l1).clamp_min(0)
    base = (lam + mu_lo.unsqueeze(-1)).clamp_min(0)  # exactly 0 at i1 when λ₁ ≤ 0

    # ---- (numerical) eigenspace of λ₁ and the hard-case test ----------------------------------------------
    tol_eig = 4 * k * eps
    tol_c = 4 * math.sqrt(k) * eps
    in_s = base <= tol_eig
    c_s_norm = torch.linalg.vector_norm(torch.where(in_s, cs, 0), dim=-1)
    degenerate = c_s_norm <= tol_c
    cz = torch.where(in_s & degenerate.unsqueeze(-1), 0, cs)
    w0 = _ratio(cz, base)
    psi0 = (w0 * w0).sum(-1)  # ‖u(δ=0)‖², pseudo-inverse on S; +inf when c has weight on a zero gap
    at_lo = psi0 <= 1  # the solution sits at δ = 0
    interior = at_lo & (mu_lo == 0)
    hard = at_lo & (mu_lo > 0)
    easy = ~at_lo

    # ---- easy case: safeguarded Newton on φ = 1/‖u‖ - 1 in δ -----------------------------------------------
    delta = _secular_root(cz, base, easy, tol, max_iter)
    delta = torch.where(easy, delta, torch.zeros_like(delta))

    dgap = base + delta.unsqueeze(-1)
    u = -_ratio(cz, dgap)
    # hard case: complete along q₁ (u has no weight on S there, so ‖u‖² = psi0 + τ²)
    tau = (1 - psi0).clamp_min(0).sqrt()
    e1 = torch.zeros_like(u).scatter_(-1, i1, 1)
    u = torch.where(hard.unsqueeze(-1), u + tau.unsqueeze(-1) * e1, u)
    # boundary solutions have ‖u‖ = 1 up to the root-finding tolerance: put them exactly on the sphere;
    # interior ones may only be pulled in (never pushed out by rounding)
    unorm = torch.linalg.vector_norm(u, dim=-1)
    safe = torch.where(unorm > 0, unorm, torch.ones_like(unorm))
    factor = torch.where(interior, torch.clamp(1 / safe, max=1), 1 / safe)
    factor = torch.where(unorm > 0, factor, torch.ones_like(factor))
    u = u * factor.unsqueeze(-1)

    mu = mu_lo + delta
    # q/(s r²) = Σ u (c + D u) - ½ Σ (D + μ) u²  with  D = λ + μ ≥ 0  (identity; stable at the solution)
    q = (u * (cs + dgap * u)).sum(-1) - 0.5 * ((dgap + mu.unsqueeze(-1)) * u * u).sum(-1)

    rr = r.unsqueeze(-1)
    y = u * rr
    objective = q * s * r * r
    multiplier = mu * s
    return y, multiplier, hard, objective


def _secular_root(cz: Tensor, base: Tensor, active: Tensor, tol: float, max_iter: int) -> Tensor:
    r"""Root ``δ > 0`` of ``Σᵢ cᵢ²/(baseᵢ + δ)² = 1`` for the rows in ``active`` (others: arbitrary).

    Bracket (from ``|cᵢ|/(baseᵢ+δ) ≤ ‖u‖`` and ``‖c‖/(max base + δ) ≤ ‖u‖ ≤ ‖c‖/(min base + δ)``, bases taken
    over ``cᵢ ≠ 0``)::

        lo = max(0, maxᵢ(|cᵢ| - baseᵢ), ‖c‖ - max base)  ≤  δ*  ≤  hi = ‖c‖ - min base.

    On ``δ ≥ lo`` every ``|cᵢ|/(baseᵢ + δ) ≤ 1``, so nothing overflows. ``φ(δ) = 1/‖u(δ)‖ - 1`` is concave and
    increasing, so Newton started at ``lo`` (left of the root) increases monotonically to ``δ*``; its step
    is ``δ⁺ = δ + ‖u‖²(‖u‖ - 1)/Σᵢ uᵢ²/Dᵢ``. A step that leaves ``(lo, hi)`` or reduces ``|‖u‖ - 1|`` by less
    than a factor 4 is replaced by bisection (geometric when ``hi/lo > 4``), which bounds the iteration
    count even when the root is many orders of magnitude above ``lo`` (near-hard case with ``‖p(-λ₁)‖ ≈ r``).
    Converged: ``|‖u‖ - 1| ≤ tol`` or the bracket has shrunk to a few ulps.
    """
    eps = torch.finfo(cz.dtype).eps
    nz = cz != 0
    big = torch.finfo(cz.dtype).max
    cnorm = torch.linalg.vector_norm(cz, dim=-1)
    base_min = torch.where(nz, base, big).amin(-1)
    base_max = torch.where(nz, base, 0).amax(-1)
    lo = torch.where(nz, cz.abs() - base, 0).amax(-1)
    lo = torch.maximum(lo, cnorm - base_max).clamp_min(0) * (1 - 4 * eps)
    hi = (cnorm - base_min).clamp_min(0) * (1 + 4 * eps)
    hi = torch.maximum(hi, lo)

    x = lo.clone()
    active = active.clone()
    prev = torch.full_like(x, math.inf)  # |‖u‖-1| before the last Newton step (inf: last step was bisection)
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        dgap = base + x.unsqueeze(-1)
        w = _ratio(cz, dgap)
        w2 = w * w
        psi = w2.sum(-1)
        nrm = psi.sqrt()
        res = nrm - 1  # > 0: left of the root
        lo = torch.where(active & (res > 0), torch.maximum(lo, x), lo)
        hi = torch.where(active & (res < 0), torch.minimum(hi, x), hi)
        conv = (res.abs() <= tol) | (hi - lo <= 4 * eps * hi)
        active = active & ~conv
        # Newton on φ = 1/‖u‖ - 1:  δ⁺ = δ + ψ (‖u‖ - 1) / Σ w²/D
        slope = _ratio(w2, dgap).sum(-1)
        xn = x + psi * res / torch.where(slope > 0, slope, torch.ones_like(slope))
        bad = ~torch.isfinite(xn) | (xn <= lo) | (xn >= hi) | (slope <= 0) | (res.abs() > 0.25 * prev)
        mid = torch.where((lo > 0) & (hi > 4 * lo), (lo * hi).sqrt(), 0.5 * (lo + hi))
        xnew = torch.where(bad, mid, xn)
        prev = torch.where(bad, torch.full_like(prev, math.inf), res.abs())
        x = torch.where(active, xnew, x)
    return x


def _norm(x: Tensor) -> Tensor:
    """Euclidean norm over the last axis, scaled by the largest entry so that it cannot overflow."""
    m = x.abs().amax(-1)
    safe = torch.where((m > 0) & torch.isfinite(m), m, torch.ones_like(m))
    return torch.linalg.vector_norm(x / safe.unsqueeze(-1), dim=-1) * safe


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num/den`` with ``0/anything = 0`` (a zero component contributes nothing, even on a zero gap)."""
    return torch.where(num == 0, torch.zeros_like(num), num / den)


# ----------------------------------------------------------------------------------------------------------
# Input checks (one-line FastfairError messages)
# ----------------------------------------------------------------------------------------------------------


def _check_tensor(name: str, t: object, ndim: int) -> None:
    if not isinstance(t, Tensor):
        raise FastfairError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != ndim:
        raise FastfairError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if t.shape[-1] == 0:
        raise FastfairError(f"{name} must have a non-empty last dimension, got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        raise FastfairError(f"{name} must be float32 or float64, got {t.dtype}")


def _check_same(a: Tensor, b: Tensor, na: str, nb: str) -> None:
    if a.dtype != b.dtype or a.device != b.device:
        raise FastfairError(
            f"{na} and {nb} must share dtype and device, got {a.dtype}/{a.device} and {b.dtype}/{b.device}"
        )


def _check_finite(name: str, t: Tensor) -> None:
    # A NaN/Inf entry makes the sum non-finite; a finite sum thus proves finiteness with one cheap reduction
    # (isfinite(t).all() materialises a mask as large as t). Only an overflowing sum needs the exact check.
    if t.numel() and not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        raise FastfairError(f"{name} contains NaN or Inf")


def radius_tensor(radius: float | Tensor, n: int, like: Tensor) -> Tensor:
    """The radius as an ``(n,)`` tensor of ``like``'s dtype/device; FastfairError unless every entry is positive
    and finite (shared by the solvers here and by :mod:`fastfair.inner`)."""
    if isinstance(radius, bool):
        raise FastfairError(f"radius must be a positive number, got {radius!r}")
    if isinstance(radius, Tensor):
        r = radius.detach().to(dtype=like.dtype, device=like.device)
        if r.ndim == 0:
            r = r.expand(n)
        elif r.shape != (n,):
            raise FastfairError(f"radius must be a float or a tensor of shape ({n},), got {tuple(r.shape)}")
        if r.numel() and not bool((torch.isfinite(r) & (r > 0)).all()):
            raise FastfairError("radius must be positive and finite for every sample")
        return r.contiguous()
    try:
        value = float(radius)
    except (TypeError, ValueError):
        raise FastfairError(f"radius must be a positive number, got {radius!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise FastfairError(f"radius must be positive and finite, got {radius!r}")
    return torch.full((n,), value, dtype=like.dtype, device=like.device)
