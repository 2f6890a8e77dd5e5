"""Tests for fastfair.metrics: hand-computed cases, Fairlearn / scikit-learn agreement, NaN and errors."""

from __future__ import annotations

import math
import warnings

import fairlearn.metrics as fl
import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, precision_score, roc_auc_score

from fastfair import metrics
from fastfair.errors import FastfairError
from fastfair.metrics import (
    FAIRLEARN_KEYS,
    FOUR_FIFTHS_KEY,
    GAP_KEYS,
    GAP_RATES,
    SUMMARY_STATISTICS,
    TABLE_COLUMNS,
    FairnessWarning,
    bootstrap_intervals,
    bootstrap_resamples,
    classification_summary,
    fairness_gaps,
    group_table,
    intersect_codes,
    resampled_statistics,
    signed_gaps,
)

TOL = 1e-12

# --------------------------------------------------------------------------------------------------------
# Hand-computed example
# --------------------------------------------------------------------------------------------------------
# group 0: y = 1 1 0 0 0, ŷ = 1 0 1 0 0  -> TP=1 FN=1 FP=1 TN=2, n=5
#   accuracy = 3/5, selection = 2/5, TPR = 1/2, FPR = 1/3, PPV = 1/2, FOR = FN/(FN+TN) = 1/3
# group 1: y = 1 1 1 0,   ŷ = 1 1 0 0    -> TP=2 FN=1 FP=0 TN=1, n=4
#   accuracy = 3/4, selection = 2/4, TPR = 2/3, FPR = 0/1 = 0, PPV = 2/2 = 1, FOR = 1/2
# signed (group 1 - group 0): independence 1/2-2/5 = 1/10, TPR 2/3-1/2 = 1/6, FPR 0-1/3 = -1/3,
#   PPV 1-1/2 = 1/2, FOR 1/2-1/3 = 1/6
HAND_Y = np.array([1, 1, 0, 0, 0, 1, 1, 1, 0])
HAND_P = np.array([1, 0, 1, 0, 0, 1, 1, 0, 0])
HAND_S = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
HAND_SIGNED = {
    "independence": 1 / 10,
    "separation_tpr": 1 / 6,
    "separation_fpr": -1 / 3,
    "sufficiency_ppv": 1 / 2,
    "sufficiency_for": 1 / 6,
}


def test_hand_signed_gaps_are_group1_minus_group0() -> None:
    got = signed_gaps(HAND_Y, HAND_P, HAND_S)
    assert list(got) == list(GAP_KEYS)
    for k, v in HAND_SIGNED.items():
        assert got[k] == pytest.approx(v, abs=TOL), k
    # FPR is lower in group 1, so its signed gap is negative (the reference code mislabelled this sign).
    assert got["separation_fpr"] < 0
    # Swapping the group codes flips every sign.
    flipped = signed_gaps(HAND_Y, HAND_P, 1 - HAND_S)
    for k, v in HAND_SIGNED.items():
        assert flipped[k] == pytest.approx(-v, abs=TOL), k


def test_hand_signed_gaps_follow_sorted_string_labels() -> None:
    # "a" < "b": the result is value("b") - value("a"), whatever order the labels appear in.
    labels = np.where(HAND_S == 1, "b", "a")
    got = signed_gaps(HAND_Y, HAND_P, labels)
    assert got == pytest.approx(HAND_SIGNED, abs=TOL)


def test_hand_absolute_gaps() -> None:
    got = fairness_gaps(HAND_Y, HAND_P, HAND_S)
    assert list(got) == list(GAP_KEYS)
    assert got == pytest.approx({k: abs(v) for k, v in HAND_SIGNED.items()}, abs=TOL)
    assert all(isinstance(v, float) for v in got.values())


def test_hand_group_table() -> None:
    t = group_table(HAND_Y, HAND_P, HAND_S)
    assert list(t.columns) == list(TABLE_COLUMNS)
    assert list(t.index) == [0, 1]
    assert t.index.name == "group"
    expected = pd.DataFrame(
        {
            "n": [5, 4],
            "accuracy": [3 / 5, 3 / 4],
            "selection_rate": [2 / 5, 2 / 4],
            "tpr": [1 / 2, 2 / 3],
            "fpr": [1 / 3, 0.0],
            "ppv": [1 / 2, 1.0],
            "for": [1 / 3, 1 / 2],
        },
        index=pd.Index([0, 1], name="group"),
    )
    pd.testing.assert_frame_equal(t, expected, check_exact=False, atol=TOL, rtol=0)


