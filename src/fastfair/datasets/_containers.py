"""The containers every loader returns: :class:`Split` (a block of rows), :class:`Dataset` (three splits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FastfairError, require
from ..vocabulary import SPLITS
from ._scaling import apply_standardization

SPLIT_NAMES = SPLITS  # the vocabulary's splits, under the name the datasets package has always exported
#: Largest magnitude a stored feature may have: the training code may run in float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class Split:
    """One block of rows: features ``X``, class labels ``y`` and group codes ``s``.

    Attributes
    ----------
    X : np.ndarray
        ``(n, d)`` float64 features (already standardised if the dataset is).
    y : np.ndarray
        ``(n,)`` int64 class codes ``0 .. C-1``. Binary data (``C = 2``) has labels in ``{0, 1}``, 1 the positive
        ("favourable") outcome; multiclass data (``C >= 3``) codes class ``c`` as ``c`` (its name is
        ``Dataset.label_names[c]``). A split on its own only checks that the codes are non-negative integers;
        :class:`Dataset` checks them against its ``C`` classes.
    s : np.ndarray
        ``(n,)`` int64 group codes in ``0 .. k-1``; code ``j`` is the group named ``group_names[j]``.
    feature_names : tuple[str, ...]
        One name per column of ``X``.
    group_names : tuple[str, ...]
        One name per group code (``k`` names); a split on its own need not contain every group (a
        :class:`Dataset` requires every group in each of its three splits).

    The arrays are converted to the dtypes above on construction and checked for consistent shapes.
    """

    X: np.ndarray
    y: np.ndarray
    s: np.ndarray
    feature_names: tuple[str, ...]
    group_names: tuple[str, ...]

    def __post_init__(self) -> None:
        X = np.asarray(self.X, dtype=np.float64)
        y = np.asarray(self.y)
        s = np.asarray(self.s)
        require(X.ndim == 2, f"Split.X must be 2-D (n, d), got shape {X.shape}")
        n, d = X.shape
        require(y.shape == (n,), f"Split.y must have shape ({n},) to match X, got {y.shape}")
        require(s.shape == (n,), f"Split.s must have shape ({n},) to match X, got {s.shape}")
        y = _as_int64(y, "Split.y")
        s = _as_int64(s, "Split.s")
        feature_names = tuple(str(f) for f in self.feature_names)
        group_names = tuple(str(g) for g in self.group_names)
        require(
            len(feature_names) == d, f"Split has {d} feature columns but {len(feature_names)} feature names"
        )
        require(len(group_names) >= 1, "Split needs at least one group name")
        if n:
            low = int(y.min())
            require(low >= 0, f"Split.y must contain class codes 0, 1, ... (non-negative integers), found {low}")
            require(
                int(s.min()) >= 0 and int(s.max()) < len(group_names),
                f"Split.s must contain codes in 0..{len(group_names) - 1} (one per group name)",
            )
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "s", s)
        object.__setattr__(self, "feature_names", feature_names)
        object.__setattr__(self, "group_names", group_names)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __repr__(self) -> str:
        labels = (
            f"class_counts={self.class_counts().tolist()}"
            if len(self) and int(self.y.max()) > 1
            else f"positive_rate={self.positive_rate:.3f}"
        )
        return (
            f"Split(n={len(self)}, n_features={self.n_features}, {labels}, "
            f"group_counts={dict(zip(self.group_names, self.group_counts().tolist(), strict=True))})"
        )

    @property
    def n_features(self) -> int:
        """Number of feature columns ``d``."""
        return int(self.X.shape[1])

    @property
    def n_groups(self) -> int:
        """Number of groups ``k`` (the length of ``group_names``), whether or not all occur in this split."""
        return len(self.group_names)

    @property
    def positive_rate(self) -> float:
        """Fraction of rows with ``y == 1``, the positive rate of binary data (NaN for an empty split); see
        :meth:`class_counts` for ``C >= 3`` classes."""
        return float(self.y.mean()) if len(self) else float("nan")

    def class_counts(self, n_classes: int | None = None) -> np.ndarray:
        """Rows per class code, ``(C,)`` int64, with ``C = max(n_classes, max(y) + 1, 2)``."""
        top = int(self.y.max()) + 1 if len(self) else 0
        return np.bincount(self.y, minlength=max(int(n_classes or 0), top, 2)).astype(np.int64)

    def group_counts(self) -> np.ndarray:
        """Rows per group code, ``(k,)`` int64."""
        return np.bincount(self.s, minlength=self.n_groups).astype(np.int64)

    def subset(self, index: Any) -> Split:
        """The rows picked by ``index`` (integer positions, a boolean mask of length ``n``, or a slice)."""
        if isinstance(index, slice):
            rows: Any = index
        else:
            rows = np.asarray(index)
            if rows.dtype == bool:
                require(
                    rows.shape == (len(self),),
                    f"boolean index must have shape ({len(self)},), got {rows.shape}",
                )
            elif rows.size == 0:
                rows = rows.astype(np.int64)
            else:
                require(
                    np.issubdtype(rows.dtype, np.integer), "index must be integers, a boolean mask or a slice"
                )
        try:
            return Split(self.X[rows], self.y[rows], self.s[rows], self.feature_names, self.group_names)
        except IndexError as exc:
            raise FastfairError(f"index out of range for a split of {len(self)} rows") from exc

    def head(self, n: int) -> Split:
        """The first ``n`` rows (all of them if ``n`` exceeds the length), as a new :class:`Split`."""
        require(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0,
            f"head(n) needs a non-negative integer, got {n!r}",
        )
        return self.subset(slice(0, int(n)))


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train, validation and test :class:`Split` of one dataset, plus how the features were standardised.

    Attributes
    ----------
    name : str
        Dataset name (``"adult"``, ``"lsat"``, ``"unfair2d"``, ``"colored_digits"`` or ``"csv:<file>"``).
    train, val, test : Split
        The three splits. They share feature and group names.
    mean, scale : np.ndarray
        ``(d,)`` standardisation statistics, computed from the *training* split only:
        stored features are ``(raw - mean) / scale``. Identity (zeros, ones) if not standardised.
    standardized : bool
        Whether the features were standardised.
    info : dict
        Provenance and the resolved options (source files and checksums, seed, row counts, ...); its
        ``"label_names"`` entry repeats :attr:`label_names` as a list.
    label_names : tuple[str, ...]
        One name per class code, ``C >= 2`` different names (:attr:`n_classes`). Binary data: ``(negative,
        positive)``, the text of the outcome coded ``y = 0`` and of the one coded ``y = 1`` (e.g.
        ``("<=50K", ">50K")`` for Adult). Multiclass data (``C >= 3``): ``label_names[c]`` names class ``c``.

    Checked on construction, so that whatever is computed from a Dataset later cannot fail on its contents:

    * every group of ``group_names`` has at least one row in each of train, val and test (per-group metrics
      and fairness gaps are computed on every split);
    * every feature value is finite and at most float32's largest value (about 3.4e38) in magnitude, since
      models may be trained in float32;
    * every label code of every split is below :attr:`n_classes` (a split need not hold every class).
    """

    name: str
    train: Split
    val: Split
    test: Split
    mean: np.ndarray
    scale: np.ndarray
    standardized: bool
    info: dict[str, Any] = field(default_factory=dict)
    label_names: tuple[str, ...] = ("0", "1")

    def __post_init__(self) -> None:
        for other in (self.val, self.test):
            require(
                other.feature_names == self.train.feature_names
                and other.group_names == self.train.group_names,
                "all splits of a Dataset must share feature and group names",
            )
        d = self.train.n_features
        mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        scale = np.asarray(self.scale, dtype=np.float64).reshape(-1)
        require(mean.shape == (d,) and scale.shape == (d,), f"Dataset mean and scale must have shape ({d},)")
        labels = self.label_names
        require(
            isinstance(labels, (tuple, list))
            and len(labels) >= 2
            and len({str(v) for v in labels}) == len(labels),
            "label_names must be two or more different names, one per class code ((negative, positive) for "
            f"binary data), got {labels!r}",
        )
        labels = tuple(str(v) for v in labels)
        for name in SPLIT_NAMES:
            _check_groups_present(self.split(name), name)
            _check_features_representable(self.split(name), name, bool(self.standardized))
            _check_labels_fit(self.split(name), name, labels)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "label_names", labels)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, "
            f"features={list(self.feature_names)}, groups={list(self.group_names)}, "
            f"standardized={self.standardized})"
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the feature columns."""
        return self.train.feature_names

    @property
    def group_names(self) -> tuple[str, ...]:
        """Names of the groups, indexed by group code."""
        return self.train.group_names

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return self.train.n_features

    @property
    def n_groups(self) -> int:
        """Number of groups."""
        return self.train.n_groups

    @property
    def n_classes(self) -> int:
        """Number of classes ``C`` (the length of ``label_names``): 2 for binary data, ``C >= 3`` multiclass."""
        return len(self.label_names)

    def split(self, name: str) -> Split:
        """The split called ``name``: ``'train'``, ``'val'`` or ``'test'``."""
        require(name in SPLIT_NAMES, f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)

    def transform(self, X_raw: Any) -> np.ndarray:
        """Standardise raw features the way the stored splits were: ``(X_raw - mean) / scale``."""
        X = np.asarray(X_raw, dtype=np.float64)
        require(X.ndim == 2 and X.shape[1] == self.n_features, f"expected an (n, {self.n_features}) array")
        return apply_standardization(X, self.mean, self.scale)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Map stored (standardised) features back to raw units: ``X * scale + mean``."""
        X = np.asarray(X, dtype=np.float64)
        require(X.ndim == 2 and X.shape[1] == self.n_features, f"expected an (n, {self.n_features}) array")
        return X * self.scale + self.mean

    def summary(self) -> pd.DataFrame:
        """One row per split: size, positive rate (multiclass: the rate of each class, ``rate[<label>]``) and the
        number of rows in each group."""
        rows = {}
        for name in SPLIT_NAMES:
            sp = self.split(name)
            row: dict[str, Any] = {"n": len(sp)}
            if self.n_classes == 2:
                row["positive_rate"] = sp.positive_rate
            else:
                counts = sp.class_counts(self.n_classes)
                row.update({f"rate[{c}]": (k / len(sp) if len(sp) else float("nan"))
                            for c, k in zip(self.label_names, counts.tolist(), strict=True)})
            row.update({f"n[{g}]": int(c) for g, c in zip(self.group_names, sp.group_counts(), strict=True)})
            rows[name] = row
        return pd.DataFrame.from_dict(rows, orient="index")


