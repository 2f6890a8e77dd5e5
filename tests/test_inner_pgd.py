"""Inner maximisers: tuned PGD, the paper's back-tracking PGD and random perturbations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fastfair.inner.pgd
from fastfair.errors import FastfairError
from fastfair.inner import make_inner, solver_options
from fastfair.losses import logistic_loss
from fastfair.models import MLP
from inner_cases import DT, batch, model, norms, true_loss

# ------------------------------------------------------------------------------------------------------
# PGD, paper PGD, random
# ------------------------------------------------------------------------------------------------------


def test_pgd_paper_converges_and_never_decreases_the_loss():
    m = model("mlp", 4, hidden=3, seed=11)
    x, y = batch(40, 4, seed=12)
    res = make_inner("pgd-paper").perturb(m, x, y, 0.3)
    start = true_loss(m, x, y)
    assert bool(res.extras["converged"].all())
    assert bool((res.iterations >= 1).all()) and bool((res.iterations < 5000).all())
    assert bool((res.loss >= start).all()) and bool((res.loss > start).any())
    torch.testing.assert_close(res.extras["start_loss"], start)
    # on this smooth problem it comes close to the tuned PGD with many small steps
    ref = make_inner("pgd", steps=200, rel_step=0.02).perturb(m, x, y, 0.3).loss
    assert (res.loss - ref).abs().max() < 5e-3


class Wave(nn.Module):
    """f(x) = 5 sin(20 x₁): steep and oscillating, so a long step overshoots into a worse point."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 5.0 * torch.sin(20.0 * x[:, 0])


def test_pgd_paper_step_sizes_are_per_sample():
    """Same point, two radii: the large ball lets the 0.1 step overshoot (back-tracks), the small one not."""
    m = Wave()
    x = torch.zeros(2, 1, dtype=DT)
    y = torch.ones(2, dtype=DT)
    r = torch.tensor([10.0, 0.01], dtype=DT)
    res = make_inner("pgd-paper", max_iter=1).perturb(m, x, y, r)
    steps = res.extras["step_size"]
    assert steps[0] < 0.1 and steps[1] == 0.1  # the reference shares one step size across the batch
    assert bool((res.loss > res.extras["start_loss"]).all())
    torch.testing.assert_close(norms(res, x)[1], torch.tensor(0.01, dtype=DT))


