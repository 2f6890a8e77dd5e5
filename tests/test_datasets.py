"""Datasets: containers, the three bundled/generated datasets, checksum verification and user CSV loading.

Expected Adult counts are those of the UCI files themselves (the standard cleaned Adult: 30,162 + 15,060
records without '?'; 7,508 and 3,700 records with income >50K), not numbers read back from our own loader.
"""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastfair import datasets
from fastfair.datasets import Dataset, Split, generate_unfair2d, load, load_csv
from fastfair.datasets._bundled import PACKAGE_DATA_DIR, provenance
from fastfair.errors import FastfairError

# ----------------------------------------------------------------------------------------------- containers


def _split(n: int = 6) -> Split:
    X = np.arange(2 * n, dtype=np.float64).reshape(n, 2)
    return Split(X, np.arange(n) % 2, (np.arange(n) // 2) % 3, ("a", "b"), ("g0", "g1", "g2"))


def test_split_coerces_dtypes_and_slices():
    sp = Split([[1, 2], [3, 4], [5, 6]], [True, False, True], [0.0, 1.0, 1.0], ["a", "b"], ["u", "v"])
    assert sp.X.dtype == np.float64 and sp.y.dtype == np.int64 and sp.s.dtype == np.int64
    assert len(sp) == 3 and sp.n_features == 2 and sp.n_groups == 2
    assert sp.feature_names == ("a", "b") and sp.group_names == ("u", "v")
    np.testing.assert_array_equal(sp.group_counts(), [1, 2])
    big = _split(6)
    head = big.head(4)
    assert isinstance(head, Split) and len(head) == 4
    np.testing.assert_array_equal(head.X, big.X[:4])
    assert len(big.head(100)) == 6 and len(big.head(0)) == 0
    sub = big.subset([5, 0])
    np.testing.assert_array_equal(sub.y, big.y[[5, 0]])
    np.testing.assert_array_equal(sub.s, big.s[[5, 0]])
    mask = big.subset(big.y == 1)
    assert (mask.y == 1).all() and len(mask) == 3
    assert mask.group_names == big.group_names


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y": [0, -1, 1]}, r"class codes 0, 1, \.\.\. \(non-negative integers\), found -1"),
        ({"s": [0, 1, 5]}, "codes in 0..1"),
        ({"X": [1.0, 2.0, 3.0]}, "2-D"),
        ({"y": [0, 1]}, "shape"),
        ({"feature_names": ["only-one"]}, "feature names"),
        ({"s": [0.5, 1, 0]}, "integer codes"),
    ],
)
def test_split_rejects_inconsistent_arrays(kwargs, match):
    args = {"X": np.zeros((3, 2)), "y": [0, 1, 1], "s": [0, 1, 0], "feature_names": ["a", "b"]}
    args.update(kwargs)
    with pytest.raises(FastfairError, match=match):
        Split(args["X"], args["y"], args["s"], args["feature_names"], ("u", "v"))


def test_split_bad_index_and_head():
    sp = _split(4)
    with pytest.raises(FastfairError, match="out of range"):
        sp.subset([7])
    with pytest.raises(FastfairError, match="boolean index"):
        sp.subset([True, False])
    with pytest.raises(FastfairError, match="non-negative integer"):
        sp.head(-1)


def test_dataset_accessors():
    d = load("unfair2d", seed=0)
    assert d.split("train") is d.train and d.split("val") is d.val and d.split("test") is d.test
    with pytest.raises(FastfairError, match="unknown split 'dev'; choose one of train, val, test"):
        d.split("dev")
    assert d.feature_names == ("x1", "x2") and d.group_names == ("A", "B")
    assert d.n_features == 2 and d.n_groups == 2
    summary = d.summary()
    assert list(summary.index) == ["train", "val", "test"] and summary.loc["train", "n"] == 400
    assert "unfair2d" in repr(d) and "train=400" in repr(d)


# ----------------------------------------------------------------------------------------------- load()


def test_unknown_dataset_lists_choices():
    with pytest.raises(FastfairError, match=r"unknown dataset 'mnist'; choose one of unfair2d, adult, lsat"):
        load("mnist")
    assert datasets.DATASETS == ("unfair2d", "adult", "lsat", "colored_digits")