def _check_groups_present(split: Split, name: str) -> None:
    counts = split.group_counts()
    absent = [g for g, c in zip(split.group_names, counts.tolist(), strict=True) if c == 0]
    if absent:
        raise FastfairError(
            f"group {absent[0]!r} has no rows in the {name} split"
            + (f" (nor do {len(absent) - 1} other group(s))" if len(absent) > 1 else "")
            + "; every group must occur in train, val and test so that its metrics can be computed on each"
        )


def _check_labels_fit(split: Split, name: str, labels: tuple[str, ...]) -> None:
    if len(split) and int(split.y.max()) >= len(labels):
        raise FastfairError(
            f"the {name} split has label code {int(split.y.max())} but the dataset names {len(labels)} classes "
            f"(codes 0..{len(labels) - 1}: {', '.join(map(repr, labels))})"
        )


def _check_features_representable(split: Split, name: str, standardized: bool) -> None:
    if not len(split) or not split.n_features:
        return
    peak = np.abs(split.X).max(axis=0)  # NaN if the column holds a NaN
    bad = np.flatnonzero(~(peak <= FLOAT32_MAX))
    if not len(bad):
        return
    j = int(bad[0])
    column = split.feature_names[j]
    how = " after standardisation with the training split's mean and scale" if standardized else ""
    if not np.isfinite(split.X[:, j]).all():
        raise FastfairError(f"feature {column!r} has non-finite values (NaN or infinite) in the {name} split{how}")
    fix = "rescale, clip or drop that column" if standardized else "standardise, rescale, clip or drop that column"
    raise FastfairError(
        f"feature {column!r} reaches {float(peak[j]):.3g} in the {name} split{how}, beyond float32's range "
        f"(±{FLOAT32_MAX:.3g}); {fix}"
    )


def _as_int64(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype == np.int64:
        return a
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64)
    if np.issubdtype(a.dtype, np.floating) and (
        a.size == 0 or bool(np.all(np.isfinite(a) & (a == np.round(a))))
    ):
        return a.astype(np.int64)
    raise FastfairError(f"{what} must hold integer codes, got dtype {a.dtype}")