def test_hand_three_groups() -> None:
    # group 0: y=1 1 0 0, ŷ=1 1 0 0 -> sel 2/4, TPR 1, FPR 0, PPV 1, FOR 0
    # group 1: y=1 0,     ŷ=1 1     -> sel 1,   TPR 1, FPR 1, PPV 1/2, FOR undefined (no ŷ=0)
    # group 2: y=1 1 0,   ŷ=0 1 1   -> sel 2/3, TPR 1/2, FPR 1, PPV 1/2, FOR 1/1 = 1
    # gaps (max - min): independence 1 - 1/2 = 1/2, TPR 1 - 1/2 = 1/2, FPR 1 - 0 = 1, PPV 1 - 1/2 = 1/2,
    #   FOR NaN (group 1 has no ŷ=0)
    y = [1, 1, 0, 0, 1, 0, 1, 1, 0]
    p = [1, 1, 0, 0, 1, 1, 0, 1, 1]
    s = [0, 0, 0, 0, 1, 1, 2, 2, 2]
    with pytest.warns(FairnessWarning, match=r"sufficiency_for.*group 1\b"):
        got = fairness_gaps(y, p, s)
    assert got["independence"] == pytest.approx(1 / 2, abs=TOL)
    assert got["separation_tpr"] == pytest.approx(1 / 2, abs=TOL)
    assert got["separation_fpr"] == pytest.approx(1.0, abs=TOL)
    assert got["sufficiency_ppv"] == pytest.approx(1 / 2, abs=TOL)
    assert math.isnan(got["sufficiency_for"])


def test_classification_summary_hand() -> None:
    # pooled accuracy = (3 + 3) / 9
    # scores: positives {0.9, 0.4, 0.8, 0.7, 0.6}, negatives {0.3, 0.2, 0.5, 0.1}
    # pairs won by the positive: 0.9:4, 0.4:3 (beats .3 .2 .1), 0.8:4, 0.7:4, 0.6:4 -> 19 of 20 -> AUC 0.95
    scores = np.array([0.9, 0.4, 0.3, 0.2, 0.5, 0.8, 0.7, 0.6, 0.1])
    got = classification_summary(HAND_Y, HAND_P, HAND_S, scores)
    assert list(got) == ["accuracy", "auc", *GAP_KEYS, *FAIRLEARN_KEYS, FOUR_FIFTHS_KEY]
    assert got["accuracy"] == pytest.approx(6 / 9, abs=TOL)
    assert got["auc"] == pytest.approx(19 / 20, abs=TOL)
    for k, v in HAND_SIGNED.items():
        assert got[k] == pytest.approx(abs(v), abs=TOL)
    assert "auc" not in classification_summary(HAND_Y, HAND_P, HAND_S)


