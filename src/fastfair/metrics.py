r"""Group fairness and per-group classification metrics.

Pure functions: arrays in, numbers / DataFrames out. Nothing is printed or written.

Inputs
------
``y_true`` and ``y_pred`` are binary labels in {0, 1} (bool, int or float 0.0/1.0); ``sensitive`` holds one
group label per sample (integer codes, strings, any mutually sortable hashable values); ``scores`` are real
scores for the positive class (probabilities or logits) used only for AUC. Anything ``np.asarray`` accepts
works: numpy arrays, lists, pandas Series, and torch tensors (detached and moved to the CPU first). A column
vector of shape ``(n, 1)`` is accepted as ``(n,)``. The groups are the **sorted** unique values of
``sensitive``; every table and every signed difference follows that order.

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

AUC is the Mann-Whitney statistic :math:`P(\text{score}_+ > \text{score}_-) + \tfrac12 P(\text{tie})`,
identical to ``sklearn.metrics.roc_auc_score``; it is NaN for a group that holds only one class.

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

from fastfair.errors import FastfairError
from fastfair.vocabulary import GAP_KEYS, GAP_RATES

__all__ = [
    "GAP_KEYS",
    "GAP_RATES",
    "TABLE_COLUMNS",
    "FairnessWarning",
    "classification_summary",
    "fairness_gaps",
    "group_table",
    "signed_gaps",
]


class FairnessWarning(UserWarning):
    """A fairness rate is undefined for some group (its conditioning cell is empty), so a gap is NaN."""


#: The columns of :func:`group_table` (``auc`` is appended when scores are given).
TABLE_COLUMNS: tuple[str, ...] = ("n", "accuracy", "selection_rate", "tpr", "fpr", "ppv", "for")

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
        raise FastfairError(
            f"{name} must contain only 0 and 1, found {bad.item()!r}"
            + (" (threshold scores into labels first)" if name == "y_pred" else "")
        )
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
    s = _as_1d(sensitive, "sensitive")
    sc = None if scores is None else _as_scores(scores)
    lengths = {"y_true": yt.size, "y_pred": yp.size, "sensitive": s.size}
    if sc is not None:
        lengths["scores"] = sc.size
    if len(set(lengths.values())) > 1:
        raise FastfairError("inputs differ in length: " + ", ".join(f"{k}={v}" for k, v in lengths.items()))
    if yt.size == 0:
        raise FastfairError("inputs are empty")
    groups, codes = _encode_groups(s)
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


def _gaps(data: _Data, *, signed: bool, stacklevel: int) -> dict[str, float]:
    """Max-min (or signed g1-g0) gap of each fairness rate; NaN plus a warning where a rate is undefined."""
    rates = _rates(data.cells)
    out: dict[str, float] = {}
    for key, rate_name in GAP_RATES.items():
        r = rates[rate_name]
        undefined = np.isnan(r)
        if undefined.any():
            bad = [data.groups[i] for i in np.flatnonzero(undefined)]
            label = "group " + ", ".join(repr(g) for g in bad) if len(bad) == 1 else f"groups {bad!r}"
            warnings.warn(
                f"{key} is NaN: {rate_name} is undefined for {label} ({_CONDITION[rate_name]} in that group)",
                FairnessWarning,
                stacklevel=stacklevel + 1,
            )
            out[key] = float("nan")
        elif signed:
            out[key] = float(r[1] - r[0])
        else:
            out[key] = float(r.max() - r.min())
    return out


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


def group_table(
    y_true: Any,
    y_pred: Any,
    sensitive: Any,
    scores: Any = None,
    group_names: Mapping[Hashable, str] | Sequence[str] | None = None,
    *,
    overall: bool = False,
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

    Returns
    -------
    pandas.DataFrame
        Index ``group`` (sorted groups, in that order); columns ``n`` (int), ``accuracy``,
        ``selection_rate``, ``tpr``, ``fpr``, ``ppv``, ``for`` and ``auc`` if scores were given. A rate
        whose conditioning cell is empty is NaN; no warning is issued here since the NaN is visible in its
        row. A single group is allowed.
    """
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


def classification_summary(y_true: Any, y_pred: Any, sensitive: Any, scores: Any = None) -> dict[str, float]:
    """Flat summary for results tables and JSON: pooled ``accuracy``, pooled ``auc`` (only when scores are
    given) and the five absolute gaps of :func:`fairness_gaps`, all Python floats.

    Warns
    -----
    FairnessWarning
        As :func:`fairness_gaps`, and when scores are given but all samples share one class (``auc`` NaN).
    """
    data = _prepare(y_true, y_pred, sensitive, scores)
    pooled = _rates(data.cells.sum(axis=0, keepdims=True))
    out: dict[str, float] = {"accuracy": float(pooled["accuracy"][0])}
    if data.scores is not None:
        auc = _overall_auc(data)
        if np.isnan(auc):
            warnings.warn("auc is NaN: y_true holds only one class", FairnessWarning, stacklevel=2)
        out["auc"] = auc
    out.update(_gaps(data, signed=False, stacklevel=2))
    return out


# ----------------------------------------------------------------------------------------------------------
# Helpers
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
