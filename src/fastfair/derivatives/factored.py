r"""The one-hidden-layer network's quadratic model kept factored: rank one plus a congruence, never formed.

For f(x) = vᵀφ(Wx + b) + c and the logistic loss, in coordinates ``p`` that move the pre-activation by ``M p``
(``M = W`` in the input space itself, ``M = Rᵀ`` in the row space of W, see :mod:`.analytic`),

    ∇L = ℓ′ a,    ∇²L = ℓ″ a aᵀ + Mᵀ diag(ℓ′ v ⊙ φ″) M,    a = Mᵀ(v ⊙ φ′),

so one product with ∇²L costs two ``(n, h)×(h, k)`` products instead of an ``(n, k, k)`` matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["FactoredQuadratic", "dense_is_cheaper"]


@dataclass(frozen=True)
class FactoredQuadratic:
    r"""A batch of quadratic models kept in the factored form of a one-hidden-layer network's loss derivatives.

    Per row i (``n`` rows, ``k`` variables), with ``a`` (n, k), ``b``, ``c`` (n,), ``e`` (n, h) and one shared
    ``M`` (h, k) whose rows are ``M_l``:

        q(p) = b·aᵀp + ½ c·(aᵀp)² + ½ Σ_l e_l (M_l p)²,     i.e.   g = b a,   H = c a aᵀ + Mᵀ diag(e) M.

    For the MLP's loss (:func:`~fastfair.derivatives.analytic.mlp_factored`) ``a = Mᵀ(v ⊙ φ′)`` is ∇f,
    ``b = ℓ′``, ``c = ℓ″`` and ``e = ℓ′ v ⊙ φ″``. It is a :class:`fastfair.trs.QuadraticBatch`:

    * :meth:`gradient` ``∇q(p) = (b + c aᵀp) a + Mᵀ(e ⊙ Mp)`` -- two ``(n, h)×(h, k)`` products, O(n·h·k);
      :meth:`product` ``Hp``, the same without ``g``;
    * :meth:`curvature_bound` ``B ≥ -λ_min(H)``. ``-H = (-c) aaᵀ + Mᵀ diag(-e) M ⪯ (-c)₊ aaᵀ + Mᵀ diag((-e)₊) M``,
      and the PSD second term has ``λ_max ≤ min(‖M‖₂² maxₗ (-eₗ)₊, trace = Σₗ (-eₗ)₊ ‖M_l‖²)``, so

          B = (-c)₊ ‖a‖² + min(‖M‖₂² maxₗ (-eₗ)₊,  Σₗ (-eₗ)₊ ‖M_l‖²);

    * :meth:`hessian` / :meth:`rows` form ``H`` densely (``(n, k, k)``) when it is needed.

    :meth:`neg` is the model ``-q`` (to *maximise* the loss model, minimise ``-q``).
    """

    a: Tensor  #: (n, k)
    b: Tensor  #: (n,)
    c: Tensor  #: (n,)
    e: Tensor  #: (n, h)
    M: Tensor  #: (h, k), shared by the rows

    @property
    def g(self) -> Tensor:
        """``(n, k)`` the gradient at ``p = 0``: ``b a``."""
        return self.b.unsqueeze(-1) * self.a

    def gradient(self, p: Tensor) -> Tensor:
        """``(n, k)`` ``∇q(p) = g + Hp`` without forming ``H``."""
        curv = ((p @ self.M.T) * self.e) @ self.M
        return torch.addcmul(curv, (self.b + self.c * torch.linalg.vecdot(self.a, p)).unsqueeze(-1), self.a)

    def product(self, p: Tensor) -> Tensor:
        """``(n, k)`` ``Hp = c (aᵀp) a + Mᵀ(e ⊙ Mp)`` without forming ``H``."""
        curv = ((p @ self.M.T) * self.e) @ self.M
        return torch.addcmul(curv, (self.c * torch.linalg.vecdot(self.a, p)).unsqueeze(-1), self.a)

    def curvature_bound(self) -> Tensor:
        """``(n,)`` an upper bound on ``max(0, -λ_min(H))`` (class docs)."""
        neg_e = self.e.neg().clamp_min(0)
        spectral = torch.linalg.matrix_norm(self.M, ord=2).square() * neg_e.amax(-1)
        trace = neg_e @ self.M.square().sum(-1)
        rank_one = self.c.neg().clamp_min(0) * torch.linalg.vecdot(self.a, self.a)
        return rank_one + torch.minimum(spectral, trace)

    def hessian(self, index: Tensor | None = None) -> Tensor:
        """Dense ``H`` (``(n, k, k)``), or of the rows ``index`` only."""
        a, c, e = (self.a, self.c, self.e) if index is None else (self.a[index], self.c[index], self.e[index])
        k = self.M.shape[1]
        outer = (self.M.unsqueeze(-1) * self.M.unsqueeze(-2)).reshape(-1, k * k)  # row l: M_l M_lᵀ
        hess = (e @ outer).view(-1, k, k)
        return hess.add_((c.unsqueeze(-1) * a).unsqueeze(-1) * a.unsqueeze(-2))

    def rows(self, index: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(g, H)`` of the rows ``index`` (``None``: all rows), dense."""
        g = self.g if index is None else self.b[index].unsqueeze(-1) * self.a[index]
        return g, self.hessian(index)

    def neg(self) -> FactoredQuadratic:
        """The model ``-q``: ``b``, ``c`` and ``e`` change sign."""
        return FactoredQuadratic(self.a, self.b.neg(), self.c.neg(), self.e.neg(), self.M)

    def prefers_dense(self, count: int = 10) -> bool:
        """Whether about ``count`` products with ``H`` are cheaper through the dense ``(n, k, k)`` Hessian.

        Per row, ``count`` factored products cost about ``2·count·h·k`` multiply-adds; forming ``H`` costs
        ``h·k²`` and then ``count·k²`` (:func:`dense_is_cheaper`) -- e.g. dense for ``k ≤ 12`` at ``h = 16``: the
        input dimension of Adult (k = d = 5) but not the row space of a ``d = 100`` input (k = h = 16). Fewer,
        larger tensor operations also suit small batches.
        """
        h, k = self.M.shape
        return dense_is_cheaper(h, k, count)


def dense_is_cheaper(h: int, k: int, count: int = 10) -> bool:
    """``k(h + count) < 2·count·h``: forming the k×k Hessian of :class:`FactoredQuadratic` (``h·k²``) and then
    ``count`` dense products (``k²`` each) costs fewer multiply-adds than ``count`` factored ones (``2hk``)."""
    return k * (h + count) < 2 * count * h
