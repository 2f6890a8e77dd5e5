r"""Fairness metrics for ``C >= 3`` classes: one-vs-rest per class, the worst class as the headline.

Used through :mod:`fastfair.metrics` (:func:`~fastfair.metrics.classification_summary`,
:func:`~fastfair.metrics.group_table`, :func:`~fastfair.metrics.per_class_table` and the bootstrap), which send
multiclass input here; this module holds the computation.

Inputs
------
``y_true`` and ``y_pred`` are class codes ``0 .. C-1`` (integers; floats with integer values and booleans are
accepted), ``sensitive`` one group per sample (or several columns, as in :mod:`fastfair.metrics`), ``scores``
an ``(n, C)`` array of real scores, column ``c`` for class ``c`` (probabilities for AUC as scikit-learn computes
it; only their order within a column matters here).

One-vs-rest
-----------
Class :math:`c` defines the binary problem :math:`Y_c = [Y = c]`, :math:`\hat Y_c = [\hat Y = c]`. Its
confusion cells in group :math:`s` come from the group's :math:`C \times C` confusion matrix
:math:`M^s_{tp} = \#\{i \in s : Y_i = t, \hat Y_i = p\}` (one ``np.bincount`` over ``(s · C + y) · C + ŷ``):

.. math::

    TP = M^s_{cc}, \quad FN = \sum_p M^s_{cp} - TP, \quad FP = \sum_t M^s_{tc} - TP, \quad
    TN = n_s - TP - FN - FP.

Every per-class, per-group rate (selection rate :math:`P(\hat Y = c \mid S = s)`, TPR
:math:`P(\hat Y = c \mid Y = c, S = s)`, FPR :math:`P(\hat Y = c \mid Y \ne c, S = s)`, PPV
:math:`P(Y = c \mid \hat Y = c, S = s)`, FOR :math:`P(Y = c \mid \hat Y \ne c, S = s)`) is then computed from those
cells by the binary module's one implementation, so that class :math:`c`'s numbers are exactly those of
:mod:`fastfair.metrics` on ``(y_true == c, y_pred == c)``, and those of Fairlearn's ``MetricFrame`` with
``selection_rate``, ``true_positive_rate``, ... on the same one-vs-rest labels.

Headline
--------
Per class, each of the five gaps is :math:`\max_s r_s - \min_s r_s` (NaN when the rate is undefined in some group:
its conditioning cell is empty) and Fairlearn's four between-group values are computed as in the binary case.
The headline of a gap is the **worst class's** gap, :math:`\max_c \Delta_c` (NaN, with a
:class:`~fastfair.metrics.FairnessWarning`, when some class's gap is undefined: the worst case is then unknown);
``worst_class`` names the class attaining it. Fairlearn's differences take the maximum over classes, its ratios
the minimum; the four-fifths flag reads the worst demographic parity ratio.

Accuracy is :math:`\sum_c M_{cc} / n` (all groups pooled). AUC is the **macro one-vs-rest** AUC
:math:`\frac1C \sum_c \mathrm{AUC}(Y_c, \text{scores}_{:,c})` (each term the Mann-Whitney statistic with mid-ranks),
as ``sklearn.metrics.roc_auc_score(y, scores, multi_class="ovr", average="macro")``; NaN with a warning when
some class has no sample (or every sample).

Bootstrap
---------
:func:`resampled_statistics` computes the same statistics for ``B`` resamples at once: one ``np.bincount`` over
``((b · k + s) · C + y) · C + ŷ`` gives the ``(B, k, C, C)`` confusion matrices, the one-vs-rest cells and rates
follow as above, and the macro AUC is the mean of the binary module's resampled AUC of each class.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fastfair import group_rates as _core
from fastfair.errors import FastfairError
from fastfair.vocabulary import GAP_KEYS, GAP_RATES

__all__ = [
    "classification_summary",
    "group_table",
    "is_multiclass",
    "per_class_table",
    "resampled_statistics",
]

# What a one-vs-rest rate of class c conditions on, for warning messages.
_CONDITION: dict[str, str] = {
    "selection_rate": "no samples",
    "tpr": "no samples with y_true={c}",
    "fpr": "no samples with y_true!={c}",
    "ppv": "no samples with y_pred={c}",
    "for": "no samples with y_pred!={c}",
}


# ----------------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------------
def _numbers(x: Any) -> np.ndarray | None:
    """``x`` as a numeric array if it is one (or converts to one), else None."""
    try:
        a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
    except Exception:  # pragma: no cover - exotic containers
        return None
    if a.dtype.kind == "O":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            return None
    return a if a.dtype.kind in "biuf" else None


def class_count(y_true: Any, y_pred: Any, scores: Any = None, n_classes: int | None = None) -> int:
    """The number of classes ``C`` of the input: ``n_classes`` if given, else the number of score columns of a
    2-D ``scores`` with more than one column, else ``max(2, largest label + 1)``. Cheap; anything that is not a
    numeric label is left to the input checks (a result of 2 sends the input to the binary checks)."""
    if n_classes is not None:
        ok = isinstance(n_classes, (int, np.integer)) and not isinstance(n_classes, bool) and n_classes >= 2
        if not ok:
            raise FastfairError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        return int(n_classes)
    if scores is not None:
        sc = _numbers(scores)
        if sc is not None and sc.ndim == 2 and sc.shape[1] > 1:
            return int(sc.shape[1])
    top = 1
    for labels in (y_true, y_pred):
        a = _numbers(labels)
        if a is not None and a.size and a.ndim <= 2:
            finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
            if finite.size and float(finite.max()) > top and np.all(finite == np.round(finite)):
                top = int(finite.max())
    return top + 1


def is_multiclass(y_true: Any, y_pred: Any, scores: Any = None, n_classes: int | None = None) -> bool:
    """Whether the input has ``C >= 3`` classes (:func:`class_count`): ``n_classes >= 3`` given, a 2-D ``scores``
    with three or more columns, or a label above 1."""
    return class_count(y_true, y_pred, scores, n_classes) >= 3


def _as_codes(x: Any, name: str, n_classes: int) -> np.ndarray:
    """``x`` as an integer array of class codes ``0 .. n_classes-1``; :class:`FastfairError` for anything else."""
    what = f"{name} must hold class codes 0..{n_classes - 1}"
    a = _core._as_numeric_labels(x, name, what)
    ok = (a >= 0) & (a < n_classes)
    if a.dtype.kind == "f":
        ok &= a == np.round(a)  # NaN fails every comparison
    if not ok.all():
        bad = a[~ok][0]
        hint = " (take the argmax of the scores first)" if name == "y_pred" else ""
        raise FastfairError(f"{what}, found {bad.item()!r}{hint}")
    return a.astype(np.intp)


def _as_score_matrix(x: Any, n: int, n_classes: int) -> np.ndarray:
    """``x`` as a finite float64 ``(n, C)`` array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise FastfairError("scores must be numeric") from None
    if a.ndim != 2 or a.shape[1] != n_classes:
        raise FastfairError(
            f"scores for {n_classes} classes must be an (n, {n_classes}) array, one column per class, "
            f"got shape {a.shape}"
        )
    if a.shape[0] != n:
        raise FastfairError(f"inputs differ in length: y_true={n}, scores={a.shape[0]}")
    if not np.isfinite(a).all():
        raise FastfairError("scores must be finite (found NaN or inf)")
    return a