# --------------------------------------------------------------------------------------------------------
# Fairlearn / scikit-learn agreement on random inputs
# --------------------------------------------------------------------------------------------------------
def false_omission_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """FOR = P(Y=1 | Ŷ=0), written independently of fastfair."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true[y_pred == 0] == 1))


def random_case(rng: np.random.Generator, n_groups: int) -> tuple[np.ndarray, ...]:
    """Random labels/predictions/scores with group-dependent rates and every confusion cell non-empty."""
    while True:
        n = int(rng.integers(40, 1500))
        s = rng.choice(
            rng.permutation(np.arange(10))[:n_groups], size=n, p=rng.dirichlet(np.ones(n_groups) * 3)
        )
        base = rng.uniform(0.2, 0.8, size=10)
        y = (rng.random(n) < base[s]).astype(int)
        scores = np.clip(0.5 * y + rng.normal(0.25, 0.3, size=n), 0, 1).round(int(rng.integers(1, 4)))
        p = (scores > rng.uniform(0.3, 0.7)).astype(int)
        ok = all(np.any((s == g) & (y == a) & (p == b)) for g in np.unique(s) for a in (0, 1) for b in (0, 1))
        if ok and np.unique(s).size == n_groups:
            return y, p, s, scores


CASES = [(seed, n_groups) for n_groups in (2, 3, 4, 5) for seed in range(6)]


@pytest.mark.parametrize(("seed", "n_groups"), CASES)
def test_agrees_with_fairlearn(seed: int, n_groups: int) -> None:
    rng = np.random.default_rng(1000 * n_groups + seed)
    y, p, s, scores = random_case(rng, n_groups)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FairnessWarning when every cell is non-empty
        gaps = fairness_gaps(y, p, s)
        table = group_table(y, p, s, scores=scores)

    assert abs(gaps["independence"] - demographic_parity_difference(y, p, sensitive_features=s)) <= TOL
    # fairlearn 0.15: equalized_odds_difference(agg="worst_case") = max(TPR difference, FPR difference),
    # each difference taken between groups (max - min).
    eod = equalized_odds_difference(y, p, sensitive_features=s, agg="worst_case", method="between_groups")
    assert abs(max(gaps["separation_tpr"], gaps["separation_fpr"]) - eod) <= TOL

    mf = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "ppv": precision_score,
            "for": false_omission_rate,
            "accuracy": accuracy_score,
            "n": lambda yt, yp: len(yt),
        },
        y_true=y,
        y_pred=p,
        sensitive_features=s,
    )
    diff = mf.difference(method="between_groups")
    for key, col in [
        ("independence", "selection_rate"),
        ("separation_tpr", "tpr"),
        ("separation_fpr", "fpr"),
        ("sufficiency_ppv", "ppv"),
        ("sufficiency_for", "for"),
    ]:
        assert abs(gaps[key] - diff[col]) <= TOL, key

    by_group = mf.by_group
    assert list(table.index) == sorted(np.unique(s).tolist())
    for col in TABLE_COLUMNS:
        np.testing.assert_allclose(
            table[col].to_numpy(float), by_group.loc[table.index, col].to_numpy(float), rtol=0, atol=TOL
        )
    for g in table.index:
        m = s == g
        assert abs(table.loc[g, "auc"] - roc_auc_score(y[m], scores[m])) <= TOL

    if n_groups == 2:
        signed = signed_gaps(y, p, s)
        lo, hi = sorted(np.unique(s))
        for key, col in GAP_RATES.items():
            assert abs(signed[key] - (by_group.loc[hi, col] - by_group.loc[lo, col])) <= TOL


def test_overall_row_and_summary_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    y, p, s, scores = random_case(rng, 3)
    t = group_table(y, p, s, scores, overall=True)
    assert list(t.index)[-1] == "overall"
    row = t.loc["overall"]
    assert row["n"] == y.size
    assert abs(row["accuracy"] - accuracy_score(y, p)) <= TOL
    assert abs(row["ppv"] - precision_score(y, p)) <= TOL
    assert abs(row["tpr"] - true_positive_rate(y, p)) <= TOL
    assert abs(row["auc"] - roc_auc_score(y, scores)) <= TOL
    summary = classification_summary(y, p, s, scores)
    assert abs(summary["accuracy"] - accuracy_score(y, p)) <= TOL
    assert abs(summary["auc"] - roc_auc_score(y, scores)) <= TOL
    assert {k: summary[k] for k in GAP_KEYS} == fairness_gaps(y, p, s)
    # the group rows are unchanged by overall=True
    pd.testing.assert_frame_equal(
        t.drop(index="overall"), group_table(y, p, s, scores), check_index_type=False
    )


def test_auc_with_heavy_ties_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    s = rng.integers(0, 4, n)
    y = rng.integers(0, 2, n)
    scores = rng.integers(0, 5, n) + y  # five-ish distinct values: lots of ties, across classes too
    p = (scores > 2).astype(int)
    t = group_table(y, p, s, scores)
    for g in range(4):
        m = s == g
        assert abs(t.loc[g, "auc"] - roc_auc_score(y[m], scores[m])) <= TOL


def reference_rates(y: np.ndarray, p: np.ndarray, s: np.ndarray) -> dict[str, list[float]]:
    """Straightforward per-group loop, NaN for an empty conditioning cell."""

    def mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if x.size else math.nan

    out: dict[str, list[float]] = {k: [] for k in ("selection_rate", "tpr", "fpr", "ppv", "for")}
    for g in sorted(set(s.tolist())):
        yg, pg = y[s == g], p[s == g]
        out["selection_rate"].append(mean(pg == 1))
        out["tpr"].append(mean(pg[yg == 1] == 1))
        out["fpr"].append(mean(pg[yg == 0] == 1))
        out["ppv"].append(mean(yg[pg == 1] == 1))
        out["for"].append(mean(yg[pg == 0] == 1))
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(-2, 2)), min_size=2, max_size=40
    ).filter(lambda rows: len({r[2] for r in rows}) >= 2)
)
def test_gaps_match_reference_loop_including_nan(rows: list[tuple[int, int, int]]) -> None:
    y, p, s = (np.array(c) for c in zip(*rows, strict=True))
    ref = reference_rates(y, p, s)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gaps = fairness_gaps(y, p, s)
    messages = [str(w.message) for w in caught if issubclass(w.category, FairnessWarning)]
    for key, rate in GAP_RATES.items():
        vals = ref[rate]
        if any(math.isnan(v) for v in vals):
            assert math.isnan(gaps[key]), key
            assert any(m.startswith(key) for m in messages), key
        else:
            assert abs(gaps[key] - (max(vals) - min(vals))) <= TOL, key
            assert not any(m.startswith(key) for m in messages), key


# --------------------------------------------------------------------------------------------------------
# Empty cells: NaN + FairnessWarning naming the group
# --------------------------------------------------------------------------------------------------------
def test_no_positive_predictions_in_a_group_gives_nan_ppv_gap_and_warning() -> None:
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    p = np.array([1, 0, 1, 1, 0, 0, 0, 0])
    s = np.array([0, 0, 0, 0, 7, 7, 7, 7])  # group 7 never predicted positive
    with pytest.warns(FairnessWarning, match=r"sufficiency_ppv.*ppv.*group 7.*y_pred=1") as rec:
        gaps = fairness_gaps(y, p, s)
    assert len(rec) == 1  # only PPV is undefined
    assert math.isnan(gaps["sufficiency_ppv"])
    # the other gaps stay finite: selection 3/4 - 0, TPR 1 - 0, FPR 1/2 - 0, FOR 0 - 1/2 -> |.| = 1/2
    assert gaps["independence"] == pytest.approx(3 / 4)
    assert gaps["separation_tpr"] == pytest.approx(1.0)
    assert gaps["separation_fpr"] == pytest.approx(1 / 2)
    assert gaps["sufficiency_for"] == pytest.approx(1 / 2)
    with pytest.warns(FairnessWarning, match="group 7"):
        assert math.isnan(signed_gaps(y, p, s)["sufficiency_ppv"])
    with pytest.warns(FairnessWarning, match="group 7"):
        assert math.isnan(classification_summary(y, p, s)["sufficiency_ppv"])


def test_warning_names_every_undefined_group_and_points_at_caller() -> None:
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0, 1, 0])
    p = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    s = np.array(["a", "a", "a", "a", "b", "b", "c", "c", "d", "d"])  # b: no y=0, c: no y=1
    with pytest.warns(FairnessWarning) as rec:
        gaps = fairness_gaps(y, p, s)
    msgs = {str(w.message).split(" ")[0]: str(w.message) for w in rec}
    assert set(msgs) == {"separation_tpr", "separation_fpr"}
    assert "'c'" in msgs["separation_tpr"] and "'b'" in msgs["separation_fpr"]
    assert all(w.filename == __file__ for w in rec)
    assert math.isnan(gaps["separation_tpr"]) and math.isnan(gaps["separation_fpr"])


def test_group_table_nan_cells_and_single_class_auc_without_warning() -> None:
    y = np.array([1, 0, 1, 0, 1, 1, 1])
    p = np.array([1, 0, 0, 1, 0, 0, 0])
    s = np.array([0, 0, 0, 0, 1, 1, 1])  # group 1: only y=1 (FPR, AUC undefined) and no ŷ=1 (PPV undefined)
    scores = np.array([0.9, 0.1, 0.4, 0.6, 0.3, 0.2, 0.8])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = group_table(y, p, s, scores)
    assert math.isnan(t.loc[1, "fpr"]) and math.isnan(t.loc[1, "ppv"]) and math.isnan(t.loc[1, "auc"])
    assert t.loc[1, "tpr"] == 0.0 and t.loc[1, "for"] == 1.0
    # group 0: positives {0.9, 0.4}, negatives {0.1, 0.6}: 0.9 beats both, 0.4 beats 0.1 -> 3/4
    assert t.loc[0, "auc"] == pytest.approx(roc_auc_score(y[:4], scores[:4])) == pytest.approx(3 / 4)


def test_summary_single_class_auc_is_nan_with_warning() -> None:
    # all y=1: AUC undefined (and FPR / FOR per group too, which warn separately)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = classification_summary([1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 1, 1], scores=[0.1, 0.2, 0.3, 0.4])
    assert math.isnan(out["auc"])
    assert any(str(w.message).startswith("auc is NaN") for w in rec if w.category is FairnessWarning)


# --------------------------------------------------------------------------------------------------------
# Input types and naming
# --------------------------------------------------------------------------------------------------------
def test_accepts_lists_series_bools_floats_and_column_vectors() -> None:
    ref = fairness_gaps(HAND_Y, HAND_P, HAND_S)
    assert fairness_gaps(HAND_Y.tolist(), HAND_P.tolist(), HAND_S.tolist()) == ref
    assert fairness_gaps(pd.Series(HAND_Y), pd.Series(HAND_P.astype(bool)), pd.Series(HAND_S)) == ref
    assert fairness_gaps(HAND_Y.astype(float), HAND_P[:, None], HAND_S.astype(np.int8)) == ref
    assert fairness_gaps(HAND_Y, HAND_P, pd.Categorical(np.where(HAND_S == 1, "m", "f"))) == ref
    assert fairness_gaps(HAND_Y, HAND_P, HAND_S + 10**12) == ref  # large codes (slow path)


def test_accepts_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    ref = group_table(HAND_Y, HAND_P, HAND_S, scores=np.linspace(0, 1, 9))
    t = group_table(
        torch.tensor(HAND_Y),
        torch.tensor(HAND_P, dtype=torch.float32),
        torch.tensor(HAND_S),
        scores=torch.linspace(0, 1, 9, dtype=torch.float64, requires_grad=True),
    )
    pd.testing.assert_frame_equal(t, ref)


def test_group_names() -> None:
    t = group_table(HAND_Y, HAND_P, HAND_S, group_names={0: "female", 1: "male"})
    assert list(t.index) == ["female", "male"]
    t = group_table(HAND_Y, HAND_P, HAND_S, group_names=["g0", "g1"], overall=True)
    assert list(t.index) == ["g0", "g1", "overall"]
    assert t.loc["overall", "n"] == 9
    t = group_table(HAND_Y, HAND_P, HAND_S, group_names={1: "one"})
    assert list(t.index) == [0, "one"]


def test_group_table_allows_a_single_group() -> None:
    t = group_table([1, 0, 1], [1, 0, 0], [3, 3, 3])
    assert list(t.index) == [3] and t.loc[3, "tpr"] == 0.5


def test_large_input_is_fast_enough_and_correct() -> None:
    rng = np.random.default_rng(11)
    n = 1_000_000
    s = rng.integers(0, 3, n)
    y = rng.integers(0, 2, n)
    scores = rng.random(n) * 0.5 + 0.3 * y
    p = (scores > 0.4).astype(np.int64)
    t = group_table(y, p, s, scores)
    df = pd.DataFrame({"y": y, "p": p, "s": s})
    sel = df.groupby("s")["p"].mean()
    np.testing.assert_allclose(t["selection_rate"], sel.to_numpy(), rtol=0, atol=TOL)
    tpr = df[df.y == 1].groupby("s")["p"].mean()
    np.testing.assert_allclose(t["tpr"], tpr.to_numpy(), rtol=0, atol=TOL)
    m = s == 2
    assert abs(t.loc[2, "auc"] - roc_auc_score(y[m], scores[m])) <= 1e-10


# --------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([1, 0, 1], [1, 0], [0, 1, 1]), {}, "differ in length"),
        (([], [], []), {}, "empty"),
        (([1, 0, -1], [1, 0, 1], [0, 1, 1]), {}, "y_true must contain only 0 and 1"),
        (([1, 0, np.nan], [1, 0, 1], [0, 1, 1]), {}, "y_true"),
        ((["yes", "no", "yes"], [1, 0, 1], [0, 1, 1]), {}, "y_true"),
        (([1, 0, 1], [0.9, 0.2, 0.6], [0, 1, 1]), {}, "y_pred must contain only 0 and 1.*threshold"),
        (([1, 0, 1], [1, 0, 1], [0, 0, 0]), {}, "at least 2 groups"),
        (([1, 0, 1], [1, 0, 1], [0, None, 1]), {}, "missing"),
        (([1, 0, 1], [1, 0, 1], [0.0, np.nan, 1.0]), {}, "missing"),
        (([1, 0, 1], [1, 0, 1], np.array([0, "a", 1], dtype=object)), {}, "sortable"),
        ((np.ones((3, 2)), [1, 0, 1], [0, 1, 1]), {}, "one-dimensional"),
    ],
)
def test_bad_input_raises_one_line_error(args: tuple, kwargs: dict, match: str) -> None:
    for fn in (fairness_gaps, signed_gaps, classification_summary):
        with pytest.raises(FastfairError, match=match) as exc:
            fn(*args, **kwargs)
        assert "\n" not in str(exc.value)


def test_label_two_is_refused_by_the_binary_gaps_and_a_class_for_the_summary() -> None:
    args = ([1, 0, 2], [1, 0, 1], [0, 1, 1])
    for fn in (fairness_gaps, signed_gaps):
        with pytest.raises(FastfairError, match=r"y_true must contain only 0 and 1, found 2 .*per_class_table") as exc:
            fn(*args)
        assert "\n" not in str(exc.value)
    with pytest.warns(FairnessWarning):
        summary = classification_summary(*args)
    assert summary["n_classes"] == 3 and summary["accuracy"] == pytest.approx(2 / 3)


def test_signed_gaps_rejects_more_than_two_groups() -> None:
    with pytest.raises(FastfairError, match="exactly 2 groups, found 3"):
        signed_gaps([1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 2, 2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": [0.1, 0.2]}, "differ in length.*scores=2"),
        ({"scores": [0.1, np.inf, 0.3, 0.4]}, "finite"),
        ({"scores": ["a", "b", "c", "d"]}, "numeric"),
        ({"group_names": ["only-one"]}, "1 names for 2 groups"),
        ({"group_names": ["x", "x"]}, "duplicate"),
        ({"group_names": "ab"}, "not a string"),
        ({"group_names": ["overall", "b"], "overall": True}, "overall"),
    ],
)
def test_group_table_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(FastfairError, match=match):
        group_table([1, 0, 1, 0], [1, 0, 0, 1], [0, 0, 1, 1], **kwargs)


# ----------------------------------------------------------------------------------------------------------
# The bootstrap
# ----------------------------------------------------------------------------------------------------------
def _problem(seed: int, n: int, k: int):
    rng = np.random.default_rng(seed)
    codes = np.sort(rng.integers(0, k, n)) if seed % 2 else rng.integers(0, k, n)
    codes[:k] = np.arange(k)  # every group present
    y = (rng.random(n) < 0.4).astype(int)
    scores = np.round(rng.random(n), 1)  # many ties
    y_pred = (scores > 0.5).astype(int)
    return y, y_pred, scores, codes


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(8, 60), k=st.integers(2, 4))
def test_resampled_statistics_equal_the_metrics_of_each_resample(seed, n, k):
    """Oracle: classification_summary and sklearn's roc_auc_score on each resample's rows."""
    y, y_pred, scores, codes = _problem(seed, n, k)
    picks = bootstrap_resamples(codes, 6, np.random.default_rng(seed))
    stats = resampled_statistics(y, y_pred, scores, codes, picks)
    for b, rows in enumerate(picks):
        np.testing.assert_array_equal(np.bincount(codes[rows], minlength=k), np.bincount(codes, minlength=k))
        np.testing.assert_array_equal(codes[rows], codes)  # row j is redrawn from row j's group
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined rates warn; the NaN is what is compared
            expected = classification_summary(y[rows], y_pred[rows], codes[rows], scores=scores[rows])
        for key in SUMMARY_STATISTICS:
            want = expected.get(key, np.nan)
            if key == "auc" and len(set(y[rows])) == 2:
                assert want == pytest.approx(roc_auc_score(y[rows], scores[rows]), abs=1e-12)
            if np.isnan(want):
                assert np.isnan(stats[key][b]), (key, b)
            else:
                assert stats[key][b] == pytest.approx(want, abs=1e-12), (key, b)


def test_bootstrap_intervals_are_seeded_and_cover_the_resampled_values():
    y, y_pred, scores, codes = _problem(3, 300, 3)
    a = bootstrap_intervals(y, y_pred, scores, codes, resamples=300, seed=7)
    assert a == bootstrap_intervals(y, y_pred, scores, codes, resamples=300, seed=7)
    assert a != bootstrap_intervals(y, y_pred, scores, codes, resamples=300, seed=8)
    # oracle: numpy's percentiles of the resampled values, drawn in one chunk from the same generator
    picks = bootstrap_resamples(codes, 300, np.random.default_rng(7))
    stats = resampled_statistics(y, y_pred, scores, codes, picks)
    for key in SUMMARY_STATISTICS:
        v = stats[key][np.isfinite(stats[key])]
        assert a[key]["defined"] == len(v)
        assert (a[key]["low"], a[key]["high"]) == pytest.approx(tuple(np.percentile(v, [2.5, 97.5])), abs=1e-12)
        assert a[key]["low"] <= a[key]["high"]


def test_bootstrap_with_an_undefined_rate_reports_nan_not_an_error():
    """Group 1 never gets a positive prediction: its PPV is undefined in every resample."""
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    y_pred = np.array([0, 1, 1, 1, 0, 0, 0, 0])
    codes = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    ci = bootstrap_intervals(y, y_pred, y_pred.astype(float), codes, resamples=50, seed=0)
    assert ci["sufficiency_ppv"]["defined"] == 0 and np.isnan(ci["sufficiency_ppv"]["low"])
    assert ci["independence"]["defined"] == 50 and 0 <= ci["independence"]["low"] <= ci["independence"]["high"] <= 1


# --------------------------------------------------------------------------------------------------------
# Fairlearn's names, intersectional groups
# --------------------------------------------------------------------------------------------------------
OURS = {
    "demographic_parity_difference": metrics.demographic_parity_difference,
    "demographic_parity_ratio": metrics.demographic_parity_ratio,
    "equalized_odds_difference": metrics.equalized_odds_difference,
    "equalized_odds_ratio": metrics.equalized_odds_ratio,
}


@st.composite
def labelled_groups(draw):
    """Labels, predictions and 1 to 3 sensitive columns of 2 or 3 values each (so up to 27 intersections)."""
    n = draw(st.integers(4, 120))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    p = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    m = draw(st.integers(1, 3))
    columns = {
        f"s{j}": draw(st.lists(st.sampled_from(["a", "b", "c"][: draw(st.integers(2, 3))]), min_size=n, max_size=n))
        for j in range(m)
    }
    return np.array(y), np.array(p), pd.DataFrame(columns)


def _fairlearn_expected(y, p, sf) -> dict[str, float]:
    """Fairlearn's four values, and ours for the one degenerate case we define (ratio 1 when all rates are 0)."""
    args = (y, p)
    out = {
        "demographic_parity_difference": fl.demographic_parity_difference(*args, sensitive_features=sf),
        "demographic_parity_ratio": fl.demographic_parity_ratio(*args, sensitive_features=sf),
        "equalized_odds_difference": fl.equalized_odds_difference(*args, sensitive_features=sf),
        "equalized_odds_ratio": fl.equalized_odds_ratio(*args, sensitive_features=sf),
    }
    if not np.any(p == 1):  # every selection rate is 0: Fairlearn's 0/0 is NaN, ours is 1 (the groups are equal)
        assert math.isnan(out["demographic_parity_ratio"])
        out["demographic_parity_ratio"] = 1.0
    return out