@pytest.mark.parametrize("name", ["unfair2d", "adult", "lsat"])
def test_unknown_option_lists_choices(name):
    with pytest.raises(
        FastfairError, match=r"unknown option 'bogus' for dataset .*; choices: .*standardize"
    ) as e:
        load(name, bogus=1)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("unfair2d", {"p1": 1.5}, "p1 must be a number in"),
        ("unfair2d", {"alpha": -1}, "alpha must be"),
        ("unfair2d", {"u": (1, 2, 3)}, "u must be two"),
        ("unfair2d", {"u": "diagonal"}, "u must be two"),
        ("unfair2d", {"n_per_class": 0}, "n_per_class must be a positive integer"),
        ("unfair2d", {"standardize": "yes"}, "standardize must be true or false"),
        ("adult", {"sensitive": "age"}, "choose one of sex, race, race_all"),
        ("adult", {"sensitive": ["sex", "age"]}, "unknown sensitive attribute 'age' for adult"),
        ("adult", {"sensitive": ["race", "race_all"]}, "race and race_all group the same column"),
        ("adult", {"sensitive": ["sex", "sex"]}, "sensitive lists an attribute twice"),
        ("adult", {"sensitive": ["sex", "race"], "features": ["age", "race"]}, "'race' cannot also be a feature"),
        ("adult", {"features": "some"}, "features must be"),
        ("adult", {"features": ["age", "wage"]}, "unknown Adult column"),
        ("adult", {"features": ["age", "sex"]}, "sensitive column 'sex' cannot also be a feature"),
        ("adult", {"val_fraction": 1.0}, "val_fraction must be"),
        ("adult", {"missing": "none"}, "missing must be"),
        ("lsat", {"val_fraction": 0.5, "test_fraction": 0.5}, "must be below 1"),
        ("lsat", {"balanced": 2}, "balanced must be true or false"),
    ],
)
def test_bad_option_values(name, options, match):
    with pytest.raises(FastfairError, match=match):
        load(name, **options)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed):
    with pytest.raises(FastfairError, match="seed must be a non-negative integer"):
        load("unfair2d", seed=seed)


def test_name_is_case_insensitive_and_options_listed():
    assert len(load("Unfair2D").train) == 400
    opts = datasets.dataset_options("adult")
    assert opts["sensitive"] == "sex" and opts["standardize"] is True
    assert datasets.dataset_options("unfair2d")["standardize"] is False


# ----------------------------------------------------------------------------------------------- Unfair2D


def _check_arrays(sp: Split, d: int) -> None:
    assert sp.X.dtype == np.float64 and sp.X.shape == (len(sp), d)
    assert sp.y.dtype == np.int64 and set(np.unique(sp.y)) <= {0, 1}
    assert sp.s.dtype == np.int64 and sp.s.min() >= 0 and sp.s.max() < sp.n_groups
    assert np.isfinite(sp.X).all()


def test_unfair2d_sizes_and_raw_units():
    d = load("unfair2d", seed=0)
    for sp in (d.train, d.val, d.test):
        _check_arrays(sp, 2)
    # 250 per class -> 200 train + 50 validation per class; test: an independent 50 per class
    assert np.bincount(d.train.y).tolist() == [200, 200]
    assert np.bincount(d.val.y).tolist() == [50, 50]
    assert np.bincount(d.test.y).tolist() == [50, 50]
    # not standardised by default: identity statistics and raw unit-square coordinates
    assert d.standardized is False
    np.testing.assert_array_equal(d.mean, [0.0, 0.0])
    np.testing.assert_array_equal(d.scale, [1.0, 1.0])
    alpha = 0.1
    assert d.train.X.min() >= -alpha and d.train.X.max() <= 1 + alpha
    # p1 = p2 = 0.5: exactly half of each class of the 250 + 250 train/val points in group B
    both_s = np.concatenate([d.train.s, d.val.s])
    both_y = np.concatenate([d.train.y, d.val.y])
    assert [int(((both_y == c) & (both_s == 1)).sum()) for c in (0, 1)] == [125, 125]
    assert np.bincount(d.test.s[d.test.y == 0]).tolist() == [25, 25]


