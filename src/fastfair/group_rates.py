"""Per-group confusion counts and the rates, gaps and between-group values computed from them: the computation
that :mod:`fastfair.metrics` (binary labels) and :mod:`fastfair.metrics_multiclass` (one-vs-rest per class) share.

For each group s the rows are counted into the 2×2 confusion cells (TN, FP, FN, TP), and every rate is a ratio of
cell sums (NaN where its conditioning cell is empty):

    selection rate = (TP + FP) / n,  TPR = TP / (TP + FN),  FPR = FP / (FP + TN),
    PPV = TP / (TP + FP),            FOR = FN / (FN + TN),   accuracy = (TP + TN) / n.

A gap is max_s r_s - min_s r_s over the groups; Fairlearn's ratio is min_s r_s / max_s r_s (1 when the max is 0).
AUC is the Mann-Whitney statistic with mid-ranks for ties. Inputs are validated here (one-line
:class:`~fastfair.errors.FastfairError` for malformed labels, scores or groups). The public functions, and the
math of each criterion, are in :mod:`fastfair.metrics`.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fastfair.errors import FastfairError
from fastfair.vocabulary import GAP_KEYS, GAP_RATES


class FairnessWarning(UserWarning):
    """A fairness rate is undefined for some group (its conditioning cell is empty), so a gap is NaN."""


#: The columns of :func:`group_table` (``auc`` is appended when scores are given).
TABLE_COLUMNS: tuple[str, ...] = ("n", "accuracy", "selection_rate", "tpr", "fpr", "ppv", "for")

#: Fairlearn's names of the between-group comparisons (see the module docstring), in the order they are reported.
FAIRLEARN_KEYS: tuple[str, ...] = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
)
#: The four-fifths rule: a demographic parity ratio below this value is flagged as adverse impact.
FOUR_FIFTHS = 0.8
#: The key of the four-fifths flag in :func:`classification_summary`: True when the ratio is below 0.8.
FOUR_FIFTHS_KEY = "four_fifths_violated"
#: The statistics of :func:`classification_summary` that are numbers, in order (what the bootstrap resamples).
SUMMARY_STATISTICS: tuple[str, ...] = ("accuracy", "auc", *GAP_KEYS, *FAIRLEARN_KEYS)
#: Joins the values of an intersectional group into its name: ``"Female|White"``.
GROUP_SEPARATOR = "|"
#: The aggregations of the two equalized-odds values (Fairlearn's ``agg``).
EO_AGGREGATIONS: tuple[str, ...] = ("worst_case", "mean")

# What a rate conditions on, for warning messages.
_CONDITION: dict[str, str] = {
    "selection_rate": "no samples",
    "tpr": "no samples with y_true=1",
    "fpr": "no samples with y_true=0",
    "ppv": "no samples with y_pred=1",
    "for": "no samples with y_pred=0",
}

# Column order of the confusion-cell counts: index 2*y_true + y_pred.
_TN, _FP, _FN, _TP = 0, 1, 2, 3


# ----------------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------------
def _as_1d(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D numpy array (torch tensors are detached and moved to the CPU; (n, 1) is flattened)."""
    if hasattr(x, "detach") and callable(x.detach):  # torch.Tensor, without importing torch
        x = x.detach()
        if hasattr(x, "cpu") and callable(x.cpu):
            x = x.cpu()
    try:
        a = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic containers
        raise FastfairError(f"{name} could not be converted to an array: {exc}") from None
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise FastfairError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a


def _as_numeric_labels(x: Any, name: str, what: str) -> np.ndarray:
    """``x`` as a 1-D numeric array of labels (booleans as 0/1 integers, numeric objects as floats), for the range
    checks of binary labels and of class codes; ``what`` opens the :class:`FastfairError` for anything else."""
    a = _as_1d(x, name)
    if a.dtype == np.bool_:
        return a.astype(np.intp)
    if a.dtype.kind == "O":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise FastfairError(f"{what}, got non-numeric values") from None
    if a.dtype.kind not in "iuf":
        raise FastfairError(f"{what}, got values of dtype {a.dtype}")
    return a


def _as_binary(x: Any, name: str) -> np.ndarray:
    """``x`` as an integer array of 0/1 labels; :class:`FastfairError` for anything else."""
    a = _as_numeric_labels(x, name, f"{name} must contain only 0 and 1")
    ok = (a == 0) | (a == 1)
    if not ok.all():
        bad = a[~ok][0]
        if bad > 1 and bad == np.round(bad):
            hint = " (class codes of C >= 3 classes: use classification_summary, group_table or per_class_table)"
        else:
            hint = " (threshold scores into labels first)" if name == "y_pred" else ""
        raise FastfairError(f"{name} must contain only 0 and 1, found {bad.item()!r}{hint}")
    return a.astype(np.intp)


