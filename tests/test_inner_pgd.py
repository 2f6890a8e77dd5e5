"""Inner maximisers: tuned PGD, the paper's back-tracking PGD and random perturbations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fastfair.inner.pgd
from fastfair.inner import make_inner
from fastfair.losses import logistic_loss
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
