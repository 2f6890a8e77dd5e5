"""Deciding whether two sets of per-seed values differ beyond noise, and looking them up in the results store.

:func:`compare` decides on per-seed values. With at least two seeds common to both sides, the difference of means
is tested with a paired t-interval (seeds share the data split and the initial weights); with at least two seeds
on each side but fewer common ones, with a Welch t-interval. A difference is beyond noise when the 95% interval
excludes zero. With a single seed on a side there is no interval: the difference must exceed a fixed tolerance
(:data:`GAP_TOLERANCE` for gaps and accuracy). It is then the difference on the seed common to both sides when there
is one (a single-seed side is not set against a mean over other seeds as well), else the difference of the means.

:class:`SeedValues` indexes the per-seed values of the store once, so that the claims can look them up many times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..vocabulary import BASELINE, GAP_KEYS, round_radius
from .tables import CONFIDENCE, normalise

#: Single-seed tolerance on a gap or an accuracy (absolute, as a fraction).
GAP_TOLERANCE = 0.02


@dataclass(frozen=True)
class Comparison:
    """Outcome of comparing per-seed values ``a`` against ``b`` (difference ``a - b``)."""

    mean_a: float
    mean_b: float
    diff: float
    noise: float
    method: str
    direction: int  # -1: a lower beyond noise; +1: a higher beyond noise; 0: within noise (or undefined)

    @property
    def defined(self) -> bool:
        return bool(np.isfinite(self.diff))


def compare(a: pd.Series, b: pd.Series, tol: float = GAP_TOLERANCE, confidence: float = CONFIDENCE) -> Comparison:
    """Compare two per-seed series (indexed by seed) as described in the module docstring."""
    a_values, b_values = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return compare_arrays(np.asarray(a.index), a_values, np.asarray(b.index), b_values, tol, confidence)


def compare_arrays(
    seeds_a: np.ndarray,
    a: np.ndarray,
    seeds_b: np.ndarray,
    b: np.ndarray,
    tol: float,
    confidence: float = CONFIDENCE,
) -> Comparison:
    """:func:`compare` on arrays: values ``a`` of seeds ``seeds_a`` against values ``b`` of seeds ``seeds_b``.

    Non-finite values are left out. With no value left on one side the comparison is undefined (``diff`` NaN,
    ``direction`` 0).
    """
    ok_a, ok_b = np.isfinite(a), np.isfinite(b)
    seeds_a, a, seeds_b, b = seeds_a[ok_a], a[ok_a], seeds_b[ok_b], b[ok_b]
    if len(a) == 0 or len(b) == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan, "no data", 0)
    common, ia, ib = np.intersect1d(seeds_a, seeds_b, return_indices=True)
    if len(common) >= 2:
        d = a[ia] - b[ib]
        q = stats.t.ppf(0.5 + confidence / 2, len(d) - 1)
        noise = float(q * np.std(d, ddof=1) / np.sqrt(len(d)))
        mean_a, mean_b = float(a[ia].mean()), float(b[ib].mean())
        diff, method = float(d.mean()), f"paired t, {len(d)} seeds"
    elif len(a) >= 2 and len(b) >= 2:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        se = math.sqrt(va + vb)
        if se > 0:
            dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
            noise = float(stats.t.ppf(0.5 + confidence / 2, dof) * se)
        else:
            noise = 0.0
        mean_a, mean_b = float(a.mean()), float(b.mean())
        diff, method = mean_a - mean_b, f"Welch t, {len(a)}+{len(b)} seeds"
    else:
        if len(common) == 1:  # compare on the common seed, not against a mean over other seeds too
            a, b = a[ia], b[ib]
        mean_a, mean_b = float(a.mean()), float(b.mean())
        diff, noise, method = mean_a - mean_b, float(tol), "1 seed, no CI"
    direction = 0 if abs(diff) <= noise else int(np.sign(diff))
    return Comparison(mean_a, mean_b, diff, noise, method, direction)


class SeedValues:
    """Per-seed values of the normalised store, indexed once and looked up many times."""

    def __init__(self, results: pd.DataFrame):
        self.df = normalise(results)
        self.metrics = [*GAP_KEYS, "accuracy", "auc", "epoch_seconds"]
        keys = ["dataset", "model", "solver", "split", "radius"]
        self._by_radius = self._index(keys)
        self._any_radius = self._index(keys[:-1])
        self._empty = (np.zeros(0, dtype=np.int64), np.zeros((0, len(self.metrics))))
        self._solvers: dict[tuple[str, str], set[str]] = {}
        self._splits: dict[tuple[str, str], set[str]] = {}
        self._radii: dict[tuple[str, str, str], set[float]] = {}
        for ds, model, solver, split, radius in self._by_radius:
            self._solvers.setdefault((ds, model), set()).add(solver)
            self._splits.setdefault((ds, model), set()).add(split)
            self._radii.setdefault((ds, model, solver), set()).add(radius)

    def _index(self, keys: list[str]) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
        """key -> (seeds, values (n_seeds, n_metrics)), one row per seed (mean over duplicate rows)."""
        per_seed = self.df.groupby([*keys, "seed"], sort=True)[self.metrics].mean().reset_index()
        seeds = per_seed["seed"].to_numpy()
        values = per_seed[self.metrics].to_numpy(dtype=float)
        return {k: (seeds[i], values[i]) for k, i in per_seed.groupby(keys, sort=False).indices.items()}

    def datasets(self) -> list[str]:
        return sorted({ds for ds, _ in self._solvers})

    def models(self, dataset: str) -> list[str]:
        return sorted(m for ds, m in self._solvers if ds == dataset)

    def arrays(
        self, dataset: str, model: str, solver: str, radius: float | None, split: str, metric: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """(seeds, values) of ``metric`` (mean over duplicate rows of a seed); radius None: any radius."""
        if radius is None:
            seeds, table = self._any_radius.get((dataset, model, solver, split), self._empty)
        else:
            seeds, table = self._by_radius.get((dataset, model, solver, split, round_radius(radius)), self._empty)
        return seeds, table[:, self.metrics.index(metric)]

    def compare(self, a: tuple, b: tuple, tol: float) -> Comparison:
        """Compare ``self.arrays(*a)`` against ``self.arrays(*b)``."""
        return compare_arrays(*self.arrays(*a), *self.arrays(*b), tol)

    def radii(self, dataset: str, model: str, solver: str) -> list[float]:
        return sorted(self._radii.get((dataset, model, solver), ()))

    def epoch_times(self, dataset: str, model: str, solver: str, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """(seeds, epoch seconds) of the cells at ``radius`` (the same on every split row of a cell)."""
        for split in sorted(self._splits.get((dataset, model), ())):
            seeds, values = self.arrays(dataset, model, solver, radius, split, "epoch_seconds")
            if len(seeds):
                return seeds, values
        return self._empty[0], np.zeros(0)

    def missing(
        self,
        dataset: str,
        model: str | None,
        solvers: Sequence[str],
        radius: float | None = None,
        split: str | None = None,
    ) -> str | None:
        """Why a claim cannot be tested, or None if it can."""
        if dataset not in self.datasets():
            return f"not tested (dataset {dataset} not in this run)"
        model = model or self.models(dataset)[0]
        for s in solvers:
            if s not in self._solvers.get((dataset, model), ()):
                what = "non-robust baseline (solver none)" if s == BASELINE else f"solver {s}"
                return f"not tested ({what} not in this run)"
        if split is not None and split not in self._splits.get((dataset, model), ()):
            return f"not tested (split {split} not in this run)"
        if radius is not None:
            for s in solvers:
                if s != BASELINE and round_radius(radius) not in self._radii[(dataset, model, s)]:
                    return f"not tested (radius {radius:.2f} not in this run)"
        return None
