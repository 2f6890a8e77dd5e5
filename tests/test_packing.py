"""Packed training: a pack's runs equal the same runs trained alone, solver by solver, and the pieces it uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastfair.config import TrainConfig
from fastfair.derivatives import RankOneModel, quadratic_model
from fastfair.errors import FastfairError
from fastfair.inner import make_inner
from fastfair.inner.base import sample_perturbation
from fastfair.inner.pgd import PaperPGDAdversary
from fastfair.models import build_model
from fastfair.packing import PackedAffine, pack_models, train_pack, unpackable_reason
from fastfair.packing.inner import PackedPaperPGD
from fastfair.training import train_arrays

TOL = {"float32": 1e-5, "float64": 1e-10}
#: (seed, radius) of the runs of a test pack: seeds and radii all differ
RUNS = ((0, 0.1), (1, 0.3), (2, 0.2))
SOLVERS = [
    ("none", {}),
    ("trs", {}),
    ("trs-paper", {}),
    ("pgd", {}),
    ("pgd", {"random_start": True}),
    ("pgd-paper", {"max_iter": 40}),
    ("pgd-paper", {"max_iter": 40, "batch_shared": True}),
    ("random", {}),
    ("random", {"mode": "ball"}),
]


def _data(n: int = 23, d: int = 3, runs: int = len(RUNS)):
    """One small training set per run (different rows, like seeds that split the data differently)."""
    rng = np.random.default_rng(7)
    Xs = [rng.normal(size=(n, d)) for _ in range(runs)]
    ys = [(X[:, 0] - 0.5 * X[:, 1] + 0.4 * rng.normal(size=n) > 0).astype(np.int64) for X in Xs]
    return Xs, ys, rng.normal(size=(40, d))


def _configs(model: str, solver: str, options: dict, dtype: str, **extra) -> list[TrainConfig]:
    return [
        TrainConfig(
            model=model,
            hidden=4,
            solver=solver,
            radius=r,
            seed=s,
            epochs=2,
            batch_size=5,
            lr=0.05,
            dtype=dtype,
            solver_options=dict(options),
            **extra,
        )
        for s, r in RUNS
    ]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("solver", "options"), SOLVERS, ids=lambda v: str(v))
def test_a_packed_affine_run_equals_the_run_alone(solver, options, dtype):
    Xs, ys, X_test = _data()
    configs = _configs("affine", solver, options, dtype)
    packed, timing = train_pack(Xs, ys, configs)
    assert timing.size == len(RUNS)
    for m, config in enumerate(configs):
        alone = train_arrays(Xs[m], ys[m], config)
        assert type(packed[m].model) is type(alone.model)
        np.testing.assert_allclose(
            packed[m].predict_proba(X_test), alone.predict_proba(X_test), rtol=0, atol=TOL[dtype]
        )
        for got, want in zip(packed[m].history, alone.history, strict=True):
            assert got["train_loss"] == pytest.approx(want["train_loss"], abs=10 * TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("solver", "options"), [s for s in SOLVERS if not s[0].startswith("trs")], ids=lambda v: str(v)
)
def test_a_packed_mlp_run_equals_the_run_alone(solver, options, dtype):
    Xs, ys, X_test = _data()
    configs = _configs("mlp", solver, options, dtype, activation="tanh")
    packed, _ = train_pack(Xs, ys, configs)
    for m, config in enumerate(configs):
        alone = train_arrays(Xs[m], ys[m], config)
        np.testing.assert_allclose(
            packed[m].predict_proba(X_test), alone.predict_proba(X_test), rtol=0, atol=TOL[dtype]
        )


def test_clean_weight_train_size_and_validation_history_follow_the_runs_alone():
    Xs, ys, X_test = _data(n=31)
    configs = _configs("affine", "pgd", {}, "float64", clean_weight=0.3, train_size=17)
    X_val, y_val = Xs[0][:9], ys[0][:9]
    packed, _ = train_pack(Xs, ys, configs, X_vals=[X_val] * 3, y_vals=[y_val] * 3)
    for m, config in enumerate(configs):
        alone = train_arrays(Xs[m], ys[m], config, X_val=X_val, y_val=y_val)
        np.testing.assert_allclose(packed[m].predict_proba(X_test), alone.predict_proba(X_test), atol=1e-10)
        assert [h["val_accuracy"] for h in packed[m].history] == [h["val_accuracy"] for h in alone.history]


def _packed_batch(dtype=torch.float64, k: int = 6, d: int = 3, model: str = "affine"):
    """Three trained-looking models and a packed batch: model m's k rows, its labels and radius."""
    models = [build_model(model, d, hidden=4, seed=s).to(dtype) for s in (0, 1, 2)]
    with torch.no_grad():
        for m, net in enumerate(models):
            for p in net.parameters():
                p.mul_(4.0 + m)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3 * k, d, generator=gen, dtype=dtype)
    y = (torch.rand(3 * k, generator=gen) > 0.5).to(dtype)
    r = torch.tensor([0.2, 0.5, 0.3], dtype=dtype).repeat_interleave(k)
    return models, pack_models(models), x, y, r, k


