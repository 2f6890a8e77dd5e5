"""Pieces shared by the loaders: option checking, seeded stratified splits, train-only standardisation.

Flag options are checked by :func:`fastfair.validation.check_bool` (re-exported here for the loaders): ``True`` or
``False`` only, as everywhere else in the package.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import FastfairError, require
from ..validation import check_bool as check_bool  # the loaders import it from here
from ._containers import SPLIT_NAMES, Dataset, Split
from ._scaling import apply_standardization, standardization


def check_seed(seed: Any) -> int:
    """A seed must be a non-negative integer (it seeds :func:`numpy.random.default_rng`)."""
    require(
        isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0,
        f"seed must be a non-negative integer, got {seed!r}",
    )
    return int(seed)


def resolve_options(dataset: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overridden by ``given``; an unknown key raises, listing the options this dataset accepts."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        choices = ", ".join(sorted(defaults)) or "(none)"
        raise FastfairError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for dataset "
            f"{dataset!r}; choices: {choices}"
        )
    out = dict(defaults)
    out.update(given)
    return out


def check_fraction(name: str, value: Any, *, low_open: bool = True) -> float:
    """A fraction in (0, 1) (or [0, 1) with ``low_open=False``)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (v > 0.0 if low_open else v >= 0.0) and v < 1.0
    require(ok, f"{name} must be a number in {'(0, 1)' if low_open else '[0, 1)'}, got {value!r}")
    return float(value)


def check_probability(name: str, value: Any) -> float:
    """A number in [0, 1]."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    require(ok and 0.0 <= float(value) <= 1.0, f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_count(name: str, value: Any) -> int:
    """A positive integer."""
    require(
        isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0,
        f"{name} must be a positive integer, got {value!r}",
    )
    return int(value)


def check_split_fractions(val_fraction: Any, test_fraction: Any) -> tuple[float, float]:
    """Validation and test fractions, each in (0, 1), summing to less than 1."""
    v = check_fraction("val_fraction", val_fraction)
    t = check_fraction("test_fraction", test_fraction)
    require(v + t < 1.0, f"val_fraction + test_fraction must be below 1, got {v} + {t}")
    return v, t


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Rows of an ``n``-row stratum that :func:`stratified_split` sends to each extra part.

    ``round(f * n)`` (halves rounded up) per fraction ``f``; while that leaves no row for train, the largest
    count is lowered by one, so train always keeps at least one row of a non-empty stratum.
    """
    counts = [math.floor(f * n + 0.5) for f in fractions]
    while sum(counts) > n - 1 and any(counts):  # keep one row of every stratum in train
        counts[int(np.argmax(counts))] -= 1
    return counts


def min_stratum_rows(fractions: Sequence[float]) -> int:
    """The fewest rows ``m`` for which a stratum of ``m`` *or more* rows has a row in every part of the split.

    With ``k`` extra parts and smallest fraction ``f_min`` this is ``m* = max(k + 1, ceil(1 / (2 f_min)))``:
    a stratum needs ``k + 1`` rows to give one to train and one to each extra part, and
    ``floor(f_min · m + ½) ≥ 1`` exactly when ``f_min · m ≥ ½``. Beyond ``m*`` nothing is lost: the
    pre-adjustment counts of :func:`split_counts` never decrease with ``m``, and once ``m - 1 ≥ k`` lowering
    the largest count until the parts fit into ``m - 1`` rows cannot empty a part (emptying one would need
    every count ≤ 1, i.e. a total ≤ k ≤ m - 1, when the lowering has already stopped). Computed with the
    very counts the split uses, so floating-point rounding of ``f · m`` cannot make the two disagree.
    """
    k = len(fractions)
    m = max(k + 1, math.ceil(0.5 / min(fractions)))
    while min(split_counts(m, fractions)) < 1:
        m += 1
    while m - 1 >= k + 1 and min(split_counts(m - 1, fractions)) >= 1:
        m -= 1
    return m


