"""Trust-region inner maximiser: maximise the quadratic Taylor model of the loss exactly over the ball.

For each sample the loss is expanded at x, L(x + p) ≈ L + ∇Lᵀp + ½ pᵀ∇²L p, and the model is maximised exactly
over ‖p‖ ≤ r, i.e. :func:`fastfair.trs.solve_trs` is called with g = -∇L, H = -∇²L. The step is the global
maximiser of the model even where ∇²L is indefinite or negative definite (unlike the reference code, which
accepted an interior Newton step ‖H⁻¹g‖ ≤ r without checking the sign of H, and so *decreased* the loss of
confidently classified points of a logistic model). The loss reported is the true loss at x + p.

Three paths, chosen per model (``structured=False`` forces the generic one):

``"affine-closed-form"`` -- :class:`~fastfair.models.Affine`, O(n·d), no eigendecomposition.
    ∇L = ℓ′w and ∇²L = ℓ″wwᵀ both lie along w, so with u = w/‖w‖ and p = t·u + p⊥ the model is
    ℓ′‖w‖t + ½ℓ″‖w‖²t² (p⊥ ⟂ w contributes nothing and only uses up radius). ℓ″ ≥ 0, so this is convex in t
    and its maximum over |t| ≤ r is at an end point: t = r·sign(ℓ′), i.e.

        δ = r · sign(σ - y) · w/‖w‖.

    This is also the exact maximiser of the **true** loss: L(x + δ) depends on δ only through the logit
    z + ‖w‖t, and on the ball t ranges over [-r, r]. For a label y ∈ {0, 1} the loss is monotone in the
    logit (ℓ′ = σ - y has the sign of 1 - 2y everywhere), so the end point moving the logit away from the
    label wins.
    The sign is computed as sign(z - logit(y)) (= sign(σ(z) - y), but exact even where σ(z) rounds to y).
    For a soft label y ∈ (0, 1) ℓ is convex in z but not monotone: the maximum over the segment is still at an
    end point, and we pick the end point with the larger true loss (ties, e.g. the exact σ(z) = y where
    moving either way increases the loss, go to sign(z - logit(y)) and then to +w). w = 0 gives δ = 0. The
    KKT certificate of the rank-one model is computed analytically in O(n·d): multiplier
    λ = s·ℓ′‖w‖/r + ℓ″‖w‖², and the eigenvalues of -∇²L + λI are λ (on w⊥) and s·ℓ′‖w‖/r (along w).

``"mlp-subspace"`` -- :class:`~fastfair.models.MLP` with hidden width h < d, O(n·h·d + n·h³).
    With an orthonormal basis U (d, k ≤ h) of the row space of W (one QR per batch), ∇L = U g̃ and
    ∇²L = U H̃ Uᵀ (:func:`fastfair.derivatives.mlp_subspace_derivatives`). Writing p = U p̃ + p⊥ with p⊥ ⟂
    range(U): gᵀp⊥ = 0 and H p⊥ = 0, so the model value depends on p̃ only, while ‖p‖² = ‖p̃‖² + ‖p⊥‖²;
    p⊥ only spends radius. Hence the k-dimensional TRS in p̃ has the same optimal value, and p = U p̃* is a
    global maximiser of the full model (the true loss is also unchanged by p⊥: the MLP sees x only through
    Wx). Certificate: stationarity, complementarity and feasibility are the same numbers in both coordinate
    systems (U is orthonormal); H + λI has the reduced spectrum shifted by λ on range(U) and the eigenvalue λ
    on its complement, so λ_min(full) = min(λ_min(reduced), λ) when k < d.

``"generic"`` -- anything else (or ``structured=False``): the full (n, d, d) Hessian from
    :func:`fastfair.derivatives.loss_input_derivatives` (analytic for Affine/MLP, torch.func otherwise) and
    one batched :func:`~fastfair.trs.solve_trs`.

Training mode: :meth:`TrustRegionAdversary.attack` (what the training loop calls) and ``certify=False`` return
the same step through the lean solvers of :mod:`fastfair.trs` (a certified fixed point, with the
eigendecomposition only for the rows it cannot certify). The MLP's reduced model comes factored from
:func:`~fastfair.derivatives.mlp_reduced_derivatives` (``H̃ = ℓ″ g̃_f g̃_fᵀ + Mᵀ diag(ℓ′ m) M``) and is solved by
:func:`~fastfair.trs.solve_trs_operator` with products only, or with the dense k×k H̃ when k is small
(:meth:`~fastfair.derivatives.FactoredQuadratic.prefers_dense`); other models go through
:func:`~fastfair.trs.solve_trs_fast`. For hard labels the affine step is the O(1)-operation
``x + r (1 - 2y) w/‖w‖`` (for y ∈ {0, 1}, sign(σ(z) - y) = 1 - 2y for every finite z). On the paper's batch
sizes a solve costs its number of tensor operations, so this is what keeps a robust epoch within a small
factor of a non-robust one; the certified path remains the reference it is tested against.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ..derivatives import (
    BACKENDS,
    affine_parameters,
    has_analytic_derivatives,
    logistic_loss,
    logistic_loss_derivatives,
    loss_input_derivatives,
    mlp_reduced_derivatives,
    mlp_subspace_derivatives,
)
from ..errors import FastfairError
from ..models import MLP, Affine
from ..trs import DenseQuadratic, TRSCertificate, TRSResult, solve_trs, solve_trs_fast, solve_trs_operator
from .base import (
    InnerMaximizer,
    InnerResult,
    check_bool,
    check_optional_nonnegative_float,
    check_positive_int,
    loss_at,
    project_to_ball,
)


class TrustRegionAdversary(InnerMaximizer):
    """Exact maximiser of the per-sample quadratic model of the loss over the L2 ball (see module docs).

    Args:
        structured: use the closed form (Affine) / row-space reduction (MLP with h < d) when available;
            False forces the generic full-Hessian path.
        certify: solve with the certified :func:`~fastfair.trs.solve_trs` and attach the KKT certificate of the
            quadratic model (:class:`~fastfair.trs.TRSCertificate`) and the extras below. False: the lean
            training path (same step, see module docs); ``extras`` then holds ``"path"`` and, except for the
            affine closed form, the lean solver's ``"products"`` (fixed-point steps, also the reported iteration
            count) and ``"fallback_rows"`` (rows solved by ``eigh`` instead).
        tol, max_iter: passed to :func:`~fastfair.trs.solve_trs` (unused by the Affine closed form).
        backend: derivative backend of the generic path (``"auto"``, ``"analytic"``, ``"func"``).

    ``extras``: ``"path"``, ``"multiplier"`` (n,), ``"hard_case"`` (n,) bool, ``"predicted_increase"`` (n,)
    the model's predicted loss increase ∇Lᵀδ + ½δᵀ∇²Lδ, ``"clean_loss"`` (n,) the loss at x.
    """

    name = "trs"

    def __init__(
        self,
        *,
        structured: bool = True,
        certify: bool = True,
        tol: float | None = None,
        max_iter: int = 60,
        backend: str = "auto",
    ) -> None:
        self.structured = check_bool("structured", structured)
        self.certify = check_bool("certify", certify)
        self.tol = check_optional_nonnegative_float("tol", tol)
        self.max_iter = check_positive_int("max_iter", max_iter)
        if backend not in BACKENDS:
            choices = ", ".join(BACKENDS)
            raise FastfairError(f"unknown derivative backend {backend!r}; choose one of {choices}")
        self.backend = backend
        self._options = {
            "structured": self.structured,
            "certify": self.certify,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "backend": backend,
        }

    def path_for(self, model: nn.Module, d: int) -> str:
        """Which path :meth:`perturb` takes for this model and input dimension."""
        if self.structured and has_analytic_derivatives(model):
            if isinstance(model, Affine):
                return "affine-closed-form"
            if isinstance(model, MLP) and model.hidden.out_features < d:
                return "mlp-subspace"
        return "generic"

    def attack(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """x + δ through the lean training path (see module docs); the batch is trusted, as in the base class."""
        return self._lean(model, x, y, r, None)

    def _lean(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor, stats: dict[str, int] | None) -> Tensor:
        """:meth:`attack`; ``stats`` (if given) receives the lean solver's counts (:func:`solve_trs_operator`)."""
        path = self.path_for(model, x.shape[1])
        if path == "affine-closed-form":
            if not bool(((y == 0) | (y == 1)).all()):  # soft labels: the end-point comparison is needed
                return self._affine(model, x, y, r).x_adv
            w, _ = affine_parameters(model, x)
            wnorm = torch.linalg.vector_norm(w)
            u = w / wnorm if bool(wnorm > 0) else w
            return torch.addr(x, (1 - 2 * y) * r, u)
        if self.structured and isinstance(model, MLP) and has_analytic_derivatives(model):  # any width h
            U, quad = mlp_reduced_derivatives(model, x, y)
            quad = quad.neg()  # maximise the loss model: minimise its negative
            quad = DenseQuadratic(quad.g, quad.hessian()) if quad.prefers_dense() else quad
            step = solve_trs_operator(quad, r, stats=stats)
            return x + (step if U is None else step @ U.T)
        der = loss_input_derivatives(model, x, y, hessian=True, backend=self.backend)
        return x + solve_trs_fast(-der.grad, -der.hessian, r, stats=stats)

    def _perturb(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        path = self.path_for(model, x.shape[1])
        if not self.certify:
            stats: dict[str, int] = {}
            x_adv = self._lean(model, x, y, r, stats)
            extras = {"path": path, **stats}
            return self._result(model, x, x_adv, y, max(1, stats.get("products", 1)), None, extras)
        if path == "affine-closed-form":
            return self._affine(model, x, y, r)
        if path == "mlp-subspace":
            return self._mlp_subspace(model, x, y, r)
        return self._generic(model, x, y, r)

    # ---------------------------------------------------------------------------------------------------

    def _affine(self, model: Affine, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        with torch.no_grad():
            w, b = affine_parameters(model, x)
            z = x @ w + b
            wnorm = torch.linalg.vector_norm(w)
            reach = r * wnorm  # the logit moves by at most r‖w‖ on the ball
            logit_y = torch.log(y) - torch.log1p(-y)  # ±inf for hard labels: the sign below is exact
            s = torch.sign(z - logit_y)
            hard_label = (y == 0) | (y == 1)
            loss_up = logistic_loss(z + reach, y)
            loss_down = logistic_loss(z - reach, y)
            s_loss = torch.sign(loss_up - loss_down)
            s = torch.where(hard_label | (s_loss == 0), s, s_loss)
            s = torch.where((s == 0) | torch.isnan(s), torch.ones_like(s), s)
            u = w / torch.where(wnorm > 0, wnorm, torch.ones_like(wnorm))  # w = 0 -> u = 0 -> δ = 0
            delta = project_to_ball((s * r)[:, None] * u, r)
            x_adv = x + delta
            clean_loss, d1, d2 = logistic_loss_derivatives(z, y)
            # KKT quantities of min -∇Lᵀp - ½pᵀ∇²Lp (g = -ℓ′w, H = -ℓ″wwᵀ), analytically, O(n·d)
            curv = d2 * wnorm**2  # ℓ″‖w‖² = ‖H‖₂
            along = s * d1 * wnorm / r  # eigenvalue of H + λI along w
            lam = along + curv
            wp = delta @ w
            extras = {
                "path": "affine-closed-form",
                "multiplier": lam,
                "hard_case": (d1 == 0) & (curv > 0),
                "predicted_increase": d1 * wp + 0.5 * d2 * wp**2,
                "clean_loss": clean_loss,
            }
            certificate = None
            if self.certify:
                resid = (lam[:, None] * delta) - ((d2 * wp)[:, None] * w) - (d1[:, None] * w)
                pnorm = torch.linalg.vector_norm(delta, dim=1)
                certificate = TRSCertificate(
                    stationarity=torch.linalg.vector_norm(resid, dim=1),
                    complementarity=(lam * (r - pnorm)).abs(),
                    feasibility=(pnorm - r).clamp_min(0),
                    min_eigenvalue=torch.minimum(along, lam),
                    scale=d1.abs() * wnorm + (curv + lam) * r,
                    radius=r,
                )
        return self._result(model, x, x_adv, y, 1, certificate, extras)

    def _mlp_subspace(self, model: MLP, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        sub = mlp_subspace_derivatives(model, x, y)
        res = solve_trs(-sub.grad, -sub.hessian, r, tol=self.tol, max_iter=self.max_iter)
        with torch.no_grad():
            delta = project_to_ball(sub.lift(res.step), r)
        certificate = None
        if self.certify:
            certificate = res.certificate()
            if sub.basis.shape[1] < x.shape[1]:  # the complement of range(U) adds the eigenvalue λ
                certificate = dataclasses.replace(
                    certificate, min_eigenvalue=torch.minimum(certificate.min_eigenvalue, res.multiplier)
                )
        extras = self._trs_extras("mlp-subspace", res, sub.loss)
        return self._result(model, x, x + delta, y, 1, certificate, extras)

    def _generic(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        der = loss_input_derivatives(model, x, y, hessian=True, backend=self.backend)
        res = solve_trs(-der.grad, -der.hessian, r, tol=self.tol, max_iter=self.max_iter)
        with torch.no_grad():
            delta = project_to_ball(res.step, r)
        certificate = res.certificate() if self.certify else None
        extras = self._trs_extras("generic", res, der.loss)
        return self._result(model, x, x + delta, y, 1, certificate, extras)

    @staticmethod
    def _trs_extras(path: str, res: TRSResult, clean_loss: Tensor) -> dict:
        return {
            "path": path,
            "multiplier": res.multiplier,
            "hard_case": res.hard_case,
            "predicted_increase": -res.objective,
            "clean_loss": clean_loss,
        }

    @staticmethod
    def _result(
        model: nn.Module,
        x: Tensor,
        x_adv: Tensor,
        y: Tensor,
        iterations: int,
        certificate: TRSCertificate | None,
        extras: dict,
    ) -> InnerResult:
        x_adv = x_adv.detach()
        return InnerResult(
            x_adv=x_adv,
            loss=loss_at(model, x_adv, y),
            iterations=torch.full((x.shape[0],), iterations, dtype=torch.int64, device=x.device),
            certificate=certificate,
            extras=extras,
        )
