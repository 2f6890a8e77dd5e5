"""Training loop: determinism, train_size, clean-loss mixing, an independent oracle for robust training, bounds of
the settings, data errors, and the inner solver's post-training diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfair.errors import FastfairError
from fastfair.models import build_model
from fastfair.training import TrainConfig, TrainResult, inner_diagnostics, scale_range, train_arrays


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


# ----------------------------------------------------------------------------------------------------------
# Bounds of the numeric settings: what the dtype and torch can represent, one-line errors
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields, words",
    [
        ({"radius": 1e39}, "radius"),  # overflows float32
        ({"radius": 1e30}, "radius"),  # r² overflows float32
        ({"radius": 1e-320}, "radius"),  # rounds to 0 in float32
        ({"radius": 1e-320, "dtype": "float64"}, "radius"),  # subnormal: r² underflows to 0
        ({"radius": 1e200, "dtype": "float64"}, "radius"),
        ({"lr": 1e39}, "learning rate"),
        ({"lr": float("inf")}, "learning rate"),
        ({"seed": 2**64}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.0}, "seed"),
        ({"epochs": 2.5}, "epochs"),
        ({"epochs": 10**30}, "epochs"),
        ({"hidden": 10**30}, "hidden"),
        ({"hidden": True}, "hidden"),
        ({"batch_size": 2**64}, "batch size"),
        ({"train_size": 0}, "train size"),
        ({"train_size": 2**64}, "train size"),
        ({"clean_weight": float("nan")}, "clean weight"),
        ({"radius": "0.1"}, "radius"),
        ({"solver_options": "steps=3"}, "solver options"),
        ({"solver": "pgd", "solver_options": {"seed": 2**64}}, "seed"),
        ({"fairness_penalty": "dp", "fairness_weight": -1.0}, "fairness weight must be a finite number >= 0"),
        ({"fairness_penalty": "dp", "fairness_weight": float("inf")}, "fairness weight"),
        ({"fairness_penalty": "dp", "fairness_weight": float("nan")}, "fairness weight"),
        ({"fairness_penalty": "dp", "fairness_weight": "1"}, "fairness weight"),
        ({"fairness_penalty": "sp", "fairness_weight": 1.0}, "unknown fairness penalty 'sp'; choose one of dp, eo"),
        ({"fairness_weight": 2.0}, "fairness weight 2 needs a fairness penalty"),
    ],
)
def test_numeric_settings_are_bounded_with_one_line_errors(fields, words):
    with pytest.raises(FastfairError, match=words) as exc:
        TrainConfig(**fields).validate()
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@settings(max_examples=200, deadline=None)
@given(r=st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_accepted_radii_square_to_finite_normal_numbers_of_the_dtype(dtype, r):
    """Oracle (numpy): a radius is accepted iff it is a power-of-two range whose squares in the dtype are finite
    normal numbers; every accepted radius rounds to a dtype value with a finite, normal square."""
    np_dtype = np.dtype(dtype)
    info = np.finfo(np_dtype)
    try:
        TrainConfig(radius=r, dtype=dtype).validate()
        accepted = True
    except FastfairError:
        accepted = False
    with np.errstate(over="ignore", under="ignore"):
        rounded = np_dtype.type(r)
        square = rounded * rounded
    if accepted:
        assert np.isfinite(square) and square >= info.tiny
    else:
        lo, hi = scale_range(dtype)
        assert r < lo or r > hi
    assert accepted == (2.0 ** (info.minexp // 2) <= r <= 2.0 ** ((info.maxexp - 1) // 2))


def test_scale_range_ends_are_the_exact_limits():
    for dtype in ("float32", "float64"):
        lo, hi = scale_range(dtype)
        TrainConfig(radius=lo, lr=hi, dtype=dtype).validate()
        with pytest.raises(FastfairError, match="radius"):
            TrainConfig(radius=np.nextafter(lo, 0), dtype=dtype).validate()
        with pytest.raises(FastfairError, match="learning rate"):
            TrainConfig(lr=np.nextafter(hi, np.inf), dtype=dtype).validate()
    assert scale_range("float32") == (2.0**-63, 2.0**63)
    assert scale_range("float64") == (2.0**-511, 2.0**511)


def test_validate_normalises_numpy_numbers_to_python_ones():
    cfg = TrainConfig(hidden=np.int64(3), epochs=np.int32(2), radius=np.float32(0.5), lr=np.float64(0.1)).validate()
    assert type(cfg.hidden) is int and type(cfg.epochs) is int and type(cfg.radius) is float
    assert cfg.radius == 0.5 and cfg.lr == 0.1


# ----------------------------------------------------------------------------------------------------------
# Data the dtype cannot hold, and divergence, are named as such
# ----------------------------------------------------------------------------------------------------------
def test_feature_column_beyond_float32_is_a_data_error_naming_the_column():
    X, y = _data(40, 3)
    X[5, 2] = 1e200
    with pytest.raises(FastfairError, match=r"X column 2 has values of magnitude 1e\+200.*float32"):
        train_arrays(X, y, TrainConfig(epochs=1))
    res = train_arrays(X / 1e200, y, TrainConfig(epochs=1))  # the same data, representable: trains
    assert np.isfinite(res.history[-1]["train_loss"])


def test_non_finite_features_are_a_data_error_naming_the_column():
    X, y = _data(40, 3)
    X[1, 1] = np.nan
    with pytest.raises(FastfairError, match="X has NaN or infinite values in column 1"):
        train_arrays(X, y, TrainConfig(epochs=1, dtype="float64"))
    Xv = X[:10].copy()
    Xv[1, 1] = 0.0
    Xv[3, 0] = -np.inf
    with pytest.raises(FastfairError, match="X_val has NaN or infinite values in column 0"):
        train_arrays(np.nan_to_num(X), y, TrainConfig(epochs=1), X_val=Xv, y_val=y[:10])


def test_divergence_message_names_the_learning_rate_without_cli_flags():
    X, y = _data(40, 3)
    X[:, 0] *= 1e30  # representable in float32, but the logits overflow once the weights move
    with pytest.raises(FastfairError, match="diverged") as exc:
        train_arrays(X, y, TrainConfig(epochs=3, lr=1e10, batch_size=8))
    assert "learning rate" in str(exc.value) and "--" not in str(exc.value)


# ----------------------------------------------------------------------------------------------------------
# Post-training diagnostics of the inner solver
# ----------------------------------------------------------------------------------------------------------
class _SineLogit(torch.nn.Module):
    """f(x) = k·sin(x₁): at x = 0 the loss of y = 0 has gradient (k/2)e₁ and Hessian (k²/4)e₁e₁ᵀ, so the
    maximiser of its quadratic model over the ball is δ = r·e₁; at r = 3π/2 the logit there is -k."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(k, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k * torch.sin(x[:, 0])