def _as_scores(x: Any) -> np.ndarray:
    """``x`` as a float64 array of finite scores."""
    a = _as_1d(x, "scores")
    try:
        a = a.astype(np.float64)
    except (TypeError, ValueError):
        raise FastfairError("scores must be numeric") from None
    if not np.isfinite(a).all():
        raise FastfairError("scores must be finite (found NaN or inf)")
    return a


def _encode_groups(x: Any) -> tuple[list[Hashable], np.ndarray]:
    """Sorted unique group labels (as Python scalars) and each sample's code in ``[0, n_groups)``."""
    a = _as_1d(x, "sensitive")
    if a.size and (a.dtype.kind == "i" or (a.dtype.kind == "u" and a.dtype.itemsize < 8)):
        # O(n) fast path for integer codes with a moderate range.
        a = a.astype(np.int64)
        lo, hi = int(a.min()), int(a.max())
        if hi - lo <= max(4 * a.size, 1 << 16):
            present = np.bincount(a - lo, minlength=hi - lo + 1) > 0
            lookup = np.cumsum(present) - 1
            groups = (np.flatnonzero(present) + lo).tolist()
            return groups, lookup[a - lo].astype(np.intp)
    if a.size and pd.isna(a).any():
        raise FastfairError("sensitive contains missing values (NaN/None)")
    try:
        uniq, codes = np.unique(a, return_inverse=True)
    except TypeError:
        raise FastfairError("sensitive labels must be mutually sortable (mixed types found)") from None
    return uniq.tolist(), codes.reshape(-1).astype(np.intp)


def _sensitive_columns(x: Any) -> list[Any] | None:
    """The columns of a multi-column ``sensitive`` (a DataFrame, or a 2-D array-like of shape (n, m) with m > 1,
    one row per sample); None for a single column."""
    if isinstance(x, pd.DataFrame):
        return [x.iloc[:, j] for j in range(x.shape[1])] if x.shape[1] > 1 else None
    if hasattr(x, "detach"):  # a torch tensor: _as_1d handles it
        return None
    try:
        a = np.asarray(x, dtype=object) if isinstance(x, (list, tuple)) else np.asarray(x)
    except ValueError:  # ragged
        return None
    if a.ndim == 2 and a.shape[1] > 1:
        return [a[:, j] for j in range(a.shape[1])]
    return None


def _sensitive_groups(x: Any) -> tuple[list[Hashable], np.ndarray]:
    """Groups and codes of ``sensitive``: one column's sorted values, or the intersections of several."""
    columns = _sensitive_columns(x)
    if columns is None:
        return _encode_groups(x)
    encoded = [_encode_groups(c) for c in columns]
    lengths = sorted({len(codes) for _, codes in encoded})
    if len(lengths) > 1:
        raise FastfairError(f"the columns of sensitive differ in length: {lengths}")
    codes, names = intersect_codes([c for _, c in encoded], [g for g, _ in encoded])
    return list(names), codes


def intersectional_labels(sensitive: Any) -> np.ndarray:
    """One group label per sample: for several sensitive columns (a DataFrame, or an (n, m) array-like with one
    row per sample) the name of each row's combination, ``"Female|White"`` (:func:`intersect_codes`), as an
    object array; a single column comes back as a 1-D array, unchanged. Every function of this module gives the
    same groups for the labels as for the columns, so a caller that needs one label per sample (a loss, a
    stratified split) can use these."""
    if _sensitive_columns(sensitive) is None:
        return _as_1d(sensitive, "sensitive")
    groups, codes = _sensitive_groups(sensitive)
    return np.asarray(groups, dtype=object)[codes]


