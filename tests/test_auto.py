"""The automatic inner solver: which solver it picks for which model, that it returns exactly the chosen solver's
result, the fact behind its PGD choice (for a ReLU network the exact TRS step is the normalised gradient step of
length r), its options, and how training and ``fastfair train`` record the choice."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastfair.errors import FastfairError
from fastfair.inner import SOLVERS, AutoAdversary, AutoChoice, make_inner, solver_options
from fastfair.models import build_model
from fastfair.training import TrainConfig, inner_diagnostics, train_arrays
from fastfair.trs import solve_trs
from fastfair.vocabulary import SOLVERS as VOCABULARY_SOLVERS
from helpers import run_cli

D = 5


class Logits(nn.Module):
    """(n, 1) -> (n,)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.squeeze(-1)


def sequential(*activations: nn.Module) -> nn.Module:
    """Linear(D, 6), act, Linear(6, 6), act, ..., Linear(6, 1) -> (n,) logits."""
    layers: list[nn.Module] = []
    width = D
    for act in activations:
        layers += [nn.Linear(width, 6), act]
        width = 6
    return nn.Sequential(*layers, nn.Linear(width, 1), Logits())


class Functional(nn.Module):
    """Two hidden layers whose activation is a function called in ``forward``: no activation module to see."""

    def __init__(self, d: int, act) -> None:
        super().__init__()
        self.a, self.b, self.c, self.act = nn.Linear(d, 32), nn.Linear(32, 32), nn.Linear(32, 1), act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.act(self.b(self.act(self.a(x))))).squeeze(-1)