def test_diagnostics_warn_when_the_perturbed_loss_is_below_the_clean_loss():
    """Oracle by hand: clean loss softplus(0) = log 2, the TRS step lands where the loss is softplus(-k)."""
    k, r = 2.0, 1.5 * np.pi
    result = TrainResult(_SineLogit(k), TrainConfig(solver="trs", radius=r, dtype="float64"), history=[])
    with pytest.warns(RuntimeWarning, match=r"lowered the mean loss .* \(0\.6931 -> 0\.1269\)"):
        diag = inner_diagnostics(result, np.zeros((3, 2)), np.zeros(3))
    assert diag["clean_loss"] == pytest.approx(np.log(2), rel=1e-12)
    assert diag["perturbed_loss"] == pytest.approx(np.log1p(np.exp(-k)), rel=1e-9)
    assert diag["certified_fraction"] == 1.0 and len(diag["warnings"]) == 1


def test_diagnostics_warn_when_solves_are_not_certified(monkeypatch):
    """A solver whose certificate fails on one row in four: 75% certified, and a warning saying so."""
    from fastfair import training
    from fastfair.inner import InnerResult
    from fastfair.trs import TRSCertificate

    class HalfCertified:
        def perturb(self, model, x, y, radius):
            n = len(x)
            zeros = torch.zeros(n, dtype=x.dtype)
            stationarity = torch.tensor([0.0, 0.0, 0.5, 0.0], dtype=x.dtype)  # relative violation 0.5 on row 2
            cert = TRSCertificate(stationarity, zeros, zeros, zeros, torch.ones(n, dtype=x.dtype), zeros + radius)
            loss = torch.full((n,), 5.0, dtype=x.dtype)  # above the clean loss: only the certificate is wrong
            return InnerResult(x, loss, torch.ones(n, dtype=torch.int64), certificate=cert, extras={"path": "stub"})

    monkeypatch.setattr(training, "make_inner", lambda name, **options: HalfCertified())
    result = TrainResult(build_model("affine", 2), TrainConfig(solver="trs", radius=0.1), history=[])
    with pytest.warns(RuntimeWarning, match=r"certified only 75\.0% of its solves .* violation 5\.0e-01"):
        diag = inner_diagnostics(result, np.zeros((4, 2)), np.zeros(4))
    assert diag["certified_fraction"] == 0.75 and len(diag["warnings"]) == 1


