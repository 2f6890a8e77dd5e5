"""Inner maximisers for a packed batch: M models' mini-batches of k rows each, model m owning rows m·k .. m·k+k-1.

Most solvers run unchanged on a packed model, because every quantity they use is per row:

* ``pgd`` (tuned): per-row gradients and steps; its random start draws block m from model m's generator
  (:class:`~fastfair.inner.base.SeededRandomness` with one seed per model);
* ``random``: the same per-model draw;
* ``trs`` / ``trs-paper`` on affine models: the closed form takes one weight vector per row
  (:class:`~fastfair.derivatives.RankOneModel` with w (n, d)); ``trs-paper``'s 1/b scaling uses one model's
  batch size b = n/M.

``pgd-paper`` needs the model of each row where it evaluates a subset of the batch, and its batch-shared mode
couples the rows of one model: :class:`PackedPaperPGD` runs

* per sample: the same iteration, with the packed model restricted to the rows still iterating
  (:meth:`fastfair.packing.models.PackedModel.view`);
* ``batch_shared``: one problem per model, F_m(δ) = 1/k Σ_{i in block m} ℓᵢ(xᵢ + δᵢ), each with its own step size,
  line search (t_m ← t_m/1.5 while F_m(δ + t_m∇F_m) ≤ F_m(δ), at most 40 times), off-by-one stop, projection
  and stopping test ‖Δδ_m‖_F < tol -- all models advanced together, a model that has stopped keeping its δ_m.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..inner import InnerMaximizer, make_inner
from ..inner.base import InnerResult, detached_forward, loss_and_grad, loss_at
from ..inner.pgd import PaperPGDAdversary, _project_rows_as_reference
from .models import PackedModel


class PackedPaperPGD(PaperPGDAdversary):
    """``pgd-paper`` on a packed batch (module docs); on a plain model it is :class:`PaperPGDAdversary`."""

    def _perturb(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        if self.batch_shared and isinstance(model, PackedModel):
            return self._perturb_segments(model, x, y, r)
        return super()._perturb(model, x, y, r)

    def _rows_of(self, model: nn.Module, x: Tensor) -> Any:
        """The packed model restricted to rows (:meth:`fastfair.packing.models.PackedModel.view`)."""
        if not isinstance(model, PackedModel):
            return None
        return model.view(model.owners(x.shape[0], x.device))

    def _perturb_segments(self, model: PackedModel, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        """``batch_shared`` per model: the reference's whole-batch ascent on each model's block (module docs)."""
        n, d = x.shape
        M = model.pack_size
        k = n // M
        owner = model.owners(n, x.device)
        forward = detached_forward(model)
        delta = torch.zeros_like(x)
        step = torch.full((M,), self.step, dtype=torch.float64, device=x.device)  # a Python float alone: float64
        start_loss = loss_at(model, x, y)
        iterations = torch.zeros(M, dtype=torch.int64, device=x.device)
        converged = torch.zeros(M, dtype=torch.bool, device=x.device)
        active = torch.ones(M, dtype=torch.bool, device=x.device)
        for _ in range(self.max_iter):
            if not bool(active.any()):
                break
            loss, grad = loss_and_grad(forward, x + delta, y)
            value = loss.reshape(M, k).mean(1)
            grad = grad / k  # rows of ∇F_m: ∇ℓᵢ/k
            cand = delta + step.to(x.dtype)[owner, None] * grad
            reductions = torch.zeros(M, dtype=torch.int64, device=x.device)
            searching = active.clone()
            while True:
                trying = searching & (reductions < self.max_backtracks)
                if not bool(trying.any()):
                    break
                improved = loss_at(model, x + cand, y).reshape(M, k).mean(1) > value
                failed = trying & ~improved
                searching = failed
                step = torch.where(failed, step / self.shrink, step)
                reductions += failed
                cand = torch.where(failed[owner, None], delta + step.to(x.dtype)[owner, None] * grad, cand)
            iterations += active
            # the reference's off-by-one: an improving step found on the last-but-one try ends that model's search
            stop = active & (reductions == self.max_backtracks - 1) if self.max_backtracks > 0 else active & ~active
            cand = _project_rows_as_reference(cand, r)
            moved = torch.linalg.vector_norm((cand - delta).reshape(M, k * d), dim=1)
            done = active & ~stop & (moved < self.tol)
            converged |= done
            active = active & ~stop & ~done
            delta = torch.where(active[owner, None], cand, delta)
        x_adv = (x + delta).detach()
        return InnerResult(
            x_adv=x_adv,
            loss=loss_at(model, x_adv, y),
            iterations=iterations[owner],
            extras={
                "path": "pgd-paper-batch",
                "converged": converged[owner],
                "step_size": step.to(x.dtype)[owner],
                "start_loss": start_loss,
            },
        )


#: Solvers whose options may hold a ``seed``: a pack gives each model its own (one generator per model).
SEEDED = ("pgd", "random")


def make_packed_inner(solver: str, options: dict[str, Any], seeds: tuple[int, ...] | None) -> InnerMaximizer | None:
    """The inner maximiser of a pack: ``solver`` with the pack's shared ``options``, and for the solvers that draw
    (``random``, ``pgd``) one seed per model (``seeds``, in pack order)."""
    if solver == "pgd-paper":
        return PackedPaperPGD(**options)
    if solver in SEEDED and seeds is not None:
        options = {**options, "seed": tuple(seeds)}
    return make_inner(solver, **options)
