"""Unfair2D: the paper's synthetic two-group, two-class data in the unit square.

Generator (per class, ``n`` points):

1. ``x ~ U[0, 1]²`` conditioned on its side of the line ``x₂ = 1 - x₁``: class ``y = 0`` below
   (``x₁ + x₂ < 1``), class ``y = 1`` above. (Sampled exactly by reflecting a uniform point through the centre
   ``(½, ½)`` when it falls on the wrong side; no rejection loop.)
2. Group labels: exactly ``floor(p1 · n)`` of the class-0 points and ``floor(p2 · n)`` of the class-1 points,
   chosen at random, get ``s = 1`` ("group B"); the others get ``s = 0`` ("group A").
3. Unfair shift: points with ``(s = 0, y = 1)`` move by ``-α·u`` (group A's qualified members look less
   qualified), points with ``(s = 1, y = 0)`` move by ``+α·u`` (group B's unqualified members look more
   qualified). Shifted points may leave the unit square.
4. The classes are concatenated and shuffled.

Meaning of ``p1``/``p2``. In the reference implementation (elizabethnewman/fast-n-fair,
``fastNfair/data/unfair_2d.py``) the code sets ``s = 1`` on ``max(1, floor(p1 · n))`` class-0 points and
``max(1, floor(p2 · n))`` class-1 points, while the help text of ``ex_unfair_2d.py`` calls ``p1`` the
"percent of s = 0 in class y = 0". We follow the *code*: ``p1`` (``p2``) is the fraction of class 0
(class 1) in group ``s = 1``. With the default ``p1 = p2 = 0.5`` both readings coincide. Unlike the reference
we do not force at least one ``s = 1`` point per class (``p = 0`` means none); :func:`load_unfair2d` refuses
options that leave group B without rows in the training, validation or test split (e.g. ``p1 = p2 = 0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import FastfairError, require
from ._common import (
    check_bool,
    check_count,
    check_fraction,
    check_probability,
    make_dataset,
    stratified_split,
)
from ._containers import Dataset

FEATURE_NAMES = ("x1", "x2")
#: Group 0 ("A") is disadvantaged by the shift, group 1 ("B") advantaged.
GROUP_NAMES = ("A", "B")
#: (negative, positive): the class labels as they are, 0 below the line and 1 above it.
LABEL_NAMES = ("0", "1")

DEFAULTS: dict[str, Any] = {
    "p1": 0.5,
    "p2": 0.5,
    "alpha": 0.1,
    "u": (1.0, 1.0),
    "n_per_class": 250,
    "n_test_per_class": 50,
    "val_fraction": 0.2,
    "standardize": False,
}


def generate_unfair2d(
    n_per_class: int,
    *,
    p1: float = 0.5,
    p2: float = 0.5,
    alpha: float = 0.1,
    u: Sequence[float] = (1.0, 1.0),
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``2 · n_per_class`` Unfair2D points (see the module docstring for the recipe).

    Parameters
    ----------
    n_per_class : int
        Points per class.
    p1, p2 : float
        Fraction of class 0 (``p1``) and of class 1 (``p2``) assigned to group ``s = 1``; exact counts
        ``floor(p · n_per_class)``.
    alpha : float
        Shift length; ``0`` gives data perfectly separated by ``x₁ + x₂ = 1``.
    u : sequence of 2 floats
        Shift direction (not normalised).
    rng : numpy Generator or int seed

    Returns
    -------
    X : (2n, 2) float64, y : (2n,) int64, s : (2n,) int64 — shuffled.
    """
    n = check_count("n_per_class", n_per_class)
    p1 = check_probability("p1", p1)
    p2 = check_probability("p2", p2)
    alpha = _check_alpha(alpha)
    u_vec = _check_u(u)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    blocks = []
    for label, p in ((0, p1), (1, p2)):
        x = rng.random((n, 2))
        wrong = (x.sum(axis=1) > 1.0) if label == 0 else (x.sum(axis=1) < 1.0)
        x[wrong] = (
            1.0 - x[wrong]
        )  # point reflection through (1/2, 1/2) swaps the two triangles, keeping uniformity
        s = np.zeros(n, dtype=np.int64)
        s[rng.permutation(n)[: math.floor(p * n)]] = 1
        y = np.full(n, label, dtype=np.int64)
        blocks.append((x, y, s))
    X = np.concatenate([b[0] for b in blocks])
    y = np.concatenate([b[1] for b in blocks])
    s = np.concatenate([b[2] for b in blocks])
    X[(s == 0) & (y == 1)] -= alpha * u_vec
    X[(s == 1) & (y == 0)] += alpha * u_vec
    order = rng.permutation(len(y))
    return X[order], y[order], s[order]


