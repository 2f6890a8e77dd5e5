r"""The reference implementation's trust-region step, reproduced on purpose with its defect: ``"trs-paper"``.

The reference code of *Fast & Fair* (``fastNfair/optimizers/tmp_optimizer.py``, ``TrustRegionSubproblem``,
called from ``fastNfair/training/adversarial_training.py``) maximises the loss by *minimising* the negated
batch-mean loss, -(1/b) Σⱼ ℓⱼ, over each sample's ball. For sample i of a mini-batch of b rows it takes

    g = -(1/b) ∇ℓᵢ,    H = -(1/b) ∇²ℓᵢ,    q(p) = gᵀp + ½ pᵀHp,    min q(p) s.t. ‖p‖ ≤ r,

and solves this subproblem as follows (:func:`solve_trs_paper` does exactly this, batched over rows):

1. **Eigendecomposition** H = Q diag(s) Qᵀ (the reference calls the general ``eig`` on the symmetric matrix
   and keeps real parts). Eigenvalues with |sⱼ| ≤ 10⁻⁸ are **dropped** with their eigenvectors; c = Qᵀ(-g) on
   the rest, and p(λ) = Σⱼ cⱼ/(sⱼ + λ) qⱼ.
2. **Interior Newton step**: if ‖p(0)‖ ≤ r, the step is p(0) = -H⁺g, *whatever the signs of the sⱼ*. This is
   the defect: the Moré-Sorensen conditions need H + λI ⪰ 0, i.e. H ⪰ 0 for λ = 0. When the loss is convex
   in a direction (H of the negated loss has a negative eigenvalue; for the logistic loss of an affine model
   H = -(1/b)σ(1-σ)wwᵀ ⪯ 0 always), p(0) is a stationary point that is a maximiser of q along that direction,
   i.e. a step that **lowers** the loss: for the affine model it is -(σ - y)w/(σ(1-σ)‖w‖²), the direction
   that moves the logit *towards* the label, of length |σ - y|/(σ(1-σ)‖w‖) ≈ 1/‖w‖ on confidently classified
   points, so it fits in the ball once ‖w‖ ≳ 1/r.
3. **Boundary**: otherwise bisection on φ(λ) = ‖p(λ)‖ - r over the bracket [0, d·‖g‖/r + minⱼ |sⱼ|]
   (d the input dimension, the minimum over the kept eigenvalues), at most 100 halvings, stopped when
   |b - a| ≤ 10⁻⁸·max(|a|, |b|) or φ(midpoint) = 0; the last midpoint is λ. λ runs in float64, φ is evaluated
   in the data's dtype, as in the reference. A bracket with φ of one sign at both ends is accepted at the end
   where |φ| < 10⁻⁸ (the lower first). Bisection only looks for a sign change: where H has negative
   eigenvalues it can return a root with λ < -s_min (H + λI indefinite), and there is **no hard case**.

Deliberate differences from the reference (each row's branch is in ``extras["branch"]``, codes in
:data:`BRANCHES`):

* ``"degenerate"``: every eigenvalue is dropped (|sⱼ| ≤ 10⁻⁸ for all j: a flat loss, or a tiny 1/b-scaled
  curvature). The reference crashes there (``reshape`` of an empty tensor). We return the exact TRS solution of
  the same subproblem (:func:`fastfair.trs.solve_trs`: the step of the linear model, -r·g/‖g‖, when H is
  negligible; 0 when g = 0 and H ⪰ 0).
* ``"no-bracket"``: φ has one sign at both ends of the bracket (possible only when H has a negative
  eigenvalue below -(d‖g‖/r + min |sⱼ|)). The reference raises ``ValueError``. We return the exact TRS
  solution, as for degenerate rows.
* The eigendecomposition is ``torch.linalg.eigh`` by default (orthonormal eigenvectors, the symmetric
  solver); ``eigensolver="eig"`` makes the reference's call (general ``eig``, real parts). The two agree to
  rounding except on eigenvalues at rounding level, which the 10⁻⁸ test may keep with one solver and drop with
  the other.
* A term cⱼ/(sⱼ + λ) with cⱼ = 0 is 0 (the reference would compute 0·∞ = NaN when λ hits -sⱼ exactly), and
  the final step is projected onto the ball (a rounding-level change: bisection leaves ‖p‖ = r to ≈10⁻⁸
  relative), so that ‖δ‖ ≤ r holds as for every inner maximiser.
* Non-finite derivatives are refused with an error (the reference prints and carries on).

The 1/b scaling changes nothing in exact arithmetic except which eigenvalues the absolute threshold 10⁻⁸ drops
(the bisection is scale invariant); it is reproduced through ``batch_size`` (default: the number of rows passed,
which is what the training loop passes: one mini-batch).

Which models: the Hessian comes from :func:`fastfair.derivatives.quadratic_model`, the same source as
``"trs"``: the affine model's rank-one form (formed densely here, d×d per row, as the reference does), the
one-hidden-layer MLP's factored form in the row space of its first layer (k = min(h, d) columns; the dropped
eigenvalues of the full d×d Hessian are the exact zeros on the complement, so this is the same algorithm, with
the bracket still using the input dimension d), and any other row-wise module through a dense Hessian.
A multiclass model (C ≥ 3 logits, softmax cross-entropy) is refused (one-line error): the reference's step is
that of the binary logistic loss. A model whose k exceeds :data:`MAX_DENSE_DIM` is refused (one-line error): the
reference's algorithm needs the full eigendecomposition, O(n·k²) memory and O(n·k³) time.

What the result certifies: ``InnerResult.certificate`` is the KKT certificate of the returned step for the
(unscaled) quadratic model of -ℓ, min -∇ℓᵀp - ½pᵀ∇²ℓp, with the multiplier λ·b. Boundary rows carry a multiplier
from a 10⁻⁸-relative bisection, so their certificate is accurate to about that, and fails (``min_eigenvalue``
< 0) where bisection stopped at a root with H + λI indefinite. **Interior-Newton rows are not certified
maximisers**: their multiplier is 0 and ``min_eigenvalue`` is λ_min(-∇²ℓ), negative wherever the loss curves
upwards, which is exactly where the step lowers the loss. ``extras["certified"]`` is
:meth:`~fastfair.trs.TRSCertificate.ok` per row at the tolerance :data:`PAPER_CERT_TOL` (the bisection's
accuracy), or float32's default where that is larger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..derivatives import QUADRATIC_BACKENDS, check_backend, models_multiclass, quadratic_model
from ..errors import FastfairError
from ..trs import TRSCertificate, solve_trs
from ..validation import check_bool, check_nonnegative_int, check_positive_float, check_positive_int
from .base import InnerMaximizer, InnerResult, loss_at, project_to_ball

#: The reference's threshold below which an eigenvalue (of the 1/b-scaled Hessian) is dropped.
PAPER_DROP_TOL = 1e-8
#: The reference's bisection: at most this many halvings ...
PAPER_MAX_ITER = 100
#: ... stopped at this relative bracket width, |b - a| ≤ tol·max(|a|, |b|) ...
PAPER_TOL = 1e-8
#: ... and a one-signed bracket is accepted at an end where |φ| is below this.
PAPER_FLAT_TOL = 1e-8
#: Relative KKT violation at which a row counts as certified (``extras["certified"]``; float32 keeps its larger
#: default 1e4·eps): the bisection stops at a 1e-8 relative width in λ, which leaves residuals of about 1e-9
#: relative to the certificate's scale, above float64's default 1e4·eps = 2.2e-12.
PAPER_CERT_TOL = 1e-6
#: Largest k (columns of the per-row Hessian) the solver forms and decomposes densely.
MAX_DENSE_DIM = 512
#: Branch codes of ``PaperTRSResult.branch`` and ``extras["branch"]`` (module docs).
BRANCHES: tuple[str, ...] = ("interior-newton", "boundary", "degenerate", "no-bracket")
INTERIOR, BOUNDARY, DEGENERATE, NO_BRACKET = range(4)
#: Eigensolvers: the symmetric one, or the reference's general one (real parts).
EIGENSOLVERS: tuple[str, ...] = ("eigh", "eig")


@dataclass(frozen=True)
class PaperTRSResult:
    """Solution of a batch of subproblems by the reference's algorithm (:func:`solve_trs_paper`).

    ``step`` (n, k) is *not* projected (the adversary projects it); ``multiplier`` (n,) is λ of the problem as
    given (0 for interior-Newton rows); ``branch`` (n,) int64 codes into :data:`BRANCHES`; ``bisections`` (n,)
    the halvings spent; ``eigenvalues`` (n, k) the spectrum of H (ascending for ``eigh``), dropped ones
    included.
    """

    step: Tensor
    multiplier: Tensor
    branch: Tensor
    bisections: Tensor
    eigenvalues: Tensor


def solve_trs_paper(
    g: Tensor,
    H: Tensor,
    radius: Tensor,
    *,
    dim: int | None = None,
    drop_tol: float = PAPER_DROP_TOL,
    max_iter: int = PAPER_MAX_ITER,
    tol: float = PAPER_TOL,
    eigensolver: str = "eigh",
) -> PaperTRSResult:
    r"""The reference's solution of ``min gᵀp + ½pᵀHp s.t. ‖p‖ ≤ r`` for every row (module docs, steps 1-3).

    Args:
        g: (n, k) gradients; H: (n, k, k) symmetric Hessians, same dtype (float32 or float64) and device.
        radius: (n,) positive radii in g's dtype.
        dim: the d of the bracket d·‖g‖/r + min|sⱼ| (default k; the full input dimension when g, H are reduced).
        drop_tol, max_iter, tol: the reference's 1e-8, 100 and 1e-8.
        eigensolver: ``"eigh"`` or ``"eig"`` (the reference's call, real parts).

    Degenerate and no-bracket rows get the exact solution (:func:`fastfair.trs.solve_trs`). No NaN for finite
    input; non-finite input raises :class:`FastfairError`.
    """
    n, k = g.shape
    if not (bool(torch.isfinite(g).all()) and bool(torch.isfinite(H).all())):
        raise FastfairError("trs-paper: the gradient or Hessian of the loss is not finite")
    if eigensolver not in EIGENSOLVERS:
        raise FastfairError(f"unknown eigensolver {eigensolver!r}; choose one of {', '.join(EIGENSOLVERS)}")
    dtype, device = g.dtype, g.device
    dim = k if dim is None else dim
    if eigensolver == "eigh":
        s, Q = torch.linalg.eigh(H)
    else:
        s_c, Q_c = torch.linalg.eig(H)
        s, Q = s_c.real.contiguous(), Q_c.real.contiguous()
    keep = s.abs() > drop_tol
    c = torch.where(keep, (Q.mT @ (-g).unsqueeze(-1)).squeeze(-1), torch.zeros_like(s))
    r = radius.to(dtype)

    def coefficients(lam: Tensor, rows: Tensor | slice) -> Tensor:
        inv = 1.0 / (s[rows] + lam.to(dtype).unsqueeze(-1))
        return torch.where(c[rows] != 0, inv * c[rows], torch.zeros_like(inv))

    zero = torch.zeros(n, dtype=torch.float64, device=device)
    branch = torch.full((n,), INTERIOR, dtype=torch.int64, device=device)
    degenerate = ~keep.any(dim=-1)
    newton_norm = torch.linalg.vector_norm(coefficients(zero, slice(None)), dim=-1)
    outside = ~degenerate & (newton_norm > r)
    branch[degenerate] = DEGENERATE
    branch[outside] = BOUNDARY
    lam = zero.clone()
    bisections = torch.zeros(n, dtype=torch.int64, device=device)

    rows = outside.nonzero().squeeze(-1)
    if rows.numel():
        big = torch.finfo(dtype).max
        smin = torch.where(keep[rows], s[rows].abs(), torch.full_like(s[rows], big)).amin(dim=-1)
        hi = ((dim * torch.linalg.vector_norm(g[rows], dim=-1)) / r[rows] + smin).to(torch.float64)
        # an eigenvalue whose cⱼ is 0 (the dropped ones included) is set to +inf: its term of φ is exactly 0
        s_b = torch.where(c[rows] != 0, s[rows], torch.full_like(s[rows], float("inf")))
        x, count, fail = _bisect(s_b, c[rows], r[rows], hi, max_iter=max_iter, tol=tol)
        lam[rows] = x.to(device)
        bisections[rows] = count.to(device)
        branch[rows[fail.to(device)]] = NO_BRACKET

    step = (Q @ coefficients(lam, slice(None)).unsqueeze(-1)).squeeze(-1)
    multiplier = lam.to(dtype)
    exact = (branch == DEGENERATE) | (branch == NO_BRACKET)
    if bool(exact.any()):
        idx = exact.nonzero().squeeze(-1)
        res = solve_trs(g[idx], H[idx], r[idx])
        step = step.index_put((idx,), res.step)
        multiplier = multiplier.index_put((idx,), res.multiplier)
    return PaperTRSResult(step=step, multiplier=multiplier, branch=branch, bisections=bisections, eigenvalues=s)


def _bisect(s: Tensor, c: Tensor, r: Tensor, hi: Tensor, *, max_iter: int, tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """The reference's bisection on φ(λ) = ‖(1/(s + λ))·c‖ - r over [0, hi], every row at once.

    Rows (m,) with φ(0) > 0. λ, a and b in float64, φ in the dtype of ``s``. Returns λ (m,) float64 (the last
    midpoint; an end of the bracket where it was accepted without bisecting), the halvings (m,) int64 and the
    rows whose bracket has φ of one sign at both ends (m,) bool. Runs on NumPy: the loop is a few dozen
    elementwise operations on a handful of numbers per iteration, where each torch call costs ten times more
    than the arithmetic.
    """
    s_np, c_np, r_np = (t.detach().cpu().numpy() for t in (s, c, r))
    dtype = s_np.dtype

    def phi(lam: np.ndarray) -> np.ndarray:
        return np.sqrt(np.square((1 / (s_np + lam.astype(dtype)[:, None])) * c_np).sum(-1)) - r_np

    lo = np.zeros(len(r_np))
    hi_np = hi.detach().cpu().numpy().astype(np.float64)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        ga, gb = phi(lo), phi(hi_np)
        one_sign = ga * gb > 0
        at_lo = one_sign & (np.abs(ga) < PAPER_FLAT_TOL)
        at_hi = one_sign & ~at_lo & (np.abs(gb) < PAPER_FLAT_TOL)
        fail = one_sign & ~at_lo & ~at_hi
        x = np.where(at_hi | (~one_sign & (gb == 0)), hi_np, lo)
        # φ(0) > 0 on these rows, so the bisection's sign test "sign φ(a) ≠ sign φ(mid)" is φ(mid) < 0, and its
        # width test |b - a| ≤ tol·max(|a|, |b|) is b - a ≤ tol·b (0 ≤ a < b); φ(mid) = 0 stops a row at mid
        active = ~one_sign & (gb != 0)
        count = np.zeros(len(r_np), dtype=np.int64)
        for _ in range(max_iter):
            if not active.any():
                break
            mid = (lo + hi_np) / 2.0
            x = np.where(active, mid, x)
            gc = phi(mid)
            count += active
            down = active & (gc < 0)
            up = active & (gc > 0)
            hi_np = np.where(down, mid, hi_np)
            lo = np.where(up, mid, lo)
            active = (down | up) & (hi_np - lo > tol * hi_np)
    return torch.from_numpy(x), torch.from_numpy(count), torch.from_numpy(fail)


#: The one-line refusal of a multiclass model: the reference's algorithm is that of the binary logistic loss.
MULTICLASS_REFUSAL = (
    "trs-paper reproduces the reference's binary (logistic-loss) TRS step and does not take multiclass models; "
    "use solver 'trs' (or pgd, random) for C >= 3 classes"
)


class PaperTrustRegionAdversary(InnerMaximizer):
    """The reference implementation's TRS step, defect included (module docs): ``"trs-paper"``.

    Args:
        batch_size: the b of the reference's 1/b-scaled (batch-mean) derivatives; None: the number of rows
            passed (one mini-batch, as the training loop passes it). Only the 10⁻⁸ eigenvalue threshold sees it.
        eigensolver: ``"eigh"`` (default) or ``"eig"`` (the reference's call).
        max_iter: bisection halvings (the reference's 100); tol: its relative bracket width (10⁻⁸).
        structured: take the affine / one-hidden-layer MLP closed forms (as ``"trs"``); False: dense Hessian.
        backend: derivatives of other models (:func:`fastfair.derivatives.quadratic_model`); the Hessian is
            always formed densely here.

    ``extras``: ``"path"`` (of the quadratic model), ``"branch"`` (n,) int64 codes into :data:`BRANCHES`,
    ``"branches"`` (the names), ``"multiplier"`` (n,) λ of the unscaled model of -ℓ, ``"bisections"`` (n,),
    ``"predicted_increase"`` (n,) ∇ℓᵀδ + ½δᵀ∇²ℓδ (negative where the step lowers the model of the loss),
    ``"clean_loss"`` (n,), ``"certified"`` (n,) bool (interior-Newton rows: see module docs).
    """

    name = "trs-paper"

    def __init__(
        self,
        *,
        batch_size: int | None = None,
        eigensolver: str = "eigh",
        max_iter: int = PAPER_MAX_ITER,
        tol: float = PAPER_TOL,
        structured: bool = True,
        backend: str = "auto",
    ) -> None:
        self.batch_size = None if batch_size is None else check_positive_int("batch_size", batch_size)
        if eigensolver not in EIGENSOLVERS:
            raise FastfairError(f"unknown eigensolver {eigensolver!r}; choose one of {', '.join(EIGENSOLVERS)}")
        self.eigensolver = eigensolver
        self.max_iter = check_nonnegative_int("max_iter", max_iter)
        self.tol = check_positive_float("tol", tol)
        self.structured = check_bool("structured", structured)
        self.backend = check_backend(backend, QUADRATIC_BACKENDS)
        self._options = {
            "batch_size": self.batch_size,
            "eigensolver": eigensolver,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "structured": self.structured,
            "backend": backend,
        }

    def attack(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """x + δ only (the training loop's call): the same step as :meth:`perturb`, without diagnostics."""
        return self._solve(model, x, y, r)[0]

    def _perturb(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        x_adv, quad, res, g, H, p, scale = self._solve(model, x, y, r)
        with torch.no_grad():
            lam = res.multiplier / scale  # λ of the unscaled model: (H/b + λ_b I)p = -g/b  <=>  (H + bλ_b I)p = -g
            s = res.eigenvalues / scale
            kept = s.abs() > PAPER_DROP_TOL / scale
            hp = (H @ p.unsqueeze(-1)).squeeze(-1)
            lam_min = s.amin(dim=-1)
            if quad.basis is not None and quad.basis.shape[1] < x.shape[1]:
                lam_min = lam_min.clamp_max(0)  # the complement of the row space: eigenvalue 0 of H
            cert = TRSCertificate.of_step(
                p, lam, hp, g, r, lam_min=lam_min, hess_norm=s.abs().amax(dim=-1) if s.numel() else lam
            )
            predicted = -((g * p).sum(-1) + 0.5 * (p * hp).sum(-1))
            extras = {
                "path": quad.path,
                "branch": res.branch,
                "branches": BRANCHES,
                "multiplier": lam,
                "bisections": res.bisections,
                "kept_eigenvalues": kept.sum(-1),
                "predicted_increase": predicted,
                "clean_loss": quad.loss,
                "certified": cert.ok(max(PAPER_CERT_TOL, 1e4 * torch.finfo(x.dtype).eps)),
            }
        return InnerResult(
            x_adv=x_adv,
            loss=loss_at(model, x_adv, y),
            iterations=torch.ones(x.shape[0], dtype=torch.int64, device=x.device),
            certificate=cert,
            extras=extras,
        )

    def _solve(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor):
        if getattr(model, "n_classes", 2) > 2:
            raise FastfairError(MULTICLASS_REFUSAL)
        quad = quadratic_model(model, x, y, structured=self.structured, backend=self.backend)
        if models_multiclass(quad):  # a user's module with C outputs
            raise FastfairError(MULTICLASS_REFUSAL)
        n, d = x.shape
        k = d if quad.basis is None else quad.basis.shape[1]
        if k > MAX_DENSE_DIM:
            raise FastfairError(
                f"trs-paper decomposes a dense {k}x{k} Hessian per row, above its limit of {MAX_DENSE_DIM}; "
                "use solver 'trs' for this model"
            )
        neg = quad.neg()
        with torch.no_grad():
            g = neg.g.detach()
            H = neg.hessian().detach()
            H = 0.5 * (H + H.mT)
            # a packed batch holds M models' mini-batches of n/M rows each: b is one model's batch
            b = self.batch_size if self.batch_size is not None else max(n // getattr(model, "pack_size", 1), 1)
            scale = 1.0 / b
            res = solve_trs_paper(
                g * scale, H * scale, r, dim=d, max_iter=self.max_iter, tol=self.tol, eigensolver=self.eigensolver
            )
            p = project_to_ball(res.step, r)
            x_adv = (x + quad.lift(p)).detach()
        return x_adv, quad, res, g, H, p, scale