def test_unfair2d_standardize_option():
    d = load("unfair2d", seed=0, standardize=True)
    assert d.standardized
    np.testing.assert_allclose(d.train.X.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(d.train.X.std(axis=0), 1.0, atol=1e-12)
    raw = load("unfair2d", seed=0)
    np.testing.assert_allclose(d.inverse_transform(d.test.X), raw.test.X, atol=1e-12)
    np.testing.assert_allclose(d.transform(raw.val.X), d.val.X, atol=1e-12)


def _unshift(X: np.ndarray, y: np.ndarray, s: np.ndarray, alpha: float, u: np.ndarray) -> np.ndarray:
    clean = X.copy()
    clean[(s == 0) & (y == 1)] += alpha * u
    clean[(s == 1) & (y == 0)] -= alpha * u
    return clean


def test_unfair2d_geometry_labels_follow_the_line_before_the_shift():
    alpha, u = 0.15, np.array([1.0, 2.0])
    X, y, s = generate_unfair2d(3000, p1=0.3, p2=0.6, alpha=alpha, u=u, rng=7)
    clean = _unshift(X, y, s, alpha, u)
    # before shifting: inside the unit square, class 1 strictly above x2 = 1 - x1, class 0 below
    assert clean.min() >= 0.0 and clean.max() <= 1.0
    np.testing.assert_array_equal((clean.sum(axis=1) > 1.0).astype(np.int64), y)
    # the unshifted cells are untouched and so still on their side of the line
    kept = ((s == 0) & (y == 0)) | ((s == 1) & (y == 1))
    np.testing.assert_array_equal(X[kept], clean[kept])
    # the shift makes the data unfair: some group-A positives now fall below the line, some group-B
    # negatives above it, and no point of the other two cells does
    assert ((X.sum(axis=1) < 1) & (y == 1) & (s == 0)).sum() > 100
    assert ((X.sum(axis=1) > 1) & (y == 0) & (s == 1)).sum() > 100
    assert not ((X.sum(axis=1) < 1) & (y == 1) & (s == 1)).any()
    # p1 / p2 are the exact fractions of class 0 / class 1 in group s = 1
    assert int(((y == 0) & (s == 1)).sum()) == 900 and int(((y == 1) & (s == 1)).sum()) == 1800
    # alpha = 0: perfectly separable by the line
    X0, y0, _ = generate_unfair2d(500, alpha=0.0, rng=1)
    np.testing.assert_array_equal((X0.sum(axis=1) > 1.0).astype(np.int64), y0)


def test_unfair2d_points_are_uniform_in_their_triangle():
    X, y, s = generate_unfair2d(20000, alpha=0.0, rng=3)
    # the centroid of the triangle below x1 + x2 = 1 is (1/3, 1/3), above it (2/3, 2/3)
    np.testing.assert_allclose(X[y == 0].mean(axis=0), [1 / 3, 1 / 3], atol=0.01)
    np.testing.assert_allclose(X[y == 1].mean(axis=0), [2 / 3, 2 / 3], atol=0.01)
    # marginal of x1 in the lower triangle has density 2(1 - t): P(x1 < 1/2) = 3/4
    assert abs(np.mean(X[y == 0, 0] < 0.5) - 0.75) < 0.015
    # group membership is independent of position within a class
    np.testing.assert_allclose(
        X[(y == 0) & (s == 1)].mean(axis=0), X[(y == 0) & (s == 0)].mean(axis=0), atol=0.02
    )


def test_unfair2d_deterministic_per_seed():
    a, b, c = load("unfair2d", seed=11), load("unfair2d", seed=11), load("unfair2d", seed=12)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a.split(name).X, b.split(name).X)
        np.testing.assert_array_equal(a.split(name).s, b.split(name).s)
    assert not np.array_equal(a.train.X, c.train.X)
    assert not np.array_equal(a.test.X, c.test.X)
    # the test draw is independent of (not a copy of) the training draw
    assert not np.isin(a.test.X[:, 0], a.train.X[:, 0]).any()


# ----------------------------------------------------------------------------------------------- Adult


@pytest.fixture(scope="module")
def adult_raw() -> Dataset:
    return load("adult", seed=0, standardize=False)


def test_adult_sizes_labels_and_groups(adult_raw):
    d = adult_raw
    for sp in (d.train, d.val, d.test):
        _check_arrays(sp, 5)
    assert d.feature_names == ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
    assert d.group_names == ("Female", "Male")
    # records without '?': 30,162 in adult.data (train + val), 15,060 in adult.test
    assert len(d.train) + len(d.val) == 30162 and len(d.test) == 15060
    assert abs(len(d.val) - 0.2 * 30162) <= 4
    # label 1 = income >50K: 7,508 such records in the cleaned adult.data, 3,700 in adult.test ('>50K.')
    assert int(d.train.y.sum() + d.val.y.sum()) == 7508
    assert int(d.test.y.sum()) == 3700
    assert 0.24 < d.train.positive_rate < 0.26
    # sex: 9,782 women / 20,380 men in adult.data, 4,913 / 10,147 in adult.test
    assert (d.train.group_counts() + d.val.group_counts()).tolist() == [9782, 20380]
    assert d.test.group_counts().tolist() == [4913, 10147]
    assert d.info["rows"]["adult.data"] == 32561 and d.info["rows"]["adult.test"] == 16281