def test_diagnostics_of_a_sound_run_have_no_warnings(recwarn):
    X, y = _data(80)
    result = train_arrays(X, y, TrainConfig(solver="trs", radius=0.2, epochs=1, dtype="float64"))
    diag = inner_diagnostics(result, X, y)
    assert diag["warnings"] == [] and diag["perturbed_loss"] > diag["clean_loss"]
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_diagnostics_refuse_features_and_labels_of_different_lengths():
    X, y = _data(80)
    result = train_arrays(X, y, TrainConfig(solver="trs", radius=0.2, epochs=1, train_size=20))
    with pytest.raises(FastfairError, match="same number of rows"):
        inner_diagnostics(result, X[:20], y)


# ----------------------------------------------------------------------------------------------------------
# Fairness settings and row weights
# ----------------------------------------------------------------------------------------------------------
def test_fairness_settings_are_normalised_and_recorded():
    cfg = TrainConfig(fairness_penalty="eo", fairness_weight=np.float32(0.5)).validate()
    assert cfg.fairness_weight == 0.5 and type(cfg.fairness_weight) is float
    assert cfg.to_dict()["fairness_penalty"] == "eo" and cfg.to_dict()["fairness_weight"] == 0.5
    assert TrainConfig(fairness_penalty="dp", fairness_weight=0).validate().fairness_weight == 0.0  # recorded only
    assert TrainConfig().to_dict()["fairness_penalty"] is None


def _groups(n: int) -> np.ndarray:
    return np.array(["a", "b", "c"])[np.arange(n) % 3]


@pytest.mark.parametrize("solver", ["none", "trs"])
@pytest.mark.parametrize("penalty", [None, "dp"])
def test_unit_weights_equal_no_weights_exactly(solver, penalty):
    X, y = _data(90)
    cfg = TrainConfig(
        epochs=3, batch_size=16, solver=solver, radius=0.2, fairness_penalty=penalty,
        fairness_weight=1.0 if penalty else 0.0,
    )  # fmt: skip
    plain = train_arrays(X, y, cfg, groups=_groups(90))
    ones = train_arrays(X, y, cfg, groups=_groups(90), sample_weight=np.ones(90))
    for pa, pb in zip(_params(plain), _params(ones), strict=True):
        np.testing.assert_array_equal(pa, pb)
    assert plain.history == [{**h, "epoch_seconds": p["epoch_seconds"], "inner_seconds": p["inner_seconds"]}
                             for h, p in zip(ones.history, plain.history, strict=True)]  # fmt: skip


def test_zero_weights_equal_removed_rows_exactly():
    """Zero-weight rows are taken out before the seeded shuffle: the same run as without them, mini-batches and
    all."""
    X, y = _data(100)
    rng = np.random.default_rng(4)
    w = rng.integers(0, 3, size=100).astype(float)
    keep = w > 0
    cfg = TrainConfig(epochs=3, batch_size=8, solver="trs", radius=0.2, fairness_penalty="eo", fairness_weight=2.0)
    a = train_arrays(X, y, cfg, sample_weight=w, groups=_groups(100))
    b = train_arrays(X[keep], y[keep], cfg, sample_weight=w[keep], groups=_groups(100)[keep])
    for pa, pb in zip(_params(a), _params(b), strict=True):
        np.testing.assert_array_equal(pa, pb)


