r"""Group fairness and per-group classification metrics.

Pure functions: arrays in, numbers / DataFrames out. Nothing is printed or written.

Inputs
------
``y_true`` and ``y_pred`` are binary labels in {0, 1} (bool, int or float 0.0/1.0); ``sensitive`` holds one
group label per sample (integer codes, strings, any mutually sortable hashable values); ``scores`` are real
scores for the positive class (probabilities or logits) used only for AUC. Anything ``np.asarray`` accepts
works: numpy arrays, lists, pandas Series, and torch tensors (detached and moved to the CPU first). A column
vector of shape ``(n, 1)`` is accepted as ``(n,)``, and binary ``(n, 2)`` scores (one column per class) as their
column 1. The groups are the **sorted** unique values of ``sensitive``; every table and every signed difference
follows that order.

Definitions
-----------
For a group :math:`s`, write the confusion cells of that group as TN, FP, FN, TP (rows: true label Y,
columns: prediction Ŷ). The per-group rates are

=================  ====================================  ========================
rate               definition                            empirical value
=================  ====================================  ========================
``accuracy``       :math:`P(\hat Y = Y \mid S=s)`          (TP + TN) / n
``selection_rate`` :math:`P(\hat Y = 1 \mid S=s)`          (TP + FP) / n
``tpr``            :math:`P(\hat Y = 1 \mid Y=1, S=s)`     TP / (TP + FN)
``fpr``            :math:`P(\hat Y = 1 \mid Y=0, S=s)`     FP / (FP + TN)
``ppv``            :math:`P(Y = 1 \mid \hat Y=1, S=s)`     TP / (TP + FP)
``for``            :math:`P(Y = 1 \mid \hat Y=0, S=s)`     FN / (FN + TN)
=================  ====================================  ========================

The three classic group-fairness criteria compare these rates across groups:

* **independence** (demographic parity): ``selection_rate``;
* **separation** (equalized odds): ``tpr`` (``separation_tpr``) and ``fpr`` (``separation_fpr``);
* **sufficiency** (predictive parity / calibration within groups): ``ppv`` (``sufficiency_ppv``) and the
  false omission rate ``for`` (``sufficiency_for``).

:func:`fairness_gaps` reports for each criterion the **absolute gap**
:math:`\max_s r_s - \min_s r_s \ge 0` (for two groups this is :math:`|r_1 - r_0|`). :func:`signed_gaps`
(exactly two groups) reports :math:`r(g_1) - r(g_0)` where :math:`g_0 < g_1` are the two sorted group labels
-- with 0/1 codes that is **value(S=1) minus value(S=0)**: a positive ``independence`` means group 1 is
selected more often than group 0.

A rate whose conditioning cell is empty in some group (e.g. no Ŷ=1 in that group, so its PPV is 0/0) is
undefined; the gap is then NaN and a :class:`FairnessWarning` names the rate and the group(s). NaN is never
silently replaced by 0 (scikit-learn's ``precision_score``, used by Fairlearn, returns 0.0 there).

Fairlearn's names
-----------------
Beside these gaps, :func:`classification_summary` reports the between-group comparisons under the names
``fairlearn.metrics`` gives them (``method="between_groups"``), with the same definitions:

* ``demographic_parity_difference`` :math:`= \max_s \mathrm{sel}_s - \min_s \mathrm{sel}_s` (our
  ``independence``);
* ``demographic_parity_ratio`` :math:`= \min_s \mathrm{sel}_s / \max_s \mathrm{sel}_s`; the **four-fifths
  rule** (the US EEOC's rule of thumb for adverse impact) is violated when it is below :data:`FOUR_FIFTHS`
  = 0.8, reported as ``four_fifths_violated``;
* ``equalized_odds_difference`` :math:`= \max(\Delta\mathrm{TPR}, \Delta\mathrm{FPR})` (the larger of our
  ``separation_tpr`` and ``separation_fpr``; ``agg="mean"``: their mean);
* ``equalized_odds_ratio`` :math:`= \min(\rho_\mathrm{TPR}, \rho_\mathrm{FPR})` with
  :math:`\rho_r = \min_s r_s / \max_s r_s` (``agg="mean"``: their mean).

Two degenerate cases differ from Fairlearn on purpose. A ratio whose largest rate is 0 (every group has rate 0,
so the groups are equal) is 1, where Fairlearn returns NaN (0/0). A TPR or FPR that is undefined in some group
(no y=1, or no y=0, in it) makes the equalized-odds values NaN with a :class:`FairnessWarning`, where Fairlearn
counts the undefined rate as 0 (scikit-learn's ``zero_division`` default). The demographic-parity values are
always defined.

Intersectional groups
---------------------
``sensitive`` may also hold several columns: a 2-D array-like ``(n, m)`` (one row per sample) or a pandas
DataFrame with ``m`` columns. A row's group is then the **combination** of its
values, as in Fairlearn's ``MetricFrame`` with several sensitive features: the groups are the combinations
that occur (Fairlearn lists the empty ones as NaN rows and skips them in every aggregate, so the numbers agree),
ordered lexicographically by the per-column order, and named by their values joined with
:data:`GROUP_SEPARATOR`, e.g. ``"Female|White"`` (Fairlearn's index holds the tuple ``("Female", "White")``).

Bootstrap
---------
:func:`bootstrap_intervals`: ``B`` resamples of the rows, each drawn with replacement **within each group** (the
group sizes n_g stay fixed, so every resample holds every group: the gaps compare the same groups), seeded. A
statistic's interval is the percentile interval of its ``B`` resampled values, [q_{2.5%}, q_{97.5%}], over the
resamples where it is defined (a gap is undefined when a rate's conditioning cell is empty in some group of a
resample; the count of defined resamples is reported). The resampled statistics are computed for all resamples at
once from the per-resample confusion cells (one ``np.bincount``) and, for AUC, from the per-resample
multiplicities of the score-sorted rows: with ties grouped into blocks of equal score,
AUC = Σ_blocks P_b (N_{<b} + ½ N_b) / (P N), the Mann-Whitney statistic with mid-ranks, where P_b and N_b are
the resampled positives and negatives in block b and N_{<b} the negatives in lower blocks.

AUC is the Mann-Whitney statistic :math:`P(\text{score}_+ > \text{score}_-) + \tfrac12 P(\text{tie})`,
identical to ``sklearn.metrics.roc_auc_score``; it is NaN for a group that holds only one class.

Multiclass
----------
With ``C >= 3`` classes (``y_true`` / ``y_pred`` class codes ``0 .. C-1``, ``scores`` an ``(n, C)`` array) the
metrics are one-vs-rest per class, and the headline of each gap is the worst class's
(:mod:`fastfair.metrics_multiclass` holds the computation and the math). The input is multiclass when a 2-D
``scores`` has three or more columns, when ``n_classes >= 3`` is passed, or when a label above 1 occurs;
:func:`classification_summary` then adds ``n_classes`` and ``worst_class`` to its keys, :func:`group_table` has a
selection-rate column per class, :func:`per_class_table` gives every class's gaps, and the bootstrap resamples
the multiclass summary. Binary input (``C = 2``) is computed exactly as described above.

All per-group numbers come from one core: a single ``np.bincount`` over ``4·group + 2·y_true + y_pred``
gives the (groups, 4) confusion-cell counts, and every rate and gap is derived from those counts. Cost is
O(n) (plus one sort for AUC), fine for millions of rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fastfair import metrics_multiclass as _multiclass  # used at call time only: it builds on this module
from fastfair.errors import FastfairError
from fastfair.vocabulary import GAP_KEYS, GAP_RATES

__all__ = [
    "BOOTSTRAP_LEVEL",
    "BOOTSTRAP_RESAMPLES",
    "FAIRLEARN_KEYS",
    "FOUR_FIFTHS",
    "FOUR_FIFTHS_KEY",
    "GAP_KEYS",
    "GAP_RATES",
    "GROUP_SEPARATOR",
    "SUMMARY_STATISTICS",
    "TABLE_COLUMNS",
    "FairnessWarning",
    "bootstrap_intervals",
    "bootstrap_resamples",
    "classification_summary",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "fairness_gaps",
    "group_table",
    "intersect_codes",
    "intersectional_labels",
    "per_class_table",
    "resampled_statistics",
    "signed_gaps",
]


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


def _as_binary(x: Any, name: str) -> np.ndarray:
    """``x`` as an integer array of 0/1 labels; :class:`FastfairError` for anything else."""
    a = _as_1d(x, name)
    if a.dtype == np.bool_:
        return a.astype(np.intp)
    if a.dtype.kind == "O":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise FastfairError(f"{name} must contain only 0 and 1, got non-numeric values") from None
    if a.dtype.kind not in "iuf":
        raise FastfairError(f"{name} must contain only 0 and 1, got values of dtype {a.dtype}")
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
def fairness_gaps(y_true: Any, y_pred: Any, sensitive: Any) -> dict[str, float]:
    r"""Absolute between-group gaps of the five fairness rates.

    For each rate :math:`r` (see the module docstring) the gap is :math:`\max_s r_s - \min_s r_s \ge 0`;
    with two groups this is :math:`|r_1 - r_0|`.

    Returns
    -------
    dict
        ``{"independence": Δ selection_rate, "separation_tpr": Δ TPR, "separation_fpr": Δ FPR,
        "sufficiency_ppv": Δ PPV, "sufficiency_for": Δ FOR}`` as Python floats.
        ``independence`` equals ``fairlearn.metrics.demographic_parity_difference`` and
        ``max(separation_tpr, separation_fpr)`` equals ``fairlearn.metrics.equalized_odds_difference``.

    Warns
    -----
    FairnessWarning
        When a rate's conditioning cell is empty in some group; that gap is NaN.

    Raises
    ------
    FastfairError
        On inputs of different lengths, empty input, labels other than 0/1, or fewer than two groups.
    """
    return _gaps(_prepare(y_true, y_pred, sensitive), signed=False, stacklevel=2)


def signed_gaps(y_true: Any, y_pred: Any, sensitive: Any) -> dict[str, float]:
    r"""Signed gaps for exactly two groups: **value(g1) - value(g0)**.

    ``g0 < g1`` are the two sorted group labels, so with 0/1 codes each entry is
    :math:`r(S=1) - r(S=0)`: positive means group 1 has the larger rate (e.g. ``independence > 0``: group 1
    is selected more often). Same keys as :func:`fairness_gaps`, and ``abs`` of each value equals the
    corresponding absolute gap.

    Raises
    ------
    FastfairError
        As :func:`fairness_gaps`, and when there are more than two groups.
    """
    data = _prepare(y_true, y_pred, sensitive)
    if len(data.groups) != 2:
        raise FastfairError(
            f"signed_gaps needs exactly 2 groups, found {len(data.groups)}; "
            "use fairness_gaps for max-min gaps"
        )
    return _gaps(data, signed=True, stacklevel=2)


def demographic_parity_difference(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> float:
    r"""Fairlearn's demographic parity difference: :math:`\max_s P(\hat Y=1 \mid S=s) - \min_s P(\hat Y=1 \mid
    S=s)`, the largest minus the smallest selection rate over the groups (equal to our ``independence`` gap and
    to ``fairlearn.metrics.demographic_parity_difference``). 0 means every group is selected equally often.

    ``sensitive_features`` holds one group per sample, or several columns (intersectional groups, see the module
    docstring). Raises :class:`FastfairError` as :func:`fairness_gaps`.
    """
    data = _prepare(y_true, y_pred, sensitive_features)
    return _fairlearn_values(data, stacklevel=None)["demographic_parity_difference"]


def demographic_parity_ratio(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> float:
    r"""Fairlearn's demographic parity ratio: :math:`\min_s \mathrm{sel}_s / \max_s \mathrm{sel}_s \in [0, 1]`
    with :math:`\mathrm{sel}_s = P(\hat Y=1 \mid S=s)`; 1 means equal selection rates. Below
    :data:`FOUR_FIFTHS` (0.8) the four-fifths rule of adverse impact is violated.

    Equals ``fairlearn.metrics.demographic_parity_ratio`` except when no group is ever selected: the rates are
    then all 0, equal, and the ratio is 1 (Fairlearn: NaN). Raises :class:`FastfairError` as
    :func:`fairness_gaps`.
    """
    data = _prepare(y_true, y_pred, sensitive_features)
    return _fairlearn_values(data, stacklevel=None)["demographic_parity_ratio"]


def equalized_odds_difference(
    y_true: Any, y_pred: Any, *, sensitive_features: Any, agg: str = "worst_case"
) -> float:
    r"""Fairlearn's equalized odds difference: :math:`\max(\Delta\mathrm{TPR}, \Delta\mathrm{FPR})` where
    :math:`\Delta r = \max_s r_s - \min_s r_s` (``agg="mean"``: the mean of the two), equal to
    ``fairlearn.metrics.equalized_odds_difference``. 0 means equal TPR and FPR in every group.

    NaN with a :class:`FairnessWarning` when TPR or FPR is undefined in some group (no y=1, or no y=0, in it;
    Fairlearn counts such a rate as 0). Raises :class:`FastfairError` as :func:`fairness_gaps`, and for an
    unknown ``agg``.
    """
    data = _prepare(y_true, y_pred, sensitive_features)
    return _fairlearn_values(data, agg=agg, stacklevel=2)["equalized_odds_difference"]


def equalized_odds_ratio(y_true: Any, y_pred: Any, *, sensitive_features: Any, agg: str = "worst_case") -> float:
    r"""Fairlearn's equalized odds ratio: :math:`\min(\rho_\mathrm{TPR}, \rho_\mathrm{FPR})` where
    :math:`\rho_r = \min_s r_s / \max_s r_s` (1 when :math:`\max_s r_s = 0`; ``agg="mean"``: the mean of the
    two), equal to ``fairlearn.metrics.equalized_odds_ratio`` wherever that is defined. 1 means equal TPR and FPR.

    NaN with a :class:`FairnessWarning` when TPR or FPR is undefined in some group, as
    :func:`equalized_odds_difference`.
    """
    data = _prepare(y_true, y_pred, sensitive_features)
    return _fairlearn_values(data, agg=agg, stacklevel=2)["equalized_odds_ratio"]


def group_table(
    y_true: Any,
    y_pred: Any,
    sensitive: Any,
    scores: Any = None,
    group_names: Mapping[Hashable, str] | Sequence[str] | None = None,
    *,
    overall: bool = False,
    n_classes: int | None = None,
) -> pd.DataFrame:
    """One row per group with its size, accuracy and fairness rates.

    Parameters
    ----------
    scores
        Optional scores for the positive class; adds an ``auc`` column (NaN, without a warning, for a group
        that holds only one class).
    group_names
        Row labels: a mapping from group label to name (unmapped groups keep their label) or a sequence with
        one name per sorted group. Default: the group labels themselves.
    overall
        If True, append a row named ``"overall"`` computed on all samples pooled. Default False, so that every
        row is a group.
    n_classes
        The number of classes ``C`` when it is not evident from the input (a class that never occurs); see
        "Multiclass" in the module docstring.

    Returns
    -------
    pandas.DataFrame
        Index ``group`` (sorted groups, in that order); columns ``n`` (int), ``accuracy``,
        ``selection_rate``, ``tpr``, ``fpr``, ``ppv``, ``for`` and ``auc`` if scores were given. A rate
        whose conditioning cell is empty is NaN; no warning is issued here since the NaN is visible in its
        row. A single group is allowed. **Multiclass** (``C >= 3``): columns ``n``, ``accuracy``, then the
        one-vs-rest selection rate :math:`P(\\hat Y = c \\mid S = s)` of each class code ``c`` as
        ``selection_rate[<c>]``, and the macro one-vs-rest ``auc`` if scores (``(n, C)``) were given.
    """
    if _multiclass.is_multiclass(y_true, y_pred, scores, n_classes):
        return _multiclass.group_table(
            y_true, y_pred, sensitive, scores, group_names, overall=overall, n_classes=n_classes
        )
    scores = _binary_scores(scores)
    data = _prepare(y_true, y_pred, sensitive, scores, min_groups=1)
    n_groups = len(data.groups)
    index = _group_index(data.groups, group_names)
    cells = data.cells
    if overall:
        if "overall" in index:
            raise FastfairError("a group is named 'overall'; pass overall=False or rename it via group_names")
        cells = np.vstack([cells, cells.sum(axis=0, keepdims=True)])
        index = [*index, "overall"]
    table = pd.DataFrame(_rates(cells), index=pd.Index(index, name="group"), columns=list(TABLE_COLUMNS))
    if data.scores is not None:
        auc = _grouped_auc(data.y_true, data.scores, data.codes, n_groups)
        if overall:
            auc = np.append(auc, _overall_auc(data))
        table["auc"] = auc
    return table


def classification_summary(
    y_true: Any, y_pred: Any, sensitive: Any, scores: Any = None, *, n_classes: int | None = None
) -> dict[str, Any]:
    """Flat summary for results tables and JSON: pooled ``accuracy``, pooled ``auc`` (only when scores are
    given), the five absolute gaps of :func:`fairness_gaps`, Fairlearn's four between-group values
    (:data:`FAIRLEARN_KEYS`: ``demographic_parity_difference``, ``demographic_parity_ratio``,
    ``equalized_odds_difference``, ``equalized_odds_ratio``), all Python floats, and the four-fifths flag
    ``four_fifths_violated`` (a bool: ``demographic_parity_ratio < 0.8``).

    **Multiclass** (``C >= 3`` classes, see the module docstring; ``n_classes`` gives ``C`` when a class never
    occurs): the same keys, where ``auc`` is the macro one-vs-rest AUC of the ``(n, C)`` scores (as
    ``sklearn.metrics.roc_auc_score(..., multi_class="ovr", average="macro")``), each gap is the worst class's
    one-vs-rest gap :math:`\\max_c (\\max_s r_{c,s} - \\min_s r_{c,s})`, Fairlearn's differences are the maximum and
    its ratios the minimum over the classes; plus ``"n_classes"`` (int) and ``"worst_class"`` (gap key -> the class
    code attaining it, None where the gap is NaN). :func:`per_class_table` lists every class.

    Warns
    -----
    FairnessWarning
        As :func:`fairness_gaps`, and when scores are given but all samples share one class (``auc`` NaN);
        multiclass: when a gap is NaN because some class's rate is undefined in some group (naming both), and
        when a class has no sample (``auc`` NaN).
    """
    if _multiclass.is_multiclass(y_true, y_pred, scores, n_classes):
        return _multiclass.classification_summary(
            y_true, y_pred, sensitive, scores, n_classes=n_classes, stacklevel=3
        )
    data = _prepare(y_true, y_pred, sensitive, _binary_scores(scores))
    pooled = _rates(data.cells.sum(axis=0, keepdims=True))
    out: dict[str, float | bool] = {"accuracy": float(pooled["accuracy"][0])}
    if data.scores is not None:
        auc = _overall_auc(data)
        if np.isnan(auc):
            warnings.warn("auc is NaN: y_true holds only one class", FairnessWarning, stacklevel=2)
        out["auc"] = auc
    out.update(_gaps(data, signed=False, stacklevel=2))
    fairlearn = _fairlearn_values(data, stacklevel=None)  # an undefined TPR / FPR was warned about just above
    out.update(fairlearn)
    out[FOUR_FIFTHS_KEY] = bool(fairlearn["demographic_parity_ratio"] < FOUR_FIFTHS)
    return out


def per_class_table(y_true: Any, y_pred: Any, sensitive: Any, n_classes: int | None = None) -> pd.DataFrame:
    """One row per class ``c`` (index ``class``, the codes ``0 .. C-1``): the five one-vs-rest gaps of
    :func:`fairness_gaps` on ``(y_true == c, y_pred == c)`` and Fairlearn's four between-group values of the same
    one-vs-rest labels (:data:`FAIRLEARN_KEYS`).

    ``n_classes`` is ``C`` (default: the largest label + 1, at least 2; a binary input gives the rows of both
    classes). An undefined rate makes its gap NaN in that class's row, without a warning (the NaN is visible).
    The headline numbers of :func:`classification_summary` are the worst of each column (largest; smallest for
    the ratios).
    """
    return _multiclass.per_class_table(y_true, y_pred, sensitive, n_classes)


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------
def _binary_scores(scores: Any) -> Any:
    """Binary scores: a 2-D ``(n, 2)`` array of per-class scores gives its positive-class column."""
    if scores is None:
        return None
    if hasattr(scores, "detach"):  # a torch tensor
        scores = scores.detach().cpu()
    a = np.asarray(scores)
    return a[:, 1] if a.ndim == 2 and a.shape[1] == 2 else scores


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


# ----------------------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------------------
#: Resamples of :func:`bootstrap_intervals` unless told otherwise.
BOOTSTRAP_RESAMPLES = 1000
#: Coverage of the bootstrap intervals.
BOOTSTRAP_LEVEL = 0.95
#: Most resampled values (resamples x rows) held in memory at once.
_CHUNK_VALUES = 2_000_000


def bootstrap_resamples(codes: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(resamples, n)`` row indices: each resample draws, for every group, n_g of its rows with replacement.

    Row ``j`` of a resample is drawn from the group of row ``j`` (uniformly among that group's rows), so each
    resample has exactly the group sizes of ``codes``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    by_group = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.cumsum(sizes) - sizes
    start, size = starts[codes], sizes[codes]
    u = rng.random((resamples, len(codes)))
    offset = np.minimum(np.floor(u * size).astype(np.int64), size - 1)
    return by_group[start + offset]


def resampled_statistics(
    y: np.ndarray,
    y_pred: np.ndarray,
    scores: np.ndarray,
    codes: np.ndarray,
    picks: np.ndarray,
    *,
    n_classes: int | None = None,
) -> dict[str, np.ndarray]:
    """The :data:`SUMMARY_STATISTICS` of each resample (rows ``picks``, shape (B, n)), as (B,) arrays: accuracy,
    AUC, the five absolute gaps and Fairlearn's four values.

    Exactly the numbers of :func:`classification_summary` of each resample (NaN where a statistic is
    undefined), computed for all resamples at once (see "Bootstrap" in the module docstring). ``codes`` are
    group codes ``0 .. k-1``, all present. Multiclass input (``(n, C)`` scores, ``n_classes >= 3`` or a label
    above 1) gives the multiclass summary's numbers.
    """
    C = _multiclass.class_count(y, y_pred, scores, n_classes)
    if C >= 3:
        return _multiclass.resampled_statistics(y, y_pred, scores, codes, picks, C)
    scores = np.asarray(_binary_scores(scores), dtype=np.float64)
    y, y_pred, codes = (np.asarray(a, dtype=np.int64) for a in (y, y_pred, codes))
    B, n = picks.shape
    k = int(codes.max()) + 1
    flat = np.arange(B)[:, None] * (4 * k) + codes[picks] * 4 + y[picks] * 2 + y_pred[picks]
    cells = np.bincount(flat.ravel(), minlength=B * 4 * k).reshape(B, k, 4).astype(np.float64)
    tn, fp, fn, tp = (cells[..., j] for j in range(4))
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = {
            "selection_rate": (tp + fp) / (tn + fp + fn + tp),
            "tpr": tp / (tp + fn),
            "fpr": fp / (fp + tn),
            "ppv": tp / (tp + fp),
            "for": fn / (fn + tn),
        }
    out = {"accuracy": (tp + tn).sum(axis=1) / n, "auc": _resampled_auc(y, scores, picks)}
    for key, rate in GAP_RATES.items():
        r = rates[rate]
        gap = r.max(axis=1) - r.min(axis=1)  # NaN as soon as one group's rate is undefined
        out[key] = np.where(np.isnan(r).any(axis=1), np.nan, gap)
    out.update(_between_groups(rates))
    return out


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


def bootstrap_intervals(
    y: np.ndarray,
    y_pred: np.ndarray,
    scores: np.ndarray,
    codes: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = BOOTSTRAP_LEVEL,
    n_classes: int | None = None,
) -> dict[str, dict[str, float | int]]:
    """Percentile bootstrap intervals of :data:`SUMMARY_STATISTICS`: ``{stat: {"low", "high", "defined"}}``.

    ``resamples`` resamples within groups (:func:`bootstrap_resamples`) from ``numpy.random.default_rng(seed)``,
    processed in chunks; ``defined`` counts the resamples where the statistic exists (``low`` and ``high`` are
    NaN when none does). Multiclass input (``(n, C)`` scores, ``n_classes >= 3`` or a label above 1): the
    intervals of the multiclass summary (worst-class gaps, macro one-vs-rest AUC).
    """
    n_classes = _multiclass.class_count(y, y_pred, scores, n_classes)
    rng = np.random.default_rng(seed)
    n = len(y)
    chunk = max(1, _CHUNK_VALUES // max(n, 1))
    values: dict[str, list[np.ndarray]] = {s: [] for s in SUMMARY_STATISTICS}
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        picks = bootstrap_resamples(codes, b, rng)
        stats = resampled_statistics(y, y_pred, scores, codes, picks, n_classes=n_classes)
        for s in SUMMARY_STATISTICS:
            values[s].append(stats[s])
        done += b
    tail = (1.0 - level) / 2.0
    out: dict[str, dict[str, float | int]] = {}
    for s in SUMMARY_STATISTICS:
        v = np.concatenate(values[s])
        v = v[np.isfinite(v)]
        low, high = np.quantile(v, [tail, 1.0 - tail]) if len(v) else (np.nan, np.nan)
        out[s] = {"low": float(low), "high": float(high), "defined": len(v)}
    return out
