"""Training loop: determinism, train_size, clean-loss mixing, and an independent oracle for robust training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastfair.errors import FastfairError
from fastfair.models import build_model
from fastfair.training import TrainConfig, train_arrays


def _data(n: int = 120, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X @ np.arange(1, d + 1) + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
    return X, y


def _params(result) -> list[np.ndarray]:
    return [p.detach().double().numpy().copy() for p in result.model.parameters()]


def test_same_seed_same_numbers_and_different_seed_differs():
    X, y = _data()
    cfg = dict(model="mlp", hidden=4, epochs=3, batch_size=16, solver="trs", radius=0.2, dtype="float64")
    a = train_arrays(X, y, TrainConfig(seed=1, **cfg))
    b = train_arrays(X, y, TrainConfig(seed=1, **cfg))
    c = train_arrays(X, y, TrainConfig(seed=2, **cfg))
    for pa, pb in zip(_params(a), _params(b), strict=True):
        np.testing.assert_array_equal(pa, pb)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert not np.allclose(_params(a)[0], _params(c)[0])


def test_history_has_per_epoch_records():
    X, y = _data()
    res = train_arrays(X, y, TrainConfig(epochs=4, batch_size=32), X_val=X[:30], y_val=y[:30])
    assert [h["epoch"] for h in res.history] == [1, 2, 3, 4]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds", "inner_seconds"):
        assert all(np.isfinite(h[key]) for h in res.history), key
    assert all(h["inner_seconds"] == 0.0 for h in res.history)  # no inner solver for solver="none"
    first, last = res.history[0], res.history[-1]
    assert last["train_loss"] < first["train_loss"] + 1e-12 or last["train_accuracy"] > 0.8


def test_train_size_takes_first_rows():
    X, y = _data(200)
    cfg = dict(epochs=2, batch_size=10, dtype="float64")
    a = train_arrays(X, y, TrainConfig(train_size=50, **cfg))
    b = train_arrays(X[:50], y[:50], TrainConfig(**cfg))
    for pa, pb in zip(_params(a), _params(b), strict=True):
        np.testing.assert_array_equal(pa, pb)


def test_clean_weight_one_equals_nonrobust_training():
    X, y = _data()
    cfg = dict(epochs=2, batch_size=16, dtype="float64")
    robust_but_clean = train_arrays(X, y, TrainConfig(solver="random", radius=0.5, clean_weight=1.0, **cfg))
    plain = train_arrays(X, y, TrainConfig(**cfg))
    for pa, pb in zip(_params(robust_but_clean), _params(plain), strict=True):
        np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-12)


def test_affine_trs_training_matches_closed_form_robust_objective():
    """Oracle: for logistic regression the worst-case logit in the ball is z - r‖w‖ (y=1) or z + r‖w‖ (y=0).

    An independent loop that minimises that closed-form robust loss with the same Adam, initial weights and
    shuffling must land on the same weights as training with the TRS inner solver.
    """
    X, y = _data(90, 4, seed=3)
    r, seed, epochs, bs = 0.3, 5, 3, 8
    res = train_arrays(
        X, y, TrainConfig(solver="trs", radius=r, epochs=epochs, batch_size=bs, lr=1e-2, seed=seed, dtype="float64")
    )

    model = build_model("affine", X.shape[1], seed=seed).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.tensor(X), torch.tensor(y, dtype=torch.float64)
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=gen)
        for start in range(0, len(X), bs):
            idx = order[start : start + bs]
            w = model.linear.weight.reshape(-1)
            z = model(xt[idx]) + r * w.norm() * (1 - 2 * yt[idx])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for pa, pb in zip(_params(res), [p.detach().numpy() for p in model.parameters()], strict=True):
        np.testing.assert_allclose(pa, pb, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("epochs", 0, "epochs"),
        ("batch_size", -3, "batch size"),
        ("lr", 0.0, "learning rate"),
        ("radius", -0.1, "radius"),
        ("radius", float("nan"), "radius"),
        ("solver", "fgsm", "unknown solver"),
        ("model", "cnn", "unknown model"),
        ("dtype", "float16", "unknown dtype"),
        ("clean_weight", 1.5, "clean weight"),
        ("device", "tpu", "device"),
    ],
)
def test_config_validation(field, value, words):
    with pytest.raises(FastfairError, match=words):
        TrainConfig(**{field: value}).validate()


def test_cuda_requested_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(FastfairError, match="CUDA is not available"):
        TrainConfig(device="cuda").validate()


def test_random_solver_is_seeded_by_the_run_seed():
    """No global RNG state leaks into a run: the random solver draws from the run's seed."""
    X, y = _data(120)
    cfg = dict(epochs=2, batch_size=16, solver="random", radius=0.3, dtype="float64")
    torch.manual_seed(1)
    a = train_arrays(X, y, TrainConfig(**cfg, seed=3))
    torch.manual_seed(2)
    b = train_arrays(X, y, TrainConfig(**cfg, seed=3))
    c = train_arrays(X, y, TrainConfig(**cfg, seed=4))
    wa, wb, wc = (np.concatenate([p.detach().numpy().ravel() for p in r.model.parameters()]) for r in (a, b, c))
    np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(wa, wc)
