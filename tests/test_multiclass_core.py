"""Multiclass core: C-output models, the softmax cross-entropy, multiclass training; binary stays bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from fastfair.config import TrainConfig
from fastfair.errors import FastfairError
from fastfair.inner import make_inner
from fastfair.inner.auto import AutoAdversary
from fastfair.losses import classification_loss, logistic_loss, softmax_logit_derivatives
from fastfair.models import MLP, Affine, DeepMLP, build_model
from fastfair.training import inner_diagnostics, train_arrays

DT = torch.float64

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


# ---- the loss -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_binary_logits_give_the_logistic_loss_bit_for_bit(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    z = 30 * torch.randn(200, generator=gen, dtype=dtype)
    y = torch.rand(200, generator=gen, dtype=dtype).round()
    y[:20] = torch.rand(20, generator=gen, dtype=dtype)  # soft labels too
    assert torch.equal(classification_loss(z, y), logistic_loss(z, y))


def test_softmax_cross_entropy_matches_torch_in_float64() -> None:
    gen = torch.Generator().manual_seed(1)
    for C in (3, 5, 10):
        z = 8 * torch.randn(64, C, generator=gen, dtype=DT)
        y = torch.randint(0, C, (64,), generator=gen)
        expected = F.cross_entropy(z, y, reduction="none")
        # torch's logsumexp(z) - z_y carries an absolute error of a few eps·max|z| where the loss is tiny
        slack = 8 * torch.finfo(DT).eps * float(z.abs().max())
        for labels in (y, y.to(DT), y.to(torch.float32)):  # codes of any dtype
            torch.testing.assert_close(classification_loss(z, labels), expected, rtol=1e-14, atol=slack)


def test_softmax_cross_entropy_by_hand() -> None:
    z = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]], dtype=DT)
    y = torch.tensor([1, 0, 0])
    loss = classification_loss(z, y)
    assert loss[0].item() == pytest.approx(math.log(3), rel=1e-15, abs=0)
    assert loss[1].item() == pytest.approx(math.log(math.e + math.e**2 + math.e**3) - 1, rel=1e-15, abs=0)
    assert loss[2].item() == pytest.approx(math.exp(-1000) + 0.0, abs=1e-300)  # no overflow, no NaN
    assert torch.isfinite(loss).all() and bool((loss >= 0).all())
    # a confidently classified row keeps full relative accuracy: ℓ((40, 0, 0), 0) = log1p(2e^-40)
    tiny = classification_loss(torch.tensor([[40.0, 0.0, 0.0], [0.0, 40.0, -3.0]], dtype=DT), torch.tensor([0, 1]))
    assert tiny[0].item() == pytest.approx(math.log1p(2 * math.exp(-40)), rel=1e-15, abs=0)
    assert tiny[1].item() == pytest.approx(math.log1p(math.exp(-40) + math.exp(-43)), rel=1e-15, abs=0)
    # and its autograd derivative is softmax(z) - e_y, without cancellation either
    zg = torch.tensor([[40.0, 0.0, 0.0]], dtype=DT, requires_grad=True)
    (dz,) = torch.autograd.grad(classification_loss(zg, torch.tensor([0])).sum(), zg)
    q = math.exp(-40) / (1 + 2 * math.exp(-40))
    assert dz[0, 0].item() == pytest.approx(-2 * q, rel=1e-13, abs=0)
    assert dz[0, 1].item() == pytest.approx(q, rel=1e-13, abs=0)


@st.composite
def logit_rows(draw) -> tuple[np.ndarray, int]:
    C = draw(st.integers(3, 6))
    z = draw(st.lists(st.floats(-300, 300, allow_nan=False), min_size=C, max_size=C))
    return np.array(z), draw(st.integers(0, C - 1))


@settings(max_examples=200, deadline=None)
@given(logit_rows())
def test_cross_entropy_and_its_gradient_against_an_extended_precision_reference(row) -> None:
    """ℓ = log1p(Σ_{j≠y} e^{z_j - z_y}) and ∇ = p - e_y in long double (no shift by the max: e^600 fits)."""
    z, y = row
    zl = z.astype(np.longdouble)
    e = np.exp(zl - zl[y])
    e[y] = 0
    s = e.sum()
    ref_loss = float(np.log1p(s))
    ref_grad = (e / (1 + s)).astype(np.float64)
    ref_grad[y] = float(-s / (1 + s))
    zt = torch.tensor(z, dtype=DT).unsqueeze(0).requires_grad_(True)
    loss = classification_loss(zt, torch.tensor([y]))
    (grad,) = torch.autograd.grad(loss.sum(), zt)
    # relative accuracy: a few ulps per term, and the conditioning of e^t, |t|·eps, for t = z_j - max(z) (the
    # float64 subtraction rounds; the reference subtracts in long double)
    rtol = 2.3e-16 * (8 * len(z) + 2 * float(z.max() - z.min()))
    assert loss.item() == pytest.approx(ref_loss, rel=rtol, abs=1e-300)
    np.testing.assert_allclose(grad[0].numpy(), ref_grad, rtol=rtol, atol=1e-300)
    _, g, _ = softmax_logit_derivatives(zt.detach(), torch.tensor([y]))
    np.testing.assert_allclose(g[0].numpy(), ref_grad, rtol=rtol, atol=1e-300)


def test_softmax_derivatives_are_the_closed_forms_and_cancellation_free() -> None:
    gen = torch.Generator().manual_seed(2)
    z = 3 * torch.randn(16, 4, generator=gen, dtype=DT)
    y = torch.randint(0, 4, (16,), generator=gen)
    _, g, H = softmax_logit_derivatives(z, y)
    p = torch.softmax(z, -1)
    torch.testing.assert_close(g, p - F.one_hot(y, 4).to(DT), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(H, torch.diag_embed(p) - p[:, :, None] * p[:, None, :], rtol=1e-12, atol=1e-15)
    ref = torch.func.vmap(torch.func.hessian(lambda t, c: F.cross_entropy(t[None], c[None])))(z, y)
    torch.testing.assert_close(H, ref, rtol=1e-10, atol=1e-14)
    eig = torch.linalg.eigvalsh(H)
    assert bool((eig >= -1e-15).all())  # PSD
    assert bool((eig[:, 0].abs() <= 1e-15).all())  # the all-ones null vector: rank C - 1
    # a confidently classified row: z = (40, 0, 0), y = 0; p_1 = p_2 = e^-40/(1 + 2e^-40) exactly
    z1 = torch.tensor([[40.0, 0.0, 0.0]], dtype=DT)
    _, g1, H1 = softmax_logit_derivatives(z1, torch.tensor([0]))
    q = math.exp(-40) / (1 + 2 * math.exp(-40))
    assert g1[0, 0].item() == pytest.approx(-2 * q, rel=1e-13, abs=0)  # the naive p_0 - 1 rounds to -2.2e-16
    assert H1[0, 0, 0].item() == pytest.approx((1 - 2 * q) * 2 * q, rel=1e-13, abs=0)


def test_bad_logit_shapes_are_one_line_errors() -> None:
    with pytest.raises(FastfairError, match="labels") as info:
        classification_loss(torch.zeros(4, 3), torch.zeros(5))
    assert "\n" not in str(info.value)


# ---- the models -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "hidden"), [("affine", 16), ("mlp", 7), ("mlp", (6, 5))])
def test_n_classes_2_is_the_binary_model_exactly(name: str, hidden) -> None:
    old, new = build_model(name, 5, hidden=hidden, seed=3), build_model(name, 5, hidden=hidden, seed=3, n_classes=2)
    assert type(old) is type(new) and new.n_classes == 2
    for (k1, a), (k2, b) in zip(old.state_dict().items(), new.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(a, b)
    x = torch.randn(4, 5)
    assert new(x).shape == (4,) and torch.equal(old(x), new(x))


@pytest.mark.parametrize(("name", "hidden", "cls"), [("affine", 16, Affine), ("mlp", 7, MLP), ("mlp", (6, 5), DeepMLP)])
def test_multiclass_models_have_c_outputs(name: str, hidden, cls: type) -> None:
    model = build_model(name, 5, hidden=hidden, seed=3, n_classes=4)
    assert isinstance(model, cls) and model.n_classes == 4
    assert model(torch.randn(6, 5)).shape == (6, 4)
    again = build_model(name, 5, hidden=hidden, seed=3, n_classes=4)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True))


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, True, "3"])
def test_bad_n_classes_is_refused(bad) -> None:
    with pytest.raises(FastfairError, match="n_classes") as info:
        build_model("affine", 3, n_classes=bad)
    assert "\n" not in str(info.value)


# ---- the inner solvers ----------------------------------------------------------------------------------


def blobs(n: int = 180, d: int = 4, C: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """C well separated Gaussian blobs (centres 5 apart along the axes)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C
    centres = 5.0 * np.eye(C, d)
    return centres[y] + 0.6 * rng.normal(size=(n, d)), y


