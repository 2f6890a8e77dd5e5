"""The colored-digits benchmark, checked against scikit-learn's digits rebuilt independently."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_digits

from fastfair import datasets
from fastfair.datasets import colored_digits
from fastfair.errors import FastfairError

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    return bunch.data.astype(np.int64), bunch.target.astype(np.int64)


def _channels(data, split):
    """Raw (unstandardised) features of a split as (n, K, 64) pixel values 0..16."""
    sp = data.split(split)
    raw = data.inverse_transform(sp.X) if data.standardized else sp.X
    return np.rint(raw * 16).astype(np.int64).reshape(len(sp), data.n_groups, 64)


def test_registered_with_its_options():
    assert "colored_digits" in datasets.DATASETS
    assert datasets.dataset_options("colored_digits") == {
        "classes": (1, 8, 9),
        "n_colors": 2,
        "correlation": 0.9,
        "test_correlation": 0.1,
        "label_noise": 0.0,
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        "standardize": True,
    }


def test_default_dataset_is_the_chosen_digits_coloured_one_channel_each(digits):
    pixels, target = digits
    data = datasets.load("colored_digits", seed=0)
    assert data.n_classes == 3 and data.label_names == ("1", "8", "9")
    assert data.group_names == ("red", "green") and data.n_features == 128
    assert data.feature_names[0] == "red_r0c0" and data.feature_names[64] == "green_r0c0"
    seen: list[tuple[int, tuple[int, ...]]] = []
    for split in SPLITS:
        sp = data.split(split)
        z = _channels(data, split)
        # the image lies in the channel of its colour; the other channel is all zero
        other = 1 - sp.s
        assert not z[np.arange(len(sp)), other].any()
        images = z[np.arange(len(sp)), sp.s]
        seen += [(int(d), tuple(img)) for d, img in zip(np.array([1, 8, 9])[sp.y], images.tolist(), strict=True)]
    keep = np.isin(target, [1, 8, 9])
    expected = [(int(d), tuple(img)) for d, img in zip(target[keep], pixels[keep].tolist(), strict=True)]
    assert Counter(seen) == Counter(expected)  # every image of the three digits once, with its own label


@pytest.mark.parametrize(
    ("n_colors", "classes", "rho", "rho_test"), [(2, (1, 8, 9), 0.9, 0.1), (3, (0, 3, 5, 7), 0.8, 0.5)]
)
def test_each_class_gets_its_own_colour_at_the_stated_rate(n_colors, classes, rho, rho_test):
    data = datasets.load(
        "colored_digits", seed=3, classes=list(classes), n_colors=n_colors, correlation=rho, test_correlation=rho_test
    )
    assert data.n_classes == len(classes) and data.n_groups == n_colors
    for split, corr in (("train", rho), ("val", rho), ("test", rho_test)):
        sp = data.split(split)
        for c in range(len(classes)):
            s = sp.s[sp.y == c]
            own = int(np.sum(s == c % n_colors))
            assert own == int(np.floor(corr * len(s) + 0.5))
            counts = np.bincount(s, minlength=n_colors)
            others = np.delete(counts, c % n_colors)
            assert others.max() - others.min() <= 1  # the rest dealt evenly to the other colours
    assert data.info["own_color_rate"]["test"] == pytest.approx(
        np.mean(data.test.s == data.test.y % n_colors), abs=0
    )


def test_split_is_stratified_by_class_and_features_standardised_on_train():
    data = datasets.load("colored_digits", seed=0)
    n = {split: np.bincount(data.split(split).y) for split in SPLITS}
    total = n["train"] + n["val"] + n["test"]
    np.testing.assert_array_equal(total, [182, 174, 180])
    np.testing.assert_array_equal(n["val"], np.floor(0.2 * total + 0.5))
    np.testing.assert_allclose(data.train.X.mean(axis=0), 0.0, atol=1e-12)
    used = data.train.X.std(axis=0) > 0
    np.testing.assert_allclose(data.train.X.std(axis=0)[used], 1.0, rtol=1e-12)
    raw = datasets.load("colored_digits", seed=0, standardize=False)
    assert raw.train.X.min() == 0.0 and raw.train.X.max() == 1.0


def test_same_seed_same_data_other_seed_other_data():
    a, b = datasets.load("colored_digits", seed=5), datasets.load("colored_digits", seed=5)
    c = datasets.load("colored_digits", seed=6)
    for split in SPLITS:
        np.testing.assert_array_equal(a.split(split).X, b.split(split).X)
        np.testing.assert_array_equal(a.split(split).s, b.split(split).s)
    assert not np.array_equal(a.train.s, c.train.s)


def test_label_noise_replaces_the_stated_number_of_labels_by_other_classes(digits):
    pixels, target = digits
    data = datasets.load("colored_digits", seed=2, label_noise=0.25, standardize=False)
    lookup = {}
    for d, img in zip(target, pixels.tolist(), strict=True):
        lookup.setdefault(tuple(img), set()).add(int(d))
    classes = np.array([1, 8, 9])
    flipped = total = 0
    for split in SPLITS:
        sp = data.split(split)
        z = _channels(data, split)
        for label, img in zip(classes[sp.y], z[np.arange(len(sp)), sp.s].tolist(), strict=True):
            flipped += int(label) not in lookup[tuple(img)]
            total += 1
    assert total == 536 and flipped == int(np.floor(0.25 * 536 + 0.5))


def test_provenance_records_sklearn_version_and_an_independent_checksum(digits):
    pixels, target = digits
    expected = hashlib.sha256(pixels.astype(np.uint8).tobytes() + target.astype(np.uint8).tobytes()).hexdigest()
    data = datasets.load("colored_digits", seed=0)
    assert data.info["digits_sha256"] == expected == colored_digits.DIGITS_SHA256
    assert data.info["sklearn_version"] == sklearn.__version__
    assert data.info["seed"] == 0 and data.info["options"]["classes"] == [1, 8, 9]
    assert data.info["label_names"] == ["1", "8", "9"]


def test_changed_digits_are_refused(monkeypatch):
    bunch = load_digits()
    bunch.data = bunch.data.copy()
    bunch.data[0, 10] += 1
    monkeypatch.setattr("sklearn.datasets.load_digits", lambda: bunch)
    colored_digits._digits.cache_clear()
    try:
        with pytest.raises(FastfairError, match=r"bundled digits differ .* sha256"):
            datasets.load("colored_digits", seed=0)
    finally:
        colored_digits._digits.cache_clear()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"classes": [1, 1, 2]}, r"classes lists a digit twice"),
        ({"classes": [1, 10]}, r"classes must be a list of digits 0\.\.9"),
        ({"classes": "189"}, r"classes must be a list of digits"),
        ({"classes": [4]}, r"classes needs at least 2 digits"),
        ({"n_colors": 4}, r"n_colors must be 2 or 3"),
        ({"n_colors": 3, "classes": [1, 2]}, r"n_colors=3 needs at least as many classes \(2 given\)"),
        ({"correlation": 1.5}, r"correlation must be a number in \[0, 1\]"),
        ({"test_correlation": -0.1}, r"test_correlation must be a number in \[0, 1\]"),
        ({"label_noise": "lots"}, r"label_noise must be a number"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, r"val_fraction \+ test_fraction must be below 1"),
        ({"colour": 2}, r"unknown option 'colour' for dataset 'colored_digits'"),
    ],
)
def test_bad_options_give_one_line_errors(options, match):
    with pytest.raises(FastfairError, match=match) as exc:
        datasets.load("colored_digits", seed=0, **options)
    assert "\n" not in str(exc.value)


def test_a_colour_left_without_rows_is_refused():
    # a validation fraction too small to give any class a row leaves every colour out of the validation split
    with pytest.raises(FastfairError, match=r"group 'red' has no rows in the val split"):
        datasets.load("colored_digits", seed=0, val_fraction=0.001)


def test_binary_choice_of_two_digits_is_a_binary_dataset():
    data = datasets.load("colored_digits", seed=0, classes=[3, 8])
    assert data.n_classes == 2 and data.label_names == ("3", "8")
    assert set(np.unique(data.train.y)) == {0, 1}
