"""Per-group robustness of multiclass models: exact flips of softmax regression, the margin attack otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score
from torch import nn

from fastfair.errors import FastfairError
from fastfair.models import Affine
from fastfair.robustness import ALL_GROUP, group_robustness

pytestmark = pytest.mark.usefixtures("single_threaded_linear_algebra")


def softmax_regression(W: np.ndarray, b: np.ndarray) -> Affine:
    """The affine model with C = len(b) outputs, f(x) = Wx + b, in float64."""
    model = Affine(W.shape[1]).double()
    model.linear = nn.Linear(W.shape[1], W.shape[0]).double()
    with torch.no_grad():
        model.linear.weight.copy_(torch.as_tensor(W))
        model.linear.bias.copy_(torch.as_tensor(b))
    return model


class ThreeClassMLP(nn.Module):
    """A tanh MLP with three logits per row, weights large enough that its boundaries curve on unit-scale data."""

    def __init__(self, d: int, seed: int, scale: float = 3.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, 3)).double()
        with torch.no_grad():
            for p in self.net.parameters():
                p.mul_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def argmax_of(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float64)).argmax(dim=1).numpy()


def flips_by_row(model, X, radius, y=None, **kwargs) -> np.ndarray:
    """Which rows flip, read off the table: each row its own group."""
    y = np.zeros(len(X), dtype=int) if y is None else y
    frame = group_robustness(model, X, y, np.arange(len(X)), [radius], **kwargs)
    rows = frame[frame["group"] != ALL_GROUP].sort_values("group")
    return rows["flip_rate"].to_numpy() == 1.0


def circle(n: int = 720) -> np.ndarray:
    angles = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


# ----------------------------------------------------------------------------------------------------------
# Exact: softmax regression
# ----------------------------------------------------------------------------------------------------------
def test_softmax_regression_hand_computed_with_both_ties() -> None:
    """w0 = (1, 0), w1 = (-1, 0), w2 = 0, no biases. x = (1, 0) is predicted 0 at distance 1 from the open
    half-spaces {f0 < f1}, {f0 < f2}: it flips only for r > 1. x = (-1, 0) is predicted 1 and the closed
    half-space {f1 <= f0} (ties go to class 0) is at distance exactly 1: it flips at r = 1 (at (0, 0) all logits
    tie and class 0 wins). The origin itself ties three ways, is predicted 0 and flips at any r > 0."""
    model = softmax_regression(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]]), np.zeros(3))
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    assert argmax_of(model, X).tolist() == [0, 1, 0]
    assert argmax_of(model, np.array([[0.0, 0.0]])).tolist() == [0]  # the witness of the second row at r = 1
    assert flips_by_row(model, X, 1.0).tolist() == [False, True, True]
    assert flips_by_row(model, X, 1.0 + 1e-9).tolist() == [True, True, True]
    assert flips_by_row(model, X, 1.0 - 1e-9).tolist() == [False, False, True]
    frame = group_robustness(model, X, [0, 1, 2], None, [0.5])
    assert frame["method"].tolist() == ["exact"] and frame["flip_rate_bound"].tolist() == ["exact"]
    assert frame["clean_accuracy"].iloc[0] == pytest.approx(2 / 3)
    # the origin (label 2, predicted 0) is wrong and flips; the other two are right and hold at 0.5
    assert frame["flip_rate"].iloc[0] == pytest.approx(1 / 3)
    assert frame["robust_accuracy"].iloc[0] == pytest.approx(2 / 3)


def test_softmax_regression_equal_weights_never_flip_on_that_pair() -> None:
    """Classes 0 and 1 share their weights (their logit difference is the constant b0 - b1 = 1 > 0), so class 1
    is never predicted; the only boundary is the one with class 2, at distance |f0 - f2| / ‖w0 - w2‖."""
    W = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    model = softmax_regression(W, np.array([1.0, 0.0, 0.0]))
    X = np.random.default_rng(0).normal(size=(200, 2))
    f = X @ W.T + np.array([1.0, 0.0, 0.0])
    distance = np.abs(f[:, 0] - f[:, 2]) / np.sqrt(5.0)
    for r in (0.1, 0.5, 1.5):
        assert np.array_equal(flips_by_row(model, X, r), distance < r)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_regression_against_the_circle(seed: int) -> None:
    """d = 2, C = 4: the ball meets another class's region iff its boundary circle does (the farthest point in
    the direction -(w_k - w_j) of each half-space lies on it), so a dense circle of the model's own argmax is an
    independent oracle: every flip it shows is exact, and the exact flips are those of a slightly larger circle."""
    rng = np.random.default_rng(seed)
    W, b = rng.normal(size=(4, 2)), rng.normal(size=4)
    model = softmax_regression(W, b)
    X = rng.normal(size=(150, 2)) * 1.5
    clean = argmax_of(model, X)

    def circle_flips(r: float) -> np.ndarray:
        points = (X[:, None, :] + r * circle()[None]).reshape(-1, 2)
        return (argmax_of(model, points).reshape(len(X), -1) != clean[:, None]).any(axis=1)

    for r in (0.2, 0.6):
        exact = flips_by_row(model, X, r)
        assert 0 < exact.sum() < len(X)
        assert np.all(exact >= circle_flips(r))
        assert np.all(circle_flips(1.01 * r) >= exact)


def test_attack_on_softmax_regression_agrees_with_exact() -> None:
    """On softmax regression the attack (a lower bound) finds every exact flip of points not within 1% of r."""
    rng = np.random.default_rng(5)
    W, b = rng.normal(size=(3, 4)), rng.normal(size=3)
    model = softmax_regression(W, b)
    X = rng.normal(size=(200, 4))
    f = X @ W.T + b
    k = f.argmax(axis=1)
    dist = np.array(
        [min((f[i, k[i]] - f[i, j]) / np.linalg.norm(W[k[i]] - W[j]) for j in range(3) if j != k[i])
         for i in range(200)]
    )
    r = 0.5
    exact = flips_by_row(model, X, r)
    attack = flips_by_row(model, X, r, method="attack")
    clear = np.abs(dist - r) > 0.01 * r
    assert np.array_equal(exact[clear], dist[clear] < r)
    assert np.all(exact >= attack)
    assert np.array_equal(attack[clear], exact[clear])


# ----------------------------------------------------------------------------------------------------------
# The attack: a multiclass MLP
# ----------------------------------------------------------------------------------------------------------
def test_attack_finds_the_flips_of_dense_sampling_in_the_disk() -> None:
    """d = 2, three-class tanh MLP: every point a dense polar grid of the disk flips is flipped by the attack,
    and every attack flip is real (confirmed by the grid at a slightly larger radius)."""
    rng = np.random.default_rng(3)
    model = ThreeClassMLP(2, seed=4)
    X = rng.normal(size=(100, 2))
    r = 0.4
    disk = (np.linspace(0.0, 1.0, 21)[1:, None, None] * circle(360)[None]).reshape(-1, 2)
    clean = argmax_of(model, X)

    def grid_flips(radius: float) -> np.ndarray:
        points = (X[:, None, :] + radius * disk[None]).reshape(-1, 2)
        return (argmax_of(model, points).reshape(len(X), -1) != clean[:, None]).any(axis=1)

    grid, wider = grid_flips(r), grid_flips(1.02 * r)
    attack = flips_by_row(model, X, r)
    assert 0 < grid.sum() < len(X)
    assert np.all(attack >= grid)
    assert np.all(wider >= attack)
    frame = group_robustness(model, X, clean, None, [r])
    assert frame["method"].tolist() == ["attack"] and frame["flip_rate_bound"].tolist() == ["lower"]


def test_clean_accuracy_per_group_and_monotone_in_radius() -> None:
    rng = np.random.default_rng(8)
    model = ThreeClassMLP(3, seed=2)
    X = rng.normal(size=(120, 3))
    y = rng.integers(0, 3, 120)
    s = rng.choice(["a", "b"], size=120)
    frame = group_robustness(model, X, y, s, [0.05, 0.2, 0.6], restarts=2, steps=5)
    pred = argmax_of(model, X)
    for g in ("a", "b"):
        rows = frame[frame["group"] == g]
        assert rows["clean_accuracy"].iloc[0] == pytest.approx(accuracy_score(y[s == g], pred[s == g]))
        assert np.all(np.diff(rows["flip_rate"].to_numpy()) >= 0)
        assert np.all(np.diff(rows["robust_accuracy"].to_numpy()) <= 0)
        assert np.all(rows["robust_accuracy"] <= rows["clean_accuracy"])


# ----------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------
def test_multiclass_labels_and_outputs_are_checked() -> None:
    X = np.random.default_rng(0).normal(size=(4, 2))
    model = softmax_regression(np.eye(3, 2), np.zeros(3))
    for bad, found in (([0, 1, 3, 2], "3"), ([0, 1, -1, 2], "-1"), ([0, 1, 0.5, 2], "0.5")):
        for method in ("exact", "attack"):
            with pytest.raises(FastfairError, match=f"class codes 0 to 2, found {found}") as err:
                group_robustness(model, X, bad, None, [0.1], method=method)
            assert "\n" not in str(err.value)
    two = softmax_regression(np.eye(2), np.zeros(2))
    with pytest.raises(FastfairError, match=r"one logit per row .* or C >= 3"):
        group_robustness(two, X, [0, 1, 0, 1], None, [0.1])
    with pytest.raises(FastfairError, match=r"one logit per row .* or C >= 3"):
        group_robustness(two, X, [0, 1, 0, 1], None, [0.1], method="attack")