def load_unfair2d(seed: int, options: dict[str, Any]) -> Dataset:
    """Unfair2D with the paper's sizes.

    ``n_per_class`` points per class for train + validation, split per class ``(1 - val_fraction) :
    val_fraction`` (default 200 : 50), and an independent test draw of ``n_test_per_class`` per class. Not
    standardised by default (the paper's radii are in unit-square units).
    """
    p1 = check_probability("p1", options["p1"])
    p2 = check_probability("p2", options["p2"])
    alpha = _check_alpha(options["alpha"])
    u = _check_u(options["u"])
    n_per_class = check_count("n_per_class", options["n_per_class"])
    n_test = check_count("n_test_per_class", options["n_test_per_class"])
    val_fraction = check_fraction("val_fraction", options["val_fraction"])
    standardize = check_bool("standardize", options["standardize"])

    rng = np.random.default_rng(seed)
    X, y, s = generate_unfair2d(n_per_class, p1=p1, p2=p2, alpha=alpha, u=u, rng=rng)
    train_idx, val_idx = stratified_split(y, [val_fraction], rng)
    require(len(val_idx) > 0, f"n_per_class={n_per_class} is too small for a validation split")
    X_test, y_test, s_test = generate_unfair2d(n_test, p1=p1, p2=p2, alpha=alpha, u=u, rng=rng)
    info = {
        "source": "synthetic (Unfair2D generator, Minch, Vu, Warren 2024)",
        "seed": seed,
        "options": {
            "p1": p1,
            "p2": p2,
            "alpha": alpha,
            "u": tuple(float(v) for v in u),
            "n_per_class": n_per_class,
            "n_test_per_class": n_test,
            "val_fraction": val_fraction,
            "standardize": standardize,
        },
        "label": "y = 1 above the line x2 = 1 - x1 (before the shift)",
        "sensitive": "s = 1 is group B (advantaged), s = 0 group A (disadvantaged)",
        "row_order": "random (generator shuffles); train/val split per class",
    }
    return make_dataset(
        "unfair2d",
        {
            "train": (X[train_idx], y[train_idx], s[train_idx]),
            "val": (X[val_idx], y[val_idx], s[val_idx]),
            "test": (X_test, y_test, s_test),
        },
        feature_names=FEATURE_NAMES,
        label_names=LABEL_NAMES,
        group_names=GROUP_NAMES,
        standardize=standardize,
        info=info,
    )


def _check_alpha(alpha: Any) -> float:
    ok = isinstance(alpha, (int, float, np.integer, np.floating)) and not isinstance(alpha, bool)
    require(
        ok and math.isfinite(float(alpha)) and float(alpha) >= 0,
        f"alpha must be a finite number >= 0, got {alpha!r}",
    )
    return float(alpha)


def _check_u(u: Any) -> np.ndarray:
    try:
        vec = np.asarray(u, dtype=np.float64)
    except (TypeError, ValueError):
        raise FastfairError(f"u must be two numbers (a direction in the plane), got {u!r}") from None
    require(vec.shape == (2,) and bool(np.all(np.isfinite(vec))), f"u must be two finite numbers, got {u!r}")
    return vec
