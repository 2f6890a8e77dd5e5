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
* Operators with a ``restrict(index)`` method (e.g. :class:`fastfair.input_hvp.InputHessian`) are restricted
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

from fastfair.errors import FastfairError
from fastfair.trs import TRSCertificate, radius_tensor, solve_trs

__all__ = ["KrylovTRSResult", "solve_trs_krylov"]

HVP = Callable[[Tensor], Tensor]

#: Default cap on the basis size per row (Krylov vectors from g plus injected probe vectors), and on d.
DEFAULT_MAX_ITER = 100
#: Default number of curvature-probe Lanczos steps per row (capped at d). Each costs one product; see the
#: module docs for what the probe does and what it cannot do.
DEFAULT_PROBE_ITER = 10
#: A new Lanczos/leftover vector whose norm is below this many ulps of its product's norm is rounding noise:
#: the space is (numerically) invariant and the vector is dropped (breakdown).
_BREAKDOWN_ULPS = 8.0


# ----------------------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CertificateData:
    """What :meth:`KrylovTRSResult.certificate` needs (internal)."""

    grad: Tensor  # (n, d)
    hvp: HVP
    radius: Tensor  # (n,)
    min_ritz: Tensor  # (n,) smallest Ritz value of H seen (upper bound on λ_min(H))
    norm_estimate: Tensor  # (n,) largest |Ritz value| seen (lower bound on ‖H‖₂)


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
            if p.shape[0] == 0:
                hp = torch.zeros_like(p)
            else:
                hp = _checked_product(data.hvp, p, p.shape)
            resid = hp + lam.unsqueeze(-1) * p + data.grad
            pnorm = _norm(p)
            r = data.radius
            return TRSCertificate(
                stationarity=_norm(resid),
                complementarity=(lam * (r - pnorm)).abs(),
                feasibility=(pnorm - r).clamp_min(0),
                min_eigenvalue=data.min_ritz + lam,
                scale=_norm(data.grad) + (data.norm_estimate + lam) * r,
                radius=r,
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
    return _KrylovSolver(grad, hvp, r, max_iter, probe_iter, float(tol), seed).run()


# ----------------------------------------------------------------------------------------------------------
# The iteration
# ----------------------------------------------------------------------------------------------------------

_MAIN, _PROBE = 0, 1
_PROBE_NOT_STARTED, _PROBE_RUNNING, _PROBE_DONE = 0, 1, 2

#: per-row state: tensors whose first axis is the working rows, and lists of (w, d) columns (compacted together)
_ROW_TENSORS = (
    "rows", "gnorm", "r", "m", "P", "C", "used", "a",
    "u", "lam", "rho", "obj", "sub_hard",
    "l", "za", "zb", "z_next", "z_dead", "theta_z", "nu_z",
    "probe_state", "injected", "action",
)  # fmt: skip

Index = slice | Tensor


class _KrylovSolver:
    """State and steps of :func:`solve_trs_krylov` (internal; see the module docs for the math).

    Working rows (those still iterating) hold: the basis ``V`` (a list of ``(w, d)`` columns; row ``i`` uses the
    first ``m_i``, the others are zero there), ``P = VᵀHV`` (``(w, M, M)``, float64), the leftover slots ``W``
    (a list of ``(w, d)`` columns, ``used`` marks the non-zero ones) with ``C`` (``(w, B, M)``, float64) so that
    ``HV = VP + WᵀC``; the subspace solution ``u``, ``λ``, residual ``ρ = ‖Cu‖``; the probe's Lanczos vectors
    ``Z`` (list of columns, ``l`` valid per row), its tridiagonal (``za`` diagonal, ``zb`` off-diagonal), next
    vector and leftmost Ritz value ``θ_z``. Each step every working row takes exactly one action, a basis step
    (``_MAIN``, expansion ``v = Wᵀa``) or a probe step (``_PROBE``), and all of them share one ``hvp`` call.

    Vectors are stored as lists of ``(w, d)`` columns rather than ``(w, M, d)`` blocks: appending a column costs
    nothing, no padded capacity is ever multiplied, and the row-wise dot products and updates below are
    single memory-bound passes (batched ``(M×d)·(d×1)`` products are several times slower on CPU).
    """

    def __init__(self, grad: Tensor, hvp: HVP, r: Tensor, max_iter: int, probe_iter: int, tol: float, seed: int):
        n, d = grad.shape
        dev, dt = grad.device, grad.dtype
        f64 = torch.float64
        self.n, self.d, self.dtype, self.device = n, d, dt, dev
        self.eps = torch.finfo(dt).eps
        self.hvp, self.radius, self.grad = hvp, r, grad
        self.max_iter, self.probe_iter, self.tol = max_iter, probe_iter, tol
        self.gen = torch.Generator(device=dev)
        self.gen.manual_seed(seed)
        # outputs, indexed by original row
        self.out_step = torch.zeros_like(grad)
        self.out_lam = torch.zeros(n, dtype=f64, device=dev)
        self.out_obj = torch.zeros(n, dtype=f64, device=dev)
        self.out_res = torch.zeros(n, dtype=f64, device=dev)
        self.out_conv = torch.zeros(n, dtype=torch.bool, device=dev)
        self.out_hard = torch.zeros(n, dtype=torch.bool, device=dev)
        self.out_iter = torch.zeros(n, dtype=torch.int64, device=dev)
        self.out_dim = torch.zeros(n, dtype=torch.int64, device=dev)
        self.out_probe = torch.zeros(n, dtype=torch.int64, device=dev)
        self.out_theta = torch.full((n,), math.inf, dtype=f64, device=dev)
        self.out_nu = torch.zeros(n, dtype=f64, device=dev)
        # the operator and the original rows it covers (None: all n)
        self.op: HVP = hvp
        self.op_rows: Tensor | None = None
        # working state
        M, L = 4, 4
        self.rows = torch.arange(n, device=dev)
        self.gnorm = _fast_norm(grad)
        self.r = r.to(f64)
        self.V: list[Tensor] = []
        self.W: list[Tensor] = []
        self.Z: list[Tensor] = []
        self.m = torch.zeros(n, dtype=torch.int64, device=dev)
        self.P = torch.zeros(n, M, M, dtype=f64, device=dev)
        self.C = torch.zeros(n, 1, M, dtype=f64, device=dev)
        self.used = torch.zeros(n, 1, dtype=torch.bool, device=dev)
        self.a = torch.zeros(n, 1, dtype=f64, device=dev)
        self.u = torch.zeros(n, M, dtype=f64, device=dev)
        self.lam = torch.zeros(n, dtype=f64, device=dev)
        self.rho = torch.zeros(n, dtype=f64, device=dev)
        self.obj = torch.zeros(n, dtype=f64, device=dev)
        self.sub_hard = torch.zeros(n, dtype=torch.bool, device=dev)
        self.l = torch.zeros(n, dtype=torch.int64, device=dev)
        self.za = torch.zeros(n, L, dtype=f64, device=dev)
        self.zb = torch.zeros(n, L, dtype=f64, device=dev)
        self.z_next = torch.zeros(n, 0, dtype=dt, device=dev)  # (w, d) once a probe starts
        self.z_dead = torch.zeros(n, dtype=torch.bool, device=dev)
        self.theta_z = torch.full((n,), math.inf, dtype=f64, device=dev)
        self.nu_z = torch.zeros(n, dtype=f64, device=dev)
        self.probe_state = torch.zeros(n, dtype=torch.int8, device=dev)
        self.injected = torch.zeros(n, dtype=torch.bool, device=dev)
        self.action = torch.zeros(n, dtype=torch.int8, device=dev)

    # ---- driver ------------------------------------------------------------------------------------------

    def run(self) -> KrylovTRSResult:
        if self.n:
            # the first basis vector, g/‖g‖ (a random vector where g = 0), is the expansion v = Wᵀa, a = [1]
            start = self.grad
            zero = self.gnorm == 0
            if bool(zero.any()):
                start = start.clone()
                start[zero] = self._random(int(zero.sum()))
            nrm = torch.where(zero, _fast_norm(start), self.gnorm)
            if bool(torch.isfinite(nrm.to(self.dtype)).all()):
                unit = start / nrm.to(self.dtype).unsqueeze(-1)
            else:  # ‖g‖ beyond the dtype's range (entries are not): divide in two stages
                big = start.abs().amax(-1, keepdim=True)
                unit = (start / big) / (nrm.unsqueeze(-1) / big.to(nrm.dtype)).to(self.dtype)
            self.W = [unit]
            self.used[:, 0] = True
            self.a[:, 0] = 1.0
        while self.rows.numel():
            self._step()
        dt = self.dtype
        data = _CertificateData(
            grad=self.grad,
            hvp=self.hvp,
            radius=self.radius,
            min_ritz=self.out_theta.to(dt),
            norm_estimate=self.out_nu.to(dt),
        )
        return KrylovTRSResult(
            step=self.out_step,
            multiplier=self.out_lam.to(dt),
            objective=self.out_obj.to(dt),
            converged=self.out_conv,
            hard_case=self.out_hard,
            residual=self.out_res.to(dt),
            iterations=self.out_iter,
            krylov_dim=self.out_dim,
            probe_steps=self.out_probe,
            _data=data,
        )

    def _step(self) -> None:
        main = self.action == _MAIN
        w = self.rows.numel()
        n_main = int(main.sum())
        ix_main: Index = slice(None) if n_main == w else main.nonzero().squeeze(1)
        ix_probe: Index = slice(None) if n_main == 0 else (~main).nonzero().squeeze(1)
        if n_main:
            self._ensure_basis_capacity(int(self.m[ix_main].max()) + 1)
            v, pre = self._main_pre(ix_main)
        if n_main < w:
            self._ensure_probe_capacity(int(self.l[ix_probe].max()) + 1)
            z = self.z_next[ix_probe]
        if n_main == w:
            x = v
        elif n_main == 0:
            x = z
        else:
            x = torch.empty(w, self.d, dtype=self.dtype, device=self.device)
            x[ix_main] = v
            x[ix_probe] = z
        hx = self._apply(x)
        if n_main:
            self._main_post(ix_main, v, hx if n_main == w else hx[ix_main], pre)
        if n_main < w:
            self._probe_post(ix_probe, z, hx if n_main == 0 else hx[ix_probe])
        self._decide(main)

    # ---- one basis (GLTR) step ---------------------------------------------------------------------------

    def _main_pre(self, ix: Index) -> tuple[Tensor, tuple]:
        """The expansion ``v = Wᵀa`` and the leftover slots once ``v`` is in the basis (module docs).

        A Householder reflection ``R = I - 2hhᵀ/hᵀh``, ``h = a + e_j`` (``j = argmax|a|``, ``a_j > 0`` by the sign
        convention of ``a``), has ``Ra = -e_j``: the reflected slots ``RW`` span the same space, with slot ``j``
        equal to ``-v``. Dropping it leaves ``(I - vvᵀ)WᵀC``, the leftover of the old columns once ``v`` joins the
        basis, and frees slot ``j`` for the leftover of ``Hv``. ``h`` vanishes where ``a`` does (free slots stay
        free). With one slot (plain Lanczos) ``a = [1]``, ``v`` is the slot itself and nothing is left.
        """
        f64 = torch.float64
        a, C, used = self.a[ix], self.C[ix], self.used[ix].clone()
        Wk = _take(self.W, ix)
        k, B = a.shape
        ar = torch.arange(k, device=self.device)
        off = torch.einsum("kb,kbm->km", a, C)  # Vᵀ H v = (VP + WᵀC)ᵀ v = Cᵀa (coupling to the basis, by symmetry)
        j = a.abs().argmax(-1)
        if B == 1:
            v = Wk[0]
            Wh: list[Tensor | None] = [None]
            Ch = torch.zeros_like(C)
            used[:] = False
            return v, (off, j, Wh, Ch, used)
        v = _combine(a, Wk)
        h = a.clone()
        h[ar, j] += torch.where(a[ar, j] >= 0, 1.0, -1.0).to(f64)
        refl = torch.eye(B, dtype=f64, device=self.device) - 2 * h.unsqueeze(-1) * h.unsqueeze(-2) / (
            (h * h).sum(-1).view(-1, 1, 1)
        )
        Wh = []
        for s in range(B):
            ws = _combine(refl[:, s, :], Wk)
            Wh.append(torch.where((j == s).unsqueeze(-1), 0.0, ws))
        Ch = refl @ C
        Ch[ar, j] = 0
        used[ar, j] = False
        return v, (off, j, Wh, Ch, used)

    def _main_post(self, ix: Index, v: Tensor, hv: Tensor, pre: tuple) -> None:
        """Add ``v`` to the basis with its product ``hv = Hv``: ``P``'s new row/column, the new leftover, ``C``."""
        off, j, Wh, Ch, used = pre
        m = self.m[ix]
        k = m.shape[0]
        ar = torch.arange(k, device=self.device)
        Vk = _put_column(_take(self.V, ix), m, v)
        slots = [s for s, ws in enumerate(Wh) if ws is not None]
        coef, f, nu = _orthogonalise(hv, Vk + [Wh[s] for s in slots])
        hvn = torch.sqrt(nu * nu + (coef * coef).sum(-1))
        grow = (nu > _BREAKDOWN_ULPS * self.eps * hvn) & (nu > 0)
        P = self.P[ix]
        P[ar, m, :] = off
        P[ar, :, m] = off
        P[ar, m, m] = coef.gather(1, m.unsqueeze(-1)).squeeze(-1)
        for i, s in enumerate(slots):
            Ch[ar, s, m] = coef[:, len(Vk) + i]
        Ch[ar, j, m] = torch.where(grow, nu, 0.0)
        used[ar, j] = grow
        fresh = f.div_(torch.where(grow, nu, 1.0).to(f.dtype).unsqueeze(-1))
        if not bool(grow.all()):
            fresh = torch.where(grow.unsqueeze(-1), fresh, 0.0)
        if len(Wh) == 1:
            Wnew = [fresh]
        else:
            Wnew = [torch.where((j == s).unsqueeze(-1), fresh, ws) for s, ws in enumerate(Wh)]  # type: ignore[arg-type]
        m = m + 1
        self.m[ix] = m
        self.P[ix] = P
        self.C[ix] = Ch
        self.used[ix] = used
        self.V = _scatter(self.V, ix, Vk, self.rows.numel())
        self.W = _scatter(self.W, ix, Wnew, self.rows.numel())
        self._solve_subspace(ix, m, P, Ch)

    def _solve_subspace(self, ix: Index, m: Tensor, P: Tensor, C: Tensor) -> None:
        """Exact TRS in the basis: ``min ‖g‖e₁ᵀu + ½uᵀPu, ‖u‖ ≤ r`` (padded to the longest row), ``ρ = ‖Cu‖``."""
        mm = int(m.max())
        Ps = _pad_inert(P[:, :mm, :mm], m)
        c = torch.zeros(Ps.shape[0], mm, dtype=torch.float64, device=self.device)
        c[:, 0] = self.gnorm[ix]  # V's first column is g/‖g‖ (or a random vector where g = 0)
        res = solve_trs(c, Ps, self.r[ix])
        valid = torch.arange(mm, device=self.device) < m.unsqueeze(-1)
        u = torch.zeros(Ps.shape[0], self.u.shape[1], dtype=torch.float64, device=self.device)
        u[:, :mm] = res.step * valid
        self.u[ix] = u
        self.lam[ix] = res.multiplier
        self.obj[ix] = res.objective
        self.sub_hard[ix] = res.hard_case
        self.rho[ix] = torch.linalg.vector_norm((C[:, :, :mm] @ u[:, :mm].unsqueeze(-1)).squeeze(-1), dim=-1)

    # ---- one probe (plain Lanczos from a random start) step ----------------------------------------------

    def _probe_post(self, ix: Index, z: Tensor, hz: Tensor) -> None:
        """One Lanczos step of the probe, fully reorthogonalised; leftmost Ritz value ``θ_z`` of ``T_z``."""
        ell = self.l[ix]
        k = ell.shape[0]
        ar = torch.arange(k, device=self.device)
        Zk = _put_column(_take(self.Z, ix), ell, z)
        Vk = _take(self.V, ix)
        coef, f, beta = _orthogonalise(hz, Zk + Vk)  # the probe works on V's complement (module docs)
        hzn = torch.sqrt(beta * beta + (coef * coef).sum(-1))
        coef = coef[:, : len(Zk)]
        dead = (beta <= _BREAKDOWN_ULPS * self.eps * hzn) | (beta == 0)
        za, zb = self.za[ix], self.zb[ix]
        za[ar, ell] = coef.gather(1, ell.unsqueeze(-1)).squeeze(-1)
        zb[ar, ell] = torch.where(dead, 0.0, beta)
        ell = ell + 1
        nxt = f.div_(torch.where(dead, 1.0, beta).to(f.dtype).unsqueeze(-1))
        if bool(dead.any()):
            nxt = torch.where(dead.unsqueeze(-1), 0.0, nxt)
        self.za[ix], self.zb[ix], self.l[ix] = za, zb, ell
        self.Z = _scatter(self.Z, ix, Zk, self.rows.numel())
        if isinstance(ix, slice):
            self.z_next = nxt  # a new tensor: the old one is now a column of Z (never written in place)
        else:
            self.z_next[ix] = nxt
        self.z_dead[ix] = dead
        theta, _ = self._probe_ritz(ix)
        self.theta_z[ix] = theta
        valid = torch.arange(za.shape[1], device=self.device) < ell.unsqueeze(-1)
        self.nu_z[ix] = torch.maximum(theta.abs(), (za.abs() * valid).amax(-1))

    def _probe_ritz(self, ix: Index) -> tuple[Tensor, Tensor]:
        """Leftmost Ritz value and its eigenvector (in the probe basis) of the probe's tridiagonal ``T_z``."""
        ell = self.l[ix]
        mm = int(ell.max())
        za, zb = self.za[ix][:, :mm], self.zb[ix][:, : mm - 1]
        zb = zb * (torch.arange(mm - 1, device=self.device) < (ell - 1).unsqueeze(-1))  # β_l couples to z_next
        T = torch.diag_embed(za) + torch.diag_embed(zb, 1) + torch.diag_embed(zb, -1)
        evals, evecs = torch.linalg.eigh(_pad_inert(T, ell))
        return evals[:, 0], evecs[:, :, 0]

    # ---- decisions ---------------------------------------------------------------------------------------

    def _decide(self, was_main: Tensor) -> None:
        """Per row: next action (basis step, probe step), injection of a probe Ritz vector, or finish."""
        was_probe = ~was_main
        tol = self.tol
        whole = self.m >= self.d  # the basis spans everything: the subspace solution is exact (up to rounding)
        stat_ok = (self.rho <= tol * (self.gnorm + self.lam * self.r)) | whole
        at_cap = self.m >= self.max_iter
        nu = torch.maximum(self.P.diagonal(dim1=-2, dim2=-1).abs().amax(-1), self.nu_z)
        tol_c = tol * (self.gnorm / self.r + self.lam + nu)
        neg = was_probe & (self.theta_z < -self.lam - tol_c)
        probe_over = was_probe & ~neg & ((self.l >= self.probe_iter) | self.z_dead)
        go_main = was_main & ~stat_ok & ~at_cap
        fail = was_main & ~stat_ok & at_cap
        start_probe = was_main & stat_ok & (self.probe_state == _PROBE_NOT_STARTED) & ~whole
        if self.probe_iter == 0:
            start_probe = torch.zeros_like(start_probe)
        done = (was_main & stat_ok & ~start_probe) | probe_over
        # negative curvature below -λ found by the probe: inject its Ritz vector (needs room in the basis)
        inject = neg & ~at_cap
        fail = fail | (neg & at_cap)
        if bool(inject.any()):
            ii = inject.nonzero().squeeze(1)
            _, s = self._probe_ritz(ii)
            y = _combine(s.to(self.dtype), [z[ii] for z in self.Z[: s.shape[1]]])
            ok = self._prepare_vector(ii, y)
            self.probe_state[ii] = _PROBE_DONE
            self.injected[ii] = ok
            bad = torch.zeros_like(inject)
            bad[ii] = ~ok
            inject = inject & ~bad
            fail = fail | bad
        if bool(go_main.any()):
            gi = go_main.nonzero().squeeze(1)
            self.a[gi] = _unit_positive((self.C[gi] @ self.u[gi].unsqueeze(-1)).squeeze(-1))
        if bool(start_probe.any()):
            si: Index = slice(None) if bool(start_probe.all()) else start_probe.nonzero().squeeze(1)
            if self.z_next.shape[1] == 0:
                self.z_next = torch.zeros(self.rows.numel(), self.d, dtype=self.dtype, device=self.device)
            z0 = self._random(int(start_probe.sum()))
            Vs = _take(self.V, si)
            for _ in range(2):  # start on the complement of the basis
                z0 = z0 - _combine(_dots(Vs, z0), Vs)
            nz = _fast_norm(z0)
            self.z_next[si] = z0 / torch.where(nz > 0, nz, 1.0).to(self.dtype).unsqueeze(-1)
            self.z_dead[si] = nz == 0
            self.probe_state[si] = _PROBE_RUNNING
        self.action = torch.where(go_main | inject, _MAIN, _PROBE).to(torch.int8)
        self.probe_state = torch.where(probe_over, _PROBE_DONE, self.probe_state).to(torch.int8)
        finish = done | fail
        if bool(finish.any()):
            self._finish(finish, converged=done)

    def _prepare_vector(self, ix: Tensor, y: Tensor) -> Tensor:
        """Set up the expansion ``v ∝ (I - VVᵀ) y`` as ``v = Wᵀa``: its part outside ``span(V, W)`` goes to a free
        leftover slot (with ``C = 0`` there: it is nobody's leftover). Returns ``(k,)`` bool: done (False where
        ``y`` lies in ``span(V)``)."""
        f64 = torch.float64
        Vk, Wk = _take(self.V, ix), _take(self.W, ix)
        for _ in range(2):
            y = y - _combine(_dots(Vk, y), Vk)
        aw = _dots(Wk, y)
        out = y - _combine(aw, Wk)
        for _ in range(2):  # out ⟂ V and W to working precision
            out = out - _combine(_dots(Vk, out), Vk)
            pw = _dots(Wk, out)
            out = out - _combine(pw, Wk)
            aw = aw + pw
        n_out = _norm(out).to(f64)
        aw = aw.to(f64)
        total = torch.sqrt(n_out * n_out + (aw * aw).sum(-1))
        ext = n_out > math.sqrt(self.eps) * total
        used = self.used[ix]
        if bool((ext & used.all(-1)).any()):
            self._add_slot()
            Wk, used = _take(self.W, ix), self.used[ix]
            aw = torch.cat([aw, aw.new_zeros(aw.shape[0], 1)], dim=1)
        used = used.clone()
        slot = (~used).to(torch.int8).argmax(-1)  # first free slot
        a = aw.clone()
        if bool(ext.any()):
            unit = out / torch.where(ext, n_out, 1.0).to(out.dtype).unsqueeze(-1)
            for s in range(len(Wk)):
                put = ext & (slot == s)
                if bool(put.any()):
                    Wk[s] = torch.where(put.unsqueeze(-1), unit, Wk[s])
            ei = ext.nonzero().squeeze(1)
            used[ei, slot[ei]] = True
            a[ei, slot[ei]] = n_out[ei]
        ok = torch.linalg.vector_norm(a, dim=-1) > 0
        self.a[ix] = _unit_positive(a)
        self.used[ix] = used
        self.W = _scatter(self.W, ix, Wk, self.rows.numel())
        return ok

    # ---- finishing rows and compaction -------------------------------------------------------------------

    def _finish(self, finish: Tensor, converged: Tensor) -> None:
        every = bool(finish.all())
        fi: Index = slice(None) if every else finish.nonzero().squeeze(1)
        rows = self.rows[fi]
        m = self.m[fi]
        mm = int(m.max())
        u = self.u[fi][:, :mm]
        p = _combine(u.to(self.dtype), _take(self.V[:mm], fi))
        # the basis is orthonormal to working precision; put boundary steps at r(1 - 4 eps), inside the ball
        pnorm = _fast_norm(p).to(self.dtype)
        r = self.radius[rows]
        shrink = torch.where(pnorm > r * (1 - 2 * self.eps), r * (1 - 4 * self.eps) / pnorm.clamp_min(1e-300), 1.0)
        p = p * shrink.unsqueeze(-1)
        P = self.P[fi][:, :mm, :mm]
        theta = torch.linalg.eigvalsh(_pad_inert(P, m))[:, 0]
        nu = torch.linalg.eigvalsh(P).abs().amax(-1)  # zero padding does not change the largest |eigenvalue|
        self.out_step[rows] = p
        self.out_lam[rows] = self.lam[fi]
        self.out_obj[rows] = self.obj[fi]
        self.out_res[rows] = self.rho[fi]
        self.out_conv[rows] = converged[fi]
        self.out_hard[rows] = self.injected[fi] | self.sub_hard[fi]
        self.out_iter[rows] = m + self.l[fi]
        self.out_dim[rows] = m
        self.out_probe[rows] = self.l[fi]
        self.out_theta[rows] = torch.minimum(theta, self.theta_z[fi])
        self.out_nu[rows] = torch.maximum(nu, self.nu_z[fi])
        if every:
            self.rows = self.rows[:0]
            return
        keep = (~finish).nonzero().squeeze(1)
        for name in _ROW_TENSORS:
            setattr(self, name, getattr(self, name)[keep])
        m_left = int(self.m.max()) if keep.numel() else 0
        l_left = int(self.l.max()) if keep.numel() else 0
        self.V = [c[keep] for c in self.V[:m_left]]
        self.Z = [c[keep] for c in self.Z[:l_left]]
        self.W = [c[keep] for c in self.W]
        self._maybe_restrict()

    def _maybe_restrict(self) -> None:
        restrict = getattr(self.hvp, "restrict", None)
        covered = self.n if self.op_rows is None else self.op_rows.numel()
        w = self.rows.numel()
        if callable(restrict) and 0 < w <= covered // 2:
            self.op = restrict(self.rows.clone())
            self.op_rows = self.rows.clone()

    def _apply(self, x: Tensor) -> Tensor:
        """``H`` applied to the working rows' vectors ``x`` through the (possibly restricted) operator."""
        rows = self.rows
        covered = self.n if self.op_rows is None else self.op_rows.numel()
        if rows.numel() == covered:
            return _checked_product(self.op, x, x.shape)
        pos = rows if self.op_rows is None else torch.searchsorted(self.op_rows, rows)
        full = x.new_zeros(covered, self.d)
        full[pos] = x
        return _checked_product(self.op, full, full.shape)[pos]

    # ---- storage -----------------------------------------------------------------------------------------

    def _ensure_basis_capacity(self, need: int) -> None:
        M = self.P.shape[1]
        if need <= M:
            return
        new = max(need, 2 * M)
        w = self.P.shape[0]
        P = self.P.new_zeros(w, new, new)
        P[:, :M, :M] = self.P
        self.P = P
        self.C = torch.cat([self.C, self.C.new_zeros(w, self.C.shape[1], new - M)], dim=2)
        self.u = torch.cat([self.u, self.u.new_zeros(w, new - M)], dim=1)

    def _ensure_probe_capacity(self, need: int) -> None:
        L = self.za.shape[1]
        if need <= L:
            return
        new = max(need, 2 * L)
        w = self.za.shape[0]
        self.za = torch.cat([self.za, self.za.new_zeros(w, new - L)], dim=1)
        self.zb = torch.cat([self.zb, self.zb.new_zeros(w, new - L)], dim=1)

    def _add_slot(self) -> None:
        w = self.used.shape[0]
        self.W.append(torch.zeros(w, self.d, dtype=self.dtype, device=self.device))
        self.C = torch.cat([self.C, self.C.new_zeros(w, 1, self.C.shape[2])], dim=1)
        self.used = torch.cat([self.used, self.used.new_zeros(w, 1)], dim=1)
        self.a = torch.cat([self.a, self.a.new_zeros(w, 1)], dim=1)

    def _random(self, k: int) -> Tensor:
        return torch.randn(k, self.d, generator=self.gen, device=self.device, dtype=self.dtype)


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------


def _take(cols: list[Tensor], ix: Index) -> list[Tensor]:
    """The rows ``ix`` of every column (views when ``ix`` is ``slice(None)``)."""
    return list(cols) if isinstance(ix, slice) else [c[ix] for c in cols]


def _scatter(cols: list[Tensor], ix: Index, new: list[Tensor], w: int) -> list[Tensor]:
    """Write the rows ``ix`` of the columns ``new`` into ``cols`` (columns beyond ``len(cols)`` start at zero)."""
    if isinstance(ix, slice):
        return new
    out = list(cols)
    for j, c in enumerate(new):
        if j == len(out):
            out.append(c.new_zeros(w, c.shape[1]))
        out[j].index_copy_(0, ix, c)  # columns are never shared between live lists: in place is safe
    return out


def _put_column(cols: list[Tensor], index: Tensor, x: Tensor) -> list[Tensor]:
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


def _dots(cols: list[Tensor], x: Tensor) -> Tensor:
    """``(w, len(cols))``: the row-wise dot products of ``x`` with every column."""
    if not cols:
        return x.new_zeros(x.shape[0], 0)
    return torch.stack([torch.linalg.vecdot(c, x) for c in cols], dim=-1)


def _combine(coef: Tensor, cols: list[Tensor]) -> Tensor:
    """``Σ_j coef[:, j] · cols[j]`` (``(w, d)``); ``coef`` is cast to the columns' dtype."""
    coef = coef.to(cols[0].dtype)
    out = cols[0] * coef[:, :1]
    for j in range(1, len(cols)):
        out.addcmul_(coef[:, j : j + 1], cols[j])
    return out


def _orthogonalise(x: Tensor, cols: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Classical Gram-Schmidt of ``x`` against orthonormal ``cols``, repeated once where the first pass lost more
    than half of ``‖x‖²`` (the Daniel-Gragg-Kaufman-Stewart test with η = 1/√2: then the result is orthogonal to
    working precision). Returns ``(coefficients (w, k) float64, remainder (w, d), ‖remainder‖ float64)``."""
    coef = _dots(cols, x)
    if not cols:
        f = x.clone()
    for j, c in enumerate(cols):
        if j == 0:
            f = torch.addcmul(x, coef[:, :1], c, value=-1)
        else:
            f.addcmul_(coef[:, j : j + 1], c, value=-1)
    coef = coef.to(torch.float64)
    nu = _fast_norm(f)
    if cols and bool((nu * nu < (coef * coef).sum(-1)).any()):
        again = _dots(cols, f)
        for j, c in enumerate(cols):
            f.addcmul_(again[:, j : j + 1], c, value=-1)
        coef = coef + again.to(torch.float64)
        nu = _fast_norm(f)
    return coef, f, nu


def _fast_norm(x: Tensor) -> Tensor:
    """Row norms in float64: one pass, with the overflow-safe scaled norm only where the plain one overflows."""
    nrm = torch.linalg.vector_norm(x, dim=-1)
    if not bool(torch.isfinite(nrm).all()):
        nrm = _norm(x.to(torch.float64))
    return nrm.to(torch.float64)


def _unit_positive(a: Tensor) -> Tensor:
    """``a/‖a‖`` per row, signed so that its largest entry is positive (zero rows stay zero)."""
    nrm = torch.linalg.vector_norm(a, dim=-1, keepdim=True)
    j = a.abs().argmax(-1, keepdim=True)
    sign = torch.where(a.gather(-1, j) < 0, -1.0, 1.0).to(a.dtype)
    return a * sign / torch.where(nrm > 0, nrm, 1.0)


def _pad_inert(A: Tensor, m: Tensor) -> Tensor:
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


def _checked_product(hvp: HVP, x: Tensor, shape: torch.Size) -> Tensor:
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


def _norm(x: Tensor) -> Tensor:
    """Euclidean norm over the last axis, scaled by the largest entry so that it cannot overflow."""
    mx = x.abs().amax(-1)
    safe = torch.where((mx > 0) & torch.isfinite(mx), mx, torch.ones_like(mx))
    return torch.linalg.vector_norm(x / safe.unsqueeze(-1), dim=-1) * safe


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
