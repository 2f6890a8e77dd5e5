"""``load_csv``: a user's own CSV file as a :class:`Dataset`, each usual mistake reported in one line."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FastfairError, one_line, require
from ..metrics import intersect_codes
from ._common import (
    check_bool,
    check_seed,
    check_split_fractions,
    make_dataset,
    min_group_rows,
    min_stratum_rows,
    strata_codes,
    stratified_split,
)
from ._containers import Dataset

#: A non-numeric feature column with all values distinct and at least this many rows is an identifier.
ID_MIN_ROWS = 10
#: Most distinct values a sensitive column may have: more look like a continuous column, to be binned first.
MAX_GROUPS = 50
#: Most distinct values a multiclass target may have: more look like a continuous column, to be binned first.
MAX_CLASSES = 50
#: Kinds of feature columns in an encoding (:func:`fit_encoding`).
NUMERIC, ONE_HOT = "numeric", "one_hot"
#: Keyword options of :func:`load_csv` besides ``path``.
CSV_OPTIONS = (
    "target",
    "sensitive",
    "features",
    "positive",
    "seed",
    "standardize",
    "val_fraction",
    "test_fraction",
)
_SHOW = 8  # how many names or values an error message lists before "..."


def load_csv(
    path: str | os.PathLike[str],
    *,
    target: str,
    sensitive: str | Sequence[str],
    features: Sequence[str] | None = None,
    positive: Any = None,
    seed: int = 0,
    standardize: bool = True,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    **unknown: Any,
) -> Dataset:
    """Load a CSV file (with a header row) as a :class:`Dataset` split into train / validation / test.

    Parameters
    ----------
    path : str or path-like
        The CSV file.
    target : str
        Label column. With ``positive`` given, ``y = (target == positive)`` (one-vs-rest if the column has
        more than two values; ``positive`` may also be the value's text, e.g. ``"1"`` for an integer column,
        and ``true``/``false`` in any case or ``1``/``0`` match the values of a True/False column).
        **Without** ``positive``, a column with exactly two distinct values is binary and the positive class
        (``y = 1``) is the *second in sorted order*: ``1`` of {0, 1}, ``True`` of {False, True}, ``"yes"`` of
        {"no", "yes"} -- but also ``"rejected"`` of {"approved", "rejected"}; pass ``positive`` whenever the
        sorted order is not the meaning. Either way the choice is recorded: ``label_names`` (and
        ``info["label_names"]``) is ``(negative, positive)`` as text, e.g. ``("no", "yes")``, or
        ``("not 2", "2")`` for one-vs-rest. **Without** ``positive``, a column with ``C >= 3`` distinct values
        (at most ``MAX_CLASSES``, 50) is **multiclass**: class ``c`` is the ``c``-th value in sorted order
        (``y = c``), ``label_names`` their texts and ``info["label_values"]`` the values; every class must then
        occur in train, validation and test (an error names the first class missing from a split).
    sensitive : str or list of str
        Group column. Its sorted distinct values get codes 0, 1, ...; ``group_names`` are their ``str()``.
        **Several columns** (``["sex", "race"]``) give intersectional groups: a row's group is the combination
        of its values, named by their texts joined with ``"|"`` (``"Female|White"``); the groups are the
        combinations that occur, in lexicographic order of the per-column sorted values
        (:func:`fastfair.metrics.intersect_codes`, the groups of Fairlearn's ``MetricFrame`` with several
        sensitive features, less its empty combinations). The rule below then applies to the combinations,
        and an error names the combination. The rule, checked when the file is loaded, guarantees that every
        group occurs in train, validation and test (so nothing computed per group can fail later):

        * at least 2 and at most ``MAX_GROUPS`` (50) distinct values; more look like a continuous column, to
          be binned into a few groups first;
        * every group has at least ``N = C (m - 1) + 1`` rows (``2 m - 1`` for a binary target, ``C`` the number
          of classes), where ``m`` is the smallest size from which every (label, group) cell of the stratified
          split gives a row to train, validation and test: ``m = max(3, ceil(1 / (2 f)))`` for
          ``f = min(val_fraction, test_fraction)`` (up to rounding). A group of ``N`` rows has a label cell of at
          least ``m`` rows, whatever its labels. With the default fractions (0.2, 0.2): ``m = 3``, ``N = 5``
          (binary), ``N = 7`` (three classes). So at most ``n / N`` groups fit into ``n`` rows.
    features : list of str, optional
        Feature columns; by default every column except ``target`` and ``sensitive``, and except columns
        without a name in the header (e.g. ``Unnamed: 0``, an index saved by pandas), which are dropped with a
        warning; name them in ``features`` to use them. Numeric columns are used as they are; text, boolean
        and categorical columns are one-hot encoded (one ``column=value`` indicator per value, categories taken
        from the whole file so all splits share the same columns). The encoding is recorded as
        ``info["encoding"]`` (:func:`fit_encoding`); :func:`encode_features` applies it to new rows.
    positive : optional
        The positive label value (see ``target``).
    seed : int
        Seeds the split.
    standardize : bool
        Standardise features with the training split's mean and standard deviation (default True).
    val_fraction, test_fraction : float
        Fractions of rows for validation and test, each in (0, 1), together below 1.
    **unknown
        Not accepted: any other keyword raises :class:`FastfairError` naming the valid options.

    The split is stratified by (label, group) cells. Rows of each split come in a seeded random order (unlike
    the bundled datasets, whose splits keep file order), so the first rows of ``train`` are a random sample
    even for a sorted file. ``info["row_index"][split]`` holds, for each row of a split, its 0-based position
    among the data rows of the file; ``info["label_values"]`` is ``[negative, positive]`` as values of the
    target column (negative ``None`` for one-vs-rest: every other value); for a multiclass target, the ``C``
    values of the classes ``0 .. C-1``.

    Standardisation cannot overflow (each column is divided by a power of two near its largest magnitude
    before squaring), and every stored feature value must be finite and within float32's range.

    Raises
    ------
    FastfairError
        Missing or unreadable file, malformed or empty CSV (ragged rows, data rows longer than the header, a
        column name given twice in the header), missing columns, target or sensitive listed among the
        features, missing values in any used column, a target with a single value, a multiclass target with more
        than ``MAX_CLASSES`` values or a class missing from a split, a sensitive column with a single group, too
        many groups or a group too small for the rule above, an unusable feature column (all missing, non-finite
        numbers, values beyond float32's range after standardisation, or text values that are all distinct, like
        an identifier), too few rows to split.

    Warns
    -----
    UserWarning
        When columns without a header name are dropped from the default features.
    """
    if unknown:  # e.g. a dataset option from the command line that only bundled datasets know
        names = ", ".join(map(repr, sorted(unknown)))
        raise FastfairError(f"unknown option(s) {names} for a CSV file; choices: {', '.join(CSV_OPTIONS)}")
    val_fraction, test_fraction = check_split_fractions(val_fraction, test_fraction)
    seed = check_seed(seed)
    standardize = check_bool("standardize", standardize)
    require(isinstance(target, str) and target != "", f"target must be a column name, got {target!r}")
    sensitive_columns = _sensitive_columns(sensitive)
    require(target not in sensitive_columns, f"target and sensitive are the same column {target!r}")

    file = Path(path)
    raw = _read_bytes(file)
    frame, unnamed = _parse_csv(raw, file)

    if features is None:
        features = [c for c in frame.columns if c not in (target, *sensitive_columns, *unnamed)]
        dropped = [c for c in unnamed if c not in (target, *sensitive_columns)]
        if dropped:
            warnings.warn(
                f"{file.name}: dropped {_names(dropped)} from the features: no name in the header (an index "
                "saved by pandas?); name it in features to use it",
                UserWarning,
                stacklevel=2,
            )
        require(
            len(features) > 0,
            f"{file.name} has no columns besides target {target!r} and sensitive {_names(sensitive_columns)}",
        )
    else:
        require(
            not isinstance(features, str) and all(isinstance(f, str) for f in features),
            f"features must be a list of column names, got {features!r}",
        )
        features = list(features)
        require(len(features) > 0, "features is empty; give at least one feature column (or None for all)")
        dupes = sorted({f for f in features if features.count(f) > 1})
        require(not dupes, f"features lists column(s) twice: {_names(dupes)}")
        for role, col in (("target", target), *(("sensitive", c) for c in sensitive_columns)):
            require(col not in features, f"the {role} column {col!r} cannot also be a feature")
    wanted = [target, *sensitive_columns, *features]
    missing = [c for c in wanted if c not in frame.columns]
    only = str(frame.columns[0]) if len(frame.columns) == 1 else ""
    separator = next((sep for sep in (";", "\t", "|") if sep in only), None)
    require(
        not missing,
        f"column(s) not found in {file.name}: {_names(missing)}; available: {_names(list(frame.columns))}"
        + (f" (fields separated by {separator!r}? only commas separate fields)" if separator else ""),
    )
    frame = frame[wanted]
    _check_missing(frame, file.name, target, sensitive_columns)

    y, positive_value, label_names, label_values = _encode_target(frame[target], target, positive)
    s, group_names = _encode_groups(frame[sensitive_columns], sensitive_columns)
    encoding = fit_encoding(frame, features)
    X = encode_features(frame, encoding, source=file.name)
    feature_names = encoded_names(encoding)

    rng = np.random.default_rng(seed)
    train_idx, val_idx, test_idx = stratified_split(strata_codes(y, s), [val_fraction, test_fraction], rng)
    require(
        len(val_idx) > 0 and len(test_idx) > 0,
        f"{file.name} has too few rows ({len(y)}) to split into train/val/test with "
        f"val_fraction={val_fraction} and test_fraction={test_fraction}",
    )
    _check_group_sizes(s, group_names, sensitive_columns, (val_fraction, test_fraction), len(label_names))
    if len(label_names) > 2:
        split_rows = {"train": train_idx, "validation": val_idx, "test": test_idx}
        _check_classes_in_every_split(y, split_rows, label_names, target, (val_fraction, test_fraction))
    parts, row_index = {}, {}
    for key, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
        idx = rng.permutation(idx)
        parts[key] = (X[idx], y[idx], s[idx])
        row_index[key] = idx
    info = {
        "source": str(file),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "seed": seed,
        "options": {
            "target": target,
            "positive": positive_value,
            "sensitive": sensitive_columns[0] if len(sensitive_columns) == 1 else list(sensitive_columns),
            "features": list(features),
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "standardize": standardize,
        },
        "one_hot": {e["column"]: list(e["categories"]) for e in encoding if e["kind"] == ONE_HOT},
        "encoding": encoding,
        "label_values": label_values,
        "rows": {"file": len(y)},
        "row_index": row_index,
        "row_order": "seeded random order within each split",
    }
    return make_dataset(
        f"csv:{file.name}",
        parts,
        feature_names=feature_names,
        group_names=group_names,
        label_names=label_names,
        standardize=standardize,
        info=info,
    )


def _read_bytes(file: Path) -> bytes:
    require(file.exists(), f"file not found: {file}")
    require(file.is_file(), f"not a file: {file}")
    try:
        return file.read_bytes()
    except OSError as exc:
        raise FastfairError(f"cannot read {file}: {exc.strerror or exc}") from None


def _parse_csv(raw: bytes, file: Path) -> tuple[pd.DataFrame, list[str]]:
    """The parsed file and the (pandas-made) names of its columns that have no name in the header."""
    require(raw.strip() != b"", f"{file.name} is empty")
    try:
        with warnings.catch_warnings():
            # index_col=False: a data row longer than the header must not silently shift every column onto
            # the next name (pandas would make the first column an index); pandas then warns, and we refuse
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.BytesIO(raw), skipinitialspace=True, index_col=False)
            header = pd.read_csv(
                io.BytesIO(raw), header=None, nrows=1, dtype=str, keep_default_na=False, skipinitialspace=True
            )
    except pd.errors.EmptyDataError:
        raise FastfairError(f"{file.name} has no columns (is it a CSV file?)") from None
    except pd.errors.ParserWarning:
        raise FastfairError(
            f"malformed CSV {file.name}: data rows have more fields than the header row; name every column in "
            "the header or remove the extra fields"
        ) from None
    except pd.errors.ParserError as exc:
        raise FastfairError(f"malformed CSV {file.name}: {one_line(exc)}") from None
    except UnicodeDecodeError:
        raise FastfairError(f"{file.name} is not a UTF-8 text file") from None
    except (ValueError, csv.Error) as exc:
        raise FastfairError(f"cannot parse {file.name} as CSV: {one_line(exc)}") from None
    require(len(frame) > 0, f"{file.name} has a header but no data rows")
    names = [str(v) for v in header.iloc[0].tolist()]
    require(len(names) == len(frame.columns), f"malformed CSV {file.name}: cannot read its header row")
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name == "":
            continue
        require(
            name not in seen,
            f"the header of {file.name} names column {name!r} twice (columns {seen.get(name)} and {position}); "
            "column names must be unique",
        )
        seen[name] = position
    unnamed = [str(c) for c, name in zip(frame.columns, names, strict=True) if name == ""]
    require(len(unnamed) < len(frame.columns), f"{file.name} has no header row with column names")
    return frame, unnamed


def _check_missing(frame: pd.DataFrame, filename: str, target: str, sensitive: Sequence[str]) -> None:
    """Missing values (empty fields, NA, or whitespace-only text) in any used column are an error."""
    for col in frame.columns:
        values = frame[col]
        blank = values.isna()
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            blank |= values.astype(str).str.strip().eq("") & values.notna()
        n_bad = int(blank.sum())
        if not n_bad:
            continue
        role = "target" if col == target else "sensitive" if col in sensitive else "feature"
        if n_bad == len(values):
            raise FastfairError(
                f"{role} column {col!r} of {filename} is empty (all {n_bad} values NaN/missing)"
            )
        first = int(np.flatnonzero(blank.to_numpy())[0]) + 1
        raise FastfairError(
            f"{role} column {col!r} of {filename} has {n_bad} missing (NaN or empty) value(s), first in data "
            f"row {first}; "
            "fill or drop those rows first"
        )


def _encode_target(
    values: pd.Series, name: str, positive: Any
) -> tuple[np.ndarray, Any, tuple[str, ...], list[Any]]:
    """``y``, the positive value (None for a multiclass target), the label names and the label values.

    Binary (two values, or ``positive`` given): ``y = 1`` where the value is the positive one, names
    ``(negative, positive)`` as text, values ``[negative, positive]`` (negative ``None`` for one-vs-rest).
    Multiclass (three or more values, no ``positive``): ``y`` is the index of the value among the sorted
    distinct values, names their texts, values the distinct values themselves.
    """
    distinct = _sorted_unique(values)
    if positive is None:
        require(
            len(distinct) >= 2,
            f"target column {name!r} is not binary: it has {len(distinct)} distinct value"
            + ("s" if len(distinct) != 1 else "")
            + (f" ({_values(distinct)})" if distinct else ""),
        )
        if len(distinct) > 2:
            return _encode_classes(values, name, distinct)
        pos = distinct[1]
    else:
        pos = _match_value(distinct, positive)
        require(
            pos is not _NO_MATCH,
            f"positive label {positive!r} does not occur in target column {name!r} "
            f"(values: {_values(distinct)})",
        )
    y = (values == pos).to_numpy(dtype=np.int64)
    relation = "equal" if y.all() else "differ from"
    single = f"target column {name!r} has a single class (all values {relation} {pos!r})"
    require(0 < int(y.sum()) < len(y), single)
    others = [v for v in distinct if v is not pos]
    negative = str(others[0]) if len(others) == 1 else f"not {pos}"
    negative_value = _plain(others[0]) if len(others) == 1 else None  # None: one-vs-rest, every other value
    return y, _plain(pos), (negative, str(pos)), [negative_value, _plain(pos)]


def _encode_classes(
    values: pd.Series, name: str, distinct: list[Any]
) -> tuple[np.ndarray, None, tuple[str, ...], list[Any]]:
    """A multiclass target: class ``c`` is the ``c``-th sorted distinct value, named by its text."""
    require(
        len(distinct) <= MAX_CLASSES,
        f"target column {name!r} has {len(distinct)} distinct values, more than the {MAX_CLASSES} classes allowed "
        "(is it continuous?); bin it into a few classes first, or pass positive=VALUE for one value against the rest",
    )
    names = tuple(str(v) for v in distinct)
    require(len(set(names)) == len(names), f"target column {name!r} has distinct values with the same text")
    lookup = {v: i for i, v in enumerate(distinct)}
    y = np.fromiter((lookup[v] for v in values.tolist()), dtype=np.int64, count=len(values))
    return y, None, names, [_plain(v) for v in distinct]


def _check_classes_in_every_split(
    y: np.ndarray,
    parts: Mapping[str, np.ndarray],
    names: Sequence[str],
    target: str,
    fractions: tuple[float, float],
) -> None:
    """Every class of a multiclass target must occur in train, validation and test (its rates are computed on
    each); the error names the first class missing from a split."""
    counts = np.bincount(y, minlength=len(names))
    for c, label in enumerate(names):
        for split, idx in parts.items():
            if not np.any(y[idx] == c):
                need = min_stratum_rows(fractions)
                raise FastfairError(
                    f"class {label!r} of target column {target!r} has {int(counts[c])} row"
                    f"{'s' if counts[c] != 1 else ''}, none in the {split} split; every class must occur in train, "
                    f"validation and test ({need} rows of the class in one group guarantee it with "
                    f"val_fraction={fractions[0]}, test_fraction={fractions[1]}); merge or drop that class"
                )


def _sensitive_columns(sensitive: Any) -> list[str]:
    """The sensitive column names: one name, or a non-empty list of different names."""
    if isinstance(sensitive, str):
        require(sensitive != "", f"sensitive must be a column name, got {sensitive!r}")
        return [sensitive]
    require(
        isinstance(sensitive, Sequence)
        and len(sensitive) > 0
        and all(isinstance(c, str) and c != "" for c in sensitive),
        f"sensitive must be a column name or a list of column names, got {sensitive!r}",
    )
    dupes = sorted({c for c in sensitive if list(sensitive).count(c) > 1})
    require(not dupes, f"sensitive lists column(s) twice: {_names(dupes)}")
    return list(sensitive)


def _describe_sensitive(columns: Sequence[str]) -> str:
    """``sensitive column 'sex'`` or ``sensitive columns 'sex', 'race'`` for messages."""
    return f"sensitive column {columns[0]!r}" if len(columns) == 1 else f"sensitive columns {_names(columns)}"


def _column_groups(values: pd.Series, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """One sensitive column's codes and names: sorted distinct values, coded 0, 1, ..., named by their text."""
    distinct = _sorted_unique(values)
    names = tuple(str(v) for v in distinct)
    require(
        len(set(names)) == len(names), f"sensitive column {name!r} has distinct values with the same text"
    )
    lookup = {v: i for i, v in enumerate(distinct)}
    codes = np.fromiter((lookup[v] for v in values.tolist()), dtype=np.int64, count=len(values))
    return codes, names