@pytest.mark.parametrize("solver", ["none", "trs"])
def test_integer_weights_equal_repeated_rows_on_the_full_batch_float64_path(solver):
    """Σ wᵢ ℓᵢ / Σ wᵢ is the mean over the rows repeated wᵢ times (zero: removed), and so are the penalty's group
    rates: with one batch holding every row, in float64, the two runs agree up to rounding."""
    X, y = _data(60)
    w = np.random.default_rng(6).integers(0, 4, size=60)
    g = _groups(60)
    cfg = TrainConfig(
        epochs=5, batch_size=1000, solver=solver, radius=0.2, dtype="float64", clean_weight=0.3,
        fairness_penalty="dp", fairness_weight=1.5,
    )  # fmt: skip
    weighted = train_arrays(X, y, cfg, sample_weight=w, groups=g)
    repeated = train_arrays(np.repeat(X, w, axis=0), np.repeat(y, w), cfg, groups=np.repeat(g, w))
    for pa, pb in zip(_params(weighted), _params(repeated), strict=True):
        np.testing.assert_allclose(pa, pb, rtol=1e-10, atol=1e-12)
    for key in ("train_loss", "train_accuracy", "train_penalty"):
        assert weighted.history[-1][key] == pytest.approx(repeated.history[-1][key], rel=1e-10, abs=1e-12), key


def test_weighted_fit_is_calibrated_in_the_weighted_mean():
    """At the optimum of the weighted logistic loss, its derivative in the bias vanishes: Σ wᵢ (σ(f(xᵢ)) - yᵢ) = 0.
    A long full-batch float64 run gets there with weights and without, and the two are different models."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 2))
    y = (X[:, 0] + 2 * rng.normal(size=90) > 0).astype(np.int64)  # overlapping classes: a finite optimum
    w = np.where(y == 1, 4.0, 1.0)
    cfg = TrainConfig(epochs=100, batch_size=90, dtype="float64", lr=0.1)
    p_weighted = train_arrays(X, y, cfg, sample_weight=w).predict_proba(X)
    p_plain = train_arrays(X, y, cfg).predict_proba(X)
    assert abs(np.average(p_weighted - y, weights=w)) < 5e-3
    assert abs(np.mean(p_plain - y)) < 5e-3
    assert np.average(p_plain - y, weights=w) < -0.2  # the unweighted fit is far from the weighted optimum


@pytest.mark.parametrize(
    "weight, words",
    [
        (np.ones(89), r"sample_weight must hold one number per training row: expected shape \(90,\), got \(89,\)"),
        (np.ones((90, 2)), "sample_weight must hold one number per training row"),
        (np.r_[np.ones(89), -1.0], "sample_weight must be >= 0, got -1 at row 89"),
        (np.r_[np.ones(89), np.nan], "sample_weight has NaN or infinite values"),
        (np.r_[np.ones(89), np.inf], "sample_weight has NaN or infinite values"),
        (np.zeros(90), "sample_weight is all zero"),
        (["x"] * 90, "sample_weight must be an array of numbers"),
    ],
)
def test_bad_sample_weights_are_one_line_errors(weight, words):
    X, y = _data(90)
    with pytest.raises(FastfairError, match=words) as exc:
        train_arrays(X, y, TrainConfig(epochs=1), sample_weight=weight)
    assert "\n" not in str(exc.value)


def test_train_size_cuts_weights_and_groups_too():
    X, y = _data(100)
    w = np.r_[np.zeros(30), np.ones(70)]
    with pytest.raises(FastfairError, match="all zero on the rows trained on"):
        train_arrays(X, y, TrainConfig(epochs=1, train_size=30), sample_weight=w)
    cfg = dict(epochs=2, batch_size=10, dtype="float64", fairness_penalty="dp", fairness_weight=1.0)
    a = train_arrays(X, y, TrainConfig(train_size=50, **cfg), sample_weight=w, groups=_groups(100))
    b = train_arrays(X[:50], y[:50], TrainConfig(**cfg), sample_weight=w[:50], groups=_groups(100)[:50])
    for pa, pb in zip(_params(a), _params(b), strict=True):
        np.testing.assert_array_equal(pa, pb)
