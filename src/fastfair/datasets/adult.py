"""Adult (UCI Census Income): the original ``adult.data`` / ``adult.test``, parsed carefully.

Parsing (see ``data/PROVENANCE.md``):

* Neither file has a header row; every line of ``adult.data`` is a record (the first one is the 39-year-old
  State-gov employee). ``adult.test`` starts with the line ``|1x3 Cross validator``, which is skipped (only if
  present). Blank lines are ignored.
* Fields are separated by a comma and a space; ``?`` marks a missing value (only in workclass, occupation and
  native-country).
* Labels: ``y = 1`` for income ``>50K`` (the positive, favourable outcome), ``y = 0`` for ``<=50K``; the
  trailing ``.`` of the labels in ``adult.test`` is removed.

Rows with missing values: ``missing="any"`` (default) drops every record with a ``?`` in any column, which
gives the standard cleaned Adult: 30,162 records from ``adult.data`` and 15,060 from ``adult.test`` (45,222 in
all), the same rows whatever features are used. ``missing="used"`` drops only records with a ``?`` in a column
actually used (features or sensitive attribute), e.g. none at all with the default numeric features.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FastfairError, require
from ..metrics import intersect_codes
from ._bundled import data_dir, file_record, read_bundled
from ._common import check_bool, check_fraction, make_dataset, strata_codes, stratified_split
from ._containers import Dataset

COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
CATEGORICAL = (
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)
#: The paper's (and the reference's) five continuous features.
DEFAULT_FEATURES = ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
#: ``features="all"``: every attribute except fnlwgt (a census sampling weight, not a property of the person),
#: education (the same information as education-num) and the column used as the sensitive attribute.
ALL_FEATURES = (*DEFAULT_FEATURES, *(c for c in CATEGORICAL if c != "education"))
SENSITIVE = ("sex", "race", "race_all")
RACES = ("Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White")
LABELS = {"<=50K": 0, ">50K": 1}
#: (negative, positive): income ``>50K`` is the positive, favourable outcome.
LABEL_NAMES = ("<=50K", ">50K")

DEFAULTS: dict[str, Any] = {
    "features": "default",
    "sensitive": "sex",
    "val_fraction": 0.2,
    "missing": "any",
    "standardize": True,
}


def load_adult(seed: int, options: dict[str, Any]) -> Dataset:
    """Adult with the official test file as test and a seeded stratified validation split carved from
    ``adult.data``. Train and validation rows keep the order of ``adult.data``; test keeps ``adult.test``'s.

    Options: ``features`` (``"default"``, ``"all"`` or a list of Adult column names; categoricals are one-hot
    encoded with categories fitted on TRAIN), ``sensitive`` (``"sex"`` → groups (Female, Male); ``"race"``
    → (non-white, white); ``"race_all"`` → the five race groups in alphabetical order; a list such as
    ``["sex", "race"]`` → the intersectional groups, e.g. ``"Female|non-white"``, in lexicographic order),
    ``val_fraction``
    (0.2, stratified by (y, s)), ``missing`` (``"any"`` or ``"used"``, see the module docstring),
    ``standardize`` (True).
    """
    sensitive = _check_sensitive(options["sensitive"])
    attributes = [sensitive] if isinstance(sensitive, str) else sensitive
    sens_cols = ["sex" if a == "sex" else "race" for a in attributes]
    features = _resolve_features(options["features"], sens_cols)
    val_fraction = check_fraction("val_fraction", options["val_fraction"])
    missing = options["missing"]
    require(missing in ("any", "used"), f"missing must be 'any' or 'used', got {missing!r}")
    standardize = check_bool("standardize", options["standardize"])

    pool, test = _adult_frames(str(data_dir()))
    n_pool_raw, n_test_raw = len(pool), len(test)
    check_cols = list(COLUMNS) if missing == "any" else [*features, *sens_cols]
    pool = pool.loc[pool[check_cols].notna().all(axis=1)]
    test = test.loc[test[check_cols].notna().all(axis=1)]

    y_pool, s_pool, y_test, s_test, groups = _labels_and_groups(pool, test, attributes)
    rng = np.random.default_rng(seed)
    train_idx, val_idx = stratified_split(strata_codes(y_pool, s_pool), [val_fraction], rng)
    train, val = pool.iloc[train_idx], pool.iloc[val_idx]

    encoder = _OneHot(train, features)
    info = {
        "source": "UCI Adult (adult.data, adult.test), bundled",
        "files": {name: file_record(name)["sha256"] for name in ("adult.data", "adult.test")},
        "seed": seed,
        "options": {
            "features": list(features),
            "sensitive": sensitive if isinstance(sensitive, str) else list(sensitive),
            "val_fraction": val_fraction,
            "missing": missing,
            "standardize": standardize,
        },
        "label": "y = 1 if income >50K",
        "rows": {
            "adult.data": n_pool_raw,
            "adult.test": n_test_raw,
            "adult.data after dropping missing": len(pool),
            "adult.test after dropping missing": len(test),
        },
        "row_order": "train and val in adult.data order, test in adult.test order",
    }
    return make_dataset(
        "adult",
        {
            "train": (encoder(train), y_pool[train_idx], s_pool[train_idx]),
            "val": (encoder(val), y_pool[val_idx], s_pool[val_idx]),
            "test": (encoder(test), y_test, s_test),
        },
        feature_names=encoder.names,
        label_names=LABEL_NAMES,
        group_names=groups,
        standardize=standardize,
        info=info,
    )


@lru_cache(maxsize=4)
def _adult_frames(directory: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parsed ``adult.data`` and ``adult.test`` (cached per data directory); '?' → missing, labels → 0/1."""
    del directory  # part of the cache key only; read_bundled resolves the directory itself
    return _parse(read_bundled("adult.data"), "adult.data"), _parse(read_bundled("adult.test"), "adult.test")