class Ripples(nn.Module):
    """f(x) = Σⱼ aⱼ sin(ωⱼ xⱼ) with three frequencies: a raw-gradient step of 0.1 overshoots by different amounts
    at different points, so a batch needs 0, 1, 2, 3 or more step reductions, and some samples find none."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("a", torch.tensor([2.0, 1.0, 0.5], dtype=DT))
        self.register_buffer("w", torch.tensor([3.0, 12.0, 40.0], dtype=DT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.a * torch.sin(self.w * x)).sum(-1)


def sequential_paper_pgd(m, x, y, r, *, max_backtracks, max_iter, step=0.1, shrink=1.5, tol=1e-4):
    """The paper's PGD written plainly, one sample at a time: try Π(δ + t∇ℓ); while the loss does not improve and
    fewer than ``max_backtracks`` reductions were made, t ← t/shrink and try again; keep δ if nothing improved;
    t carries over; stop once ‖Δδ‖ < tol or after ``max_iter`` iterations. Returns per sample
    ``(δ, loss, iterations, t, converged)``."""

    def loss(xi, yi, d):
        return logistic_loss(m((xi + d)[None]), yi[None])[0]

    def project(d):
        nd = float(torch.linalg.vector_norm(d))
        return d * (r / nd) if nd > r else d

    out = []
    for xi, yi in zip(x, y, strict=True):
        delta, t, converged, it = torch.zeros_like(xi), step, False, 0
        while it < max_iter:
            z = delta.clone().requires_grad_(True)
            cur = loss(xi, yi, z)
            (grad,) = torch.autograd.grad(cur, z)
            cur = float(cur.detach())
            it += 1
            cand = project(delta + t * grad)
            new_loss = float(loss(xi, yi, cand))
            reductions = 0
            while not new_loss > cur and reductions < max_backtracks:
                t, reductions = t / shrink, reductions + 1
                cand = project(delta + t * grad)
                new_loss = float(loss(xi, yi, cand))
            new, value = (cand, new_loss) if new_loss > cur else (delta, cur)
            moved = float(torch.linalg.vector_norm(new - delta))
            delta = new
            if moved < tol:
                converged = True
                break
        out.append((delta, value, it, t, converged))
    return out


@pytest.mark.parametrize("max_backtracks", [1, 2, 3])
@pytest.mark.parametrize("block_elements", [1, 6, None])
def test_pgd_paper_backtracking_equals_the_sequential_loop(monkeypatch, max_backtracks, block_elements):
    """Back-tracking in blocks of reductions (one per block, blocks of two or one, or all at once) gives exactly
    the per-sample sequential loop, for few allowed reductions (where every reduction counts)."""
    if block_elements is not None:  # (m samples x block x d) candidate entries per model call: d = 3
        monkeypatch.setattr(fastfair.inner.pgd, "BLOCK_ELEMENTS", block_elements)
    m = Ripples()
    g = torch.Generator().manual_seed(5)
    x = torch.rand(12, 3, generator=g, dtype=DT) * 2 - 1
    y = torch.randint(0, 2, (12,), generator=g).to(DT)
    res = make_inner("pgd-paper", max_backtracks=max_backtracks, max_iter=30).perturb(m, x, y, 0.5)
    ref = sequential_paper_pgd(m, x, y, 0.5, max_backtracks=max_backtracks, max_iter=30)
    torch.testing.assert_close(res.x_adv - x, torch.stack([o[0] for o in ref]), rtol=0, atol=1e-13)
    torch.testing.assert_close(res.loss, torch.tensor([o[1] for o in ref], dtype=DT), rtol=1e-13, atol=0)
    assert res.iterations.tolist() == [o[2] for o in ref]
    torch.testing.assert_close(res.extras["step_size"], torch.tensor([o[3] for o in ref], dtype=DT), rtol=1e-13, atol=0)
    assert res.extras["converged"].tolist() == [o[4] for o in ref]
    assert not all(o[4] for o in ref) and len({o[2] for o in ref}) > 3  # the cap and varied iteration counts


def tanh_net(scale: float) -> MLP:
    """f(x) = vᵀtanh(Wx + b) + c with fixed weights (W 3×2), all of W and v multiplied by ``scale``."""
    m = MLP(2, hidden=3, activation="tanh").to(DT)
    with torch.no_grad():
        m.hidden.weight.copy_(scale * torch.tensor([[2.0, 1.0], [-3.0, 2.0], [1.5, -2.5]], dtype=DT))
        m.hidden.bias.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=DT))
        m.out.weight.copy_(scale * torch.tensor([[1.5, -2.0, 1.0]], dtype=DT))
        m.out.bias.fill_(0.2)
    return m


SIX_X = torch.tensor([[0.1, 0.2], [-0.3, 0.4], [0.5, -0.6], [0.7, 0.8], [-0.9, -0.1], [0.2, -0.4]], dtype=DT)
SIX_Y = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0], dtype=DT)

# Perturbed batches computed by the authors' reference code (fastNfair/optimizers/PGDhessquik.py,
# ProjectedGradientDescentv3(max_iter=5000, per_sample=True).solve(ObjectiveFunctionMaximize(fctn, y), x, 0.1, r),
# fctn the reference's logistic-regression objective around a hessQuik network singleLayer(2, 3, tanh) ->
# singleLayer(3, 1, identity) with the weights of tanh_net(3.0); torch 2.13.0, float64), printed to 6 decimals.
REFERENCE_PGD_BATCH = {
    0.5: [
        [-0.394384, 0.12527],
        [-0.295887, 0.402047],
        [0.499861, -0.60007],
        [0.957301, 0.371285],
        [-1.022508, 0.080325],
        [0.659393, -0.202622],
    ],
    2.0: [
        [-0.990079, 0.169514],
        [-0.287728, 0.406108],
        [0.499635, -0.600183],
        [1.218793, 0.055375],
        [-1.063523, 0.119367],
        [0.939159, -0.133456],
    ],
}


@pytest.mark.parametrize("radius", [0.5, 2.0])
def test_pgd_paper_batch_shared_reproduces_the_reference_batch(radius):
    """The whole-batch option lands where the reference's PGD lands (at r = 2 most points stay inside the ball,
    so where the batch stops -- one Frobenius-norm test for all -- decides the answer); per sample it does not."""
    m = tanh_net(3.0)
    res = make_inner("pgd-paper", batch_shared=True).perturb(m, SIX_X, SIX_Y, radius)
    expected = torch.tensor(REFERENCE_PGD_BATCH[radius], dtype=DT)
    torch.testing.assert_close(res.x_adv, expected, rtol=0, atol=2e-6)
    assert res.extras["path"] == "pgd-paper-batch" and bool(res.extras["converged"].all())
    assert len(set(res.iterations.tolist())) == 1 and len(set(res.extras["step_size"].tolist())) == 1
    torch.testing.assert_close(res.loss, true_loss(m, res.x_adv, SIX_Y))
    if radius == 2.0:
        per_sample = make_inner("pgd-paper").perturb(m, SIX_X, SIX_Y, radius)
        assert float((per_sample.x_adv - expected).abs().max()) > 0.1


def test_pgd_paper_batch_shared_takes_the_last_candidate_when_every_reduction_fails():
    """One sample, a steep model, r = 3: the reference's answer (same printout as above, weights tanh_net(4.0),
    x = (0.1, 0.2), y = 1) is (-2.378673, 1.890024), reached after its 40 step reductions all failed (the step ends
    at 0.1/1.5⁴⁰ and the last, non-improving candidate is taken, moving δ by less than the tolerance)."""
    m = tanh_net(4.0)
    res = make_inner("pgd-paper", batch_shared=True).perturb(m, SIX_X[:1], SIX_Y[:1], 3.0)
    torch.testing.assert_close(res.x_adv, torch.tensor([[-2.378673, 1.890024]], dtype=DT), rtol=0, atol=2e-6)
    torch.testing.assert_close(res.extras["step_size"], torch.tensor([0.1 / 1.5**40], dtype=DT))


def plain_batch_pgd(m, x, y, r, *, max_backtracks, max_iter, step=0.1, shrink=1.5, tol=1e-4):
    """The reference's whole-batch PGD written plainly: F = mean loss; try δ + t∇F; while F does not increase
    and i ≤ max_backtracks (i counts tries from 1), t ← t/shrink; if i ended at max_backtracks, return δ; else
    project each row and stop (keeping δ) when the Frobenius norm of the move is below tol."""

    def mean_loss(d):
        return logistic_loss(m(x + d), y).mean()

    delta, t = torch.zeros_like(x), step
    for _ in range(max_iter):
        z = delta.clone().requires_grad_(True)
        value = mean_loss(z)
        (grad,) = torch.autograd.grad(value, z)
        value = value.detach()
        cand, i = delta + t * grad, 1
        while float(mean_loss(cand)) <= float(value) and i <= max_backtracks:
            t, i = t / shrink, i + 1
            cand = delta + t * grad
        if i == max_backtracks:
            return delta, t
        nrm = torch.linalg.vector_norm(cand, dim=1, keepdim=True)
        cand = cand / nrm * torch.clamp(nrm, max=r)
        if float(torch.linalg.vector_norm(cand - delta)) < tol:
            break
        delta = cand
    return delta, t


@pytest.mark.parametrize("max_backtracks", [1, 2, 3, 40])
def test_pgd_paper_batch_shared_equals_the_plain_loop(max_backtracks):
    """Few allowed reductions, where the reference's off-by-one exit and its non-improving last candidate both
    occur on this oscillating model."""
    m = Ripples()
    g = torch.Generator().manual_seed(5)
    x = torch.rand(12, 3, generator=g, dtype=DT) * 2 - 1
    y = torch.randint(0, 2, (12,), generator=g).to(DT)
    res = make_inner("pgd-paper", batch_shared=True, max_backtracks=max_backtracks, max_iter=30).perturb(m, x, y, 0.5)
    delta, t = plain_batch_pgd(m, x, y, 0.5, max_backtracks=max_backtracks, max_iter=30)
    # ∇F is formed as (per-sample gradient)/n here and by autograd of the mean there: rounding differs at 1e-16
    torch.testing.assert_close(res.x_adv - x, delta, rtol=0, atol=1e-10)
    torch.testing.assert_close(res.extras["step_size"], torch.full((12,), t, dtype=DT), rtol=1e-13, atol=0)


def test_pgd_paper_batch_shared_zero_gradient_gives_no_nan():
    """A constant model has zero input gradient: the reference's projection divides 0 by 0; ours keeps δ = 0."""

    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], dtype=x.dtype) + 0.0 * x.sum(1)

    x, y = batch(4, 3, seed=2)
    res = make_inner("pgd-paper", batch_shared=True).perturb(Constant(), x, y, 0.3)
    assert torch.equal(res.x_adv, x) and bool(torch.isfinite(res.loss).all())


