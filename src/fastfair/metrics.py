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
from typing import Any

import numpy as np
import pandas as pd

from fastfair import metrics_multiclass as _multiclass
from fastfair.errors import FastfairError
from fastfair.group_rates import (  # the shared computation, re-exported under the names it always had here
    FAIRLEARN_KEYS,
    FOUR_FIFTHS,
    FOUR_FIFTHS_KEY,
    GROUP_SEPARATOR,
    SUMMARY_STATISTICS,
    TABLE_COLUMNS,
    FairnessWarning,
    _between_groups,
    _fairlearn_values,
    _gaps,
    _group_index,
    _grouped_auc,
    _overall_auc,
    _prepare,
    _rates,
    _resampled_auc,
    intersect_codes,
    intersectional_labels,
)
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
