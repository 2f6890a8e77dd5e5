r"""The certified TRS solvers: :func:`solve_trs` (dense ``H``) and :func:`solve_trs_eig` (an eigendecomposition).

Both return a :class:`TRSResult` -- step, multiplier, hard-case flag, objective -- whose
:meth:`~TRSResult.certificate` evaluates the Moré-Sorensen conditions on the returned step (see
:mod:`.spectral` for the conditions, the cases and the numerics). Cost: one batched
:func:`torch.linalg.eigh` on ``(n, d, d)`` (for :func:`solve_trs`) plus ``O(n d)`` per root-finding iteration.

Input: NaN/Inf entries, radii outside :func:`~fastfair.trs.radius_bounds`, mismatched shapes, a negative or
NaN ``tol`` raise :class:`~fastfair.errors.FastfairError`. The solvers run under :func:`torch.no_grad`: their
outputs carry no autograd graph. Device and dtype follow the inputs (float32 or float64, CPU or CUDA).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from fastfair.errors import FastfairError

from ._checks import check_finite, check_max_iter, check_same, check_tensor, check_tol, radius_tensor
from .spectral import norm, objective, place_step, solve_spectral

__all__ = ["TRSCertificate", "TRSResult", "solve_trs", "solve_trs_eig"]


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
    ``(H + λI) p + g``, used to make the residuals relative (see :meth:`max_violation`). A residual whose
    evaluation overflows the dtype (only for data near the ends of the float range) is ``inf``, never NaN.
    """

    stationarity: Tensor
    complementarity: Tensor
    feasibility: Tensor
    min_eigenvalue: Tensor
    scale: Tensor
    radius: Tensor

    @classmethod
    def of_step(
        cls,
        p: Tensor,
        multiplier: Tensor,
        hp: Tensor,
        grad: Tensor,
        radius: Tensor,
        *,
        lam_min: Tensor,
        hess_norm: Tensor,
        vector_norm: Callable[[Tensor], Tensor] = norm,
    ) -> TRSCertificate:
        r"""The certificate of step ``p`` (n, d) with multiplier ``λ`` (n,), given ``Hp`` and ``g`` (n, d).

        ``stationarity = ‖Hp + λp + g‖``, ``complementarity = |λ(r - ‖p‖)|``, ``feasibility = max(0, ‖p‖ - r)``,
        ``min_eigenvalue = lam_min + λ`` and ``scale = ‖g‖ + (hess_norm + λ) r``, where ``lam_min`` is
        ``λ_min(H)`` (or an estimate of it) and ``hess_norm`` is ``‖H‖₂`` (or an estimate), norms by
        ``vector_norm`` over the last axis. A stationarity or complementarity that is NaN (an overflow met an
        underflow) is ``inf``: not certified.
        """
        pnorm = vector_norm(p)
        resid = hp + multiplier.unsqueeze(-1) * p + grad
        return cls(
            stationarity=torch.nan_to_num(vector_norm(resid), nan=math.inf),
            complementarity=torch.nan_to_num((multiplier * (radius - pnorm)).abs(), nan=math.inf),
            feasibility=(pnorm - radius).clamp_min(0),
            min_eigenvalue=lam_min + multiplier,
            scale=vector_norm(grad) + (hess_norm + multiplier) * radius,
            radius=radius,
        )

    def max_violation(self) -> Tensor:
        r"""Largest *relative* violation per sample, shape ``(n,)``.

        ``max(stationarity / scale, complementarity / scale, feasibility / r, max(0, -min_eigenvalue) r /
        scale)``. As ``λ r ≤ scale`` and ``‖H‖ r ≤ scale``, every term is a dimensionless relative residual,
        invariant under rescaling ``g``, ``H`` and ``r``; a sample with
        ``g = 0`` and ``H = 0`` (``scale = 0``) has violation 0 when its step is 0. A term that cannot be
        evaluated in the dtype (``inf/inf``) counts as ``inf``: not certified.
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
        return torch.nan_to_num(terms.amax(0), nan=math.inf)

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
        objective: ``(n,)`` ``q(step) = gᵀp + ½ pᵀHp``, evaluated stably (see :mod:`.spectral`).

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
            return TRSCertificate.of_step(
                p, lam, hp, data.grad, data.radius, lam_min=data.lam_min, hess_norm=data.hess_norm
            )


@torch.no_grad()
def solve_trs(
    g: Tensor, H: Tensor, radius: float | Tensor, *, tol: float | None = None, max_iter: int = 60
) -> TRSResult:
    r"""Solve ``min gᵀp + ½pᵀHp  s.t. ‖p‖ ≤ r`` exactly for a batch of samples.

    Args:
        g: ``(n, d)`` gradients.
        H: ``(n, d, d)`` Hessians; symmetrised defensively as ``½(H + Hᵀ)``. May be indefinite or singular.
        radius: a positive float, or an ``(n,)`` tensor of positive radii, within
            :func:`~fastfair.trs.radius_bounds` of the dtype once converted to it (float32: about
            ``[9.9e-32, 4.1e31]``, float64: ``[1.0e-292, 4.0e292]``).
        tol: relative accuracy (``≥ 0``) of the boundary condition ``‖p‖ = r`` in the easy case. Default
            ``(d + 8) · eps(dtype)``, i.e. full working precision.
        max_iter: cap (``≥ 0``) on the safeguarded Newton iterations (typically 3-10 are used).

    Returns:
        A :class:`TRSResult`; ``result.certificate()`` checks the optimality conditions.

    Raises:
        FastfairError: mismatched shapes, unsupported dtype, non-finite ``g``/``H``, a radius that is not a
            number within the dtype's bounds, a negative or non-finite ``tol``, a negative ``max_iter``.

    Cost: one batched :func:`torch.linalg.eigh` (``O(n d³)``) plus ``O(n d)`` per Newton iteration.
    """
    check_tensor("g", g, 2)
    check_tensor("H", H, 3)
    n, d = g.shape
    if H.shape != (n, d, d):
        raise FastfairError(f"H must have shape {(n, d, d)} to match g {tuple(g.shape)}, got {tuple(H.shape)}")
    check_same(g, H, "g", "H")
    check_finite("g", g)
    check_finite("H", H)
    r = radius_tensor(radius, n, g)
    tol = check_tol(tol)
    max_iter = check_max_iter(max_iter)
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
        radius, tol, max_iter: as in :func:`solve_trs` (and checked the same way).

    Returns:
        A :class:`TRSResult` whose ``step`` has shape ``(n, d)`` (``(n, k)`` when ``eigvecs is None``). Its
        certificate applies ``H`` through ``V`` (and counts the zero eigenvalue of the complement when
        ``k < d``).
    """
    check_tensor("c", c, 2)
    check_tensor("eigvals", eigvals, 2)
    n, k = c.shape
    if eigvals.shape != (n, k):
        raise FastfairError(f"eigvals must have shape {(n, k)} to match c, got {tuple(eigvals.shape)}")
    check_same(c, eigvals, "c", "eigvals")
    if eigvecs is not None:
        check_tensor("eigvecs", eigvecs, 3)
        if eigvecs.shape[0] != n or eigvecs.shape[2] != k or eigvecs.shape[1] < k:
            raise FastfairError(f"eigvecs must have shape (n, d, k) with n={n}, k={k} <= d, got {tuple(eigvecs.shape)}")
        check_same(c, eigvecs, "c", "eigvecs")
        check_finite("eigvecs", eigvecs)
    check_finite("c", c)
    check_finite("eigvals", eigvals)
    r = radius_tensor(radius, n, c)
    tol = check_tol(tol)
    max_iter = check_max_iter(max_iter)
    return _solve(c, eigvals, eigvecs, r, tol, max_iter, grad=None, hess=None)


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
    """Shared back end: the spectral core, the step mapped back and placed in the ball, the certificate data."""
    if tol is None:
        tol = (c.shape[-1] + 8) * torch.finfo(c.dtype).eps
    sol = solve_spectral(c, eigvals, r, tol=tol, max_iter=max_iter)
    step = place_step(sol.u, r, eigvecs)
    multiplier = torch.where(sol.mu == 0, 0.0, sol.mu * sol.s)  # λ = s μ (0, not 0·inf, when μ = 0)

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
    return TRSResult(step=step, multiplier=multiplier, hard_case=sol.hard, objective=objective(sol, r), _data=data)