@settings(max_examples=8, deadline=None)
@given(case=labelled_groups())
def test_fairlearn_names_equal_fairlearn_on_random_intersectional_groups(case) -> None:
    """Oracle: fairlearn.metrics with the same DataFrame of sensitive features (one column or several)."""
    _check_against_fairlearn(*case)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(case=labelled_groups())
def test_fairlearn_names_equal_fairlearn_on_many_random_cases(case) -> None:
    _check_against_fairlearn(*case)


def _check_against_fairlearn(y: np.ndarray, p: np.ndarray, sf: pd.DataFrame) -> None:
    groups = sf.astype(str).agg("|".join, axis=1)
    if groups.nunique() < 2:
        with pytest.raises(FastfairError, match="at least 2 groups"):
            metrics.demographic_parity_difference(y, p, sensitive_features=sf)
        return
    both_labels = all({0, 1} <= set(y[groups == g]) for g in groups.unique())  # TPR, FPR defined everywhere
    tpr_fpr_positive = all(np.any(p[y == label] == 1) for label in (0, 1))  # Fairlearn's EO ratio is not 0/0
    expected = _fairlearn_expected(y, p, sf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessWarning)
        got = {k: f(y, p, sensitive_features=sf) for k, f in OURS.items()}
        summary = classification_summary(y, p, sf)
    for key in ("demographic_parity_difference", "demographic_parity_ratio"):
        assert got[key] == pytest.approx(expected[key], abs=TOL), key
    if both_labels:
        assert got["equalized_odds_difference"] == pytest.approx(expected["equalized_odds_difference"], abs=TOL)
        if tpr_fpr_positive:
            assert got["equalized_odds_ratio"] == pytest.approx(expected["equalized_odds_ratio"], abs=TOL)
    else:  # an undefined TPR or FPR: NaN, where Fairlearn counts the rate as 0
        assert math.isnan(got["equalized_odds_difference"]) and math.isnan(got["equalized_odds_ratio"])
    for key in FAIRLEARN_KEYS:
        assert summary[key] == got[key] or (math.isnan(summary[key]) and math.isnan(got[key]))
    assert summary[FOUR_FIFTHS_KEY] is bool(expected["demographic_parity_ratio"] < 0.8)