def min_group_rows(fractions: Sequence[float], n_classes: int = 2) -> int:
    """The fewest rows a group needs to occur in train and in every extra part of a (label, group) split.

    The split of :func:`stratified_split` by ``strata_codes(y, s)`` treats each (label, group) cell on its own.
    A group of ``n`` rows and ``C`` classes has a cell of at least ``ceil(n / C)`` rows (pigeonhole), and a cell
    of ``m* = min_stratum_rows(fractions)`` or more rows has a row in every part. So ``C (m* - 1) + 1`` rows
    guarantee that the group occurs in every part, whatever its labels: for binary labels ``2 m* - 1``, 5 rows
    for validation and test fractions of 0.2 (``m* = 3``); for 3 classes 7 rows.
    """
    require(
        isinstance(n_classes, (int, np.integer)) and not isinstance(n_classes, bool) and n_classes >= 2,
        f"n_classes must be an integer >= 2, got {n_classes!r}",
    )
    return int(n_classes) * (min_stratum_rows(fractions) - 1) + 1


def stratified_split(
    strata: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
) -> list[np.ndarray]:
    """Seeded stratified split of row positions ``0..n-1``.

    Within each stratum (sorted by value), the rows are permuted with ``rng`` and the first
    ``round(f * n_stratum)`` go to each extra part, in the order of ``fractions``; the rest stay in the first
    part ("train"). Whenever a stratum has rows, at least one of them stays in train (:func:`split_counts`).
    Returns ``[train, part_1, ...]``, each sorted ascending, i.e. in the original row order.
    """
    strata = np.asarray(strata)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for value in np.unique(strata):
        rows = np.flatnonzero(strata == value)
        counts = split_counts(len(rows), fractions)
        perm = rng.permutation(rows)
        start = 0
        for j, c in enumerate(counts, start=1):
            parts[j].append(perm[start : start + c])
            start += c
        parts[0].append(perm[start:])
    return [np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts]


def strata_codes(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """One stratum per (label, group) cell: ``s * C + y`` with ``C = max(2, max(y) + 1)`` label codes.

    Distinct cells get distinct codes (``0 <= y < C``), for binary labels (``s * 2 + y``) as for ``C`` classes.
    """
    y = np.asarray(y, dtype=np.int64)
    n_classes = max(2, int(y.max()) + 1) if y.size else 2
    return np.asarray(s, dtype=np.int64) * n_classes + y


def balance_cells(y: np.ndarray, s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row positions keeping the same number of rows in every (y, s) cell (the smallest cell's), sorted."""
    cells = strata_codes(y, s)
    values, counts = np.unique(cells, return_counts=True)
    m = int(counts.min())
    keep = [rng.choice(np.flatnonzero(cells == v), size=m, replace=False) for v in values]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def make_dataset(
    name: str,
    parts: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    feature_names: Sequence[str],
    group_names: Sequence[str],
    label_names: Sequence[str],
    standardize: bool,
    info: dict[str, Any],
) -> Dataset:
    """Build a :class:`Dataset` from raw ``(X, y, s)`` per split, standardising with TRAIN statistics only.

    ``label_names`` names each class code: ``(negative, positive)`` for binary data (the text of the outcomes coded
    0 and 1), one name per class ``0 .. C-1`` for multiclass data; it is also recorded as ``info["label_names"]``.
    Standardisation uses :func:`standardization` and :func:`apply_standardization`,
    which cannot overflow for finite input; the :class:`Dataset` then refuses any group missing from a split
    and any feature value beyond float32's range.
    """
    X_train = np.asarray(parts["train"][0], dtype=np.float64)
    if standardize:
        mean, scale = standardization(X_train)
    else:
        mean, scale = np.zeros(X_train.shape[1]), np.ones(X_train.shape[1])
    splits = {}
    for key in SPLIT_NAMES:
        X, y, s = parts[key]
        X = np.asarray(X, dtype=np.float64)
        X = apply_standardization(X, mean, scale) if standardize else X.copy()
        splits[key] = Split(X, y, s, tuple(feature_names), tuple(group_names))
    info = dict(info)
    info["label_names"] = [str(v) for v in label_names]
    info["sizes"] = {key: len(sp) for key, sp in splits.items()}
    return Dataset(
        name=name,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        mean=mean,
        scale=scale,
        standardized=bool(standardize),
        info=info,
        label_names=tuple(str(v) for v in label_names),
    )