@dataclass(frozen=True)
class _Data:
    """Validated multiclass inputs plus the one-vs-rest confusion cells of every class in every group."""

    groups: list[Hashable]  # sorted unique labels
    codes: np.ndarray  # (n,) group index of each sample
    y_true: np.ndarray  # (n,) class codes
    y_pred: np.ndarray  # (n,) class codes
    scores: np.ndarray | None  # (n, C) or None
    n_classes: int
    cells: np.ndarray  # (C, k, 4) int64 counts: TN, FP, FN, TP of class c against the rest, in group g


def _prepare(
    y_true: Any, y_pred: Any, sensitive: Any, scores: Any = None, *, n_classes: int | None = None, min_groups: int = 2
) -> _Data:
    C = class_count(y_true, y_pred, scores, n_classes)
    yt = _as_codes(y_true, "y_true", C)
    yp = _as_codes(y_pred, "y_pred", C)
    groups, codes = _core._sensitive_groups(sensitive)
    lengths = {"y_true": yt.size, "y_pred": yp.size, "sensitive": codes.size}
    if len(set(lengths.values())) > 1:
        raise FastfairError("inputs differ in length: " + ", ".join(f"{k}={v}" for k, v in lengths.items()))
    if yt.size == 0:
        raise FastfairError("inputs are empty")
    sc = None if scores is None else _as_score_matrix(scores, yt.size, C)
    if len(groups) < min_groups:
        raise FastfairError(
            f"sensitive must contain at least {min_groups} groups, found {len(groups)} ({groups[0]!r})"
        )
    return _Data(groups, codes, yt, yp, sc, C, ovr_cells(codes, yt, yp, len(groups), C))


