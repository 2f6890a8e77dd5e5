"""Multiclass fairness metrics: one-vs-rest per class against Fairlearn's MetricFrame, macro AUC against
scikit-learn, the worst class as the headline, and the binary results left as they were."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import precision_score, roc_auc_score

from fastfair.errors import FastfairError
from fastfair.metrics import (
    FAIRLEARN_KEYS,
    FOUR_FIFTHS_KEY,
    GAP_KEYS,
    SUMMARY_STATISTICS,
    FairnessWarning,
    bootstrap_intervals,
    bootstrap_resamples,
    classification_summary,
    fairness_gaps,
    group_table,
    per_class_table,
    resampled_statistics,
)

TOL = 1e-12


def _ppv(y_true, y_pred):
    return precision_score(y_true, y_pred, zero_division=np.nan)


def _for(y_true, y_pred):
    """False omission rate P(y = 1 | ŷ = 0), NaN when nothing is predicted 0."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return np.mean(y_true[y_pred == 0]) if np.any(y_pred == 0) else np.nan


def _metric_frame(y, p, s, c):
    """Fairlearn's MetricFrame of the one-vs-rest problem of class c."""
    return MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "ppv": _ppv,
            "for": _for,
        },
        y_true=(y == c).astype(int),
        y_pred=(p == c).astype(int),
        sensitive_features=s,
    )


def _defined(y, p, s, c, rate):
    """Independently: is the one-vs-rest rate of class c defined in every group?"""
    cond = {
        "selection_rate": np.ones_like(y, dtype=bool),
        "tpr": y == c,
        "fpr": y != c,
        "ppv": p == c,
        "for": p != c,
    }[rate]
    return all(np.any(cond[s == g]) for g in np.unique(s))


RATES = {"independence": "selection_rate", "separation_tpr": "tpr", "separation_fpr": "fpr",
         "sufficiency_ppv": "ppv", "sufficiency_for": "for"}


@st.composite
def _labelled(draw, max_classes=5):
    C = draw(st.integers(3, max_classes))
    k = draw(st.integers(2, 4))
    n = draw(st.integers(k, 80))
    y = np.array(draw(st.lists(st.integers(0, C - 1), min_size=n, max_size=n)))
    p = np.array(draw(st.lists(st.integers(0, C - 1), min_size=n, max_size=n)))
    s = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    s[:k] = np.arange(k)  # every group present
    return C, y, p, s


# ----------------------------------------------------------------------------------------------------------
# One-vs-rest against Fairlearn
# ----------------------------------------------------------------------------------------------------------
def _check_against_fairlearn(case):
    C, y, p, s = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = per_class_table(y, p, s, C)
        summary = classification_summary(y, p, s, n_classes=C)
        frames = [_metric_frame(y, p, s, c) for c in range(C)]
    assert list(table.index) == list(range(C)) and table.index.name == "class"
    assert list(table.columns) == [*GAP_KEYS, *FAIRLEARN_KEYS]
    for c in range(C):
        diff = frames[c].difference(method="between_groups")
        for key, rate in RATES.items():
            if _defined(y, p, s, c, rate):
                assert abs(table.loc[c, key] - diff[rate]) <= TOL
            else:
                assert math.isnan(table.loc[c, key])
        # Fairlearn's named values are these differences and ratios of the one-vs-rest rates
        assert abs(table.loc[c, "demographic_parity_difference"] - diff["selection_rate"]) <= TOL
        ratio = frames[c].ratio(method="between_groups")["selection_rate"]
        expected_ratio = 1.0 if math.isnan(ratio) else ratio  # all rates 0: equal groups, ratio 1 (Fairlearn NaN)
        assert abs(table.loc[c, "demographic_parity_ratio"] - expected_ratio) <= TOL
        if _defined(y, p, s, c, "tpr") and _defined(y, p, s, c, "fpr"):
            eod = max(diff["tpr"], diff["fpr"])
            assert abs(table.loc[c, "equalized_odds_difference"] - eod) <= TOL
    # the headline: the worst class of each column; NaN as soon as one class's gap is undefined
    for key in GAP_KEYS:
        col = table[key].to_numpy()
        if np.isnan(col).any():
            assert math.isnan(summary[key]) and summary["worst_class"][key] is None
        else:
            assert summary[key] == col.max() and col[summary["worst_class"][key]] == col.max()
    assert summary["demographic_parity_difference"] == table["demographic_parity_difference"].max()
    assert summary["demographic_parity_ratio"] == table["demographic_parity_ratio"].min()
    assert summary[FOUR_FIFTHS_KEY] is bool(table["demographic_parity_ratio"].min() < 0.8)
    assert summary["n_classes"] == C
    assert summary["accuracy"] == pytest.approx(np.mean(y == p), abs=TOL)


@settings(max_examples=5, deadline=None)
@given(_labelled(max_classes=4))
def test_per_class_gaps_equal_fairlearn_metricframe_one_vs_rest(case):
    _check_against_fairlearn(case)


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(_labelled())
def test_per_class_gaps_equal_fairlearn_metricframe_one_vs_rest_many(case):
    _check_against_fairlearn(case)


