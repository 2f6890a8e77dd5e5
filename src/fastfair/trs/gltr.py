r"""The batched GLTR iteration with a curvature probe: the state machine behind :func:`fastfair.trs.solve_trs_krylov`.

The math (Lanczos from the gradient, the subspace TRS, the residual ``‖C u‖``, the probe and the injection of its
Ritz vector for the hard case, the leftover basis ``HV = VP + WᵀC``) is documented in :mod:`fastfair.trs.krylov`;
this module holds the per-row state and the steps. The linear algebra on lists of columns is in
:mod:`fastfair.trs.lanczos`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .certified import solve_trs
from .lanczos import (
    BREAKDOWN_ULPS,
    HVP,
    Index,
    checked_product,
    combine,
    dots,
    fast_norm,
    orthogonalise,
    pad_inert,
    put_column,
    safe_norm,
    scatter,
    take,
    unit_positive,
)

__all__ = ["GLTRIteration"]

_MAIN, _PROBE = 0, 1
_PROBE_NOT_STARTED, _PROBE_RUNNING, _PROBE_DONE = 0, 1, 2

#: per-row state: tensors whose first axis is the working rows, and lists of (w, d) columns (compacted together)
_ROW_TENSORS = (
    "rows", "gnorm", "r", "m", "P", "C", "used", "a",
    "u", "lam", "rho", "obj", "sub_hard",
    "l", "za", "zb", "z_next", "z_dead", "theta_z", "nu_z",
    "probe_state", "injected", "action",
)  # fmt: skip


class GLTRIteration:
    """State and steps of :func:`~fastfair.trs.krylov.solve_trs_krylov` (see that module's docs for the math).

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
        self.gnorm = fast_norm(grad)
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

    def run(self) -> GLTRIteration:
        """Iterate until every row has finished; the results are in the ``out_*`` attributes (indexed by row)."""
        if self.n:
            # the first basis vector, g/‖g‖ (a random vector where g = 0), is the expansion v = Wᵀa, a = [1]
            start = self.grad
            zero = self.gnorm == 0
            if bool(zero.any()):
                start = start.clone()
                start[zero] = self._random(int(zero.sum()))
            nrm = torch.where(zero, fast_norm(start), self.gnorm)
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
        return self

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
        Wk = take(self.W, ix)
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
        v = combine(a, Wk)
        h = a.clone()
        h[ar, j] += torch.where(a[ar, j] >= 0, 1.0, -1.0).to(f64)
        refl = torch.eye(B, dtype=f64, device=self.device) - 2 * h.unsqueeze(-1) * h.unsqueeze(-2) / (
            (h * h).sum(-1).view(-1, 1, 1)
        )
        Wh = []
        for s in range(B):
            ws = combine(refl[:, s, :], Wk)
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
        Vk = put_column(take(self.V, ix), m, v)
        slots = [s for s, ws in enumerate(Wh) if ws is not None]
        coef, f, nu = orthogonalise(hv, Vk + [Wh[s] for s in slots])
        hvn = torch.sqrt(nu * nu + (coef * coef).sum(-1))
        grow = (nu > BREAKDOWN_ULPS * self.eps * hvn) & (nu > 0)
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
        self.V = scatter(self.V, ix, Vk, self.rows.numel())
        self.W = scatter(self.W, ix, Wnew, self.rows.numel())
        self._solve_subspace(ix, m, P, Ch)

    def _solve_subspace(self, ix: Index, m: Tensor, P: Tensor, C: Tensor) -> None:
        """Exact TRS in the basis: ``min ‖g‖e₁ᵀu + ½uᵀPu, ‖u‖ ≤ r`` (padded to the longest row), ``ρ = ‖Cu‖``."""
        mm = int(m.max())
        Ps = pad_inert(P[:, :mm, :mm], m)
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
        Zk = put_column(take(self.Z, ix), ell, z)
        Vk = take(self.V, ix)
        coef, f, beta = orthogonalise(hz, Zk + Vk)  # the probe works on V's complement (module docs)
        hzn = torch.sqrt(beta * beta + (coef * coef).sum(-1))
        coef = coef[:, : len(Zk)]
        dead = (beta <= BREAKDOWN_ULPS * self.eps * hzn) | (beta == 0)
        za, zb = self.za[ix], self.zb[ix]
        za[ar, ell] = coef.gather(1, ell.unsqueeze(-1)).squeeze(-1)
        zb[ar, ell] = torch.where(dead, 0.0, beta)
        ell = ell + 1
        nxt = f.div_(torch.where(dead, 1.0, beta).to(f.dtype).unsqueeze(-1))
        if bool(dead.any()):
            nxt = torch.where(dead.unsqueeze(-1), 0.0, nxt)
        self.za[ix], self.zb[ix], self.l[ix] = za, zb, ell
        self.Z = scatter(self.Z, ix, Zk, self.rows.numel())
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
        evals, evecs = torch.linalg.eigh(pad_inert(T, ell))
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
            y = combine(s.to(self.dtype), [z[ii] for z in self.Z[: s.shape[1]]])
            ok = self._prepare_vector(ii, y)
            self.probe_state[ii] = _PROBE_DONE
            self.injected[ii] = ok
            bad = torch.zeros_like(inject)
            bad[ii] = ~ok
            inject = inject & ~bad
            fail = fail | bad
        if bool(go_main.any()):
            gi = go_main.nonzero().squeeze(1)
            self.a[gi] = unit_positive((self.C[gi] @ self.u[gi].unsqueeze(-1)).squeeze(-1))
        if bool(start_probe.any()):
            si: Index = slice(None) if bool(start_probe.all()) else start_probe.nonzero().squeeze(1)
            if self.z_next.shape[1] == 0:
                self.z_next = torch.zeros(self.rows.numel(), self.d, dtype=self.dtype, device=self.device)
            z0 = self._random(int(start_probe.sum()))
            Vs = take(self.V, si)
            for _ in range(2):  # start on the complement of the basis
                z0 = z0 - combine(dots(Vs, z0), Vs)
            nz = fast_norm(z0)
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
        Vk, Wk = take(self.V, ix), take(self.W, ix)
        for _ in range(2):
            y = y - combine(dots(Vk, y), Vk)
        aw = dots(Wk, y)
        out = y - combine(aw, Wk)
        for _ in range(2):  # out ⟂ V and W to working precision
            out = out - combine(dots(Vk, out), Vk)
            pw = dots(Wk, out)
            out = out - combine(pw, Wk)
            aw = aw + pw
        n_out = safe_norm(out).to(f64)
        aw = aw.to(f64)
        total = torch.sqrt(n_out * n_out + (aw * aw).sum(-1))
        ext = n_out > math.sqrt(self.eps) * total
        used = self.used[ix]
        if bool((ext & used.all(-1)).any()):
            self._add_slot()
            Wk, used = take(self.W, ix), self.used[ix]
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
        self.a[ix] = unit_positive(a)
        self.used[ix] = used
        self.W = scatter(self.W, ix, Wk, self.rows.numel())
        return ok

    # ---- finishing rows and compaction -------------------------------------------------------------------

    def _finish(self, finish: Tensor, converged: Tensor) -> None:
        every = bool(finish.all())
        fi: Index = slice(None) if every else finish.nonzero().squeeze(1)
        rows = self.rows[fi]
        m = self.m[fi]
        mm = int(m.max())
        u = self.u[fi][:, :mm]
        p = combine(u.to(self.dtype), take(self.V[:mm], fi))
        # the basis is orthonormal to working precision; put boundary steps at r(1 - 4 eps), inside the ball
        pnorm = fast_norm(p).to(self.dtype)
        r = self.radius[rows]
        shrink = torch.where(pnorm > r * (1 - 2 * self.eps), r * (1 - 4 * self.eps) / pnorm.clamp_min(1e-300), 1.0)
        p = p * shrink.unsqueeze(-1)
        P = self.P[fi][:, :mm, :mm]
        theta = torch.linalg.eigvalsh(pad_inert(P, m))[:, 0]
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
            return checked_product(self.op, x, x.shape)
        pos = rows if self.op_rows is None else torch.searchsorted(self.op_rows, rows)
        full = x.new_zeros(covered, self.d)
        full[pos] = x
        return checked_product(self.op, full, full.shape)[pos]

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