def test_adult_first_record_is_data_not_header(adult_raw):
    first = np.array([39, 13, 2174, 0, 40], dtype=np.float64)  # 39, State-gov, ..., Male, 2174, 0, 40, <=50K
    pool = np.concatenate([adult_raw.train.X, adult_raw.val.X])
    hits = np.flatnonzero((pool == first).all(axis=1))
    assert len(hits) == 1
    y = np.concatenate([adult_raw.train.y, adult_raw.val.y])[hits[0]]
    s = np.concatenate([adult_raw.train.s, adult_raw.val.s])[hits[0]]
    assert (y, adult_raw.group_names[s]) == (0, "Male")
    # the first test record ("25, Private, ..., Black, Male, 0, 0, 40, United-States, <=50K.") comes first
    np.testing.assert_array_equal(adult_raw.test.X[0], [25, 7, 0, 0, 40])
    assert adult_raw.test.y[0] == 0
    # train keeps the order of adult.data: its first rows are the file's first records (when not in val)
    from fastfair.datasets.adult import _adult_frames

    frame, _ = _adult_frames(str(PACKAGE_DATA_DIR))
    assert frame.loc[0, "workclass"] == "State-gov" and frame.loc[0, "age"] == 39
    cols = list(adult_raw.feature_names)
    clean = [tuple(r) for r in frame.loc[frame.notna().all(axis=1), cols].to_numpy(dtype=np.float64).tolist()]
    train = [tuple(r) for r in adult_raw.train.X.tolist()]
    val = [tuple(r) for r in adult_raw.val.X.tolist()]
    assert Counter(train) + Counter(val) == Counter(clean)  # train and val partition the cleaned adult.data
    assert _is_subsequence(train, clean) and _is_subsequence(val, clean)  # ... each in file order
    assert not _is_subsequence(train[::-1][:50], clean[:2000])


def _is_subsequence(sub: list, seq: list) -> bool:
    it = iter(seq)
    return all(any(item == other for other in it) for item in sub)