def _parse(raw: bytes, name: str) -> pd.DataFrame:
    text = raw.decode("ascii")
    if text.startswith("|"):  # adult.test: '|1x3 Cross validator'
        text = text.split("\n", 1)[1]
    frame = pd.read_csv(
        io.StringIO(text),
        header=None,
        names=list(COLUMNS),
        sep=",",
        skipinitialspace=True,
        na_values=["?"],
        keep_default_na=False,
        skip_blank_lines=True,
        dtype={c: np.int64 for c in NUMERIC} | {c: object for c in (*CATEGORICAL, "income")},
    )
    labels = frame["income"].str.rstrip(".").map(LABELS)
    if labels.isna().any():
        bad = frame.loc[labels.isna(), "income"].iloc[0]
        raise FastfairError(f"unexpected income label {bad!r} in bundled {name}")
    frame["income"] = labels.astype(np.int64)
    for col in CATEGORICAL:  # categorical dtype: fast missing-value checks and one-hot encoding
        frame[col] = frame[col].astype("category")
    frame.index = pd.RangeIndex(len(frame))
    return frame


def _check_sensitive(sensitive: Any) -> str | list[str]:
    """One attribute of :data:`SENSITIVE`, or a list of several (intersectional groups); race and race_all are
    two groupings of the same column and do not go together."""
    if isinstance(sensitive, (list, tuple)) and len(sensitive) == 1:
        sensitive = sensitive[0]
    choices = ", ".join(SENSITIVE)
    if isinstance(sensitive, str):
        require(sensitive in SENSITIVE, f"unknown sensitive attribute {sensitive!r} for adult; choose one of {choices}")
        return sensitive
    require(
        isinstance(sensitive, (list, tuple)) and len(sensitive) > 1 and all(isinstance(a, str) for a in sensitive),
        f"sensitive must be one of {choices}, or a list of them, got {sensitive!r}",
    )
    for attribute in sensitive:
        require(attribute in SENSITIVE, f"unknown sensitive attribute {attribute!r} for adult; choose from {choices}")
    require(len(set(sensitive)) == len(sensitive), f"sensitive lists an attribute twice: {list(sensitive)!r}")
    require(
        not {"race", "race_all"} <= set(sensitive),
        "race and race_all group the same column; give one of them with sex",
    )
    return list(sensitive)