def test_fairlearn_named_functions_on_one_vs_rest_labels():
    rng = np.random.default_rng(4)
    y, p, s = rng.integers(0, 3, 300), rng.integers(0, 3, 300), rng.choice(["a", "b", "c"], 300)
    table = per_class_table(y, p, s)
    for c in range(3):
        yc, pc = (y == c).astype(int), (p == c).astype(int)
        assert table.loc[c, "demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(yc, pc, sensitive_features=s), abs=TOL)
        assert table.loc[c, "demographic_parity_ratio"] == pytest.approx(
            demographic_parity_ratio(yc, pc, sensitive_features=s), abs=TOL)
        assert table.loc[c, "equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(yc, pc, sensitive_features=s), abs=TOL)


def test_each_class_row_is_the_binary_metrics_of_its_one_vs_rest_labels():
    rng = np.random.default_rng(1)
    y, p, s = rng.integers(0, 4, 500), rng.integers(0, 4, 500), rng.choice(["a", "b", "c"], 500)
    table = per_class_table(y, p, s, 4)
    for c in range(4):
        gaps = fairness_gaps(y == c, p == c, s)
        for key in GAP_KEYS:
            assert table.loc[c, key] == pytest.approx(gaps[key], abs=TOL)


def test_hand_computed_three_classes():
    # group 0: y = 0 1 2, ŷ = 0 1 1;  group 1: y = 0 1 2, ŷ = 2 1 2
    # class 1 selection: group 0 2/3, group 1 1/3 -> gap 1/3; class 2 selection: 0 vs 2/3 -> gap 2/3
    # class 0 selection: 1/3 vs 0 -> 1/3; worst independence: class 2, 2/3
    y = np.array([0, 1, 2, 0, 1, 2])
    p = np.array([0, 1, 1, 2, 1, 2])
    s = np.array([0, 0, 0, 1, 1, 1])
    with pytest.warns(FairnessWarning):
        summary = classification_summary(y, p, s)
    assert summary["independence"] == pytest.approx(2 / 3, abs=TOL) and summary["worst_class"]["independence"] == 2
    assert summary["accuracy"] == pytest.approx(4 / 6, abs=TOL)
    # TPR of class 2: 0 in group 0, 1 in group 1 -> gap 1; class 0: 1 vs 0 -> gap 1; the first worst class wins
    assert summary["separation_tpr"] == 1.0 and summary["worst_class"]["separation_tpr"] == 0
    # class 2 is never predicted in group 0: its PPV is undefined there, so the worst PPV gap is unknown
    assert math.isnan(summary["sufficiency_ppv"]) and summary["worst_class"]["sufficiency_ppv"] is None
    assert summary["demographic_parity_ratio"] == 0.0 and summary[FOUR_FIFTHS_KEY] is True


def test_undefined_rate_warns_naming_class_and_group():
    y = np.array([0, 1, 2, 0, 1, 2])
    p = np.array([0, 1, 1, 2, 1, 2])
    # class 0 is never predicted in group 'v', class 2 never in group 'u'
    match = (r"sufficiency_ppv is NaN: ppv of class 0 \(one-vs-rest\) is undefined for group 'v' \(and 1 other "
             r"class\) \(no samples with y_pred=0 in that group\)")
    with pytest.warns(FairnessWarning, match=match):
        classification_summary(y, p, np.array(["u"] * 3 + ["v"] * 3))


# ----------------------------------------------------------------------------------------------------------
# AUC and the group table
# ----------------------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.integers(3, 6), st.integers(0, 2**31 - 1), st.booleans())
def test_macro_ovr_auc_equals_sklearn(C, seed, ties):
    rng = np.random.default_rng(seed)
    n = 60
    y = np.concatenate([np.arange(C), rng.integers(0, C, n - C)])
    raw = rng.integers(0, 4, (n, C)).astype(float) if ties else rng.random((n, C))
    scores = (raw + 0.1) / (raw + 0.1).sum(axis=1, keepdims=True)
    p, s = scores.argmax(axis=1), rng.integers(0, 2, n)
    s[:2] = [0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessWarning)
        summary = classification_summary(y, p, s, scores)
    expected = roc_auc_score(y, scores, multi_class="ovr", average="macro", labels=list(range(C)))
    assert summary["auc"] == pytest.approx(expected, abs=TOL)


def test_group_table_against_pandas_and_sklearn():
    rng = np.random.default_rng(3)
    n, C = 600, 3
    y = rng.integers(0, C, n)
    scores = rng.dirichlet(np.ones(C), n)
    p = scores.argmax(axis=1)
    s = rng.choice(["a", "b"], n)
    table = group_table(y, p, s, scores, overall=True)
    assert list(table.columns) == ["n", "accuracy", "selection_rate[0]", "selection_rate[1]", "selection_rate[2]",
                                   "auc"]
    frame = pd.DataFrame({"y": y, "p": p, "s": s})
    for g in ("a", "b"):
        rows = frame[frame.s == g]
        assert table.loc[g, "n"] == len(rows)
        assert table.loc[g, "accuracy"] == pytest.approx(np.mean(rows.y == rows.p), abs=TOL)
        for c in range(C):
            assert table.loc[g, f"selection_rate[{c}]"] == pytest.approx(np.mean(rows.p == c), abs=TOL)
        m = s == g
        assert table.loc[g, "auc"] == pytest.approx(roc_auc_score(y[m], scores[m], multi_class="ovr"), abs=TOL)
    assert table.loc["overall", "auc"] == pytest.approx(roc_auc_score(y, scores, multi_class="ovr"), abs=TOL)
    assert table.loc["overall", "n"] == n


def test_n_classes_names_a_class_that_never_occurs():
    y, p, s = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 1, 2, 0, 2, 1]), np.array([0, 0, 0, 1, 1, 1])
    table = per_class_table(y, p, s, n_classes=4)
    assert list(table.index) == [0, 1, 2, 3]
    assert table.loc[3, "independence"] == 0.0 and math.isnan(table.loc[3, "separation_tpr"])
    assert "selection_rate[3]" in group_table(y, p, s, n_classes=4).columns