@pytest.mark.parametrize(("seed", "n_groups"), CASES[::3])
def test_fairlearn_names_mean_aggregation(seed: int, n_groups: int) -> None:
    """agg="mean": the mean of the TPR and FPR values, as fairlearn.metrics computes it."""
    y, p, s, _ = random_case(np.random.default_rng(seed), n_groups)
    for name in ("equalized_odds_difference", "equalized_odds_ratio"):
        want = getattr(fl, name)(y, p, sensitive_features=s, agg="mean")
        assert OURS[name](y, p, sensitive_features=s, agg="mean") == pytest.approx(want, abs=TOL)
    with pytest.raises(FastfairError, match="agg must be one of 'worst_case', 'mean'"):
        metrics.equalized_odds_difference(y, p, sensitive_features=s, agg="max")


def test_fairlearn_names_hand_and_the_four_fifths_flag() -> None:
    # HAND: selection 2/5 and 2/4 -> ratio 0.8 exactly: the four-fifths rule holds (violated only below 0.8);
    # TPR 1/2, 2/3 -> ratio 3/4; FPR 1/3, 0 -> ratio 0; EO difference max(1/6, 1/3) = 1/3, ratio min(3/4, 0) = 0
    got = classification_summary(HAND_Y, HAND_P, HAND_S)
    assert got["demographic_parity_difference"] == pytest.approx(1 / 10, abs=TOL)
    assert got["demographic_parity_ratio"] == pytest.approx(0.8, abs=TOL)
    assert got["equalized_odds_difference"] == pytest.approx(1 / 3, abs=TOL)
    assert got["equalized_odds_ratio"] == 0.0
    assert got[FOUR_FIFTHS_KEY] is False
    # one more positive prediction in group 1 -> selection 2/5 vs 3/4: ratio 8/15 < 0.8
    p = HAND_P.copy()
    p[7] = 1
    got = classification_summary(HAND_Y, p, HAND_S)
    assert got["demographic_parity_ratio"] == pytest.approx(8 / 15, abs=TOL) and got[FOUR_FIFTHS_KEY] is True


