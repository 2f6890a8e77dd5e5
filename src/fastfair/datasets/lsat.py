"""LSAT: the LSAC National Longitudinal Bar Passage Study as prepared by Kusner et al. (2017), ``law.csv``.

Features LSAT score and undergraduate GPA; label ``y = 1`` for passing the first year (column ``PF_1``; the
paper used the bar-passage label of the same study, which this file does not contain); sensitive attribute
race, white (``s = 1``) vs non-white (``s = 0``), from ``Race_White``. 21,791 rows, no missing values.

Split: seeded, stratified by (y, s), 60 / 20 / 20 into train / validation / test; each split keeps the row
order of ``law.csv``.

``balanced=True`` mirrors the paper's protocol (reference ``fastNfair/data/lsat.py``: every (y, s) cell of
the training set gets the same number of rows, that of the smallest cell): the training split is subsampled,
seeded, to equal (y, s) cells. Validation and test keep their natural proportions and are the same rows as
with ``balanced=False``. (The reference also used its training rows as its test set; here test is always
disjoint.)
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ..errors import require
from ._bundled import data_dir, file_record, read_bundled
from ._common import (
    balance_cells,
    check_bool,
    check_split_fractions,
    make_dataset,
    strata_codes,
    stratified_split,
)
from ._containers import Dataset

FEATURES = ("LSAT", "UGPA")
GROUP_NAMES = ("non-white", "white")
#: (negative, positive): failing (``PF_0``) and passing (``PF_1``) the first year; passing is positive.
LABEL_NAMES = ("fail", "pass")

DEFAULTS: dict[str, Any] = {
    "balanced": False,
    "val_fraction": 0.2,
    "test_fraction": 0.2,
    "standardize": True,
}


def load_lsat(seed: int, options: dict[str, Any]) -> Dataset:
    """LSAT (see the module docstring). Options: ``balanced`` (False), ``val_fraction`` (0.2),
    ``test_fraction`` (0.2), ``standardize`` (True)."""
    balanced = check_bool("balanced", options["balanced"])
    val_fraction, test_fraction = check_split_fractions(options["val_fraction"], options["test_fraction"])
    standardize = check_bool("standardize", options["standardize"])

    X, y, s = _law_arrays(str(data_dir()))
    rng = np.random.default_rng(seed)
    train_idx, val_idx, test_idx = stratified_split(strata_codes(y, s), [val_fraction, test_fraction], rng)
    n_train_unbalanced = len(train_idx)
    if balanced:
        train_idx = train_idx[balance_cells(y[train_idx], s[train_idx], rng)]
    info = {
        "source": "LSAC National Longitudinal Bar Passage Study, prepared by Kusner et al. (2017); law.csv",
        "files": {"law.csv": file_record("law.csv")["sha256"]},
        "seed": seed,
        "options": {
            "balanced": balanced,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "standardize": standardize,
        },
        "label": "y = 1 if the student passed the first year (PF_1)",
        "sensitive": "s = 1 if Race_White",
        "rows": {"law.csv": len(y), "train before balancing": n_train_unbalanced},
        "row_order": "each split in law.csv order",
    }
    return make_dataset(
        "lsat",
        {
            "train": (X[train_idx], y[train_idx], s[train_idx]),
            "val": (X[val_idx], y[val_idx], s[val_idx]),
            "test": (X[test_idx], y[test_idx], s[test_idx]),
        },
        feature_names=FEATURES,
        label_names=LABEL_NAMES,
        group_names=GROUP_NAMES,
        standardize=standardize,
        info=info,
    )


@lru_cache(maxsize=4)
def _law_arrays(directory: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw (X, y, s) of law.csv (cached per data directory; read-only arrays)."""
    del directory  # cache key only
    frame = pd.read_csv(io.BytesIO(read_bundled("law.csv")))
    require(
        bool(((frame["PF_0"] + frame["PF_1"]) == 1).all()) and frame[list(FEATURES)].notna().all().all(),
        "unexpected contents in bundled law.csv",
    )
    X = frame[list(FEATURES)].to_numpy(dtype=np.float64, copy=True)
    y = frame["PF_1"].to_numpy(dtype=np.int64, copy=True)
    s = frame["Race_White"].to_numpy(dtype=np.int64, copy=True)
    for a in (X, y, s):
        a.flags.writeable = False
    return X, y, s
