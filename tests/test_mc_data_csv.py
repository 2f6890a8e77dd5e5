"""Multiclass data: containers with C >= 3 classes, multiclass CSV targets, stratification by (label, group)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfair.datasets import Dataset, Split, load_csv
from fastfair.datasets._common import min_group_rows, min_stratum_rows, strata_codes, stratified_split
from fastfair.errors import FastfairError


def _write(tmp_path, frame: pd.DataFrame, name: str = "data.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _all(data: Dataset, what: str) -> np.ndarray:
    return np.concatenate([getattr(data.split(k), what) for k in ("train", "val", "test")])


def _split(y, names=("u", "v")) -> Split:
    y = np.asarray(y)
    return Split(np.arange(len(y), dtype=float).reshape(-1, 1), y, np.arange(len(y)) % 2, ["x"], names)


# ----------------------------------------------------------------------------------------------------------
# Containers
# ----------------------------------------------------------------------------------------------------------
def test_split_and_dataset_hold_three_classes():
    sp = _split([0, 1, 2, 2, 1, 0])
    np.testing.assert_array_equal(sp.class_counts(), [2, 2, 2])
    np.testing.assert_array_equal(sp.class_counts(5), [2, 2, 2, 0, 0])
    assert "class_counts=[2, 2, 2]" in repr(sp)
    d = Dataset("t", sp, sp, sp, [0.0], [1.0], False, label_names=("a", "b", "c"))
    assert d.n_classes == 3 and d.label_names == ("a", "b", "c")
    assert list(d.summary().columns[:4]) == ["n", "rate[a]", "rate[b]", "rate[c]"]
    assert d.summary().loc["val", "rate[c]"] == pytest.approx(2 / 6)


def test_binary_dataset_is_unchanged():
    sp = _split([0, 1, 1, 0])
    d = Dataset("t", sp, sp, sp, [0.0], [1.0], False)
    assert d.n_classes == 2 and d.label_names == ("0", "1")
    assert list(d.summary().columns) == ["n", "positive_rate", "n[u]", "n[v]"]
    assert "positive_rate=0.500" in repr(sp)


@pytest.mark.parametrize(
    ("labels", "y", "match"),
    [
        (("a", "b"), [0, 1, 2, 1], r"the train split has label code 2 but the dataset names 2 classes"),
        (("a", "b", "a"), [0, 1, 2, 1], r"label_names must be two or more different names"),
        (("a",), [0, 0, 0, 0], r"label_names must be two or more different names"),
    ],
)
def test_dataset_checks_labels_against_its_classes(labels, y, match):
    sp = _split(y)
    with pytest.raises(FastfairError, match=match):
        Dataset("t", sp, sp, sp, [0.0], [1.0], False, label_names=labels)


def test_split_refuses_negative_labels():
    with pytest.raises(FastfairError, match=r"Split.y must contain class codes 0, 1, \.\.\. .*found -2"):
        _split([0, -2, 1])


# ----------------------------------------------------------------------------------------------------------
# Stratification
# ----------------------------------------------------------------------------------------------------------
def test_strata_codes_keep_every_label_group_cell_apart():
    y = np.array([0, 1, 2, 0, 1, 2])
    s = np.array([0, 0, 0, 1, 1, 1])
    codes = strata_codes(y, s)
    assert len(set(codes.tolist())) == 6  # s * 2 + y would merge (y=2, s=0) with (y=0, s=1)
    np.testing.assert_array_equal(strata_codes(y[y < 2], s[y < 2]), s[y < 2] * 2 + y[y < 2])  # binary as before


def test_min_group_rows_counts_the_classes():
    m = min_stratum_rows([0.2, 0.2])
    assert min_group_rows([0.2, 0.2]) == 2 * m - 1 == 5
    assert min_group_rows([0.2, 0.2], 3) == 3 * (m - 1) + 1 == 7
    with pytest.raises(FastfairError, match=r"n_classes must be an integer >= 2"):
        min_group_rows([0.2, 0.2], 1)


@settings(max_examples=60, deadline=None)
@given(
    n_classes=st.integers(3, 5),
    extras=st.lists(st.integers(0, 20), min_size=2, max_size=4),
    data=st.data(),
)
def test_groups_meeting_the_rule_occur_in_every_split_for_c_classes(n_classes, extras, data):
    fractions = [0.2, 0.2]
    need = min_group_rows(fractions, n_classes)
    sizes = [need + e for e in extras]
    s = np.repeat(np.arange(len(sizes)), sizes)
    y = np.array(data.draw(st.lists(st.integers(0, n_classes - 1), min_size=len(s), max_size=len(s))))
    parts = stratified_split(strata_codes(y, s), fractions, np.random.default_rng(data.draw(st.integers(0, 99))))
    for part in parts:
        assert set(s[part].tolist()) == set(range(len(sizes)))
    # every (label, group) cell is split on its own: its rows per part are the counts of a lone stratum
    for c in range(n_classes):
        for g in range(len(sizes)):
            cell = (y == c) & (s == g)
            got = [int(cell[p].sum()) for p in parts[1:]]
            n = int(cell.sum())
            expected = [int(np.floor(0.2 * n + 0.5))] * 2
            while sum(expected) > n - 1 and any(expected):
                expected[int(np.argmax(expected))] -= 1
            assert got == expected


# ----------------------------------------------------------------------------------------------------------
# load_csv
# ----------------------------------------------------------------------------------------------------------
def _grades(n: int = 90, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    grade = np.array(["low", "mid", "high"])[np.arange(n) % 3]
    groups = np.where(np.arange(n) % 2, "a", "b")
    return pd.DataFrame({"x": np.arange(n), "g": groups, "grade": grade, "z": rng.normal(size=n)})


def test_three_valued_target_is_multiclass_coded_by_sorted_value(tmp_path):
    frame = _grades()
    d = load_csv(_write(tmp_path, frame), target="grade", sensitive="g", standardize=False)
    assert d.n_classes == 3 and d.label_names == ("high", "low", "mid")
    assert d.info["label_names"] == ["high", "low", "mid"] and d.info["label_values"] == ["high", "low", "mid"]
    assert d.info["options"]["positive"] is None
    rows = np.concatenate([d.info["row_index"][k] for k in ("train", "val", "test")])
    expected = pd.Categorical(frame["grade"], categories=["high", "low", "mid"]).codes
    np.testing.assert_array_equal(_all(d, "y"), expected[rows])
    for sp in (d.train, d.val, d.test):  # every class in every split
        assert set(sp.y.tolist()) == {0, 1, 2}


def test_integer_multiclass_target_keeps_its_values(tmp_path):
    frame = pd.DataFrame({"x": np.arange(80), "g": np.arange(80) % 2, "k": (np.arange(80) % 4) * 10})
    d = load_csv(_write(tmp_path, frame), target="k", sensitive="g", standardize=False)
    assert d.label_names == ("0", "10", "20", "30") and d.info["label_values"] == [0, 10, 20, 30]
    np.testing.assert_array_equal(_all(d, "y"), (_all(d, "X")[:, 0].astype(int) % 4))


def test_binary_target_and_positive_keep_todays_meaning(tmp_path):
    frame = _grades()
    path = _write(tmp_path, frame)
    ovr = load_csv(path, target="grade", sensitive="g", positive="mid", standardize=False)
    assert ovr.n_classes == 2 and ovr.label_names == ("not mid", "mid")
    assert ovr.info["label_values"] == [None, "mid"]
    frame["ok"] = frame["grade"] == "mid"
    d = load_csv(_write(tmp_path, frame, "b.csv"), target="ok", sensitive="g", features=["x"], standardize=False)
    assert d.n_classes == 2 and d.label_names == ("False", "True") and d.info["label_values"] == [False, True]


def test_single_valued_target_is_refused(tmp_path):
    frame = _grades().assign(grade="low")
    with pytest.raises(FastfairError, match=r"target column 'grade' is not binary: it has 1 distinct value \('low'\)$"):
        load_csv(_write(tmp_path, frame), target="grade", sensitive="g")


def test_continuous_target_is_refused_as_too_many_classes(tmp_path):
    frame = _grades(120).assign(grade=np.arange(120) * 0.5)
    with pytest.raises(FastfairError, match=r"target column 'grade' has 120 distinct values, more than the 50 classes"):
        load_csv(_write(tmp_path, frame), target="grade", sensitive="g")


def test_a_class_too_small_to_reach_every_split_is_named(tmp_path):
    frame = _grades()
    frame.loc[[0, 1], "grade"] = "top"  # two rows cannot fill train, validation and test
    match = r"class 'top' of target column 'grade' has 2 rows, none in the \w+ split"
    with pytest.raises(FastfairError, match=match) as e:
        load_csv(_write(tmp_path, frame), target="grade", sensitive="g")
    assert "\n" not in str(e.value)


def test_group_minimum_grows_with_the_classes(tmp_path):
    frame = _grades(96)
    frame.loc[:5, "g"] = "c"  # 6 rows: enough for two classes (5), not for three (7)
    match = r"group 'c' of sensitive column 'g' has 6 rows; every group needs at least 7 .* and 3 classes of the target"
    with pytest.raises(FastfairError, match=match):
        load_csv(_write(tmp_path, frame), target="grade", sensitive="g")