def test_degenerate_ratios_are_one_and_undefined_rates_warn() -> None:
    # nobody selected: every selection rate is 0, the groups are equal -> ratio 1 (Fairlearn: NaN), no violation
    y, s = [1, 0, 1, 0], [0, 0, 1, 1]
    assert metrics.demographic_parity_ratio(y, [0, 0, 0, 0], sensitive_features=s) == 1.0
    assert metrics.demographic_parity_difference(y, [0, 0, 0, 0], sensitive_features=s) == 0.0
    with pytest.warns(FairnessWarning, match="sufficiency_ppv"):  # no ŷ=1 anywhere: PPV undefined
        assert classification_summary(y, [0, 0, 0, 0], s)[FOUR_FIFTHS_KEY] is False
    # group 1 has no y=0: its FPR is undefined -> NaN with a warning (Fairlearn would count it as 0)
    with pytest.warns(FairnessWarning, match=r"equalized odds is NaN: fpr is undefined for group 1"):
        assert math.isnan(metrics.equalized_odds_difference([1, 0, 1, 1], [1, 0, 0, 1], sensitive_features=s))


def test_intersectional_group_table_equals_fairlearn_metricframe() -> None:
    """Oracle: MetricFrame with two sensitive columns; its empty combination ('M', 'B') is a NaN row there and
    absent here, and the order of the rest is the same."""
    rng = np.random.default_rng(5)
    n = 400
    sf = pd.DataFrame({"sex": rng.choice(["F", "M"], n), "race": rng.choice(["B", "W", "A"], n)})
    sf.loc[(sf["sex"] == "M") & (sf["race"] == "B"), "race"] = "W"
    y, p = rng.integers(0, 2, n), rng.integers(0, 2, n)
    table = group_table(y, p, sf)
    mf = MetricFrame(
        metrics={"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y, y_pred=p, sensitive_features=sf,
    )
    expected = mf.by_group.dropna()
    assert list(table.index) == ["|".join(t) for t in expected.index]
    assert list(table.index) == ["F|A", "F|B", "F|W", "M|A", "M|W"]
    for col in ("selection_rate", "tpr", "fpr"):
        np.testing.assert_allclose(table[col].to_numpy(), expected[col].to_numpy(), rtol=0, atol=TOL)
    assert table["n"].sum() == n
    # the same groups from a 2-D array (one row per sample) and from the joined names
    np.testing.assert_array_equal(group_table(y, p, sf.to_numpy()).to_numpy(), table.to_numpy())
    gaps = fairness_gaps(y, p, sf)
    assert gaps == fairness_gaps(y, p, sf.astype(str).agg("|".join, axis=1))
    labels = metrics.intersectional_labels(sf)
    assert labels.tolist() == (sf["sex"] + "|" + sf["race"]).tolist()
    assert metrics.intersectional_labels(sf[["sex"]]).tolist() == sf["sex"].tolist()


def test_intersect_codes_order_names_and_a_clash() -> None:
    # lexicographic by column codes, not by name text: ("A", "x") before ("AB", "y") though "AB|y" < "A|x"
    codes, names = intersect_codes([np.array([1, 0, 0, 1]), np.array([1, 0, 0, 1])], [["A", "AB"], ["x", "y"]])
    assert names == ("A|x", "AB|y") and codes.tolist() == [1, 0, 0, 1]
    with pytest.raises(FastfairError, match=r"both named 'a\|b\|c'.*contains '\|'") as exc:
        group_table([1, 0, 1, 0], [1, 0, 0, 1], [["a|b", "c"], ["a", "b|c"], ["a|b", "c"], ["a", "b|c"]])
    assert "\n" not in str(exc.value)
