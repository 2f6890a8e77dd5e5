"""Per-group robustness: exact flips of the affine model, the attack for any other model, the table and figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score

from fastfair.errors import FastfairError
from fastfair.inner import make_inner
from fastfair.models import MLP, Affine, build_model
from fastfair.robustness import ALL_GROUP, COLUMNS, group_robustness, robustness_figure
from helpers import TwoHidden

pytestmark = pytest.mark.usefixtures("single_threaded_linear_algebra")


def affine(w: list[float], b: float, dtype: torch.dtype = torch.float64) -> Affine:
    model = Affine(len(w)).to(dtype)
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([w], dtype=dtype))
        model.linear.bias.fill_(b)
    return model


def tanh_mlp(d: int, seed: int, scale: float = 3.0) -> MLP:
    """A tanh MLP with large enough weights that its boundary is visibly curved on unit-scale data."""
    model = build_model("mlp", d, hidden=8, activation="tanh", seed=seed, dtype=torch.float64)
    with torch.no_grad():
        model.hidden.weight.mul_(scale)
        model.out.weight.mul_(scale)
    return model


def logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float64)).numpy()


def flips_by_row(model, X, radius, **kwargs) -> np.ndarray:
    """Which rows flip, read off the table: each row its own group."""
    frame = group_robustness(model, X, np.zeros(len(X)), np.arange(len(X)), [radius], **kwargs)
    rows = frame[frame["group"] != ALL_GROUP].sort_values("group")
    return rows["flip_rate"].to_numpy() == 1.0


def data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, 2, n), rng.choice(["f", "m", "x"], size=n, p=[0.5, 0.4, 0.1])


# ----------------------------------------------------------------------------------------------------------
# Exact: the affine model
# ----------------------------------------------------------------------------------------------------------
def test_affine_hand_computed_with_both_ties() -> None:
    # f(x) = 3 x1 + 4 x2 - 5, ‖w‖ = 5. Logits -5, 2.5, -7.5, 10, 0: distances 1, 0.5, 1.5, 2, 0 to the boundary.
    model = affine([3.0, 4.0], -5.0)
    X = np.array([[0.0, 0.0], [0.5, 1.5], [-0.5, -0.25], [1.0, 3.0], [-1.0, 2.0]])
    y = np.array([0, 1, 1, 1, 1])  # predictions 0, 1, 0, 1, 0 (f = 0 predicts 0): rows 3 and 5 are wrong
    s = np.array(["a", "a", "a", "b", "b"])
    frame = group_robustness(model, X, y, s, [2.0, 0.5, 1.0]).set_index(["radius", "group"])
    assert list(frame.columns) == list(COLUMNS[2:])
    assert (frame["method"] == "exact").all() and (frame["flip_rate_bound"] == "exact").all()
    # r = 0.5: row 2 (predicted 1, distance exactly 0.5) flips: f - r‖w‖ = 0 predicts 0; row 5 (f = 0) flips.
    # r = 1: row 1 (predicted 0, distance exactly 1) does not flip: its best is f = 0, still predicted 0.
    # r = 2: everything flips (row 4 at distance exactly 2 included).
    expected = {
        (0.5, "a"): (3, 1 / 3, 1 / 3, 2 / 3),
        (0.5, "b"): (2, 1 / 2, 1 / 2, 1 / 2),
        (0.5, "all"): (5, 2 / 5, 2 / 5, 3 / 5),
        (1.0, "a"): (3, 1 / 3, 1 / 3, 2 / 3),
        (1.0, "b"): (2, 1 / 2, 1 / 2, 1 / 2),
        (1.0, "all"): (5, 2 / 5, 2 / 5, 3 / 5),
        (2.0, "a"): (3, 1.0, 0.0, 2 / 3),
        (2.0, "b"): (2, 1.0, 0.0, 1 / 2),
        (2.0, "all"): (5, 1.0, 0.0, 3 / 5),
    }
    assert list(frame.index) == list(expected)
    for key, (n, flip, robust, clean) in expected.items():
        row = frame.loc[key]
        assert row["n"] == n
        assert row[["flip_rate", "robust_accuracy", "clean_accuracy"]].tolist() == pytest.approx([flip, robust, clean])


def test_affine_zero_weights_nothing_flips() -> None:
    model = affine([0.0, 0.0, 0.0], 0.25)  # constant logit 0.25: every point predicted 1
    X, y, s = data(40, 3, seed=1)
    frame = group_robustness(model, X, y, s, [0.1, 1e6])
    assert (frame["flip_rate"] == 0).all()
    assert np.array_equal(frame["robust_accuracy"], frame["clean_accuracy"])
    pooled = frame[frame["group"] == ALL_GROUP]
    assert pooled["clean_accuracy"].tolist() == pytest.approx([y.mean()] * 2)


def test_affine_against_brute_force_on_the_circle() -> None:
    """d = 2: sampling the circle of radius r finds only predicted flips, and each predicted flip is reached at
    the closed-form point x ∓ r w/‖w‖."""
    rng = np.random.default_rng(7)
    w, b, r = rng.normal(size=2), float(rng.normal()), 0.6
    model = affine(w.tolist(), b)
    X = rng.normal(size=(300, 2))
    f = X @ w + b
    X = X[np.abs(np.abs(f) / np.linalg.norm(w) - r) > 1e-9]  # no point on the edge of its ball
    predicted = flips_by_row(model, X, r)
    assert 0 < predicted.sum() < len(X)

    angles = np.linspace(0.0, 2 * np.pi, 3600, endpoint=False)
    circle = r * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    clean = logits(model, X) > 0
    for i, x in enumerate(X):
        sampled_flip = ((logits(model, x + circle) > 0) != clean[i]).any()
        assert not sampled_flip or predicted[i]
    unit = w / np.linalg.norm(w)
    closed_form = X - np.where(clean, 1.0, -1.0)[:, None] * r * unit
    attained = (logits(model, closed_form) > 0) != clean
    assert np.array_equal(attained, predicted)


# ----------------------------------------------------------------------------------------------------------
# The attack
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("r", [0.05, 0.4, 1.5])
def test_attack_on_affine_agrees_with_exact(r: float) -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=5)
    model = affine(w.tolist(), 0.3)
    X = rng.normal(size=(400, 5))
    exact = flips_by_row(model, X, r)
    attack = flips_by_row(model, X, r, method="attack", restarts=3, steps=5)
    edge = np.abs(np.abs(X @ w + 0.3) / np.linalg.norm(w) - r) <= 1e-6
    assert 0 < exact.sum() < len(X)
    assert np.array_equal(attack[~edge], exact[~edge])


def single_step_flips(model: torch.nn.Module, X: np.ndarray, r: float) -> np.ndarray:
    """Flips found by one normalised-gradient step of length r on the signed margin, row by row."""
    out = np.zeros(len(X), dtype=bool)
    for i, row in enumerate(X):
        x = torch.tensor(row, dtype=torch.float64, requires_grad=True)
        f = model(x[None])[0]
        (g,) = torch.autograd.grad(f, x)
        sign = 1.0 if f.item() > 0 else -1.0
        step = x.detach() - sign * r * g / g.norm()
        out[i] = (model(step[None])[0].item() > 0) != (f.item() > 0)
    return out


def test_attack_beats_a_single_gradient_step_on_a_tanh_mlp() -> None:
    X, y, s = data(150, 4, seed=5)
    model = tanh_mlp(4, seed=2)
    radii = [0.1, 0.5, 1.5]
    frame = group_robustness(model, X, y, s, radii, restarts=4, steps=10)
    assert (frame["method"] == "attack").all() and (frame["flip_rate_bound"] == "lower").all()
    assert frame["flip_rate"].between(0, 1).all()
    for r in radii:
        single = single_step_flips(model, X, r)
        per_row = flips_by_row(model, X, r, restarts=4, steps=10)
        assert np.all(per_row >= single)  # every flip of the single step is found
        rows = frame[frame["radius"] == r].set_index("group")
        for g in ["f", "m", "x"]:
            assert rows.loc[g, "flip_rate"] >= single[s == g].mean()
    at = frame[(frame["radius"] == 1.5) & (frame["group"] == ALL_GROUP)]["flip_rate"].item()
    assert at > single_step_flips(model, X, 1.5).mean()  # strictly stronger where the boundary curves in the ball


@pytest.mark.parametrize(("build", "solver"), [("mlp", "trs"), ("mlp", "pgd"), ("own", "pgd")])
def test_attack_finds_every_flip_of_the_training_adversaries(build: str, solver: str) -> None:
    """The training solvers, aimed at the predicted class, flip no point that the attack leaves unflipped."""
    X, _, _ = data(120, 4, seed=6)
    models = {
        "mlp": lambda: tanh_mlp(4, seed=3),
        "own": lambda: TwoHidden(4).double(),
    }
    model = models[build]()
    x = torch.as_tensor(X)
    with torch.no_grad():
        clean = model(x) > 0
    for r in [0.3, 1.0]:
        x_adv = make_inner(solver).perturb(model, x, clean.to(x.dtype), r).x_adv
        with torch.no_grad():
            adversary = ((model(x_adv) > 0) != clean).numpy()
        attack = flips_by_row(model, X, r, restarts=4, steps=10)
        assert np.all(attack >= adversary)


def test_attack_finds_the_flips_of_dense_sampling_in_the_disk() -> None:
    """d = 2, tanh MLP: every point for which a dense polar grid of the disk of radius r holds a flip is flipped
    by the attack, and every attack flip is real (confirmed by the grid at a slightly larger radius)."""
    rng = np.random.default_rng(11)
    model = tanh_mlp(2, seed=4, scale=4.0)
    X = rng.normal(size=(120, 2))
    r = 0.5
    angles = np.linspace(0.0, 2 * np.pi, 360, endpoint=False)
    radial = np.linspace(0.0, 1.0, 21)[1:]
    unit_disk = (radial[:, None, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)[None]).reshape(-1, 2)
    clean = logits(model, X) > 0

    def grid_flips(radius: float) -> np.ndarray:
        points = (X[:, None, :] + radius * unit_disk[None]).reshape(-1, 2)
        return ((logits(model, points).reshape(len(X), -1) > 0) != clean[:, None]).any(axis=1)

    grid_flip, wider_flip = grid_flips(r), grid_flips(1.02 * r)
    attack = flips_by_row(model, X, r)
    assert 0 < grid_flip.sum() < len(X)
    assert np.all(attack >= grid_flip)
    assert np.all(wider_flip >= attack)


def test_attack_is_deterministic_for_a_seed_and_leaves_the_model_alone() -> None:
    X, y, s = data(80, 3, seed=2)
    model = tanh_mlp(3, seed=1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = group_robustness(model, X, y, s, [0.2, 0.5], seed=9, restarts=3, steps=4)
    second = group_robustness(model, X, y, s, [0.2, 0.5], seed=9, restarts=3, steps=4)
    pd.testing.assert_frame_equal(first, second)
    assert first.attrs == {"seed": 9, "restarts": 3, "steps": 4}
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_attack_runs_in_the_models_dtype_on_a_float32_model() -> None:
    X, y, s = data(60, 3, seed=4)
    model = build_model("mlp", 3, hidden=5, seed=0)  # float32
    frame = group_robustness(model, torch.as_tensor(X), torch.as_tensor(y), s, 0.5, restarts=2, steps=3)
    with torch.no_grad():
        predicted = (model(torch.as_tensor(X, dtype=torch.float32)) > 0).numpy()
    pooled = frame[frame["group"] == ALL_GROUP]
    assert pooled["clean_accuracy"].item() == pytest.approx(accuracy_score(y, predicted))


# ----------------------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), use_affine=st.booleans())
def test_monotone_in_radius_and_groups_add_up(seed: int, use_affine: bool) -> None:
    X, y, s = data(60, 3, seed=seed)
    model = affine([1.0, -2.0, 0.5], 0.1) if use_affine else tanh_mlp(3, seed=seed % 5)
    frame = group_robustness(model, X, y, s, [1.0, 0.02, 0.3, 0.1, 3.0], restarts=2, steps=3)
    assert sorted(frame["radius"].unique()) == [0.02, 0.1, 0.3, 1.0, 3.0]
    for group, rows in frame.groupby("group"):
        rows = rows.sort_values("radius")
        assert np.all(np.diff(rows["flip_rate"]) >= 0)
        assert np.all(np.diff(rows["robust_accuracy"]) <= 0)
        assert np.all(rows["robust_accuracy"] <= rows["clean_accuracy"] + 1e-12)
        g = s if group == ALL_GROUP else s[s == group]
        assert (rows["n"] == len(g)).all()
    for _, rows in frame.groupby("radius"):
        parts, pooled = rows[rows["group"] != ALL_GROUP], rows[rows["group"] == ALL_GROUP].iloc[0]
        assert parts["n"].sum() == pooled["n"] == len(X)
        for column in ["flip_rate", "robust_accuracy", "clean_accuracy"]:
            assert (parts["n"] * parts[column]).sum() == pytest.approx(pooled["n"] * pooled[column])


def test_clean_accuracy_per_group_matches_sklearn() -> None:
    X, y, s = data(200, 4, seed=8)
    model = affine([0.5, -1.0, 2.0, 0.0], -0.2)
    frame = group_robustness(model, X, y, s, [0.1]).set_index("group")
    predicted = logits(model, X) > 0
    for g in ["f", "m", "x"]:
        assert frame.loc[g, "clean_accuracy"] == pytest.approx(accuracy_score(y[s == g], predicted[s == g]))
    assert frame.loc[ALL_GROUP, "clean_accuracy"] == pytest.approx(accuracy_score(y, predicted))


def test_no_groups_gives_the_pooled_row_only() -> None:
    X, y, _ = data(30, 2, seed=0)
    frame = group_robustness(affine([1.0, 1.0], 0.0), X, y, None, [0.1, 0.2])
    assert frame["group"].tolist() == [ALL_GROUP, ALL_GROUP]
    assert (frame["n"] == 30).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"X": np.zeros((0, 2)), "y": [], "groups": []}, "empty"),
        ({"radii": [0.1, 0.0]}, "radius"),
        ({"radii": -1.0}, "radius"),
        ({"radii": [float("nan")]}, "radius"),
        ({"radii": []}, "radii"),
        ({"radii": "0.5"}, "radii"),
        ({"radii": [0.5, 1e200]}, "outside the range"),
        ({"radii": [1e-160]}, "outside the range"),
        ({"y": [0, 1, 1]}, "length"),
        ({"groups": ["a", "b"]}, "length"),
        ({"X": [[0.0, float("nan")], [1.0, 1.0], [2.0, 0.0], [0.0, 1.0]]}, "NaN"),
        ({"y": [0, 1, 2, 1]}, "0 and 1"),
        ({"groups": ["a", None, "b", "a"]}, "missing"),
        ({"groups": ["a", "all", "b", "a"]}, "'all'"),
        ({"X": np.ones((4, 3))}, "features"),
        ({"method": "certify"}, "method"),
        ({"restarts": 0}, "restarts"),
        ({"steps": 1.5}, "steps"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_input_is_a_one_line_error(change: dict, message: str) -> None:
    args = {
        "X": np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [-1.0, 0.5]]),
        "y": [0, 1, 1, 0],
        "groups": ["a", "b", "b", "a"],
        "radii": [0.5],
    }
    args.update(change)
    options = {k: args.pop(k) for k in ["method", "restarts", "steps", "seed"] if k in args}
    with pytest.raises(FastfairError, match=message) as err:
        group_robustness(affine([1.0, 1.0], 0.0), args["X"], args["y"], args["groups"], args["radii"], **options)
    assert "\n" not in str(err.value)


def test_model_errors_are_one_line() -> None:
    X = np.ones((4, 3))
    with pytest.raises(FastfairError, match="exact") as err:
        group_robustness(tanh_mlp(3, seed=0), X, [0, 1, 0, 1], None, [0.1], method="exact")
    with pytest.raises(FastfairError, match="does not accept") as err:
        group_robustness(tanh_mlp(2, seed=0), X, [0, 1, 0, 1], None, [0.1])
    assert "\n" not in str(err.value)
    two_logits = torch.nn.Linear(3, 2).double()
    with pytest.raises(FastfairError, match="one logit per row"):
        group_robustness(two_logits, X, [0, 1, 0, 1], None, [0.1])
    with pytest.raises(FastfairError, match="not finite"):
        group_robustness(affine([1.0, float("nan"), 0.0], 0.0), X, [0, 1, 0, 1], None, [0.1])
    broken = tanh_mlp(3, seed=0)
    with torch.no_grad():
        broken.out.bias.fill_(float("nan"))
    with pytest.raises(FastfairError, match="NaN or infinite logits"):
        group_robustness(broken, X, [0, 1, 0, 1], None, [0.1])
    with pytest.raises(FastfairError, match=r"outside the range torch.float32 computes"):
        group_robustness(build_model("mlp", 3, hidden=4), X, [0, 1, 0, 1], None, [1e30])


# ----------------------------------------------------------------------------------------------------------
# The figure
# ----------------------------------------------------------------------------------------------------------
def test_figure_is_a_png_written_atomically(tmp_path) -> None:
    X, y, s = data(50, 2, seed=3)
    frame = group_robustness(tanh_mlp(2, seed=0), X, y, s, [0.1, 0.3, 1.0], restarts=2, steps=3)
    path = robustness_figure(frame, tmp_path / "figs" / "robustness.png", title="tanh MLP")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["robustness.png"]
    with pytest.raises(FastfairError, match="no rows"):
        robustness_figure(frame.iloc[:0], tmp_path / "empty.png")
    with pytest.raises(FastfairError, match="lacks columns"):
        robustness_figure(frame.drop(columns="flip_rate"), tmp_path / "bad.png")
    assert not (tmp_path / "empty.png").exists() and not (tmp_path / "bad.png").exists()