# ----------------------------------------------------------------------------------------------------------
# Core
# ----------------------------------------------------------------------------------------------------------
def ovr_cells(codes: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, n_groups: int, n_classes: int) -> np.ndarray:
    """``(C, k, 4)`` one-vs-rest counts TN, FP, FN, TP of each class in each group, from the per-group confusion
    matrices (one ``np.bincount``; see the module docstring)."""
    C = n_classes
    flat = (np.asarray(codes, dtype=np.int64) * C + y_true) * C + y_pred
    M = np.bincount(flat, minlength=n_groups * C * C).reshape(n_groups, C, C).astype(np.int64)
    return _cells_from_confusion(M).transpose(1, 0, 2)


def _cells_from_confusion(M: np.ndarray) -> np.ndarray:
    """``(..., C, 4)`` one-vs-rest cells TN, FP, FN, TP from ``(..., C, C)`` confusion matrices (true x pred)."""
    tp = np.diagonal(M, axis1=-2, axis2=-1)
    fn = M.sum(axis=-1) - tp
    fp = M.sum(axis=-2) - tp
    tn = M.sum(axis=(-2, -1))[..., None] - tp - fn - fp
    return np.stack([tn, fp, fn, tp], axis=-1)


def _class_rates(cells: np.ndarray) -> dict[str, np.ndarray]:
    """The binary module's rates of ``(C, k, 4)`` cells, each ``(C, k)``."""
    C, k, _ = cells.shape
    return {name: r.reshape(C, k) for name, r in _core._rates(cells.reshape(C * k, 4)).items()}


def _per_class(data: _Data) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-class gaps ``(C,)`` (NaN where a rate is undefined in some group) and Fairlearn's four values ``(C,)``."""
    rates = _class_rates(data.cells)
    gaps = {key: rates[rate].max(axis=1) - rates[rate].min(axis=1) for key, rate in GAP_RATES.items()}  # NaN stays
    return gaps, _core._between_groups(rates)