@pytest.mark.parametrize("batch_shared", [False, True])
def test_pgd_paper_takes_the_same_branches_packed_as_alone(batch_shared):
    """Iterations (gradient steps) and convergence agree model by model, and so do the back-tracking reductions
    (encoded in the final step sizes: step = 0.1/1.5^reductions) except where a comparison of two losses is
    decided at the last bit: the batched product of a packed batch may round one ulp differently from a model's
    own, and near convergence (steps of 1e-5 and below) the loss change a trial step buys is of that size. Such a
    flip changes the perturbation only at rounding level, which is checked too."""
    # an MLP: its loss is not monotone along a gradient step, so the line search has something to reject
    models, packed, x, y, r, k = _packed_batch(model="mlp" if batch_shared else "affine")
    # the batch-shared ascent takes steps on ∇F = ∇ℓ/k: a larger first step makes it back-track
    options = {"max_iter": 60, "batch_shared": batch_shared, "step": 50.0 if batch_shared else 0.1}
    res = PackedPaperPGD(**options).perturb(packed, x, y, r)
    reductions, same = [], []
    for m, model in enumerate(models):
        rows = slice(m * k, (m + 1) * k)
        alone = PaperPGDAdversary(**options).perturb(model, x[rows], y[rows], r[rows])
        assert torch.equal(res.iterations[rows], alone.iterations)
        assert torch.equal(res.extras["converged"][rows], alone.extras["converged"])
        same.append(res.extras["step_size"][rows] == alone.extras["step_size"])
        torch.testing.assert_close(res.x_adv[rows], alone.x_adv, rtol=0, atol=1e-12)
        torch.testing.assert_close(res.loss[rows], alone.loss, rtol=1e-12, atol=0)
        reductions.append(torch.round(torch.log(options["step"] / alone.extras["step_size"]) / np.log(1.5)))
    assert torch.cat(reductions).max() > 0  # the line search did back-track: the branches were exercised
    assert torch.cat(same).double().mean() >= 0.9  # all but last-bit ties
    if batch_shared:  # one line search per model: no per-row ties inside a model's batch mean
        assert bool(torch.cat(same).all())


def test_per_model_generators_draw_each_block_as_the_model_alone_would():
    gens = [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
    like = torch.zeros(1, dtype=torch.float64)
    r = torch.full((12,), 0.5, dtype=torch.float64)
    packed = sample_perturbation(12, 3, r, "ball", gens, like)
    for m, seed in enumerate((5, 6, 7)):
        alone = sample_perturbation(4, 3, r[:4], "ball", torch.Generator().manual_seed(seed), like)
        assert torch.equal(packed[4 * m : 4 * m + 4], alone)
    with pytest.raises(FastfairError, match="equal blocks"):
        sample_perturbation(10, 3, r[:10], "ball", gens, like)


def test_the_rank_one_model_with_one_w_per_row_matches_each_models_own():
    models, packed, x, y, _r, k = _packed_batch()
    quad = quadratic_model(packed, x, y)
    assert isinstance(quad, RankOneModel) and quad.w.shape == x.shape
    V = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    for m, model in enumerate(models):
        rows = slice(m * k, (m + 1) * k)
        alone = quadratic_model(model, x[rows], y[rows])
        torch.testing.assert_close(quad.g[rows], alone.g)
        torch.testing.assert_close(quad.hessian()[rows], alone.hessian())
        torch.testing.assert_close(quad.hvp(V)[rows], alone.hvp(V[rows]))
        torch.testing.assert_close(quad.loss[rows], alone.loss)
        torch.testing.assert_close(quad.curvature_bound()[rows], alone.curvature_bound())


@pytest.mark.parametrize("certify", [True, False])
def test_trs_on_a_packed_batch_matches_each_model_with_its_certificate(certify):
    models, packed, x, y, r, k = _packed_batch()
    res = make_inner("trs", certify=certify).perturb(packed, x, y, r)
    for m, model in enumerate(models):
        rows = slice(m * k, (m + 1) * k)
        alone = make_inner("trs", certify=certify).perturb(model, x[rows], y[rows], r[rows])
        torch.testing.assert_close(res.x_adv[rows], alone.x_adv, rtol=0, atol=1e-12)
        torch.testing.assert_close(res.loss[rows], alone.loss)
        if certify:
            assert bool(res.certificate.ok().all())
            torch.testing.assert_close(res.extras["multiplier"][rows], alone.extras["multiplier"])


def test_packed_models_evaluate_each_block_with_its_own_weights():
    models, packed, x, _y, _r, k = _packed_batch()
    assert isinstance(packed, PackedAffine)
    with torch.no_grad():
        got = packed(x)
        owners = packed.owners(x.shape[0], x.device)
        rows_view = packed.view(owners).rows(torch.tensor([k + 1, 0, 2 * k]))
        sub = rows_view(x[[k + 1, 0, 2 * k]])
    want = torch.cat([models[m](x[m * k : (m + 1) * k]) for m in range(3)])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(sub, want[[k + 1, 0, 2 * k]])
    with pytest.raises(FastfairError, match="does not split"):
        packed(x[:7])


def test_runs_that_cannot_share_a_pack_are_refused_with_a_reason():
    Xs, ys, _ = _data()
    mixed = _configs("affine", "trs", {}, "float32")
    mixed[1] = TrainConfig(**{**mixed[1].__dict__, "lr": 0.1})
    with pytest.raises(FastfairError, match="must share"):
        train_pack(Xs, ys, mixed)
    assert "no packed form" in unpackable_reason(TrainConfig(model="mlp", solver="trs"))
    assert "no packed form" in unpackable_reason(TrainConfig(solver="auto"))
    assert "penalty" in unpackable_reason(TrainConfig(fairness_penalty="dp", fairness_weight=0.1))
    assert unpackable_reason(TrainConfig(solver="pgd-paper")) is None


def test_multiclass_runs_are_not_packed():
    Xs, ys, _ = _data()
    ys = [np.arange(len(y)) % 3 for y in ys]
    with pytest.raises(FastfairError, match="binary runs only"):
        train_pack(Xs, ys, _configs("affine", "none", {}, "float32"))