@pytest.mark.parametrize("solver", ["trs", "pgd", "pgd-paper", "random"])
def test_every_solver_stays_in_the_ball_and_maximisers_raise_the_loss(solver: str) -> None:
    X, y = blobs(30, 5, 3)
    x, yt = torch.as_tensor(X, dtype=DT), torch.as_tensor(y, dtype=DT)
    for model in (build_model("affine", 5, n_classes=3, dtype=DT), build_model("mlp", 5, n_classes=3, dtype=DT)):
        options = {"random": {"seed": 0}, "pgd-paper": {"max_iter": 20}}.get(solver, {})
        res = make_inner(solver, **options).perturb(model, x, yt, 0.3)
        assert bool((torch.linalg.vector_norm(res.x_adv - x, dim=1) <= 0.3 + 1e-12).all())
        with torch.no_grad():
            clean = F.cross_entropy(model(x), yt.long(), reduction="none")
            torch.testing.assert_close(res.loss, F.cross_entropy(model(res.x_adv), yt.long(), reduction="none"))
        if solver != "random":
            assert bool((res.loss >= clean - 1e-12).all())


def test_auto_picks_trs_for_softmax_regression_and_pgd_for_a_relu_network() -> None:
    auto = AutoAdversary()
    assert auto.choose(build_model("affine", 5, n_classes=3), 5).solver == "trs"
    assert "softmax" in auto.choose(build_model("affine", 5, n_classes=3), 5).reason
    assert auto.choose(build_model("mlp", 5, activation="relu", n_classes=3), 5).solver == "pgd"
    assert auto.choose(build_model("mlp", 5, activation="tanh", n_classes=3), 5).solver == "trs"