def batch(n: int = 24, d: int = D, dtype=torch.float32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    return x, (torch.rand(n, generator=gen) < 0.5).to(dtype)


CASES = [
    ("affine", lambda: build_model("affine", D), "trs"),
    ("mlp tanh", lambda: build_model("mlp", D, activation="tanh"), "trs"),
    ("mlp relu", lambda: build_model("mlp", D, activation="relu"), "pgd"),
    ("mlp leaky_relu", lambda: build_model("mlp", D, activation="leaky_relu"), "pgd"),
    ("deep tanh", lambda: build_model("mlp", D, hidden=(8, 4), activation="tanh"), "trs"),
    ("deep gelu", lambda: build_model("mlp", D, hidden=(8, 4), activation="gelu"), "trs"),
    ("deep relu", lambda: build_model("mlp", D, hidden=(8, 4, 3), activation="relu"), "pgd"),
    ("sequential relu", lambda: sequential(nn.ReLU(), nn.ReLU()), "pgd"),
    ("sequential tanh", lambda: sequential(nn.Tanh()), "trs"),
    (
        "sequential max-pool",
        lambda: nn.Sequential(
            nn.Linear(D, 8), nn.Unflatten(1, (1, 8)), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(4, 1), Logits()
        ),
        "pgd",
    ),
    ("sequential relu + tanh", lambda: sequential(nn.ReLU(), nn.Tanh()), "trs"),
    ("nested deep relu", lambda: nn.Sequential(build_model("mlp", D, hidden=(4, 4), activation="relu")), "pgd"),
    ("functional relu", lambda: Functional(D, F.relu), "pgd"),
    ("functional tanh", lambda: Functional(D, torch.tanh), "trs"),
    ("linear", lambda: sequential(), "trs"),
]


@pytest.mark.parametrize("name, make, expected", CASES, ids=[c[0] for c in CASES])
def test_choice(name, make, expected):
    choice = make_inner("auto").choose(make(), D)
    assert isinstance(choice, AutoChoice) and choice.solver == expected
    reason = choice.reason
    assert reason.startswith("the model ") and reason.endswith(".") and "\n" not in reason
    if expected == "pgd":
        assert "rank one" in reason and "normalised gradient step of length r" in reason


def test_reason_names_what_was_seen():
    auto = make_inner("auto")
    assert "relu activations" in auto.choose(build_model("mlp", D, hidden=(4, 4), activation="relu"), D).reason
    assert "nn.ReLU" in auto.choose(sequential(nn.ReLU()), D).reason
    assert "probe" in auto.choose(Functional(D, F.relu), D).reason


def test_probe_off_cannot_see_a_functional_relu():
    """The documented limit: without the probe, a relu called inside forward is invisible."""
    choice = make_inner("auto", probe=False).choose(Functional(D, F.relu), D)
    assert choice.solver == "trs" and "probe is off" in choice.reason


@pytest.mark.parametrize("d", [1, 3, 100, 784])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_probe_on_deeper_functional_networks(d, dtype):
    for seed in range(3):
        torch.manual_seed(seed)
        assert make_inner("auto").choose(Functional(d, F.relu).to(dtype), d).solver == "pgd"
        assert make_inner("auto").choose(Functional(d, F.softplus).to(dtype), d).solver == "trs"


def test_probe_reads_the_model_in_evaluation_mode_and_restores_it():
    model = nn.Sequential(nn.Dropout(0.5), Functional(D, F.relu))
    model.train()
    assert make_inner("auto").choose(model, D).solver == "pgd"  # dropout noise would look like curvature
    assert all(m.training for m in model.modules())
    model.eval()
    assert make_inner("auto").choose(model, D).solver == "pgd"
    assert not any(m.training for m in model.modules())


def test_probe_leaves_the_global_rng_alone():
    model = Functional(D, F.relu)
    torch.manual_seed(3)
    state = torch.random.get_rng_state()
    assert make_inner("auto").choose(model, D).solver == "pgd"
    assert torch.equal(torch.random.get_rng_state(), state)


PERTURB_CASES = [
    c
    for c in CASES
    if c[0] in ("affine", "mlp tanh", "mlp relu", "deep gelu", "deep relu", "sequential tanh", "functional relu")
]


@pytest.mark.parametrize("name, make, expected", PERTURB_CASES, ids=[c[0] for c in PERTURB_CASES])
def test_auto_returns_exactly_the_chosen_solvers_result(name, make, expected):
    model = make().double()
    x, y = batch(dtype=torch.float64)
    r = 0.3
    auto = make_inner("auto")
    got = auto.perturb(model, x, y, r)
    ref = make_inner(expected).perturb(model, x, y, r)
    assert torch.equal(got.x_adv, ref.x_adv) and torch.equal(got.loss, ref.loss)
    assert torch.equal(got.iterations, ref.iterations)
    assert got.extras["path"] == ref.extras["path"]
    assert got.extras["auto"] == {"solver": expected, "reason": auto.choose(model, D).reason}
    assert auto.last_choice == auto.choose(model, D)
    assert (got.certificate is None) == (ref.certificate is None)
    rr = torch.full((x.shape[0],), r, dtype=x.dtype)
    assert torch.equal(auto.attack(model, x, y, rr), make_inner(expected).attack(model, x, y, rr))


@pytest.mark.parametrize(
    "model",
    [
        build_model("mlp", 6, hidden=(9, 7), activation="relu", seed=1, dtype=torch.float64),
        build_model("mlp", 6, hidden=(9, 7), activation="leaky_relu", seed=2, dtype=torch.float64),
        nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 1), Logits()).double(),
    ],
    ids=["deep relu", "deep leaky_relu", "sequential relu"],
)
def test_relu_network_trs_step_is_the_normalised_gradient_step(model):
    """Why auto picks PGD for piecewise-linear models: the exact TRS step on the exact input Hessian (dense, from
    torch.func, float64) is r·∇L/‖∇L‖, the normalised gradient step of length r, and ∇²L = ℓ″∇f∇fᵀ is rank one."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)  # spread the logits so that ℓ′ and ℓ″ vary across rows
    x, y = batch(n=30, d=6, dtype=torch.float64, seed=1)
    r = torch.full((30,), 0.7, dtype=torch.float64)

    def loss_one(xi, yi):
        return F.binary_cross_entropy_with_logits(model(xi[None])[0], yi)

    grad = torch.func.vmap(torch.func.grad(loss_one))(x, y).detach()
    hess = torch.func.vmap(torch.func.hessian(loss_one))(x, y).detach()
    fgrad = torch.func.vmap(torch.func.grad(lambda xi: model(xi[None])[0]))(x).detach()
    s = torch.sigmoid(model(x)).detach()
    torch.testing.assert_close(
        hess, (s * (1 - s))[:, None, None] * fgrad[:, :, None] * fgrad[:, None, :], rtol=1e-12, atol=1e-14
    )
    step = solve_trs(-grad, -hess, r).step
    expected = r[:, None] * grad / torch.linalg.vector_norm(grad, dim=1, keepdim=True)
    assert float((step - expected).abs().max()) < 1e-9


def test_options_reach_the_candidates():
    auto = make_inner("auto", trs={"certify": False}, pgd={"steps": 3, "rel_step": 0.5})
    assert isinstance(auto, AutoAdversary)
    assert auto.candidates["trs"].certify is False
    assert auto.candidates["pgd"].steps == 3 and auto.candidates["pgd"].rel_step == 0.5
    assert solver_options("auto") == {"trs": None, "pgd": None, "probe": True}
    model = build_model("mlp", D, activation="relu")
    x, y = batch()
    assert int(auto.perturb(model, x, y, 0.1).iterations.max()) == 3


@pytest.mark.parametrize(
    "options, match",
    [
        ({"trs": {"steps": 3}}, "auto option trs: unknown option 'steps' for solver 'trs'"),
        ({"pgd": {"steps": 0}}, "auto option pgd: steps must be a positive integer"),
        ({"pgd": "fast"}, "auto option pgd must be a mapping"),
        ({"probe": "yes"}, "probe must be true or false"),
        ({"steps": 3}, "unknown option 'steps' for solver 'auto'"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(FastfairError, match=match):
        make_inner("auto", **options)


def test_registry_and_bad_model():
    assert SOLVERS == VOCABULARY_SOLVERS
    assert make_inner("auto").name == "auto"
    with pytest.raises(FastfairError, match=r"torch\.nn\.Module"):
        make_inner("auto").choose(lambda x: x.sum(1), D)
    with pytest.raises(FastfairError, match="radius"):
        make_inner("auto").perturb(build_model("affine", D), *batch(), 0.0)


# ------------------------------------------------------------------------------------------------------
# training and the command line
# ------------------------------------------------------------------------------------------------------


def _data(n: int = 96, d: int = D, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X @ np.arange(1, d + 1) + rng.normal(size=n) > 0).astype(np.int64)


@pytest.mark.parametrize(
    "hidden, activation, expected", [((6, 4), "relu", "pgd"), ((6, 4), "tanh", "trs"), (5, "tanh", "trs")]
)
def test_training_with_auto_is_training_with_the_choice(hidden, activation, expected):
    X, y = _data()
    cfg = dict(model="mlp", epochs=2, batch_size=32, radius=0.2, dtype="float64", activation=activation)
    runs = {}
    for solver in ("auto", expected):
        net = build_model("mlp", D, hidden=hidden, activation=activation, seed=0, dtype=torch.float64)
        runs[solver] = train_arrays(X, y, TrainConfig(solver=solver, **cfg), model=net)
    for a, b in zip(runs["auto"].model.parameters(), runs[expected].model.parameters(), strict=True):
        assert torch.equal(a, b)
    choice = runs["auto"].inner_choice
    assert choice is not None and choice["solver"] == expected and choice["reason"].endswith(".")
    assert runs[expected].inner_choice is None
    diag = inner_diagnostics(runs["auto"], X, y)
    assert diag["solver"] == "auto" and diag["choice"] == expected and diag["reason"] == choice["reason"]
    assert ("path" in diag) == (expected == "trs")
    if expected == "trs":
        assert diag["certified_fraction"] == 1.0
    assert diag["perturbed_loss"] >= diag["clean_loss"]


def test_auto_random_start_takes_the_run_seed():
    X, y = _data()
    cfg = dict(model="mlp", activation="relu", epochs=1, batch_size=32, radius=0.2, dtype="float64", seed=3)
    auto = TrainConfig(solver="auto", solver_options={"pgd": {"random_start": True}}, **cfg)
    pgd = TrainConfig(solver="pgd", solver_options={"random_start": True}, **cfg)
    torch.manual_seed(0)
    a = train_arrays(X, y, auto)
    torch.manual_seed(1)  # the global RNG must not matter
    b = train_arrays(X, y, pgd)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("activation, expected", [("relu", "pgd"), ("tanh", "trs")])
def test_cli_train_reports_the_choice(capsys, activation, expected):
    options = "--dataset unfair2d --model mlp --hidden 4 --solver auto --epochs 1 --batch-size 50 --train-size 200"
    argv = ["train", *options.split(), "--activation", activation, "--no-progress"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert f"inner solver auto -> {expected}: the model is" in out
    code, out, _ = run_cli(capsys, *argv, "--json")
    assert code == 0
    inner = json.loads(out)["inner"]
    assert inner["solver"] == "auto" and inner["choice"] == expected and inner["reason"].startswith("the model is")
    assert ("path" in inner) == (expected == "trs")
