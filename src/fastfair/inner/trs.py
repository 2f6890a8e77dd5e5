"""Trust-region inner maximiser: maximise the quadratic Taylor model of the loss exactly over the ball.

For each sample the loss is expanded at x, L(x + p) ≈ L + ∇Lᵀp + ½ pᵀ∇²L p, and the model is maximised exactly
over ‖p‖ ≤ r, i.e. the TRS min gᵀp + ½pᵀHp over the ball is solved with g = -∇L, H = -∇²L. The step is the
global maximiser of the model even where ∇²L is indefinite or negative definite (unlike the reference code,
which accepted an interior Newton step ‖H⁻¹g‖ ≤ r without checking the sign of H, and so *decreased* the loss of
confidently classified points of a logistic model). The loss reported is the true loss at x + p.

The adversary asks :func:`fastfair.derivatives.quadratic_model` for the model of the loss at the batch (the path
is chosen there, and only there) and solves whatever it gets; ``extras["path"]`` is the path of that model:

``"affine-closed-form"`` -- rank one, O(n·d), no eigendecomposition.
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

``"mlp-subspace"`` and ``"dense"`` -- a k×k Hessian per row (k = h or d for the one-hidden-layer MLP, d for dense).
    Certified: one batched eigendecomposition, :func:`~fastfair.trs.solve_trs`. Where the model lives in the
    row space U (d, k < d) of the MLP's first layer, ∇L = U g̃ and ∇²L = U H̃ Uᵀ. Writing p = U p̃ + p⊥ with
    p⊥ ⟂ range(U): gᵀp⊥ = 0 and H p⊥ = 0, so the model value depends on p̃ only, while ‖p‖² = ‖p̃‖² + ‖p⊥‖²;
    p⊥ only spends radius. Hence the k-dimensional TRS in p̃ has the same optimal value, and p = U p̃* is a
    global maximiser of the full model (the true loss is also unchanged by p⊥: the MLP sees x only through
    Wx). Certificate: stationarity, complementarity and feasibility are the same numbers in both coordinate
    systems (U is orthonormal); H + λI has the reduced spectrum shifted by λ on range(U) and the eigenvalue λ
    on its complement, so λ_min(full) = min(λ_min(reduced), λ) when k < d.

``"softmax-subspace"`` -- softmax regression with C ≥ 3 classes, f(x) = Wx + b: a k×k model (k ≤ min(C, d)).
    ∇L = Wᵀ(p - e_y) and ∇²L = Wᵀ(diag(p) - ppᵀ)W lie in the row space of W; with one thin QR Wᵀ = UR per batch
    the reduced g̃ = R(p - e_y) and H̃ = R(diag(p) - ppᵀ)Rᵀ are solved exactly as for ``"mlp-subspace"`` (the same
    argument: p⊥ ⟂ range(U) only spends radius; the same certificate with λ on the complement) and lifted back.
    H̃ ⪰ 0 (rank ≤ C - 1), so the maximiser lies on the sphere ‖δ‖ = r (:mod:`fastfair.derivatives.softmax`).
    The lean path is the k×k operator solve of ``"mlp-subspace"``.

``"mlp-softmax-subspace"`` -- the one-hidden-layer MLP with C ≥ 3 outputs: the same k×k reduction (k ≤ min(h, d))
    of g = Jᵀ(p - e_y) and H = Jᵀ(diag(p) - ppᵀ)J + Wᵀdiag((Vᵀ(p - e_y)) ⊙ φ″)W, J = V diag(φ′) W; H is
    indefinite in general, and the certified k×k solve handles the interior and hard cases.

``"krylov"`` -- Hessian-vector products only (any row-wise module at larger d): :func:`~fastfair.trs.solve_trs_krylov`
    (batched Lanczos / GLTR, never an (n, d, d) tensor). Certified: with its curvature probe (the hard case is
    found) and the certificate computed from products; ``iterations`` counts the products per row.

Training mode: :meth:`TrustRegionAdversary.attack` (what the training loop calls) and ``certify=False`` return
the same step with less work. The k×k models go through :func:`~fastfair.trs.solve_trs_operator` (a certified
fixed point, with the eigendecomposition only for the rows it cannot certify): the MLP's factored Hessian with
products only, or its dense k×k form when k is small (:meth:`~fastfair.derivatives.FactoredQuadratic.prefers_dense`).
The Krylov path runs without its curvature probe (``probe_iter=0``): exact whenever the gradient has weight on the
leftmost eigenvector, and the probe's products would cost several times the solve. It stops at the relative
stationarity residual τ = eps^(1/3) (4.9e-3 in float32, 6.1e-6 in float64) instead of the solver's eps^(2/3): a
training step needs the *value* of the quadratic model (the loss increase it buys), not the step, to working
accuracy, and a Krylov solution with residual ρ = ‖(H + λI)p + g‖ is within about ρ²/(2(λ + λ₁)) of the optimal
value, i.e. about 2τ² ≈ eps^(2/3) relative. On the 3-layer tanh MLP (128, 64; d = 784; n = 4096; r = 0.5) this cut
the products from 4.1 to 2.4 per row and moved the true loss at the step by -4.6e-5 relative, against a
quadratic model that is itself ~1e-2 below the true loss's maximum at that radius. An explicit ``tol`` overrides it.
For hard labels the affine
step is the O(1)-operation ``x + r (1 - 2y) w/‖w‖`` (for y ∈ {0, 1}, sign(σ(z) - y) = 1 - 2y for every finite z).
On the paper's batch sizes a solve costs its number of tensor operations, so this is what keeps a robust epoch
within a small factor of a non-robust one; the certified path remains the reference it is tested against.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..derivatives import (
    QUADRATIC_BACKENDS,
    SOFTMAX_MLP_PATH,
    SOFTMAX_PATH,
    DenseModel,
    FactoredModel,
    KrylovModel,
    QuadraticModel,
    RankOneModel,
    check_backend,
    choose_path,
    quadratic_model,
)
from ..losses import classification_loss
from ..trs import KrylovTRSResult, TRSCertificate, TRSResult, solve_trs, solve_trs_krylov, solve_trs_operator
from ..validation import check_bool, check_optional_nonnegative_float, check_positive_int
from .base import InnerMaximizer, InnerResult, loss_at, project_to_ball

#: The certified Krylov path stops at a relative stationarity residual of at most this many ulps (or the solver's
#: default eps^(2/3) where that is smaller, as in float32): ten times below the default tolerance of
#: :meth:`fastfair.trs.TRSCertificate.ok` (1e4 ulps), so that the certificate computed from one more product
#: passes where the Lanczos estimate did. The lean path stops at eps^(1/3) instead (module docs).
CERTIFIED_KRYLOV_TOL = 1e3


class TrustRegionAdversary(InnerMaximizer):
    """Exact maximiser of the per-sample quadratic model of the loss over the L2 ball (see module docs).

    Args:
        structured: use the closed form (Affine) / factored form (one-hidden-layer MLP) when the model has one;
            False forces the dense full-Hessian path.
        certify: solve with the certified solvers and attach the KKT certificate of the quadratic model
            (:class:`~fastfair.trs.TRSCertificate`) and the extras below. False: the lean training path (same
            step, see module docs); ``extras`` then holds ``"path"`` and, except for the affine closed form,
            the lean solver's ``"products"`` (fixed-point steps or Krylov products, also the reported iteration
            count) and, for the k×k models, ``"fallback_rows"`` (rows solved by ``eigh`` instead).
        tol: relative tolerance: of the secular equation (:func:`~fastfair.trs.solve_trs`) or of the Krylov
            stationarity test (:func:`~fastfair.trs.solve_trs_krylov`); None: each solver's default (for the
            certified Krylov path at most :data:`CERTIFIED_KRYLOV_TOL` ulps, for the lean one eps^(1/3)).
        max_iter: root-finder iterations of :func:`~fastfair.trs.solve_trs` (the Krylov basis is capped at
            min(d, 100) vectors whatever this is).
        backend: how the derivatives of a model without closed forms are computed (``"auto"``, ``"analytic"``,
            ``"func"``: dense; ``"hvp"``: products, the krylov path); see
            :func:`fastfair.derivatives.choose_path`.

    ``extras``: ``"path"``, ``"multiplier"`` (n,), ``"hard_case"`` (n,) bool, ``"predicted_increase"`` (n,)
    the model's predicted loss increase ∇Lᵀδ + ½δᵀ∇²Lδ, ``"clean_loss"`` (n,) the loss at x; the krylov path
    adds ``"converged"`` (n,) bool (its stationarity test and probe passed within the basis cap).
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
        self.backend = check_backend(backend, QUADRATIC_BACKENDS)
        self._options = {
            "structured": self.structured,
            "certify": self.certify,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "backend": backend,
        }

    def path_for(self, model: nn.Module, d: int) -> str:
        """The path :meth:`perturb` and :meth:`attack` take for this model at input dimension ``d``."""
        return choose_path(model, d, structured=self.structured, backend=self.backend)

    def quadratic_model(self, model: nn.Module, x: Tensor, y: Tensor) -> QuadraticModel:
        """The quadratic model of the loss this adversary maximises (:func:`fastfair.derivatives.quadratic_model`)."""
        return quadratic_model(model, x, y, structured=self.structured, backend=self.backend)

    def attack(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """x + δ through the lean training path (see module docs); the batch is trusted, as in the base class."""
        quad = self.quadratic_model(model, x, y)
        return _LEAN[quad.path](self, quad, x, y, r).x_adv

    def _perturb(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        quad = self.quadratic_model(model, x, y)
        if self.certify:
            return _CERTIFIED[quad.path](self, model, quad, x, y, r)
        step = _LEAN[quad.path](self, quad, x, y, r)
        return _result(model, x, step.x_adv, y, step.iterations, None, {"path": quad.path, **step.work})

    # ---- lean steps (training): x + δ, and the work it took ------------------------------------------------

    def _lean_rank_one(self, quad: RankOneModel, x: Tensor, y: Tensor, r: Tensor) -> _LeanStep:
        if not bool(((y == 0) | (y == 1)).all()):  # soft labels: the end-point comparison is needed
            return _LeanStep(x + _rank_one_step(quad, y, r)[0])
        w = quad.w
        if w.ndim == 2:  # one w per row (a packed batch): x + r(1 - 2y) wᵢ/‖wᵢ‖ row by row
            wnorm = torch.linalg.vector_norm(w, dim=1, keepdim=True)
            u = w / torch.where(wnorm > 0, wnorm, torch.ones_like(wnorm))
            return _LeanStep(x + ((1 - 2 * y) * r)[:, None] * u)
        wnorm = torch.linalg.vector_norm(w)
        u = w / wnorm if bool(wnorm > 0) else w
        return _LeanStep(torch.addr(x, (1 - 2 * y) * r, u))

    def _lean_matrix(self, quad: FactoredModel | DenseModel, x: Tensor, y: Tensor, r: Tensor) -> _LeanStep:
        work: dict[str, int] = {}
        step = solve_trs_operator(quad.neg().operator(), r, stats=work)
        return _LeanStep(x + quad.lift(step), max(1, work["products"]), work)

    def _lean_krylov(self, quad: KrylovModel, x: Tensor, y: Tensor, r: Tensor) -> _LeanStep:
        neg = quad.neg()
        tol = self.tol if self.tol is not None else torch.finfo(x.dtype).eps ** (1 / 3)
        res = solve_trs_krylov(neg.g, neg.op, r, tol=tol, probe_iter=0)
        products = int(res.iterations.max()) if res.iterations.numel() else 0
        return _LeanStep(x + quad.lift(res.step), res.iterations, {"products": products})

    # ---- certified solves ----------------------------------------------------------------------------------

    def _certified_rank_one(self, model: nn.Module, quad: RankOneModel, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        with torch.no_grad():
            delta, s, wnorm = _rank_one_step(quad, y, r)
            w = quad.w
            clean_loss, d1, d2 = quad.loss, quad.d1, quad.d2
            # KKT quantities of min -∇Lᵀp - ½pᵀ∇²Lp (g = -ℓ′w, H = -ℓ″wwᵀ), analytically, O(n·d)
            curv = d2 * wnorm**2  # ℓ″‖w‖² = ‖H‖₂
            along = s * d1 * wnorm / r  # eigenvalue of H + λI along w
            lam = along + curv
            wp = torch.linalg.vecdot(delta, w) if w.ndim == 2 else delta @ w
            extras = {
                "path": quad.path,
                "multiplier": lam,
                "hard_case": (d1 == 0) & (curv > 0),
                "predicted_increase": d1 * wp + 0.5 * d2 * wp**2,
                "clean_loss": clean_loss,
            }
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
        return _result(model, x, x + delta, y, 1, certificate, extras)

    def _certified_matrix(
        self, model: nn.Module, quad: FactoredModel | DenseModel, x: Tensor, y: Tensor, r: Tensor
    ) -> InnerResult:
        res = solve_trs(-quad.g, -quad.hessian(), r, tol=self.tol, max_iter=self.max_iter)
        with torch.no_grad():
            delta = project_to_ball(quad.lift(res.step), r)
        certificate = res.certificate()
        if quad.basis is not None and quad.basis.shape[1] < x.shape[1]:  # the complement adds the eigenvalue λ
            certificate = dataclasses.replace(
                certificate, min_eigenvalue=torch.minimum(certificate.min_eigenvalue, res.multiplier)
            )
        return _result(model, x, x + delta, y, 1, certificate, _solve_extras(quad, res))

    def _certified_krylov(self, model: nn.Module, quad: KrylovModel, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        neg = quad.neg()
        eps = torch.finfo(x.dtype).eps
        tol = self.tol if self.tol is not None else min(eps ** (2 / 3), CERTIFIED_KRYLOV_TOL * eps)
        res = solve_trs_krylov(neg.g, neg.op, r, tol=tol)
        with torch.no_grad():
            delta = project_to_ball(quad.lift(res.step), r)
        certificate = res.certificate()
        if quad.basis is not None and quad.basis.shape[1] < x.shape[1]:  # the complement adds the eigenvalue λ
            certificate = dataclasses.replace(
                certificate, min_eigenvalue=torch.minimum(certificate.min_eigenvalue, res.multiplier)
            )
        extras = {**_solve_extras(quad, res), "converged": res.converged}
        return _result(model, x, x + delta, y, res.iterations, certificate, extras)


@dataclasses.dataclass(frozen=True)
class _LeanStep:
    """A lean step: ``x + δ``, the iterations to report per row, and the solver's work counts for ``extras``."""

    x_adv: Tensor
    iterations: int | Tensor = 1
    work: dict[str, int] = dataclasses.field(default_factory=dict)


def _solve_extras(quad: QuadraticModel, res: TRSResult | KrylovTRSResult) -> dict[str, object]:
    """The extras of a certified solve of the negated quadratic model: its path, the multiplier λ, the hard-case
    flags, the predicted increase of the loss -q(p) (the solver minimises q = -model), and the clean loss."""
    return {
        "path": quad.path,
        "multiplier": res.multiplier,
        "hard_case": res.hard_case,
        "predicted_increase": -res.objective,
        "clean_loss": quad.loss,
    }


def _rank_one_step(quad: RankOneModel, y: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(δ, s, ‖w‖)``: the end point ``δ = s·r·w/‖w‖`` of the segment with the larger loss (module docs).

    With one w per row (``quad.w`` (n, d), a packed batch) ‖w‖ is per row, (n,)."""
    w, z = quad.w, quad.logits
    wnorm = torch.linalg.vector_norm(w, dim=-1)
    reach = r * wnorm  # the logit moves by at most r‖w‖ on the ball
    logit_y = torch.log(y) - torch.log1p(-y)  # ±inf for hard labels: the sign below is exact
    s = torch.sign(z - logit_y)
    hard_label = (y == 0) | (y == 1)
    s_loss = torch.sign(classification_loss(z + reach, y) - classification_loss(z - reach, y))
    s = torch.where(hard_label | (s_loss == 0), s, s_loss)
    s = torch.where((s == 0) | torch.isnan(s), torch.ones_like(s), s)
    safe = torch.where(wnorm > 0, wnorm, torch.ones_like(wnorm))
    u = w / (safe[:, None] if w.ndim == 2 else safe)  # w = 0 -> u = 0 -> δ = 0
    return project_to_ball((s * r)[:, None] * u, r), s, wnorm


#: The solve of each path of :func:`fastfair.derivatives.quadratic_model`: certified, and the lean step.
_CERTIFIED: dict[str, Callable[..., InnerResult]] = {
    "affine-closed-form": TrustRegionAdversary._certified_rank_one,
    "mlp-subspace": TrustRegionAdversary._certified_matrix,
    SOFTMAX_PATH: TrustRegionAdversary._certified_matrix,
    SOFTMAX_MLP_PATH: TrustRegionAdversary._certified_matrix,
    "dense": TrustRegionAdversary._certified_matrix,
    "krylov": TrustRegionAdversary._certified_krylov,
}
_LEAN: dict[str, Callable[..., _LeanStep]] = {
    "affine-closed-form": TrustRegionAdversary._lean_rank_one,
    "mlp-subspace": TrustRegionAdversary._lean_matrix,
    SOFTMAX_PATH: TrustRegionAdversary._lean_matrix,
    SOFTMAX_MLP_PATH: TrustRegionAdversary._lean_matrix,
    "dense": TrustRegionAdversary._lean_matrix,
    "krylov": TrustRegionAdversary._lean_krylov,
}


def _result(
    model: nn.Module,
    x: Tensor,
    x_adv: Tensor,
    y: Tensor,
    iterations: int | Tensor,
    certificate: TRSCertificate | None,
    extras: dict,
) -> InnerResult:
    x_adv = x_adv.detach()
    if isinstance(iterations, int):
        iterations = torch.full((x.shape[0],), iterations, dtype=torch.int64, device=x.device)
    return InnerResult(
        x_adv=x_adv,
        loss=loss_at(model, x_adv, y),
        iterations=iterations.to(device=x.device, dtype=torch.int64),
        certificate=certificate,
        extras=extras,
    )