# ---- training -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("solver", "model"),
    [
        ("none", "affine"),
        ("trs", "affine"),
        ("pgd", "affine"),
        ("random", "affine"),
        ("auto", "affine"),
        ("none", "mlp"),
        pytest.param("trs", "mlp", marks=pytest.mark.slow),  # a few seconds
    ],
)
def test_three_class_training_reaches_high_accuracy(solver: str, model: str) -> None:
    X, y = blobs(120)
    config = TrainConfig(solver=solver, model=model, hidden=8, epochs=5, radius=0.3, lr=0.1, batch_size=40)
    result = train_arrays(X, y, config)
    assert result.n_classes == 3 and result.model.n_classes == 3
    logits = result.decision_function(X)
    assert logits.shape == (len(X), 3)
    proba = result.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    pred = result.predict(X)
    np.testing.assert_array_equal(pred, logits.argmax(axis=1))
    assert (pred == y).mean() >= 0.95
    assert result.history[-1]["train_accuracy"] == pytest.approx((pred == y).mean(), abs=1e-6)
    if solver != "none":
        diag = inner_diagnostics(result, X, y)
        assert diag["perturbed_loss"] >= diag["clean_loss"] or solver == "random"
        if solver in ("trs", "auto") and model == "affine":
            assert diag["path"] == "softmax-subspace" and diag["certified_fraction"] == 1.0


def test_labels_and_penalties_a_multiclass_run_cannot_take() -> None:
    X, y = blobs(30)
    config = TrainConfig(solver="none", epochs=1)
    for labels in (y + 0.5, 2 * y - 1, np.r_[np.zeros(29), 1.5]):
        with pytest.raises(FastfairError, match="integer codes") as info:
            train_arrays(X, labels, config)
        assert "\n" not in str(info.value)
    with pytest.raises(FastfairError, match=r"integer codes 0\.\.2"):
        train_arrays(X, y + 1, config, n_classes=3)
    with pytest.raises(FastfairError, match="binary targets only"):
        train_arrays(X, y, TrainConfig(solver="none", epochs=1, fairness_penalty="dp"), groups=y % 2)
    with pytest.raises(FastfairError, match="one output per row") as info:
        train_arrays(X, y, config, model=build_model("affine", 4))
    assert "\n" not in str(info.value)
    with pytest.raises(FastfairError, match="4 outputs but the labels have 3 classes"):
        train_arrays(X, y, config, model=build_model("affine", 4, n_classes=4), n_classes=3)
    with pytest.raises(FastfairError, match="logits"):  # two outputs: neither one logit nor C >= 3
        train_arrays(X, y % 2, config, model=nn.Linear(4, 2))
    with pytest.raises(FastfairError, match="multiclass"):
        train_arrays(X, y, TrainConfig(solver="trs-paper", epochs=1))