def intersect_codes(
    codes: Sequence[np.ndarray], labels: Sequence[Sequence[Any]], *, columns: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Intersectional groups of several group columns, given as codes: ``codes[j]`` holds column ``j``'s code
    of every row, ``labels[j][c]`` names code ``c`` of column ``j``.

    The groups are the combinations of codes that occur, in lexicographic order (first column first), named by
    their labels joined with :data:`GROUP_SEPARATOR` (``"Female|White"``). Returns each row's group code in
    ``0 .. k-1`` and the ``k`` names. Cost: one ``np.unique`` over the (n, m) code matrix.

    Raises :class:`FastfairError` when two combinations get the same name (a label containing the separator),
    naming ``columns`` if given.
    """
    matrix = np.column_stack([np.asarray(c, dtype=np.int64) for c in codes])
    combos, inverse = np.unique(matrix, axis=0, return_inverse=True)
    names = tuple(
        GROUP_SEPARATOR.join(str(labels[j][int(c)]) for j, c in enumerate(row)) for row in combos.tolist()
    )
    if len(set(names)) != len(names):
        clash = next(n for n in names if names.count(n) > 1)
        where = f" of {', '.join(map(repr, columns))}" if columns else ""
        raise FastfairError(
            f"two combinations of the sensitive columns{where} are both named {clash!r}: a value contains "
            f"{GROUP_SEPARATOR!r}; rename it"
        )
    return inverse.reshape(-1).astype(np.intp), names


@dataclass(frozen=True)
class _Data:
    """Validated inputs plus the per-group confusion-cell counts (the one shared core)."""

    groups: list[Hashable]  # sorted unique labels
    codes: np.ndarray  # (n,) group index of each sample
    y_true: np.ndarray  # (n,) 0/1
    scores: np.ndarray | None  # (n,) float64 or None
    cells: np.ndarray  # (n_groups, 4) int64 counts: TN, FP, FN, TP


def _prepare(y_true: Any, y_pred: Any, sensitive: Any, scores: Any = None, *, min_groups: int = 2) -> _Data:
    yt = _as_binary(y_true, "y_true")
    yp = _as_binary(y_pred, "y_pred")
    groups, codes = _sensitive_groups(sensitive)
    sc = None if scores is None else _as_scores(scores)
    lengths = {"y_true": yt.size, "y_pred": yp.size, "sensitive": codes.size}
    if sc is not None:
        lengths["scores"] = sc.size
    if len(set(lengths.values())) > 1:
        raise FastfairError("inputs differ in length: " + ", ".join(f"{k}={v}" for k, v in lengths.items()))
    if yt.size == 0:
        raise FastfairError("inputs are empty")
    if len(groups) < min_groups:
        raise FastfairError(
            f"sensitive must contain at least {min_groups} groups, found {len(groups)} ({groups[0]!r})"
        )
    return _Data(groups, codes, yt, sc, _confusion_cells(codes, yt, yp, len(groups)))


# ----------------------------------------------------------------------------------------------------------
# Core
# ----------------------------------------------------------------------------------------------------------
def _confusion_cells(codes: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, 4) counts of TN, FP, FN, TP per group, in one ``np.bincount``."""
    flat = np.bincount(codes * 4 + y_true * 2 + y_pred, minlength=4 * n_groups)
    return flat.reshape(n_groups, 4).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, NaN where den == 0."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _rates(cells: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-group rate of the module docstring from the (k, 4) confusion-cell counts."""
    tn, fp, fn, tp = (cells[:, j].astype(np.float64) for j in (_TN, _FP, _FN, _TP))
    n = tn + fp + fn + tp
    return {
        "n": cells.sum(axis=1),
        "accuracy": _ratio(tp + tn, n),
        "selection_rate": _ratio(tp + fp, n),
        "tpr": _ratio(tp, tp + fn),
        "fpr": _ratio(fp, fp + tn),
        "ppv": _ratio(tp, tp + fp),
        "for": _ratio(fn, fn + tn),
    }


def _grouped_auc(y_true: np.ndarray, scores: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """ROC AUC per group via the rank-sum (Mann-Whitney) formula with mid-ranks for ties.

    AUC_g = (R_g - n1 (n1 + 1) / 2) / (n1 n0), where R_g is the sum of the within-group mid-ranks of the
    positives; NaN when n1 = 0 or n0 = 0. Two stable sorts, no loop over groups.
    """
    order = np.argsort(scores, kind="stable")
    order = order[np.argsort(codes[order], kind="stable")]  # by group, then by score (= lexsort, faster)
    c, v, y = codes[order], scores[order], y_true[order].astype(np.float64)
    n = c.size
    new_block = np.empty(n, dtype=bool)  # start of a run of equal (group, score)
    new_block[0] = True
    new_block[1:] = (c[1:] != c[:-1]) | (v[1:] != v[:-1])
    starts = np.flatnonzero(new_block)
    ends = np.append(starts[1:], n)
    mid_position = (starts + ends - 1) / 2.0  # 0-based mean position of each tie block
    group_start = np.searchsorted(c, np.arange(n_groups))
    rank = mid_position[np.cumsum(new_block) - 1] - group_start[c] + 1.0
    n_pos = np.bincount(c, weights=y, minlength=n_groups)
    n_neg = np.bincount(c, minlength=n_groups) - n_pos
    rank_sum = np.bincount(c, weights=rank * y, minlength=n_groups)
    return _ratio(rank_sum - n_pos * (n_pos + 1) / 2.0, n_pos * n_neg)


def _warn_undefined(data: _Data, key: str, rate_name: str, undefined: np.ndarray, stacklevel: int) -> None:
    bad = [data.groups[i] for i in np.flatnonzero(undefined)]
    label = "group " + ", ".join(repr(g) for g in bad) if len(bad) == 1 else f"groups {bad!r}"
    warnings.warn(
        f"{key} is NaN: {rate_name} is undefined for {label} ({_CONDITION[rate_name]} in that group)",
        FairnessWarning,
        stacklevel=stacklevel + 1,
    )


def _gaps(data: _Data, *, signed: bool, stacklevel: int) -> dict[str, float]:
    """Max-min (or signed g1-g0) gap of each fairness rate; NaN plus a warning where a rate is undefined."""
    rates = _rates(data.cells)
    out: dict[str, float] = {}
    for key, rate_name in GAP_RATES.items():
        r = rates[rate_name]
        undefined = np.isnan(r)
        if undefined.any():
            _warn_undefined(data, key, rate_name, undefined, stacklevel + 1)
            out[key] = float("nan")
        elif signed:
            out[key] = float(r[1] - r[0])
        else:
            out[key] = float(r.max() - r.min())
    return out


def _between_groups(rates: Mapping[str, np.ndarray], agg: str = "worst_case") -> dict[str, np.ndarray]:
    """Fairlearn's four between-group values from per-group rates of shape (..., k), over the last axis.

    Difference max - min, ratio min / max (1 where max = 0: all groups at 0); NaN wherever a rate is NaN.
    Vectorised over any leading axes (the bootstrap passes (B, k)).
    """

    def difference(r: np.ndarray) -> np.ndarray:
        return r.max(axis=-1) - r.min(axis=-1)  # NaN propagates

    def ratio(r: np.ndarray) -> np.ndarray:
        high, low = r.max(axis=-1), r.min(axis=-1)
        positive = high > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(positive, low / np.where(positive, high, 1.0), 1.0)
        return np.where(np.isnan(high), np.nan, value)

    sel, tpr, fpr = (np.asarray(rates[k], dtype=np.float64) for k in ("selection_rate", "tpr", "fpr"))
    if agg == "worst_case":
        eo_difference = np.maximum(difference(tpr), difference(fpr))
        eo_ratio = np.minimum(ratio(tpr), ratio(fpr))
    else:
        eo_difference = (difference(tpr) + difference(fpr)) / 2.0
        eo_ratio = (ratio(tpr) + ratio(fpr)) / 2.0
    return dict(zip(FAIRLEARN_KEYS, (difference(sel), ratio(sel), eo_difference, eo_ratio), strict=True))


def _fairlearn_values(data: _Data, *, agg: str = "worst_case", stacklevel: int | None) -> dict[str, float]:
    """:func:`_between_groups` of the data's groups as Python floats; with a ``stacklevel``, a
    :class:`FairnessWarning` for each of TPR and FPR that is undefined in some group."""
    if agg not in EO_AGGREGATIONS:
        raise FastfairError(f"agg must be one of {', '.join(map(repr, EO_AGGREGATIONS))}, got {agg!r}")
    rates = _rates(data.cells)
    if stacklevel is not None:
        for rate_name in ("tpr", "fpr"):
            undefined = np.isnan(rates[rate_name])
            if undefined.any():
                _warn_undefined(data, "equalized odds", rate_name, undefined, stacklevel + 1)
    return {k: float(v) for k, v in _between_groups(rates, agg).items()}


# ----------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------
def _overall_auc(data: _Data) -> float:
    assert data.scores is not None
    zeros = np.zeros(data.y_true.size, dtype=np.intp)
    return float(_grouped_auc(data.y_true, data.scores, zeros, 1)[0])


def _group_index(
    groups: list[Hashable], group_names: Mapping[Hashable, str] | Sequence[str] | None
) -> list[Hashable]:
    if group_names is None:
        names: list[Hashable] = list(groups)
    elif isinstance(group_names, Mapping):
        names = [group_names.get(g, g) for g in groups]
    else:
        if isinstance(group_names, str):
            raise FastfairError("group_names must be a mapping or a sequence of names, not a string")
        names = list(group_names)
        if len(names) != len(groups):
            raise FastfairError(f"group_names has {len(names)} names for {len(groups)} groups {groups!r}")
    if len(set(names)) != len(names):
        raise FastfairError(f"group_names gives duplicate row names: {names!r}")
    return names


def _resampled_auc(y: np.ndarray, scores: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (mid-ranks for ties) of each resample, from the multiplicities of the sorted rows."""
    B, n = picks.shape
    order = np.argsort(scores, kind="stable")
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    sorted_scores, sorted_y = scores[order], y[order].astype(np.float64)
    blocks = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    counts = np.bincount((np.arange(B)[:, None] * n + position[picks]).ravel(), minlength=B * n).reshape(B, n)
    positives = np.add.reduceat(counts * sorted_y, blocks, axis=1)
    negatives = np.add.reduceat(counts * (1.0 - sorted_y), blocks, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    wins = (positives * (below + 0.5 * negatives)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)