def test_pgd_paper_defaults_stay_per_sample():
    assert solver_options("pgd-paper")["batch_shared"] is False
    assert make_inner("pgd-paper").options()["batch_shared"] is False
    with pytest.raises(FastfairError, match="batch_shared"):
        make_inner("pgd-paper", batch_shared="yes")


def test_pgd_tuned_monotone_best_iterate_and_tolerance():
    m = model("custom", 4, seed=13)
    x, y = batch(32, 4, seed=14)
    start = true_loss(m, x, y)
    res = make_inner("pgd").perturb(m, x, y, 0.5)
    assert bool((res.loss >= start).all()) and bool((res.iterations == 10).all())
    m = model("mlp", 4, seed=13)
    early = make_inner("pgd", steps=200, rel_step=0.1, tol=1e-4).perturb(m, x, y, 0.5)
    its = early.iterations
    assert int(its.max()) < 200 and int(its.min()) < int(its.max())  # each sample stops on its own
    assert bool((early.loss >= true_loss(m, x, y)).all())


def test_random_modes_and_seeded_reproducibility():
    n, d, r = 4000, 3, 2.0
    m = model("affine", d)
    x, y = batch(n, d)
    sphere = make_inner("random", seed=7).perturb(m, x, y, r)
    torch.testing.assert_close(norms(sphere, x), torch.full((n,), r, dtype=DT))
    again = make_inner("random", seed=7).perturb(m, x, y, r)
    assert torch.equal(sphere.x_adv, again.x_adv)
    assert not torch.equal(make_inner("random", seed=8).perturb(m, x, y, r).x_adv, sphere.x_adv)
    # a seeded maximiser continues its stream: the next batch gets fresh noise
    inner = make_inner("random", seed=7)
    first, second = inner.perturb(m, x, y, r).x_adv, inner.perturb(m, x, y, r).x_adv
    assert torch.equal(first, sphere.x_adv) and not torch.equal(first, second)
    # uniform in the ball: (‖δ‖/r)^d ~ U(0, 1)
    ball = make_inner("random", mode="ball", seed=7).perturb(m, x, y, r)
    u = (norms(ball, x) / r) ** d
    assert abs(u.mean().item() - 0.5) < 0.02 and abs((u < 0.25).double().mean().item() - 0.25) < 0.03
    # an explicit generator works too
    gen = torch.Generator().manual_seed(7)
    torch.testing.assert_close(make_inner("random", generator=gen).perturb(m, x, y, r).x_adv, sphere.x_adv)


def test_pgd_random_start_seeded():
    m = model("mlp", 4)
    x, y = batch(16, 4)
    a = make_inner("pgd", random_start=True, seed=3).perturb(m, x, y, 0.5)
    b = make_inner("pgd", random_start=True, seed=3).perturb(m, x, y, 0.5)
    assert torch.equal(a.x_adv, b.x_adv)


def test_global_rng_governs_unseeded_draws():
    m = model("affine", 3)
    x, y = batch(8, 3)
    torch.manual_seed(0)
    a = make_inner("random").perturb(m, x, y, 1.0).x_adv
    torch.manual_seed(0)
    b = make_inner("random").perturb(m, x, y, 1.0).x_adv
    assert torch.equal(a, b)