def test_adult_standardised_with_train_statistics_only(adult_raw):
    d = load("adult", seed=0)
    assert d.standardized
    np.testing.assert_allclose(d.train.X.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(d.train.X.std(axis=0), 1.0, atol=1e-9)
    np.testing.assert_allclose(d.mean, adult_raw.train.X.mean(axis=0))
    np.testing.assert_allclose(d.scale, adult_raw.train.X.std(axis=0))
    # val and test are transformed with the train statistics, so they are only approximately centred
    for sp in (d.val, d.test):
        m = sp.X.mean(axis=0)
        assert np.all(np.abs(m) < 0.1) and np.any(np.abs(m) > 1e-6)
    np.testing.assert_allclose(d.test.X, (adult_raw.test.X - d.mean) / d.scale)


def test_adult_validation_is_stratified_and_seeded(adult_raw):
    d = adult_raw
    for group in (0, 1):
        rate_train = d.train.y[d.train.s == group].mean()
        rate_val = d.val.y[d.val.s == group].mean()
        assert abs(rate_train - rate_val) < 0.002
    frac_female = d.val.group_counts()[0] / len(d.val)
    assert abs(frac_female - 9782 / 30162) < 0.001
    again = load("adult", seed=0, standardize=False)
    np.testing.assert_array_equal(again.val.X, d.val.X)
    other = load("adult", seed=1, standardize=False)
    assert not np.array_equal(other.val.X, d.val.X)
    np.testing.assert_array_equal(other.test.X, d.test.X)  # the official test split never changes


def test_adult_sensitive_choices():
    race = load("adult", sensitive="race", standardize=False)
    assert race.group_names == ("non-white", "white")
    assert race.test.group_counts().tolist() == [15060 - 12970, 12970]
    race_all = load("adult", sensitive="race_all", standardize=False)
    assert race_all.group_names == ("Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White")
    assert race_all.test.group_counts().tolist() == [149, 408, 1411, 122, 12970]


def test_adult_all_features_one_hot_consistent():
    d = load("adult", features="all", standardize=False)
    names = d.feature_names
    assert names[:5] == ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
    assert "sex=Male" not in names and "race=White" in names and "workclass=Private" in names
    assert not any(n.startswith(("fnlwgt", "education=")) for n in names)
    for sp in (d.train, d.val, d.test):
        assert sp.X.shape[1] == len(names)
        # one indicator per categorical column (workclass, marital-status, occupation, relationship, race,
        # native-country); a category never seen in training would give a zero row, none here but one
        onehot = sp.X[:, 5:]
        assert set(np.unique(onehot)) <= {0.0, 1.0}
        assert onehot.sum(axis=1).max() == 6
    assert d.train.X[:, 5:].sum(axis=1).min() == 6
    by_race = load("adult", features="all", sensitive="race", standardize=False)
    assert "sex=Male" in by_race.feature_names and "race=White" not in by_race.feature_names


def test_adult_missing_used_keeps_rows_without_used_missing_values():
    d = load("adult", missing="used", standardize=False)
    assert len(d.train) + len(d.val) == 32561 and len(d.test) == 16281
    assert int(d.test.y.sum()) == 3846


def test_adult_cached_second_load_is_fast():
    import time

    from fastfair.datasets.adult import _adult_frames

    load("adult")
    hits = _adult_frames.cache_info().hits
    start = time.perf_counter()
    load("adult", seed=3)
    assert time.perf_counter() - start < 1.0
    assert _adult_frames.cache_info().hits == hits + 1  # parsed (and checksummed) once per process


# ----------------------------------------------------------------------------------------------- LSAT


def _rows(sp: Split) -> Counter:
    return Counter(map(tuple, np.column_stack([sp.X, sp.y, sp.s]).tolist()))


@pytest.fixture(scope="module")
def lsat_raw() -> Dataset:
    return load("lsat", seed=0, standardize=False)


def test_lsat_sizes_and_partition(lsat_raw):
    d = lsat_raw
    for sp in (d.train, d.val, d.test):
        _check_arrays(sp, 2)
    assert d.feature_names == ("LSAT", "UGPA") and d.group_names == ("non-white", "white")
    n = len(d.train) + len(d.val) + len(d.test)
    assert n == 21791
    assert abs(len(d.val) - 0.2 * n) < 5 and abs(len(d.test) - 0.2 * n) < 5
    # the three splits partition the file: the multiset of all rows equals that of law.csv
    import pandas as pd

    raw = pd.read_csv(PACKAGE_DATA_DIR / "law.csv.gz")
    expected = Counter(map(tuple, raw[["LSAT", "UGPA", "PF_1", "Race_White"]].to_numpy(dtype=float).tolist()))
    assert _rows(d.train) + _rows(d.val) + _rows(d.test) == expected
    # pass rate about 0.89; white students about 84 %
    assert 0.87 < d.train.positive_rate < 0.91
    assert abs(d.train.group_counts()[1] / len(d.train) - 0.839) < 0.01


def test_lsat_stratified_split(lsat_raw):
    d = lsat_raw
    cells = []
    for sp in (d.train, d.val, d.test):
        cells.append(np.bincount(sp.s * 2 + sp.y, minlength=4) / len(sp))
    np.testing.assert_allclose(cells[0], cells[1], atol=0.001)
    np.testing.assert_allclose(cells[0], cells[2], atol=0.001)


def test_lsat_balanced_cells_equal_and_eval_splits_unchanged(lsat_raw):
    b = load("lsat", seed=0, balanced=True, standardize=False)
    counts = np.bincount(b.train.s * 2 + b.train.y, minlength=4)
    assert len(set(counts.tolist())) == 1 and counts[0] > 500
    # subsampled from the unbalanced training split; val and test are the very same rows
    assert not (_rows(b.train) - _rows(lsat_raw.train))
    np.testing.assert_array_equal(b.val.X, lsat_raw.val.X)
    np.testing.assert_array_equal(b.test.X, lsat_raw.test.X)
    # test is disjoint from train (the reference reused its training rows as test)
    assert len(b.test) > 4000 and len(b.train) == 4 * counts[0]
    # standardised on the balanced training rows
    bs = load("lsat", seed=0, balanced=True)
    np.testing.assert_allclose(bs.mean, b.train.X.mean(axis=0))


def test_lsat_seeds():
    a, b, c = load("lsat", seed=5), load("lsat", seed=5), load("lsat", seed=6)
    np.testing.assert_array_equal(a.train.X, b.train.X)
    np.testing.assert_array_equal(a.test.y, b.test.y)
    assert not np.array_equal(a.test.X, c.test.X)


# ----------------------------------------------------------------------------------------------- checksums


def _copy_data(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    target.mkdir()
    for name in ("adult.data.gz", "adult.test.gz", "law.csv.gz"):
        shutil.copy(PACKAGE_DATA_DIR / name, target / name)
    return target


def test_checksums_come_from_provenance_json():
    files = provenance()["files"]
    assert files["adult.data"]["sha256"] == "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"
    assert files["adult.test"]["sha256"] == "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05"
    assert files["law.csv"]["sha256"] == "fe9fccba0d2a7bd3401b1f2cf989783eb580f062ec684cb6ee51aba5304bea0d"
    for record in files.values():
        assert {"source_url", "licence", "obtained_from", "stored_as"} <= set(record)
    assert (PACKAGE_DATA_DIR / "PROVENANCE.md").is_file()


def test_checksum_mismatch_detected(tmp_path, monkeypatch):
    data = _copy_data(tmp_path)
    original = gzip.decompress((data / "adult.data.gz").read_bytes())
    corrupted = original.replace(b"39, State-gov", b"93, State-gov", 1)
    assert corrupted != original
    (data / "adult.data.gz").write_bytes(gzip.compress(corrupted))
    monkeypatch.setenv("FASTFAIR_DATA_DIR", str(data))
    with pytest.raises(FastfairError, match=r"checksum mismatch for bundled file .*adult\.data\.gz") as e:
        load("adult")
    assert "\n" not in str(e.value)
    assert len(load("lsat").train) > 0  # the intact copy in the same directory still loads


def test_corrupted_law_csv_and_missing_or_broken_files(tmp_path, monkeypatch):
    data = _copy_data(tmp_path)
    raw = gzip.decompress((data / "law.csv.gz").read_bytes())
    (data / "law.csv.gz").write_bytes(gzip.compress(raw[:-10]))
    (data / "adult.test.gz").unlink()
    monkeypatch.setenv("FASTFAIR_DATA_DIR", str(data))
    with pytest.raises(FastfairError, match="checksum mismatch for bundled file"):
        load("lsat")
    with pytest.raises(FastfairError, match=r"bundled file 'adult.test.gz' not found"):
        load("adult")
    (data / "law.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(FastfairError, match="cannot read bundled file"):
        load("lsat")


# ----------------------------------------------------------------------------------------------- load_csv


def _write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _good_csv(tmp_path: Path, n: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["x1,x2,colour,member,gender,outcome"]
    for i in range(n):
        lines.append(
            f"{rng.normal():.4f},{i % 7},{['red', 'green', 'blue'][i % 3]},{bool(i % 2)},"
            f"{['f', 'm'][i % 4 == 0]},{['no', 'yes'][int(rng.random() < 0.4)]}"
        )
    return _write(tmp_path, "\n".join(lines) + "\n")


def test_load_csv_basic_and_one_hot(tmp_path):
    path = _good_csv(tmp_path)
    d = load_csv(path, target="outcome", sensitive="gender", seed=3)
    assert d.name == "csv:data.csv"
    assert d.group_names == ("f", "m")
    assert d.feature_names == (
        "x1",
        "x2",
        "colour=blue",
        "colour=green",
        "colour=red",
        "member=False",
        "member=True",
    )
    n = len(d.train) + len(d.val) + len(d.test)
    assert n == 200 and abs(len(d.val) - 40) <= 2 and abs(len(d.test) - 40) <= 2
    for sp in (d.train, d.val, d.test):
        _check_arrays(sp, 7)
    # 'yes' sorts after 'no', so it is the positive class
    assert d.info["options"]["positive"] == "yes"
    raw = load_csv(path, target="outcome", sensitive="gender", seed=3, standardize=False)
    onehot = raw.train.X[:, 2:5]
    assert set(np.unique(onehot)) == {0.0, 1.0} and (onehot.sum(axis=1) == 1).all()
    np.testing.assert_allclose(d.train.X.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(d.train.X.std(axis=0), 1.0, atol=1e-12)
    # deterministic per seed, different across seeds
    again = load_csv(path, target="outcome", sensitive="gender", seed=3)
    np.testing.assert_array_equal(again.train.X, d.train.X)
    other = load_csv(path, target="outcome", sensitive="gender", seed=4)
    assert not np.array_equal(other.train.X, d.train.X)
    assert len(d.info["sha256"]) == 64


def test_load_csv_stratified_and_shuffled(tmp_path):
    # a file sorted by label: the split is stratified and each split comes shuffled
    lines = ["a,g,y"] + [f"{i},{'uv'[i % 2]},{int(i >= 300)}" for i in range(400)]
    path = _write(tmp_path, "\n".join(lines))
    d = load_csv(path, target="y", sensitive="g", seed=0, standardize=False)
    for sp in (d.train, d.val, d.test):
        assert abs(sp.positive_rate - 0.25) < 0.01
        assert abs(sp.group_counts()[0] / len(sp) - 0.5) < 0.02
    assert 0.1 < d.train.head(40).positive_rate < 0.45
    assert not np.all(np.diff(d.train.X[:, 0]) > 0)


def test_load_csv_positive_option(tmp_path):
    lines = ["x,s,label"] + [f"{i},{i % 2},{i % 3}" for i in range(60)]
    path = _write(tmp_path, "\n".join(lines))
    # without positive, three values are three classes (coded by sorted value)
    multi = load_csv(path, target="label", sensitive="s", standardize=False)
    assert multi.n_classes == 3 and multi.label_names == ("0", "1", "2")
    for sp in (multi.train, multi.val, multi.test):
        np.testing.assert_array_equal(sp.y, sp.X[:, 0].astype(int) % 3)
    # an explicit positive value: one-vs-rest; the CLI passes text, which is matched to the integer value
    for positive in (2, "2"):
        d = load_csv(path, target="label", sensitive="s", positive=positive, standardize=False)
        all_y = np.concatenate([d.train.y, d.val.y, d.test.y])
        all_x = np.concatenate([d.train.X[:, 0], d.val.X[:, 0], d.test.X[:, 0]])
        np.testing.assert_array_equal(all_y, (all_x.astype(int) % 3 == 2).astype(int))
        assert d.info["options"]["positive"] == 2
    with pytest.raises(
        FastfairError, match=r"positive label 'maybe' does not occur in target column 'label'"
    ):
        load_csv(path, target="label", sensitive="s", positive="maybe")
    assert load_csv(path, target="label", sensitive="s", positive=0).group_names == ("0", "1")


def test_load_csv_binary_numeric_and_bool_targets(tmp_path):
    path = _write(
        tmp_path, "x,s,y,ok\n" + "\n".join(f"{i},{'ab'[i % 2]},{i % 2},{i % 3 == 0}" for i in range(50))
    )
    d = load_csv(path, target="y", sensitive="s", features=["x"], standardize=False)
    assert d.info["options"]["positive"] == 1
    d = load_csv(path, target="ok", sensitive="s", features=["x"], standardize=False)
    assert d.info["options"]["positive"] is True
    all_y = np.concatenate([d.train.y, d.val.y, d.test.y])
    all_x = np.concatenate([d.train.X[:, 0], d.val.X[:, 0], d.test.X[:, 0]]).astype(int)
    np.testing.assert_array_equal(all_y, (all_x % 3 == 0).astype(int))
    d = load_csv(path, target="ok", sensitive="s", features=["x"], positive="False")
    assert d.info["options"]["positive"] is False


def _csv_rows(n: int = 40) -> list[str]:
    return ["x,z,s,y"] + [f"{i},{i % 5},{'ab'[i % 2]},{int(i % 3 == 0)}" for i in range(n)]


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("", {}, r"data.csv is empty"),
        ("   \n\n", {}, r"data.csv is empty"),
        ("x,s,y\n", {}, r"has a header but no data rows"),
        ("x,s,y\n1,a,0\n2,b,1\n3,a,0,7,8\n", {}, r"malformed CSV data.csv: .*Expected 3 fields"),
        (
            "\n".join(_csv_rows()),
            {"target": "label"},
            r"column\(s\) not found in data.csv: 'label'; available: 'x'",
        ),
        ("\n".join(_csv_rows()), {"features": ["x", "w", "v"]}, r"not found in data.csv: 'w', 'v'"),
        ("\n".join(_csv_rows()), {"features": ["x", "y"]}, r"the target column 'y' cannot also be a feature"),
        ("\n".join(_csv_rows()), {"features": ["s"]}, r"the sensitive column 's' cannot also be a feature"),
        ("\n".join(_csv_rows()), {"features": ["x", "x"]}, r"features lists column\(s\) twice: 'x'"),
        ("\n".join(_csv_rows()), {"features": []}, r"features is empty"),
        ("\n".join(_csv_rows()), {"sensitive": "y"}, r"target and sensitive are the same column 'y'"),
        (
            "x,s,y\n" + "\n".join(f"{i},a,{i % 2}" for i in range(30)),
            {},
            r"sensitive column 's' has a single group",
        ),
        (
            "x,s,y\n" + "\n".join(f"{i},{i % 2},1" for i in range(30)),
            {},
            r"target column 'y' is not binary: it has 1 distinct value \(1\)$",
        ),
        (
            "x,s,y\n1,a,0\n,b,1\n3,a,0\n4,b,1\n",
            {},
            r"feature column 'x' of data.csv has 1 missing \(NaN or empty\) value\(s\)",
        ),
        (
            "x,s,y\n1,a,0\n2,b,\n3,a,0\n4,b,1\n",
            {},
            r"target column 'y' .* missing .*value\(s\), first in data row 2; fill or drop",
        ),
        (
            "x,s,y\n1,a,0\n2,,1\n3,a,0\n4,b,1\n",
            {},
            r"sensitive column 's' .* 1 missing \(NaN or empty\) value",
        ),
        (
            "x,s,y,w\n1,a,0,\n2,b,1,\n3,a,0,\n",
            {},
            r"feature column 'w' of data.csv is empty \(all 3 values NaN/missing\)",
        ),
        (
            "id,s,y\n" + "\n".join(f"user{i},{'ab'[i % 2]},{i % 2}" for i in range(30)),
            {},
            r"feature column 'id' is non-numeric with all 30 values distinct",
        ),
        ("x,s,y\n1,a,0\n2,b,1\n3,a,1\n4,b,0\n", {}, r"too few rows \(4\) to split"),
        ("x,s,y\ninf,a,0\n2,b,1\n3,a,1\n4,b,0\n", {}, r"feature column 'x' has infinite values"),
        (
            "x,s,y\n" + "\n".join(f"{'oops' if i == 7 else i},{'ab'[i % 2]},{i % 2}" for i in range(30)),
            {},
            r"feature column 'x' is numeric except for 1 value\(s\), e.g. 'oops' in data row 8",
        ),
    ],
)
def test_load_csv_bad_inputs(tmp_path, text, kwargs, match):
    path = _write(tmp_path, text)
    args = {"target": "y", "sensitive": "s"}
    args.update(kwargs)
    with pytest.raises(FastfairError, match=match) as e:
        load_csv(path, **args)
    assert "\n" not in str(e.value)


def test_load_csv_bad_paths_and_arguments(tmp_path):
    with pytest.raises(FastfairError, match=r"file not found: .*nope.csv"):
        load_csv(tmp_path / "nope.csv", target="y", sensitive="s")
    with pytest.raises(FastfairError, match=r"not a file"):
        load_csv(tmp_path, target="y", sensitive="s")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"x,s,y\n\xff\xfe\x00\x81,a,1\n")
    with pytest.raises(FastfairError, match=r"binary.csv"):
        load_csv(binary, target="y", sensitive="s")
    path = _write(tmp_path, "\n".join(_csv_rows()))
    with pytest.raises(FastfairError, match=r"val_fraction \+ test_fraction must be below 1"):
        load_csv(path, target="y", sensitive="s", val_fraction=0.6, test_fraction=0.4)
    with pytest.raises(FastfairError, match=r"test_fraction must be a number in \(0, 1\)"):
        load_csv(path, target="y", sensitive="s", test_fraction=0)
    with pytest.raises(FastfairError, match=r"features must be a list of column names"):
        load_csv(path, target="y", sensitive="s", features="x")
    with pytest.raises(FastfairError, match=r"seed must be"):
        load_csv(path, target="y", sensitive="s", seed=-3)


def test_load_csv_numeric_sensitive_and_many_groups(tmp_path):
    lines = ["x,grp,y"] + [f"{i},{[10, 2, 33][i % 3]},{i % 2}" for i in range(90)]
    d = load_csv(_write(tmp_path, "\n".join(lines)), target="y", sensitive="grp")
    assert d.group_names == ("2", "10", "33")  # sorted by value, named by str()
    assert d.n_groups == 3 and all(c > 0 for c in d.val.group_counts())


def test_load_csv_unknown_option(tmp_path):
    path = _write(tmp_path, "\n".join(_csv_rows()))
    with pytest.raises(
        FastfairError, match=r"unknown option\(s\) 'balanced' for a CSV file; choices: target"
    ):
        load_csv(path, target="y", sensitive="s", balanced=True)


# ------------------------------------------------------------------------------------- intersectional groups
def test_csv_intersectional_groups_are_the_combinations_of_the_columns(tmp_path):
    """Oracle: pandas' groupby over the two columns gives the same groups, sizes and order."""
    rng = np.random.default_rng(2)
    n = 300
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "sex": rng.choice(["M", "F"], n),
            "race": rng.choice(["W", "B", "AB"], n),
            "y": rng.integers(0, 2, n),
        }
    )
    frame.loc[(frame["sex"] == "M") & (frame["race"] == "B"), "race"] = "W"  # an empty combination
    path = tmp_path / "groups.csv"
    frame.to_csv(path, index=False)
    d = load_csv(path, target="y", sensitive=["sex", "race"])
    sizes = frame.groupby(["sex", "race"]).size()  # sorted by sex, then race; only the combinations present
    assert d.group_names == tuple(f"{a}|{b}" for a, b in sizes.index) == ("F|AB", "F|B", "F|W", "M|AB", "M|W")
    counts = sum(sp.group_counts() for sp in (d.train, d.val, d.test))
    assert counts.tolist() == sizes.tolist()
    assert d.feature_names == ("x",)  # both sensitive columns are left out of the features
    assert d.info["options"]["sensitive"] == ["sex", "race"]
    # each row's group is its own combination (rows of the file via row_index)
    for name in ("train", "val", "test"):
        sp, rows = d.split(name), d.info["row_index"][name]
        expected = (frame["sex"] + "|" + frame["race"]).to_numpy()[rows]
        assert np.array_equal(np.asarray(d.group_names)[sp.s], expected)


def test_adult_sex_and_race_groups_are_the_intersections():
    d = load("adult", sensitive=["sex", "race"])
    assert d.group_names == ("Female|non-white", "Female|white", "Male|non-white", "Male|white")
    sex, race = load("adult", sensitive="sex"), load("adult", sensitive="race")
    # the test rows are adult.test in file order whatever the groups: each code combines the single groupings
    assert np.array_equal(d.test.s, 2 * sex.test.s + race.test.s)
    # train + val is all of cleaned adult.data whatever the stratification: women per race add up to the women
    counts = d.train.group_counts() + d.val.group_counts()
    women = int((sex.train.s == 0).sum() + (sex.val.s == 0).sum())
    assert counts[0] + counts[1] == women and counts.sum() == len(sex.train) + len(sex.val)
    assert load("adult", sensitive=["sex"]).group_names == ("Female", "Male")
