"""Projected gradient ascent on the per-sample loss: a tuned variant and the paper's configuration.

Both are batched: one forward/backward of Σᵢ ℓᵢ gives every per-sample input gradient (samples are
independent), the model is called with detached parameters, and per-sample state (step size, convergence)
lives in tensors and masks; Python loops run over iterations only.

``pgd`` (:class:`ProjectedGradientAdversary`) -- the usual L2 attack:
    δ ← Π(δ + α·r·∇L/‖∇L‖),  Π(δ) = δ·min(1, r/‖δ‖),
    ``steps`` = 10 and ``rel_step`` α = 2.5/steps = 0.25 by default (the common "2.5·ε/steps" rule: the walk
    can cross the ball 1.25 times, so the boundary is reached from the centre and there are steps left to
    slide along it). Optional uniform-in-ball random start and a per-sample early stop when a step moves δ by
    at most ``tol``·r. The best point per sample among x and all iterates is returned, so the reported loss
    never falls below the clean loss. A zero gradient leaves δ where it is.

``pgd-paper`` (:class:`PaperPGDAdversary`) -- reproduces the configuration of the paper (reference
    ``fastNfair/optimizers/PGDhessquik.py``, called with step 0.1 and 5000 iterations from
    ``fastNfair/training/adversarial_training.py``): raw (unnormalised) gradient steps of absolute size 0.1,
    each step size divided by 1.5 until the loss improves (at most 40 times), projection onto the ball,
    stop at ‖Δδ‖ < 1e-4 or after 5000 iterations; the reduced step size carries over to the next iteration
    (it never grows again). By default everything is per sample, deliberately unlike the reference:

    * The reference's objective is the *batch mean* loss F(δ) = 1/n Σᵢ ℓᵢ(xᵢ + δᵢ), so its gradient rows are
      ∇ℓᵢ/n (the effective step depends on the batch size) and the back-tracking and stopping tests are on the
      whole batch (one step size shared by all samples; ‖Δδ‖ is the Frobenius norm of the batch). Here each
      sample has its own step size, back-tracking and convergence test, on its own loss ℓᵢ (to mimic the batch
      scaling, pass ``step=0.1/batch_size``).
    * The reference back-tracks on the unprojected point and then projects; here the *projected* candidate
      must improve the loss, and if 40 reductions do not, δ is kept (so the loss never decreases and the
      sample has converged).
    * The reference's per-sample projection divides by ‖δ‖ and yields NaN for δ = 0; ours does not.

    ``batch_shared=True`` instead solves the batch as the reference does, as one problem in the whole (n, d)
    perturbation: ascend F with one step size t for the batch,

        δ⁺ = δ + t·∇F(δ),  t ← t/1.5 while F(x + δ⁺) ≤ F(x + δ) and fewer than 40 reductions were made,

    then project every row (δᵢ⁺/‖δᵢ⁺‖ · min(r, ‖δᵢ⁺‖); a zero row stays zero) and stop once
    ‖δ⁺ - δ‖_F < tol, keeping δ. Two quirks of the reference's line search are kept, because reproducing its
    numbers needs them: when all 40 reductions fail, the last (non-improving) candidate is taken anyway; and
    when the improving step is found after exactly 39 reductions, the search stops and returns the current δ
    without taking it. The loss is our cancellation-free logistic loss, so ties in the comparison F(δ⁺) ≤ F(δ)
    may fall differently from the reference's at the last bit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..validation import check_bool, check_nonnegative_int, check_positive_float, check_positive_int
from .base import (
    InnerMaximizer,
    InnerResult,
    SeededRandomness,
    detached_forward,
    loss_and_grad,
    loss_at,
    project_to_ball,
    sample_perturbation,
)

#: cap on (samples × step sizes × d) entries evaluated in one call while back-tracking
BLOCK_ELEMENTS = 1 << 22


class ProjectedGradientAdversary(InnerMaximizer):
    """Tuned L2 PGD with normalised-gradient steps of size ``rel_step``·r (see module docs).

    Args:
        steps: number of gradient steps (default 10).
        rel_step: step length as a fraction of the radius (default 2.5/steps).
        random_start: start from a point drawn uniformly in the ball instead of x (default False).
        tol: early stop per sample once a step moves δ by at most ``tol``·r (default None: run all steps).
        seed / generator: randomness of the random start (default: torch's global RNG).

    ``extras``: ``"path": "pgd"``, ``"start_loss"`` (n,) the loss at the starting point.
    """

    name = "pgd"

    def __init__(
        self,
        *,
        steps: int = 10,
        rel_step: float | None = None,
        random_start: bool = False,
        tol: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.steps = check_positive_int("steps", steps)
        self.rel_step = 2.5 / self.steps if rel_step is None else check_positive_float("rel_step", rel_step)
        self.random_start = check_bool("random_start", random_start)
        self.tol = None if tol is None else check_positive_float("tol", tol)
        self.random = SeededRandomness(seed, generator)
        self._options = {
            "steps": self.steps,
            "rel_step": self.rel_step,
            "random_start": self.random_start,
            "tol": self.tol,
            "seed": self.random.seed,
        }

    def _perturb(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        n, d = x.shape
        forward = detached_forward(model)
        if self.random_start:
            gen = self.random.generator_for(x.device)
            delta = sample_perturbation(n, d, r, "ball", gen, x)
        else:
            delta = torch.zeros_like(x)
        step = (self.rel_step * r)[:, None]
        if self.random_start:  # x itself is feasible too: never report less than the clean loss
            best_delta, best_loss = torch.zeros_like(x), loss_at(model, x, y)
        else:
            best_delta, best_loss = delta, torch.full_like(r, -torch.inf)
        start_loss = None
        active = torch.ones(n, dtype=torch.bool, device=x.device)
        iterations = torch.zeros(n, dtype=torch.int64, device=x.device)
        for _ in range(self.steps):
            loss, grad = loss_and_grad(forward, x + delta, y)
            if start_loss is None:
                start_loss = loss
            better = loss > best_loss
            best_loss = torch.where(better, loss, best_loss)
            best_delta = torch.where(better[:, None], delta, best_delta)
            gnorm = torch.linalg.vector_norm(grad, dim=1, keepdim=True)
            direction = grad / torch.where(gnorm > 0, gnorm, torch.ones_like(gnorm))
            new = project_to_ball(delta + step * direction, r)
            new = torch.where(active[:, None], new, delta)
            iterations += active
            if self.tol is not None:
                moved = torch.linalg.vector_norm(new - delta, dim=1)
                active = active & (moved > self.tol * r)
            delta = new
            if self.tol is not None and not bool(active.any()):
                break
        with torch.no_grad():
            loss = loss_at(model, x + delta, y)
            better = loss > best_loss
            best_loss = torch.where(better, loss, best_loss)
            best_delta = torch.where(better[:, None], delta, best_delta)
        return InnerResult(
            x_adv=(x + best_delta).detach(),
            loss=best_loss,
            iterations=iterations,
            extras={"path": "pgd", "start_loss": start_loss},
        )


class PaperPGDAdversary(InnerMaximizer):
    """The paper's PGD configuration, per sample by default (see module docs for the differences to the
    reference, and for ``batch_shared``, which reproduces the reference's whole-batch iteration).

    Args:
        step: initial step size on the raw gradient (default 0.1).
        shrink: factor the step size is divided by when the loss does not improve (default 1.5).
        max_backtracks: at most this many reductions per iteration (default 40).
        tol: a sample stops once ‖Δδ‖ < tol (absolute; default 1e-4); with ``batch_shared`` the batch stops once
            the Frobenius norm of Δδ is below ``tol``.
        max_iter: at most this many iterations (default 5000).
        batch_shared: ascend the batch-mean loss with one step size, one line search and one stopping test
            for the whole batch, as the reference does (default False: every sample on its own).

    ``extras``: ``"path"`` (``"pgd-paper"``, or ``"pgd-paper-batch"`` with ``batch_shared``), ``"converged"``
    (n,) bool, ``"step_size"`` (n,) final step sizes (all equal with ``batch_shared``), ``"start_loss"`` (n,).
    """

    name = "pgd-paper"

    def __init__(
        self,
        *,
        step: float = 0.1,
        shrink: float = 1.5,
        max_backtracks: int = 40,
        tol: float = 1e-4,
        max_iter: int = 5000,
        batch_shared: bool = False,
    ) -> None:
        self.step = check_positive_float("step", step)
        self.shrink = check_positive_float("shrink", shrink, above=1.0)
        self.max_backtracks = check_nonnegative_int("max_backtracks", max_backtracks)
        self.tol = check_positive_float("tol", tol)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.batch_shared = check_bool("batch_shared", batch_shared)
        self._options = {
            "step": self.step,
            "shrink": self.shrink,
            "max_backtracks": self.max_backtracks,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "batch_shared": self.batch_shared,
        }

    def _perturb(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        if self.batch_shared:
            return self._perturb_batch(model, x, y, r)
        n = x.shape[0]
        forward = detached_forward(model)
        rows_of = self._rows_of(model, x)
        delta = torch.zeros_like(x)
        step = torch.full_like(r, self.step)
        iterations = torch.zeros(n, dtype=torch.int64, device=x.device)
        converged = torch.zeros(n, dtype=torch.bool, device=x.device)
        start_loss = loss_at(model, x, y)
        loss = start_loss.clone()
        idx = torch.arange(n, device=x.device)  # samples still iterating
        for _ in range(self.max_iter):
            if idx.numel() == 0:
                break
            xa, ya, ra, da = x[idx], y[idx], r[idx], delta[idx]
            view = model if rows_of is None else rows_of.rows(idx)
            la, ga = loss_and_grad(forward if rows_of is None else view, xa + da, ya)
            new, new_loss, sa = self._backtrack(view, xa, ya, ra, da, la, ga, step[idx])
            moved = torch.linalg.vector_norm(new - da, dim=1)
            delta[idx] = new
            loss[idx] = new_loss
            step[idx] = sa
            iterations[idx] += 1
            done = moved < self.tol
            converged[idx[done]] = True
            idx = idx[~done]
        return InnerResult(
            x_adv=(x + delta).detach(),
            loss=loss,
            iterations=iterations,
            extras={"path": "pgd-paper", "converged": converged, "step_size": step, "start_loss": start_loss},
        )

    def _rows_of(self, model: nn.Module, x: Tensor) -> Any:
        """What evaluates the model on a subset of the batch's rows (``.rows(index)``, callable on those rows), for
        models whose rows are not interchangeable (a pack of models, each owning a block of rows); None for a
        plain model, which any subset of rows can be passed to."""
        return None

    def _backtrack(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        r: Tensor,
        delta: Tensor,
        loss: Tensor,
        grad: Tensor,
        step: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per sample: try Π(δ + t∇L); divide t by ``shrink`` until the loss improves (at most max times).

        Same result as the sequential loop, but the reduced step sizes of all samples still searching are
        evaluated together, in blocks of several reductions per model call (memory capped at
        ``BLOCK_ELEMENTS`` candidate entries), so the number of model calls per iteration stays small.
        """
        cand = project_to_ball(delta + step[:, None] * grad, r)
        cand_loss = loss_at(model, x + cand, y)
        ok = cand_loss > loss
        accepted = torch.where(ok[:, None], cand, delta)
        accepted_loss = torch.where(ok, cand_loss, loss)
        step = step.clone()
        pending = (~ok).nonzero().squeeze(1)
        done_k = 0  # reductions already tried by the pending samples
        while pending.numel() > 0 and done_k < self.max_backtracks:
            m, d = pending.numel(), x.shape[1]
            block = max(1, min(self.max_backtracks - done_k, BLOCK_ELEMENTS // max(1, m * d)))
            powers = torch.arange(done_k + 1, done_k + block + 1, device=x.device, dtype=x.dtype)
            t = step[pending, None] * self.shrink ** (-(powers - done_k))  # (m, block)
            cand = project_to_ball(
                delta[pending, None, :] + t[:, :, None] * grad[pending, None, :], r[pending, None]
            )  # (m, block, d)
            flat = (x[pending, None, :] + cand).reshape(m * block, d)
            # a packed model's rows know their models: evaluate each candidate with its row's model
            rows_model = model.rows(pending.repeat_interleave(block)) if hasattr(model, "pack_size") else model
            cand_loss = loss_at(rows_model, flat, y[pending].repeat_interleave(block)).reshape(m, block)
            ok = cand_loss > loss[pending, None]
            found = ok.any(1)
            first = torch.where(found, ok.to(torch.int8).argmax(1), block - 1)  # first improving reduction
            rows = torch.arange(m, device=x.device)
            step[pending] = t[rows, first]
            hit = pending[found]
            accepted[hit] = cand[rows[found], first[found]]
            accepted_loss[hit] = cand_loss[rows[found], first[found]]
            pending = pending[~found]
            done_k += block
        return accepted, accepted_loss, step

    def _perturb_batch(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        """The whole batch as one problem: ascent on F(δ) = 1/n Σᵢ ℓᵢ(xᵢ + δᵢ) with one shared step size.

        Sequential by nature (every decision is about the batch), so each iteration costs one gradient and
        one loss evaluation per step-size trial; no per-sample state.
        """
        n = x.shape[0]
        forward = detached_forward(model)
        delta = torch.zeros_like(x)
        step = self.step
        start_loss = loss_at(model, x, y)
        iterations = 0
        converged = False
        for _ in range(self.max_iter):
            loss, grad = loss_and_grad(forward, x + delta, y)
            value = loss.mean()
            grad = grad / n  # rows of ∇F: ∇ℓᵢ/n
            cand = delta + step * grad
            reductions = 0
            while reductions < self.max_backtracks and not bool(loss_at(model, x + cand, y).mean() > value):
                step /= self.shrink
                cand = delta + step * grad
                reductions += 1
            iterations += 1
            if self.max_backtracks > 0 and reductions == self.max_backtracks - 1:
                break  # the reference's off-by-one: an improving step found on the last-but-one try ends the search
            cand = _project_rows_as_reference(cand, r)
            if float(torch.linalg.vector_norm(cand - delta)) < self.tol:
                converged = True
                break
            delta = cand
        x_adv = (x + delta).detach()
        return InnerResult(
            x_adv=x_adv,
            loss=loss_at(model, x_adv, y),
            iterations=torch.full((n,), iterations, dtype=torch.int64, device=x.device),
            extras={
                "path": "pgd-paper-batch",
                "converged": torch.full((n,), converged, dtype=torch.bool, device=x.device),
                "step_size": torch.full_like(r, step),
                "start_loss": start_loss,
            },
        )


def _project_rows_as_reference(delta: Tensor, r: Tensor) -> Tensor:
    """δᵢ/‖δᵢ‖ · min(r, ‖δᵢ‖) per row, in this order of operations (the reference's, so that the rounding is
    its rounding too: inside the ball a row is divided and multiplied by its norm rather than left alone);
    a zero row stays zero instead of becoming NaN."""
    norm = torch.linalg.vector_norm(delta, dim=1, keepdim=True)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    return (delta / safe) * torch.minimum(r[:, None], norm)