def test_binary_training_is_unchanged_by_the_n_classes_argument() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(80, 3))
    y = (X[:, 0] > 0).astype(int)
    config = TrainConfig(solver="trs", epochs=3, radius=0.2, dtype="float64")
    a, b = train_arrays(X, y, config), train_arrays(X, y, config, n_classes=2)
    assert a.n_classes == b.n_classes == 2
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert a.decision_function(X).shape == (80,)
    np.testing.assert_array_equal(a.predict(X), (a.decision_function(X) > 0).astype(int))


def test_a_user_module_with_c_outputs_trains() -> None:
    X, y = blobs(60)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    result = train_arrays(X, y, TrainConfig(solver="pgd", epochs=10, lr=0.05), model=model)
    assert result.n_classes == 3
    assert result.decision_function(X).shape == (60, 3)
    assert (result.predict(X) == y).mean() >= 0.9
    # a module with 4 outputs takes labels 0..2 (a class absent from the training rows) as a 4-class target
    wide = train_arrays(X, y, TrainConfig(solver="none", epochs=1), model=nn.Linear(4, 4))
    assert wide.n_classes == 4 and wide.decision_function(X).shape == (60, 4)


def test_evaluate_split_passes_c_class_probabilities_and_n_classes_to_the_metrics(monkeypatch) -> None:
    from types import SimpleNamespace

    from fastfair import metrics, training

    X, y = blobs(60)
    result = train_arrays(X, y, TrainConfig(solver="none", epochs=3, lr=0.1))
    calls: dict[str, tuple] = {}

    def summary(y_true, y_pred, sensitive, scores=None, *, n_classes=None):
        calls["summary"] = (y_true, y_pred, sensitive, scores, n_classes)
        return {"accuracy": float(np.mean(y_true == y_pred))}

    def table(y_true, y_pred, sensitive, scores=None, group_names=None, *, overall=False, n_classes=None):
        calls["table"] = (y_true, y_pred, sensitive, scores, group_names, n_classes)
        return "table"

    monkeypatch.setattr(metrics, "classification_summary", summary)
    monkeypatch.setattr(metrics, "group_table", table)
    s = np.arange(60) % 2
    split = SimpleNamespace(X=X, y=y, s=s, group_names=("a", "b"))
    out = training.evaluate_split(result, split)
    assert out["groups"] == "table"
    logits = result.decision_function(X)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    y_true, y_pred, names, scores, n_classes = calls["summary"]
    np.testing.assert_array_equal(y_true, y)
    assert n_classes == 3 and calls["table"][5] == 3
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    np.testing.assert_array_equal(y_pred, logits.argmax(1))
    assert list(names[:2]) == ["a", "b"]
    assert calls["table"][4] == {0: "a", 1: "b"}


def test_train_and_evaluate_a_bundled_multiclass_dataset() -> None:
    from fastfair import datasets
    from fastfair.training import evaluate, train

    data = datasets.load("colored_digits", seed=0)
    assert data.n_classes >= 3
    result = train(data, TrainConfig(solver="trs", epochs=2, lr=0.01, radius=0.2))
    assert result.n_classes == data.n_classes and result.model.n_classes == data.n_classes
    out = evaluate(result, data, ("test",))["test"]
    summary, table = out["summary"], out["groups"]
    pred = result.predict(data.test.X)
    assert summary["n_classes"] == data.n_classes
    assert summary["accuracy"] == pytest.approx(float(np.mean(pred == data.test.y)), abs=1e-12)
    assert all(f"selection_rate[{c}]" in table.columns for c in range(data.n_classes))


@pytest.mark.parametrize("bad", [3.0, -1.0, 1.5, float("nan")])
def test_a_class_code_outside_the_logits_is_a_one_line_error(bad):
    from fastfair.errors import FastfairError
    from fastfair.losses import classification_loss, softmax_logit_derivatives

    z = torch.zeros(3, 3, dtype=torch.float64)
    y = torch.tensor([0.0, bad, 2.0], dtype=torch.float64)
    with pytest.raises(FastfairError, match=r"class codes must be integers in 0\.\.2"):
        classification_loss(z, y)
    with pytest.raises(FastfairError, match=r"class codes must be integers in 0\.\.2"):
        softmax_logit_derivatives(z, y)
    with pytest.raises(FastfairError, match="got 5"):
        classification_loss(z, torch.tensor([0, 5, 1]))