# ----------------------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------------------
def test_resampled_statistics_are_the_summary_of_each_resample():
    rng = np.random.default_rng(7)
    n, C = 120, 3
    y = rng.integers(0, C, n)
    scores = rng.dirichlet(np.ones(C), n)
    p = np.where(rng.random(n) < 0.6, y, scores.argmax(axis=1))
    s = rng.integers(0, 2, n)
    picks = bootstrap_resamples(s, 6, np.random.default_rng(0))
    stats = resampled_statistics(y, p, scores, s, picks)
    for b in range(6):
        r = picks[b]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FairnessWarning)
            expected = classification_summary(y[r], p[r], s[r], scores[r], n_classes=C)
        for key in SUMMARY_STATISTICS:
            if math.isnan(expected[key]):
                assert math.isnan(stats[key][b])
            else:
                assert stats[key][b] == pytest.approx(expected[key], abs=1e-12), key
    ci = bootstrap_intervals(y, p, scores, s, resamples=50, seed=1)
    assert set(ci) == set(SUMMARY_STATISTICS)
    assert ci["accuracy"]["low"] <= np.mean(y == p) <= ci["accuracy"]["high"]


# ----------------------------------------------------------------------------------------------------------
# Binary unchanged, detection and errors
# ----------------------------------------------------------------------------------------------------------
def test_binary_input_gives_the_binary_summary():
    rng = np.random.default_rng(2)
    y, p, s = rng.integers(0, 2, 200), rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    scores = rng.random(200)
    binary = classification_summary(y, p, s, scores)
    assert "n_classes" not in binary and "worst_class" not in binary
    assert classification_summary(y, p, s, scores, n_classes=2) == binary
    assert classification_summary(y, p, s, np.column_stack([1 - scores, scores])) == binary
    assert list(group_table(y, p, s).columns) == ["n", "accuracy", "selection_rate", "tpr", "fpr", "ppv", "for"]


def test_multiclass_is_detected_from_scores_labels_or_n_classes():
    y, p, s = np.array([0, 1, 0, 1]), np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessWarning)
        assert classification_summary(y, p, s, n_classes=3)["n_classes"] == 3
        assert classification_summary(y, p, s, np.full((4, 3), 1 / 3))["n_classes"] == 3
        assert classification_summary(y, np.array([0, 1, 2, 1]), s)["n_classes"] == 3


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([0, 1, 2], [0, 1.5, 2], [0, 1, 1]), {}, r"y_pred must hold class codes 0\.\.2, found 1\.5 \(take the argmax"),
        (([0, 1, 2], [0, 1, 2], [0, 1, 1], np.ones((3, 2))), {"n_classes": 3}, r"\(n, 3\) array, one column per class"),
        (([0, 1, 2], [0, 1, 2], [0, 1, 1], np.ones((2, 3))), {}, r"inputs differ in length"),
        (([0, 1, 2], [0, 1, 2], [0, 1, 1], np.full((3, 3), np.nan)), {}, r"scores must be finite"),
        (([0, 1, 4], [0, 1, 2], [0, 1, 1]), {"n_classes": 3}, r"y_true must hold class codes 0\.\.2, found 4"),
        (([0, 1, 2], [0, -1, 2], [0, 1, 1]), {}, r"y_pred must hold class codes 0\.\.2, found -1"),
        (([0, 1, 2], [0, 1, 2], [0, 0, 0]), {}, r"at least 2 groups"),
        (([0, 1, 2], [0, 1, 2], [0, 1, 1]), {"n_classes": 1}, r"n_classes must be an integer >= 2"),
    ],
)
def test_bad_multiclass_input_raises_one_line_error(args, kwargs, match):
    with pytest.raises(FastfairError, match=match) as exc:
        classification_summary(*args, **kwargs)
    assert "\n" not in str(exc.value)