def _macro_auc(y_true: np.ndarray, scores: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """``(k,)`` macro one-vs-rest AUC per group (NaN where some class has no sample, or only that class, in it)."""
    per_class = [
        _core._grouped_auc((y_true == c).astype(np.intp), scores[:, c], codes, n_groups)
        for c in range(scores.shape[1])
    ]
    return np.mean(per_class, axis=0)


def _worst(values: np.ndarray, pick: str = "max") -> tuple[float, int | None]:
    """The worst value over classes (largest, or smallest for ratios) and its class; NaN and None if undefined."""
    if np.isnan(values).any():
        return float("nan"), None
    c = int(np.argmax(values) if pick == "max" else np.argmin(values))
    return float(values[c]), c


def _warn_undefined_classes(data: _Data, key: str, rate_name: str, stacklevel: int) -> None:
    rates = _class_rates(data.cells)[rate_name]
    c, g = (int(v[0]) for v in np.nonzero(np.isnan(rates)))
    others = int(np.isnan(rates).any(axis=1).sum()) - 1
    more = f" (and {others} other class{'es' if others > 1 else ''})" if others else ""
    warnings.warn(
        f"{key} is NaN: {rate_name} of class {c} (one-vs-rest) is undefined for group {data.groups[g]!r}"
        f"{more} ({_CONDITION[rate_name].format(c=c)} in that group)",
        _core.FairnessWarning,
        stacklevel=stacklevel + 1,
    )


# ----------------------------------------------------------------------------------------------------------
# Public computations (reached through fastfair.metrics)
# ----------------------------------------------------------------------------------------------------------
def classification_summary(
    y_true: Any, y_pred: Any, sensitive: Any, scores: Any = None, *, n_classes: int | None = None, stacklevel: int = 2
) -> dict[str, Any]:
    """The multiclass summary of :func:`fastfair.metrics.classification_summary` (see the module docstring)."""
    data = _prepare(y_true, y_pred, sensitive, scores, n_classes=n_classes)
    total = data.cells[:, :, 3].sum()  # the diagonal of the pooled confusion matrix
    out: dict[str, Any] = {"accuracy": float(total / data.y_true.size)}
    if data.scores is not None:
        auc = float(_macro_auc(data.y_true, data.scores, np.zeros(data.y_true.size, np.intp), 1)[0])
        if np.isnan(auc):
            absent = [c for c in range(data.n_classes) if not np.any(data.y_true == c)]
            why = f"class {absent[0]} has no sample" if absent else "y_true holds a single class"
            warnings.warn(f"auc is NaN: {why} (macro one-vs-rest)", _core.FairnessWarning, stacklevel=stacklevel)
        out["auc"] = auc
    gaps, fairlearn = _per_class(data)
    worst: dict[str, int | None] = {}
    for key, rate_name in GAP_RATES.items():
        out[key], worst[key] = _worst(gaps[key])
        if worst[key] is None:
            _warn_undefined_classes(data, key, rate_name, stacklevel)
    for key, values in fairlearn.items():
        out[key] = _worst(values, "min" if key.endswith("_ratio") else "max")[0]
    out[_core.FOUR_FIFTHS_KEY] = bool(out["demographic_parity_ratio"] < _core.FOUR_FIFTHS)
    out["n_classes"] = data.n_classes
    out["worst_class"] = worst
    return out


def per_class_table(
    y_true: Any, y_pred: Any, sensitive: Any, n_classes: int | None = None
) -> pd.DataFrame:
    """The per-class table of :func:`fastfair.metrics.per_class_table`."""
    data = _prepare(y_true, y_pred, sensitive, n_classes=n_classes)
    gaps, fairlearn = _per_class(data)
    columns = {**gaps, **fairlearn}
    return pd.DataFrame(
        {k: columns[k] for k in (*GAP_KEYS, *_core.FAIRLEARN_KEYS)},
        index=pd.Index(range(data.n_classes), name="class"),
    )


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
    """The multiclass table of :func:`fastfair.metrics.group_table`: per group ``n``, ``accuracy``,
    ``selection_rate[<c>]`` for each class code ``c`` and, with scores, the macro one-vs-rest ``auc``."""
    data = _prepare(y_true, y_pred, sensitive, scores, n_classes=n_classes, min_groups=1)
    k, C = len(data.groups), data.n_classes
    index = _core._group_index(data.groups, group_names)
    cells = data.cells  # (C, k, 4)
    if overall:
        if "overall" in index:
            raise FastfairError("a group is named 'overall'; pass overall=False or rename it via group_names")
        cells = np.concatenate([cells, cells.sum(axis=1, keepdims=True)], axis=1)
        index = [*index, "overall"]
    rates = _class_rates(cells)
    n = cells[0].sum(axis=1)
    table = pd.DataFrame({"n": n, "accuracy": cells[:, :, 3].sum(axis=0) / n}, index=pd.Index(index, name="group"))
    for c in range(C):
        table[f"selection_rate[{c}]"] = rates["selection_rate"][c]
    if data.scores is not None:
        auc = _macro_auc(data.y_true, data.scores, data.codes, k)
        if overall:
            auc = np.append(auc, _macro_auc(data.y_true, data.scores, np.zeros(data.y_true.size, np.intp), 1))
        table["auc"] = auc
    return table


def resampled_statistics(
    y: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, codes: np.ndarray, picks: np.ndarray, n_classes: int
) -> dict[str, np.ndarray]:
    """:data:`fastfair.metrics.SUMMARY_STATISTICS` of each resample (rows ``picks``, (B, n)) for ``C`` classes:
    the numbers of :func:`classification_summary` of each resample, as (B,) arrays."""
    y, y_pred, codes = (np.asarray(a, dtype=np.int64) for a in (y, y_pred, codes))
    B, n = picks.shape
    k, C = int(codes.max()) + 1, int(n_classes)
    flat = ((np.arange(B)[:, None] * k + codes[picks]) * C + y[picks]) * C + y_pred[picks]
    M = np.bincount(flat.ravel(), minlength=B * k * C * C).reshape(B, k, C, C)
    cells = _cells_from_confusion(M).transpose(0, 2, 1, 3).astype(np.float64)  # (B, C, k, 4)
    rates = {name: r.reshape(B, C, k) for name, r in _core._rates(cells.reshape(-1, 4)).items()}
    out = {"accuracy": cells[:, :, :, 3].sum(axis=(1, 2)) / n}
    scores = np.asarray(scores, dtype=np.float64)
    per_class_auc = [_core._resampled_auc((y == c).astype(np.int64), scores[:, c], picks) for c in range(C)]
    out["auc"] = np.mean(per_class_auc, axis=0)
    for key, rate_name in GAP_RATES.items():
        r = rates[rate_name]  # (B, C, k); NaN propagates through max and min: undefined somewhere, undefined
        out[key] = (r.max(axis=2) - r.min(axis=2)).max(axis=1)
    for key, values in _core._between_groups(rates).items():  # (B, C)
        out[key] = values.min(axis=1) if key.endswith("_ratio") else values.max(axis=1)
    return out
