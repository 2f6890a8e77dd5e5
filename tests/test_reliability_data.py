"""Datasets under hostile input: rare or continuous groups, huge feature values, label naming, odd headers.

Every bad input must be refused when the data is loaded (one line, :class:`FastfairError`), never after a
model has been trained on it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfair.datasets import Dataset, Split, load, load_csv
from fastfair.datasets._common import min_group_rows, min_stratum_rows, strata_codes, stratified_split
from fastfair.datasets._scaling import apply_standardization, standardization
from fastfair.errors import FastfairError


def _write(tmp_path: Path, lines: list[str], name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _all(d: Dataset, attr: str) -> np.ndarray:
    return np.concatenate([getattr(sp, attr) for sp in (d.train, d.val, d.test)])


def _groups_file(tmp_path: Path, groups: list[str], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["x1,x2,race,y"] + [
        f"{rng.normal():.6f},{rng.normal():.6f},{g},{int(rng.random() < 0.4)}" for g in groups
    ]
    return _write(tmp_path, lines)


# ------------------------------------------------------------------------------------- rare and many groups


def test_rare_group_is_refused_at_load_naming_group_and_count(tmp_path):
    groups = ["c" if i in (7, 300) else "ab"[i % 2] for i in range(500)]
    path = _groups_file(tmp_path, groups)
    with pytest.raises(FastfairError, match=r"group 'c' of sensitive column 'race' has 2 rows; .*at least 5 rows") as e:
        load_csv(path, target="y", sensitive="race")
    assert "\n" not in str(e.value) and "merge or drop it" in str(e.value)


def test_single_row_group_is_refused(tmp_path):
    groups = ["lone" if i == 123 else "ab"[i % 2] for i in range(300)]
    with pytest.raises(FastfairError, match=r"group 'lone' of sensitive column 'race' has 1 row; "):
        load_csv(_groups_file(tmp_path, groups), target="y", sensitive="race")


def test_continuous_sensitive_column_is_refused_with_binning_advice(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(size=60)  # 60 distinct floats, each on 8 rows: every group is big enough to split
    groups = [f"{values[i % 60]:.6f}" for i in range(480)]
    with pytest.raises(FastfairError, match=r"sensitive column 'race' has 60 distinct values, .*bin it") as e:
        load_csv(_groups_file(tmp_path, groups), target="y", sensitive="race")
    assert "\n" not in str(e.value)


def test_many_small_groups_message_suggests_binning(tmp_path):
    groups = [f"g{i % 40}" for i in range(120)]  # 40 groups of 3 rows
    with pytest.raises(FastfairError, match=r"has 3 rows; .* \(40 of the 40 groups have fewer than 5 rows: .*bin"):
        load_csv(_groups_file(tmp_path, groups), target="y", sensitive="race")


def test_group_minimum_follows_the_split_fractions(tmp_path):
    # 0.05 of a label cell rounds to a row only from 10 rows on, so a group needs 2 * 10 - 1 = 19 rows
    assert min_stratum_rows([0.2, 0.05]) == 10 and min_group_rows([0.2, 0.05]) == 19
    groups = ["c" if i < 18 else "ab"[i % 2] for i in range(400)]
    with pytest.raises(FastfairError, match=r"group 'c' .* has 18 rows; every group needs at least 19 rows"):
        load_csv(_groups_file(tmp_path, groups), target="y", sensitive="race", test_fraction=0.05)


def _brute_force_min_stratum(fractions: list[float], top: int = 120) -> int:
    """Smallest m such that every stratum of m..top rows, split for real, gives a row to every part."""
    ok = []
    for m in range(1, top + 1):
        parts = stratified_split(np.zeros(m, dtype=np.int64), fractions, np.random.default_rng(m))
        ok.append(all(len(p) > 0 for p in parts))
    assert ok[-1], "top too small for these fractions"
    m = top
    while m > 1 and ok[m - 2]:
        m -= 1
    return m


@pytest.mark.parametrize(
    "fractions", [[0.2, 0.2], [0.2], [0.1, 0.3], [0.05, 0.2], [0.5, 0.4], [0.45, 0.45, 0.05], [0.3333, 0.3333]]
)
def test_min_stratum_rows_matches_the_split_itself(fractions):
    assert min_stratum_rows(fractions) == _brute_force_min_stratum(fractions)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), min_size=2, max_size=6),
    val=st.sampled_from([0.05, 0.1, 0.2, 0.25, 0.3]),
    test=st.sampled_from([0.05, 0.1, 0.2, 0.3]),
    data=st.data(),
)
def test_groups_meeting_the_rule_occur_in_every_split(sizes, val, test, data):
    need = min_group_rows([val, test])
    sizes = [need + extra for extra in sizes]
    s = np.repeat(np.arange(len(sizes)), sizes)
    y = np.array(data.draw(st.lists(st.integers(0, 1), min_size=len(s), max_size=len(s))), dtype=np.int64)
    seed = data.draw(st.integers(0, 2**32 - 1))
    parts = stratified_split(strata_codes(y, s), [val, test], np.random.default_rng(seed))
    for part in parts:
        assert set(s[part].tolist()) == set(range(len(sizes)))


def test_the_group_minimum_is_tight():
    # one row fewer than the minimum, split evenly between the labels: a split misses the group
    m = min_stratum_rows([0.2, 0.2])
    s = np.array([0] * (2 * m - 2) + [1] * 20)
    y = np.array([0, 1] * (m - 1) + [0, 1] * 10)
    parts = stratified_split(strata_codes(y, s), [0.2, 0.2], np.random.default_rng(0))
    assert any(0 not in s[p] for p in parts)


@pytest.mark.parametrize("seed", range(6))
def test_smallest_allowed_group_appears_in_every_split_and_training_evaluates(tmp_path, seed):
    from fastfair.training import TrainConfig, evaluate, train

    groups = ["c" if i % 97 == 0 and i < 97 * 5 else "ab"[i % 2] for i in range(500)]  # group c: 5 rows
    d = load_csv(_groups_file(tmp_path, groups, seed), target="y", sensitive="race", seed=seed)
    for sp in (d.train, d.val, d.test):
        assert (sp.group_counts() > 0).all()
    result = train(d, TrainConfig(epochs=1, batch_size=50, seed=seed))
    report = evaluate(result, d)
    assert set(report) == {"train", "val", "test"}
    for split in ("val", "test"):
        assert list(report[split]["groups"].index) == ["a", "b", "c"]


def test_dataset_from_user_splits_refuses_a_group_missing_from_a_split():
    rng = np.random.default_rng(0)

    def split(groups: list[int]) -> Split:
        n = len(groups)
        return Split(rng.normal(size=(n, 2)), np.arange(n) % 2, groups, ("u", "v"), ("a", "b", "c"))

    full = split([0, 1, 2] * 4)
    Dataset("mine", full, full, full, np.zeros(2), np.ones(2), False)  # accepted
    with pytest.raises(FastfairError, match=r"group 'c' has no rows in the val split; every group must occur"):
        Dataset("mine", full, split([0, 1] * 4), full, np.zeros(2), np.ones(2), False)
    with pytest.raises(FastfairError, match=r"group 'a' has no rows in the test split \(nor do 1 other"):
        Dataset("mine", full, full, split([2] * 4), np.zeros(2), np.ones(2), False)


def test_unfair2d_with_an_empty_group_is_refused_at_load():
    with pytest.raises(FastfairError, match=r"group 'B' has no rows in the train split"):
        load("unfair2d", p1=0.0, p2=0.0)
    # a group too rare for the independent test draw (floor(0.01 * 50) = 0 points)
    with pytest.raises(FastfairError, match=r"group 'B' has no rows in the (val|test) split"):
        load("unfair2d", p1=0.01, p2=0.01)


@pytest.mark.parametrize(
    "options",
    [
        {"sensitive": "race_all"},
        {"sensitive": "race_all", "features": "all"},
        {"sensitive": "race_all", "missing": "used", "val_fraction": 0.05},
        {"sensitive": "race"},
    ],
)
def test_bundled_adult_options_still_load_with_every_group_everywhere(options):
    d = load("adult", **options)
    for sp in (d.train, d.val, d.test):
        assert (sp.group_counts() > 0).all()


# ------------------------------------------------------------------------------------- huge feature values


def _huge_file(tmp_path: Path, magnitude: float) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.normal(size=300) + 3.0
    lines = ["x1,big,s,y"] + [
        f"{rng.normal():.6f},{float(b * magnitude)!r},{'ab'[i % 2]},{int(rng.random() < 0.4)}"
        for i, b in enumerate(base)
    ]
    return _write(tmp_path, lines), np.array([float(line.split(",")[1]) for line in lines[1:]])


@pytest.mark.parametrize("magnitude", [1e200, 1e300])
def test_huge_feature_column_is_standardised_without_overflow(tmp_path, magnitude):
    path, column = _huge_file(tmp_path, magnitude)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning on the way either
        d = load_csv(path, target="y", sensitive="s")
    assert np.isfinite(d.train.X).all() and np.isfinite(d.val.X).all() and np.isfinite(d.test.X).all()
    # oracle: the same column in units of `magnitude` (no overflow there), standardised in float64
    rows = np.round(d.inverse_transform(d.train.X)[:, 1] / magnitude, 9)
    ref = column / magnitude
    train_ref = ref[np.isin(np.round(ref, 9), rows)]
    assert len(train_ref) == len(d.train)
    np.testing.assert_allclose(d.mean[1] / magnitude, train_ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(d.scale[1] / magnitude, train_ref.std(), rtol=1e-12)
    np.testing.assert_allclose(np.sort(d.train.X[:, 1]), np.sort((train_ref - train_ref.mean()) / train_ref.std()),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(d.train.X.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(d.train.X.std(axis=0), 1.0, atol=1e-12)


@pytest.mark.parametrize("magnitude", [1e200, 1e300])
def test_huge_feature_column_unstandardised_is_refused(tmp_path, magnitude):
    path, _ = _huge_file(tmp_path, magnitude)
    with pytest.raises(FastfairError, match=r"feature 'big' reaches .*e\+(199|200|299|300) in the train split, beyond "
                       r"float32's range .*; standardise, rescale") as e:
        load_csv(path, target="y", sensitive="s", standardize=False)
    assert "\n" not in str(e.value)


def test_values_beyond_float32_after_standardisation_or_non_finite_are_refused():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 2))
    ok = Split(X, np.arange(12) % 2, np.arange(12) // 6, ("u", "v"), ("a", "b"))
    outlier = X.copy()
    outlier[3, 1] = 1e39
    far = Split(outlier, ok.y, ok.s, ok.feature_names, ok.group_names)
    with pytest.raises(FastfairError, match=r"feature 'v' reaches 1e\+39 in the test split after standardisation"):
        Dataset("mine", ok, ok, far, np.zeros(2), np.ones(2), True)
    outlier[3, 1] = np.nan
    bad = Split(outlier, ok.y, ok.s, ok.feature_names, ok.group_names)
    with pytest.raises(FastfairError, match=r"feature 'v' has non-finite values \(NaN or infinite\) in the val split"):
        Dataset("mine", ok, bad, ok, np.zeros(2), np.ones(2), False)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(2, 40),
    shift=st.integers(-60, 900),
    seed=st.integers(0, 2**32 - 1),
    offset=st.floats(-10, 10),
)
def test_standardisation_is_the_plain_formula_scaled_by_a_power_of_two(n, shift, seed, offset):
    """Exact oracle: scaling a column by 2^k scales its mean and std by 2^k, bit for bit, and leaves the
    standardised values unchanged; and where the plain numpy formulas do not overflow they are matched exactly."""
    Y = np.random.default_rng(seed).normal(size=(n, 3)) + offset
    Y[:, 2] = 0.75  # a constant column (exactly): scale 1
    mean, scale = standardization(Y)
    np.testing.assert_array_equal(mean, Y.mean(axis=0))
    np.testing.assert_array_equal(scale[:2], np.where(Y[:, :2].std(axis=0) > 0, Y[:, :2].std(axis=0), 1.0))
    assert scale[2] == 1.0
    Z = apply_standardization(Y, mean, scale)
    np.testing.assert_array_equal(Z, (Y - mean) / scale)
    X = np.ldexp(Y, shift)
    X[:, 2] = Y[:, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m2, s2 = standardization(X)
        Z2 = apply_standardization(X, m2, s2)
    np.testing.assert_array_equal(m2[:2], np.ldexp(mean[:2], shift))
    np.testing.assert_array_equal(s2[:2], np.ldexp(scale[:2], shift))
    np.testing.assert_array_equal(Z2, Z)


def test_extreme_columns_near_float64_max_standardise_finitely():
    X = np.array([[1.7e308], [-1.7e308], [1.7e308], [-1.0e308]])
    mean, scale = standardization(X)
    Z = apply_standardization(X, mean, scale)
    assert np.isfinite(mean).all() and np.isfinite(scale).all() and np.isfinite(Z).all()
    ref = X / 1e308
    np.testing.assert_allclose(Z[:, 0], (ref[:, 0] - ref.mean()) / ref.std(), rtol=1e-12)


def test_subnormal_columns_standardise_too():
    base = np.array([[1.0], [3.0], [0.0], [2.0]])
    X = base * 1000 * 2.0**-1074  # exact multiples of the smallest subnormal; squares underflow to 0
    mean, scale = standardization(X)
    assert scale[0] < 1e-300  # the column's own scale, not the placeholder 1 of a zero standard deviation
    # the stored scale is itself subnormal (about 11 significant bits here), hence the loose tolerance
    np.testing.assert_allclose(apply_standardization(X, mean, scale), (base - base.mean()) / base.std(), rtol=1e-3)


# ------------------------------------------------------------------------------------- which label is positive


def test_label_names_of_the_bundled_datasets():
    assert load("unfair2d").label_names == ("0", "1")
    adult = load("adult")
    assert adult.label_names == ("<=50K", ">50K") and adult.info["label_names"] == ["<=50K", ">50K"]
    assert load("lsat").label_names == ("fail", "pass")


def test_label_names_of_a_csv_record_the_chosen_positive_class(tmp_path):
    lines = ["x,s,decision"] + [f"{i},{'ab'[i % 2]},{['approved', 'rejected'][(i // 2) % 2]}" for i in range(100)]
    path = _write(tmp_path, lines)
    d = load_csv(path, target="decision", sensitive="s", standardize=False)
    assert d.label_names == ("approved", "rejected")  # sorted: the second value is positive unless told
    assert d.info["label_names"] == ["approved", "rejected"]
    flip = load_csv(path, target="decision", sensitive="s", positive="approved", standardize=False)
    assert flip.label_names == ("rejected", "approved")
    x, y = _all(flip, "X")[:, 0].astype(int), _all(flip, "y")
    np.testing.assert_array_equal(y, ((x // 2) % 2 == 0).astype(int))
    lines = ["x,s,grade"] + [f"{i},{'ab'[i % 2]},{i % 3}" for i in range(90)]
    ovr = load_csv(_write(tmp_path, lines, "grades.csv"), target="grade", sensitive="s", positive="2")
    assert ovr.label_names == ("not 2", "2")


@pytest.mark.parametrize(
    ("positive", "flag"),
    [("true", True), ("TRUE", True), ("True", True), ("1", True), (1, True), (True, True),
     ("false", False), ("False", False), ("0", False), (0, False)],
)
def test_positive_text_matches_a_true_false_column(tmp_path, positive, flag):
    lines = ["x,s,ok"] + [f"{i},{'ab'[i % 2]},{i % 3 == 0}" for i in range(60)]
    d = load_csv(_write(tmp_path, lines), target="ok", sensitive="s", positive=positive, standardize=False)
    x, y = _all(d, "X")[:, 0].astype(int), _all(d, "y")
    np.testing.assert_array_equal(y, ((x % 3 == 0) == flag).astype(int))
    assert d.info["options"]["positive"] is flag and d.label_names == (str(not flag), str(flag))


def test_positive_that_is_no_truth_value_is_still_refused_on_a_true_false_column(tmp_path):
    lines = ["x,s,ok"] + [f"{i},{'ab'[i % 2]},{i % 3 == 0}" for i in range(60)]
    with pytest.raises(FastfairError, match=r"positive label 'yes' does not occur in target column 'ok'"):
        load_csv(_write(tmp_path, lines), target="ok", sensitive="s", positive="yes")
    with pytest.raises(FastfairError, match=r"positive label 2 does not occur"):
        load_csv(_write(tmp_path, lines), target="ok", sensitive="s", positive=2)


# ------------------------------------------------------------------------------------- headers and malformed files


def _rows(n: int = 40) -> list[str]:
    return [f"{i},{i % 5},{'ab'[i % 2]},{(i // 2) % 2}" for i in range(n)]


@pytest.mark.parametrize("header", ["x1,x1,s,y", "x1,x1.1,x1,y"])
def test_duplicate_header_is_refused_naming_the_column(tmp_path, header):
    with pytest.raises(FastfairError, match=r"the header of data.csv names column 'x1' twice \(columns 1 and [23]\)"):
        load_csv(_write(tmp_path, [header, *_rows()]), target="y", sensitive="s")


def test_unnamed_index_column_is_dropped_with_a_warning_unless_named(tmp_path):
    path = _write(tmp_path, [",x,s,y", *_rows()])
    with pytest.warns(UserWarning, match=r"dropped 'Unnamed: 0' from the features: no name in the header") as rec:
        d = load_csv(path, target="y", sensitive="s", standardize=False)
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    assert d.feature_names == ("x",)
    np.testing.assert_array_equal(np.sort(_all(d, "X")[:, 0]), np.sort(np.arange(40) % 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = load_csv(path, target="y", sensitive="s", features=["Unnamed: 0", "x"], standardize=False)
    assert named.feature_names == ("Unnamed: 0", "x")
    np.testing.assert_array_equal(np.sort(_all(named, "X")[:, 0]), np.arange(40))


def test_data_rows_longer_than_the_header_are_refused_not_shifted(tmp_path):
    # pandas would make the first column an index and shift every value onto the next column's name
    path = _write(tmp_path, ["x,s,y", *[f"{i},{'ab'[i % 2]},{i % 2},{i * 7}" for i in range(40)]])
    with pytest.raises(FastfairError, match=r"malformed CSV data.csv: data rows have more fields than the header"):
        load_csv(path, target="y", sensitive="s")


def test_trailing_commas_keep_columns_in_place(tmp_path):
    path = _write(tmp_path, ["x,s,y", *[f"{i},{'ab'[i % 2]},{(i // 2) % 2}," for i in range(40)]])
    d = load_csv(path, target="y", sensitive="s", standardize=False)
    x, y, s = _all(d, "X")[:, 0].astype(int), _all(d, "y"), _all(d, "s")
    np.testing.assert_array_equal(np.sort(x), np.arange(40))
    np.testing.assert_array_equal(y, (x // 2) % 2)
    np.testing.assert_array_equal(s, x % 2)


@settings(max_examples=80, deadline=None)
@given(
    blob=st.binary(max_size=400) | st.text(alphabet=',"\n\r ab01.-\x00é', max_size=300).map(str.encode),
    header=st.booleans(),
)
def test_arbitrary_bytes_give_a_dataset_or_a_one_line_error(tmp_path_factory, blob, header):
    """Malformed files (binary garbage, ragged rows, stray quotes, NUL bytes): a FastfairError, never another."""
    path = tmp_path_factory.mktemp("fuzz") / "f.csv"
    path.write_bytes(b"a,s,y\n" + blob if header else blob)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_csv(path, target="y", sensitive="s")
    except FastfairError as exc:
        assert "\n" not in str(exc)


def test_a_file_separated_by_semicolons_gets_a_hint(tmp_path):
    path = _write(tmp_path, ["x;s;y", *[f"{i};{'ab'[i % 2]};{i % 2}" for i in range(20)]])
    with pytest.raises(FastfairError, match=r"not found in data.csv: 'y', 's'; .* separated by ';'\? only commas"):
        load_csv(path, target="y", sensitive="s")


# ------------------------------------------------------------------------------------- intersectional groups
def _two_columns_file(tmp_path: Path, pairs: list[tuple[str, str]], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["x1,sex,race,y"] + [f"{rng.normal():.6f},{a},{b},{int(rng.random() < 0.4)}" for a, b in pairs]
    return _write(tmp_path, lines)


def test_rare_combination_is_refused_naming_the_combination_and_its_columns(tmp_path):
    # every value of each column is common, but the combination F|c has only 3 rows (fewer than 5)
    pairs = [("FM"[i % 2], "ab"[(i // 2) % 2]) for i in range(400)] + [("F", "c")] * 3 + [("M", "c")] * 40
    with pytest.raises(
        FastfairError, match=r"group 'F\|c' of sensitive columns 'sex', 'race' has 3 rows; .*at least 5 rows"
    ) as e:
        load_csv(_two_columns_file(tmp_path, pairs), target="y", sensitive=["sex", "race"])
    assert "\n" not in str(e.value)
    # each column on its own is fine
    assert load_csv(_two_columns_file(tmp_path, pairs), target="y", sensitive="race").group_names == ("a", "b", "c")


def test_too_many_combinations_are_refused(tmp_path):
    pairs = [(f"s{i % 8}", f"r{(i // 8) % 8}") for i in range(64 * 6)]  # 64 combinations of 6 rows each
    with pytest.raises(FastfairError, match=r"sensitive columns 'sex', 'race' have 64 combinations, more than the 50"):
        load_csv(_two_columns_file(tmp_path, pairs), target="y", sensitive=["sex", "race"])


@pytest.mark.parametrize(
    ("sensitive", "message"),
    [
        (["sex", "sex"], "sensitive lists column(s) twice: 'sex'"),
        (["sex", "y"], "target and sensitive are the same column 'y'"),
        ([], "sensitive must be a column name or a list of column names"),
        (["sex", ""], "sensitive must be a column name or a list of column names"),
        (["sex", "age"], "column(s) not found in data.csv: 'age'"),
    ],
)
def test_bad_sensitive_column_lists_are_one_line_errors(tmp_path, sensitive, message):
    pairs = [("FM"[i % 2], "ab"[(i // 2) % 2]) for i in range(100)]
    with pytest.raises(FastfairError) as e:
        load_csv(_two_columns_file(tmp_path, pairs), target="y", sensitive=sensitive)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_value_with_the_separator_that_makes_two_combinations_one_name_is_refused(tmp_path):
    pairs = [("a|b", "c"), ("a", "b|c")] * 50
    with pytest.raises(FastfairError, match=r"both named 'a\|b\|c'"):
        load_csv(_two_columns_file(tmp_path, pairs), target="y", sensitive=["sex", "race"])


def test_adult_intersectional_groups_occur_in_every_split():
    d = load("adult", sensitive=["sex", "race_all"])
    assert len(d.group_names) == 10 and d.group_names[0] == "Female|Amer-Indian-Eskimo"
    for sp in (d.train, d.val, d.test):
        assert (sp.group_counts() > 0).all()