def _labels_and_groups(
    pool: pd.DataFrame, test: pd.DataFrame, attributes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Labels and group codes of the pool (adult.data) and test rows, and the group names. Several attributes
    give the intersectional groups of both files together (:func:`fastfair.metrics.intersect_codes`), so that a
    code means the same group in every split."""
    y_pool, y_test = pool["income"].to_numpy(dtype=np.int64), test["income"].to_numpy(dtype=np.int64)
    if len(attributes) == 1:
        _, s_pool, groups = _labels(pool, attributes[0])
        _, s_test, _ = _labels(test, attributes[0])
        return y_pool, s_pool, y_test, s_test, groups
    codes, labels = [], []
    for attribute in attributes:
        _, a_pool, names = _labels(pool, attribute)
        _, a_test, _ = _labels(test, attribute)
        codes.append(np.concatenate([a_pool, a_test]))
        labels.append(names)
    combined, groups = intersect_codes(codes, labels, columns=attributes)
    combined = combined.astype(np.int64)
    return y_pool, combined[: len(pool)], y_test, combined[len(pool) :], groups


def _labels(frame: pd.DataFrame, sensitive: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    y = frame["income"].to_numpy(dtype=np.int64)
    if sensitive == "sex":
        groups: tuple[str, ...] = ("Female", "Male")
        s = (frame["sex"] == "Male").to_numpy(dtype=np.int64)
        require(bool(frame["sex"].isin(groups).all()), "unexpected value in Adult's sex column")
    elif sensitive == "race":
        groups = ("non-white", "white")
        s = (frame["race"] == "White").to_numpy(dtype=np.int64)
    else:
        groups = RACES
        codes = pd.Categorical(frame["race"], categories=list(RACES)).codes
        require(bool((codes >= 0).all()), "unexpected value in Adult's race column")
        s = codes.astype(np.int64)
    return y, s, groups


def _resolve_features(features: Any, sens_cols: Sequence[str]) -> tuple[str, ...]:
    if isinstance(features, str):
        require(
            features in ("default", "all"),
            f"features must be 'default', 'all' or a list of Adult columns, got {features!r}",
        )
        if features == "default":
            return DEFAULT_FEATURES
        return tuple(c for c in ALL_FEATURES if c not in sens_cols)
    require(
        isinstance(features, Sequence) and len(features) > 0 and all(isinstance(f, str) for f in features),
        f"features must be 'default', 'all' or a non-empty list of Adult columns, got {features!r}",
    )
    usable = [c for c in COLUMNS if c != "income"]
    unknown = [f for f in features if f not in usable]
    require(
        not unknown, f"unknown Adult column(s) {', '.join(map(repr, unknown))}; choices: {', '.join(usable)}"
    )
    require(len(set(features)) == len(features), "features lists a column twice")
    for col in sens_cols:
        require(col not in features, f"the sensitive column {col!r} cannot also be a feature")
    return tuple(features)


class _OneHot:
    """Numeric columns as they are; categorical columns one-hot, with categories fitted on the training rows.

    A category that does not occur in training gets all-zero indicators in val/test, so the columns agree.
    """

    def __init__(self, train: pd.DataFrame, features: Sequence[str]) -> None:
        self.features = tuple(features)
        self.categories: dict[str, list[str]] = {}
        names: list[str] = []
        for col in self.features:
            if col in NUMERIC:
                names.append(col)
            else:
                cats = sorted(str(c) for c in train[col].dropna().unique())
                self.categories[col] = cats
                names.extend(f"{col}={c}" for c in cats)
        self.names = tuple(names)

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        blocks = []
        for col in self.features:
            if col in NUMERIC:
                blocks.append(frame[col].to_numpy(dtype=np.float64).reshape(-1, 1))
            else:
                cats = self.categories[col]
                column = frame[col].cat
                lookup = pd.Index(cats).get_indexer(column.categories.astype(str))  # -1: not seen in training
                codes = column.codes.to_numpy()
                codes = np.where(codes >= 0, lookup[codes], -1)  # -1 (missing or unseen) -> all-zero row
                onehot = np.zeros((len(frame), len(cats) + 1))
                onehot[np.arange(len(frame)), codes] = 1.0
                blocks.append(onehot[:, : len(cats)])
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0))
