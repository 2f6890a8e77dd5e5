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
