"""The dense quadratic model of the loss: an explicit gradient and Hessian per row, in the input space or in the
coordinates of an orthonormal basis U (d, k) of a subspace that holds both (then ∇L = U g̃ and ∇²L = U H̃ Uᵀ).

It implements :class:`fastfair.derivatives.QuadraticModel` and, through :class:`fastfair.trs.DenseQuadratic`,
:class:`fastfair.trs.QuadraticBatch`: products H v are one batched matrix-vector product, O(n·k²).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..trs import DenseQuadratic, QuadraticBatch


class DenseModel:
    """``path = "dense"``: explicit ``g`` (n, d) and ``H`` (n, d, d); ``multiclass`` as for every model."""

    path = "dense"
    basis = None

    def __init__(self, g: Tensor, H: Tensor, loss: Tensor, multiclass: bool = False) -> None:
        self._g, self.H, self._loss, self.multiclass = g, H, loss, multiclass

    @property
    def g(self) -> Tensor:
        return self._g

    @property
    def loss(self) -> Tensor:
        return self._loss

    def hvp(self, V: Tensor) -> Tensor:
        return torch.bmm(self.H, V.unsqueeze(-1)).squeeze(-1)

    def hessian(self) -> Tensor:
        return self.H

    def lift(self, p: Tensor) -> Tensor:
        return p

    def neg(self) -> DenseModel:
        return DenseModel(self._g.neg(), self.H.neg(), self._loss, self.multiclass)

    def operator(self) -> QuadraticBatch:
        """The model for :func:`fastfair.trs.solve_trs_operator` (:class:`~fastfair.trs.DenseQuadratic`)."""
        return DenseQuadratic(self._g, self.H)

    # QuadraticBatch
    def gradient(self, p: Tensor) -> Tensor:
        return self.operator().gradient(p)

    def curvature_bound(self) -> Tensor:
        return self.operator().curvature_bound()

    def rows(self, index: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.operator().rows(index)