def _encode_groups(values: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Group codes and names of one sensitive column, or of the combinations of several
    (:func:`fastfair.metrics.intersect_codes`); at least 2 and at most ``MAX_GROUPS`` groups."""
    encoded = [_column_groups(values[c], c) for c in columns]
    if len(columns) == 1:
        codes, names = encoded[0]
    else:
        codes, names = intersect_codes([c for c, _ in encoded], [n for _, n in encoded], columns=columns)
        codes = codes.astype(np.int64)
    what = _describe_sensitive(columns)
    kind = "combinations" if len(columns) > 1 else "distinct values"
    if len(names) < 2:
        shown = _values(_sorted_unique(values[columns[0]])) if len(columns) == 1 else _values(list(names))
        verb = "has" if len(columns) == 1 else "have"
        raise FastfairError(f"{what} {verb} a single group ({shown}); need at least 2 groups")
    require(
        len(names) <= MAX_GROUPS,
        f"{what} {'has' if len(columns) == 1 else 'have'} {len(names)} {kind}, more than the {MAX_GROUPS} groups "
        "allowed (is a column continuous?); bin it into a few groups first, e.g. with pandas.cut",
    )
    return codes, names


def _check_group_sizes(
    s: np.ndarray,
    group_names: Sequence[str],
    columns: Sequence[str],
    fractions: tuple[float, float],
    n_classes: int = 2,
) -> None:
    """Every group needs :func:`min_group_rows` rows, so that the split puts it into train, val and test."""
    need = min_group_rows(fractions, n_classes)
    counts = np.bincount(s, minlength=len(group_names))
    small = np.flatnonzero(counts < need)
    if not len(small):
        return
    worst = int(small[np.argmin(counts[small])])
    advice = (
        "merge values of a column, or combine fewer columns"
        if len(columns) > 1
        else "if the column is continuous, bin it into a few groups"
    )
    hint = ""
    if len(small) > 1:
        hint = f" ({len(small)} of the {len(group_names)} groups have fewer than {need} rows: {advice})"
    classes = f" and {n_classes} classes of the target" if n_classes > 2 else ""
    fewer = " (or merge classes of the target: fewer classes need fewer rows)" if n_classes > 2 else ""
    raise FastfairError(
        f"group {group_names[worst]!r} of {_describe_sensitive(columns)} has {int(counts[worst])} row"
        f"{'s' if counts[worst] != 1 else ''}; every group needs at least {need} rows so that it appears in "
        f"train, validation and test (val_fraction={fractions[0]}, test_fraction={fractions[1]}{classes}); merge or "
        f"drop it{hint}{fewer}"
    )


def fit_encoding(frame: pd.DataFrame, features: Sequence[str]) -> list[dict[str, Any]]:
    """The feature encoding of ``features`` learnt from ``frame``: one JSON-able entry per column, in order.

    * ``{"column": c, "kind": "numeric"}`` for a numeric (not boolean) column: used as it is, as float64;
    * ``{"column": c, "kind": "one_hot", "categories": [v_1, ..., v_k], "unseen": "error"}`` for a text,
      boolean or categorical column: the sorted distinct values ``v_j`` (as plain Python values), one
      indicator feature ``c=v_j`` each. Values are matched by their text, ``str(v)``.

    :func:`encode_features` applies an encoding to any frame with those columns, so that the features of new
    rows are computed exactly as those of the rows the encoding was learnt from (:func:`load_csv` itself
    encodes through it).

    Raises :class:`FastfairError` for a column that is numeric except for a few words (a data error, not
    categories), a text column with a different value on every row (an identifier), or distinct values with
    the same text.
    """
    encoding: list[dict[str, Any]] = []
    for col in features:
        values = frame[col]
        if _is_number_column(values):
            encoding.append({"column": str(col), "kind": NUMERIC})
            continue
        numeric = pd.to_numeric(values, errors="coerce").notna().to_numpy()
        if 0.5 <= numeric.mean() < 1:  # a number column with a few stray words: a data error, not categories
            row = int(np.flatnonzero(~numeric)[0])
            raise FastfairError(
                f"feature column {col!r} is numeric except for {int((~numeric).sum())} value(s), e.g. "
                f"{values.iloc[row]!r} in data row {row + 1}; fix or drop those rows"
            )
        distinct = _sorted_unique(values)
        require(
            not (len(values) >= ID_MIN_ROWS and len(distinct) == len(values)),
            f"feature column {col!r} is non-numeric with all {len(values)} values distinct (an identifier?); "
            "leave it out of features",
        )
        texts = [str(v) for v in distinct]
        require(len(set(texts)) == len(texts), f"feature column {col!r} has distinct values with the same text")
        encoding.append(
            {"column": str(col), "kind": ONE_HOT, "categories": [_plain(v) for v in distinct], "unseen": "error"}
        )
    return encoding


def encoded_names(encoding: Sequence[Mapping[str, Any]]) -> list[str]:
    """The feature names an encoding (:func:`fit_encoding`) produces: ``c`` per numeric column, ``c=v`` per
    category ``v`` of a one-hot column, in order."""
    names: list[str] = []
    for entry in encoding:
        if entry["kind"] == NUMERIC:
            names.append(entry["column"])
        else:
            names.extend(f"{entry['column']}={v}" for v in entry["categories"])
    return names


def encode_features(
    frame: pd.DataFrame, encoding: Sequence[Mapping[str, Any]], *, source: str = "the data"
) -> np.ndarray:
    """The (n, d) float64 features of ``frame`` under ``encoding`` (:func:`fit_encoding`), unstandardised.

    Numeric columns become float64 as they are; a one-hot column with categories ``v_1..v_k`` becomes ``k``
    indicator columns, the row of ``np.eye(k)`` of its category (matched by text). On the frame the encoding was
    learnt from this gives exactly the features :func:`load_csv` computed, bit for bit.

    A value outside the categories is refused (``"unseen": "error"``), or gives an all-zero indicator row with a
    warning (``"unseen": "zeros"``, the policy of bundled Adult's encoder).

    Raises
    ------
    FastfairError
        A column of the encoding missing from ``frame``; a missing value in one of its columns; a numeric
        column holding text or True/False values, or infinite values; a value not among a one-hot column's
        categories (unless its policy is ``"zeros"``). The message names ``source``, the column and the
        first offending data row.
    """
    missing = [e["column"] for e in encoding if e["column"] not in frame.columns]
    needed = _names([e["column"] for e in encoding])
    require(not missing, f"column(s) not found in {source}: {_names(missing)}; the model needs {needed}")
    blocks: list[np.ndarray] = []
    for entry in encoding:
        col = entry["column"]
        values = frame[col]
        _check_column_complete(values, col, source)
        if entry["kind"] == NUMERIC:
            blocks.append(_numeric_column(values, col, source).reshape(-1, 1))
            continue
        require(entry["kind"] == ONE_HOT, f"unknown encoding {entry['kind']!r} of column {col!r}")
        categories = [str(v) for v in entry["categories"]]
        texts = values.astype(str).to_numpy() if len(values) else np.zeros(0, dtype=str)
        codes = pd.Index(categories).get_indexer(texts)
        unseen = np.flatnonzero(codes < 0)
        if len(unseen):
            row = int(unseen[0])
            what = (
                f"feature column {col!r} of {source} has {len(unseen)} value(s) not seen in training, e.g. "
                f"{texts[row]!r} in data row {row + 1}; known values: {_values(categories)}"
            )
            require(entry.get("unseen", "error") == "zeros", what)
            warnings.warn(what + "; encoded as all-zero indicators", UserWarning, stacklevel=2)
        onehot = np.eye(len(categories) + 1, dtype=np.float64)[codes]  # code -1 picks the last, all-zero row
        blocks.append(onehot[:, : len(categories)])
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0))


def read_csv_frame(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV file (with a header row) parsed exactly as :func:`load_csv` parses it, every column kept.

    Raises :class:`FastfairError` for a missing, unreadable, empty or malformed file (as :func:`load_csv`).
    """
    file = Path(path)
    frame, _ = _parse_csv(_read_bytes(file), file)
    return frame


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes (hex), as :func:`load_csv` records it under ``info["sha256"]``."""
    return hashlib.sha256(_read_bytes(Path(path))).hexdigest()


def encode_groups(values: pd.Series | pd.DataFrame, name: str | Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Group codes of a sensitive column and the group names: its sorted distinct values get codes 0, 1, ...,
    named by their text (as :func:`load_csv` does); several columns (a DataFrame and their names) give the
    intersectional groups of :func:`load_csv`. Refused: a missing value, a single group, more than
    ``MAX_GROUPS`` groups, distinct values with the same text."""
    columns = _sensitive_columns(name)
    frame = values.to_frame(columns[0]) if isinstance(values, pd.Series) else values
    for col in columns:
        column = frame[col]
        blank = column.isna().to_numpy() | column.astype(str).str.strip().eq("").to_numpy()
        if blank.any():
            raise FastfairError(
                f"sensitive column {col!r} has {int(blank.sum())} missing (NaN or empty) value(s), first in data "
                f"row {int(np.flatnonzero(blank)[0]) + 1}"
            )
    return _encode_groups(frame, columns)


def _is_number_column(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)


def _check_column_complete(values: pd.Series, col: str, source: str) -> None:
    blank = values.isna()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        blank |= values.astype(str).str.strip().eq("") & values.notna()
    if bool(blank.any()):
        first = int(np.flatnonzero(blank.to_numpy())[0]) + 1
        raise FastfairError(
            f"feature column {col!r} of {source} has {int(blank.sum())} missing (NaN or empty) value(s), first "
            f"in data row {first}"
        )


def _numeric_column(values: pd.Series, col: str, source: str) -> np.ndarray:
    """A numeric feature column as float64: refused if it holds text, True/False or infinite values."""
    if not _is_number_column(values):
        if pd.api.types.is_bool_dtype(values.dtype):
            raise FastfairError(
                f"feature column {col!r} of {source} holds True/False values; the model was trained on numbers"
            )
        numbers = pd.to_numeric(values, errors="coerce")
        row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
        raise FastfairError(
            f"feature column {col!r} of {source} holds text, e.g. {values.iloc[row]!r} in data row {row + 1}; "
            "the model was trained on numbers"
        )
    arr = values.to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise FastfairError(
            f"feature column {col!r} has infinite values in {source}, first in data row {int(bad[0]) + 1}"
        )
    return arr


_NO_MATCH = object()


def _match_value(distinct: list[Any], wanted: Any) -> Any:
    """The value of ``distinct`` equal to ``wanted``, or whose text or number equals it (CLI gives text).

    A True/False value also matches ``true``/``false`` in any case and ``1``/``0`` (as numbers or text).
    """
    for v in distinct:
        if type(v) is type(wanted) and v == wanted:
            return v
    flag = _as_flag(wanted)
    for v in distinct:
        if isinstance(v, (bool, np.bool_)):
            if flag is not None and bool(v) == flag:
                return v
            continue
        if isinstance(wanted, (bool, np.bool_)):
            continue
        try:
            if v == wanted:
                return v
        except (TypeError, ValueError):
            pass
    text = str(wanted).strip()
    for v in distinct:
        if str(v) == text:
            return v
    try:
        number = float(text)
    except ValueError:
        return _NO_MATCH
    for v in distinct:
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
            if float(v) == number:
                return v
    return _NO_MATCH


def _as_flag(value: Any) -> bool | None:
    """``value`` read as a truth value: a bool, the number 1 or 0, or the text true/false/1/0 (any case)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return bool(value) if value in (0, 1) else None
    if isinstance(value, str):
        return {"true": True, "1": True, "false": False, "0": False}.get(value.strip().lower())
    return None


def _sorted_unique(values: pd.Series) -> list[Any]:
    distinct = list(pd.unique(values.dropna()))
    try:
        return sorted(distinct)
    except TypeError:  # mixed types in an object column: order by text
        return sorted(distinct, key=lambda v: (type(v).__name__, str(v)))


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _names(cols: Sequence[Any]) -> str:
    shown = ", ".join(repr(str(c)) for c in cols[:_SHOW])
    return shown + (f", ... ({len(cols)} in all)" if len(cols) > _SHOW else "")


def _values(vals: Sequence[Any]) -> str:
    shown = ", ".join(repr(_plain(v)) for v in vals[:_SHOW])
    return shown + (", ..." if len(vals) > _SHOW else "")
