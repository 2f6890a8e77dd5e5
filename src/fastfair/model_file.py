r"""The model file: a trained classifier as data, to score new rows exactly as its training rows were scored.

A model file (``model.pt``, written by ``fastfair train --out DIR``) is a :func:`torch.save` archive of one
dict holding **only tensors and plain values**:

``format``
    ``"fastfair-model"``.
``format_version``
    :data:`FORMAT_VERSION`; a reader refuses a newer version than it knows.
``header``
    a JSON text: everything needed to rebuild the feature pipeline and the network (below).
``state_dict``
    the network's parameters (name -> tensor).
``mean``, ``scale``
    ``(d,)`` float64 tensors: the standardisation, features ``z = (x - mean) / scale``.

The header holds

* ``model``: family (``affine`` / ``mlp``), input width ``d``, hidden widths, activation, dtype, and
  ``n_outputs`` (1 logit for a binary target; C logits for C classes, so that a multiclass model needs no new
  format);
* ``features``: the input columns in order, their encoding (numeric, or one-hot with its categories:
  :func:`fastfair.datasets.user_csv.fit_encoding`), the encoded feature names, and whether they are
  standardised;
* ``target``: the label column, its values and their names in code order (code ``k`` is ``values[k]``; for a
  binary target code 1 is the positive class, ``positive`` = 1; a multiclass target has C >= 3 values, one per
  output of the network, and ``positive`` None), so a prediction is reported as the original label value;
* ``sensitive``: the group columns (``columns``: one, or several for intersectional groups, whose names join
  the values with ``"|"``), ``column`` (the one column, or None when there are several) and the group names;
* ``dataset``: where the training data came from -- a bundled dataset by name, seed and options (its pipeline
  is known by them), or a CSV file by name, sha256, seed and options -- so that its splits can be rebuilt;
* ``training``: the training configuration, and ``history``, its per-epoch record;
* ``fastfair_version`` and ``torch_version`` of the writer.

**Loading never executes code from the file**: it is read with ``torch.load(..., weights_only=True)``, whose
unpickler only rebuilds tensors and plain containers; anything else (a pickled object whose ``__reduce__``
would run code) is refused with one line before any of it runs. Every other defect of the file (not a torch
archive, no fastfair header, a newer format version, parameters that do not fit the recorded network) is a
one-line :class:`~fastfair.errors.FastfairError` too.

Scoring: features are computed by the recorded encoding (:func:`fastfair.datasets.user_csv.encode_features`),
standardised by the recorded mean and scale (:func:`fastfair.datasets._scaling.apply_standardization`) and
passed through the network in its training dtype. Binary: the probability of the positive class is
:math:`\sigma(f(z))` and the prediction is the positive class where :math:`f(z) > 0`. Multiclass (C logits
:math:`f_k(z)`): the probabilities are the softmax :math:`p_k = e^{f_k - m} / \sum_j e^{f_j - m}`,
:math:`m = \max_j f_j` (computed in float64, each row summing to 1), and the prediction is
:math:`\arg\max_k f_k(z)`, ties to the lowest code. On the training file this reproduces the training run's
features bit for bit, so its predictions are identical.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import __version__
from .config import TrainConfig, check_hidden, hidden_widths
from .datasets import Dataset, Split, load, load_csv
from .datasets import adult as _adult
from .datasets._scaling import apply_standardization
from .datasets.user_csv import NUMERIC, ONE_HOT, encode_features, encoded_names, file_sha256
from .errors import FastfairError, require
from .io import atomic_write_bytes, dumps_json
from .models import build_model
from .training import predict_logits, predicted_labels, probabilities

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SavedModel",
    "class_probabilities",
    "load_model",
    "model_file_bytes",
    "predicted_codes",
    "probability_columns",
    "probability_frame",
    "save_model",
]

#: The ``format`` entry of every model file.
FORMAT = "fastfair-model"
#: The version of the layout this module writes and the newest it reads.
FORMAT_VERSION = 1
#: Most classes a model file may hold (a sanity bound on the header, far above any real target).
MAX_CLASSES = 10_000
#: Largest magnitude a standardised feature may have: the network may run in float32.
_FLOAT32_MAX = float(np.finfo(np.float32).max)

#: Columns of the bundled datasets as a CSV of new rows would name them: label column, its values in code
#: order (negative, positive), and the raw column the groups come from.
_BUNDLED_COLUMNS: dict[str, dict[str, Any]] = {
    "adult": {"target": "income", "values": list(_adult.LABEL_NAMES)},
    "lsat": {"target": "PF_1", "values": [0, 1], "sensitive": "Race_White"},
    "unfair2d": {"target": "y", "values": [0, 1], "sensitive": "s"},
}


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------
def model_file_bytes(
    model: nn.Module, config: TrainConfig, data: Dataset, history: Sequence[Mapping[str, Any]] = ()
) -> bytes:
    """The bytes of the model file of ``model``, trained with ``config`` on ``data`` (see the module docstring).

    ``model`` must be the built-in network ``config`` describes (:func:`fastfair.models.build_model`), with
    ``data.n_features`` inputs; :class:`FastfairError` otherwise.
    """
    header = _header(model, config, data, history)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    _check_state(state, header["model"], "the model to save")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "header": dumps_json(header, sort_keys=False),
        "state_dict": state,
        "mean": torch.as_tensor(np.asarray(data.mean, dtype=np.float64)).clone(),
        "scale": torch.as_tensor(np.asarray(data.scale, dtype=np.float64)).clone(),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_model(
    path: str | os.PathLike[str],
    model: nn.Module,
    config: TrainConfig,
    data: Dataset,
    history: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write the model file of ``model`` (trained with ``config`` on ``data``) to ``path``, atomically
    (:func:`fastfair.io.atomic_write_bytes`). Returns the path."""
    return atomic_write_bytes(path, model_file_bytes(model, config, data, history))


def _header(model: nn.Module, config: TrainConfig, data: Dataset, history: Sequence[Mapping[str, Any]]) -> dict:
    encoding = _encoding_of(data)
    names = encoded_names(encoding)
    require(
        names == list(data.feature_names),
        f"cannot describe the features of dataset {data.name!r} for a model file (their encoding is unknown)",
    )
    target_column, values, sensitive_columns = _columns_of(data)
    info = data.info
    kind = "csv" if data.name.startswith("csv:") else "bundled"
    dataset: dict[str, Any] = {
        "name": data.name,
        "kind": kind,
        "seed": info.get("seed"),
        "options": dict(info.get("options", {})),
    }
    if kind == "csv":
        dataset["file"] = Path(str(info.get("source", ""))).name
        dataset["sha256"] = info.get("sha256")
    n_classes = len(data.label_names)
    require(
        n_classes == 2 or len(values) == n_classes,
        f"cannot describe the labels of dataset {data.name!r} for a model file ({len(values)} values for "
        f"{n_classes} classes)",
    )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastfair_version": __version__,
        "torch_version": torch.__version__,
        "model": {
            "family": config.model,
            "n_features": int(data.n_features),
            "hidden": list(hidden_widths(check_hidden(config.hidden))),
            "activation": config.activation,
            "n_outputs": 1 if n_classes == 2 else n_classes,
            "dtype": config.dtype,
        },
        "features": {
            "columns": [e["column"] for e in encoding],
            "encoding": encoding,
            "names": names,
            "standardized": bool(data.standardized),
        },
        "target": {
            "column": target_column,
            "values": values,
            "names": list(data.label_names),
            "positive": 1 if n_classes == 2 else None,
        },
        "sensitive": {
            "column": sensitive_columns[0] if len(sensitive_columns) == 1 else None,
            "columns": sensitive_columns,
            "groups": list(data.group_names),
        },
        "dataset": dataset,
        "training": config.to_dict(),
        "history": [dict(h) for h in history],
    }


def _encoding_of(data: Dataset) -> list[dict[str, Any]]:
    """The feature encoding of a dataset: recorded by :func:`~fastfair.datasets.load_csv`; for a bundled
    dataset, known from its loader: Adult's numeric columns as they are and its categorical columns one-hot
    with the categories of its training rows (unseen values give all-zero indicators, as in its loader); LSAT
    and Unfair2D numeric only."""
    if "encoding" in data.info:
        return [dict(e) for e in data.info["encoding"]]
    if data.name == "adult":
        encoding: list[dict[str, Any]] = []
        for col in data.info["options"]["features"]:
            if col in _adult.NUMERIC:
                encoding.append({"column": col, "kind": NUMERIC})
            else:
                prefix = f"{col}="
                cats = [n[len(prefix) :] for n in data.feature_names if n.startswith(prefix)]
                encoding.append({"column": col, "kind": ONE_HOT, "categories": cats, "unseen": "zeros"})
        return encoding
    return [{"column": name, "kind": NUMERIC} for name in data.feature_names]


def _columns_of(data: Dataset) -> tuple[str | None, list[Any], list[str]]:
    """Label column, label values in code order, and the group columns (one, or several) of a dataset."""
    options = data.info.get("options", {})
    if data.name.startswith("csv:"):
        values = data.info.get("label_values", list(data.label_names))
        return options.get("target"), list(values), _as_columns(options.get("sensitive"))
    known = _BUNDLED_COLUMNS.get(data.name, {})
    sensitive = _as_columns(known.get("sensitive"))
    if data.name == "adult":
        sensitive = ["sex" if a == "sex" else "race" for a in _as_columns(options.get("sensitive", "sex"))]
    return known.get("target"), list(known.get("values", data.label_names)), sensitive


def _as_columns(sensitive: Any) -> list[str]:
    """A sensitive option (a name, a list of names, or None) as a list of names."""
    if sensitive is None:
        return []
    return [sensitive] if isinstance(sensitive, str) else [str(c) for c in sensitive]


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SavedModel:
    """A loaded model file: the network (on the CPU, in evaluation mode) and its recorded pipeline.

    Attributes
    ----------
    path : Path or None
        Where it was loaded from.
    header : dict
        The JSON header (see the module docstring).
    model : torch.nn.Module
        The network, mapping standardised features ``(n, d)`` to logits ``(n,)`` (binary) or ``(n, C)`` (C >= 3
        classes).
    mean, scale : np.ndarray
        ``(d,)`` float64 standardisation statistics (zeros and ones when not standardised).
    """

    path: Path | None
    header: dict[str, Any]
    model: nn.Module
    mean: np.ndarray
    scale: np.ndarray

    # -- what the header says ------------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """Names of the ``d`` encoded features, in the network's input order."""
        return list(self.header["features"]["names"])

    @property
    def columns(self) -> list[str]:
        """The input columns a CSV of new rows needs, in order."""
        return list(self.header["features"]["columns"])

    @property
    def encoding(self) -> list[dict[str, Any]]:
        """The per-column encoding (:func:`fastfair.datasets.user_csv.fit_encoding`)."""
        return [dict(e) for e in self.header["features"]["encoding"]]

    @property
    def label_names(self) -> list[str]:
        """Text of each label code: ``[negative, positive]`` for a binary model, C names for C classes."""
        return list(self.header["target"]["names"])

    @property
    def n_classes(self) -> int:
        """Number of classes: 2 for a binary model (one logit), C for a multiclass one (C logits)."""
        outputs = int(self.header["model"]["n_outputs"])
        return 2 if outputs == 1 else outputs

    @property
    def multiclass(self) -> bool:
        """Whether the model has C >= 3 classes."""
        return self.n_classes > 2

    @property
    def label_values(self) -> list[Any]:
        """The target column's value of each label code (``None`` for "every other value", one-vs-rest)."""
        return list(self.header["target"]["values"])

    @property
    def target_column(self) -> str | None:
        """The label column of the training data."""
        return self.header["target"]["column"]

    @property
    def sensitive_column(self) -> str | None:
        """The group column of the training data (None when its groups combine several columns)."""
        return self.header["sensitive"].get("column")

    @property
    def sensitive_columns(self) -> list[str]:
        """The group columns of the training data: one, or several whose combinations are the groups (a file
        written before several were possible records only ``column``)."""
        sensitive = self.header["sensitive"]
        if "columns" in sensitive:
            return _as_columns(sensitive["columns"])
        return _as_columns(sensitive.get("column"))

    @property
    def group_names(self) -> list[str]:
        """The training data's groups."""
        return list(self.header["sensitive"]["groups"])

    @property
    def dataset_name(self) -> str:
        """``"adult"``, ``"lsat"``, ``"unfair2d"`` or ``"csv:<file>"``."""
        return str(self.header["dataset"]["name"])

    @property
    def training(self) -> dict[str, Any]:
        """The training configuration, as recorded."""
        return dict(self.header["training"])

    @property
    def dtype(self) -> str:
        """The network's precision (``"float32"`` or ``"float64"``)."""
        return str(self.header["model"]["dtype"])

    # -- scoring -------------------------------------------------------------------------------------------
    def features(self, frame: pd.DataFrame, *, source: str = "the data") -> np.ndarray:
        """The network's input for the rows of ``frame``: encoded (:func:`~fastfair.datasets.user_csv.
        encode_features`), then standardised with the recorded statistics, ``(n, d)`` float64.

        Raises :class:`FastfairError` naming ``source`` and the column for a missing column, a missing value,
        a wrong type, an unseen category, or a value that leaves the network's float range once standardised.
        """
        X = encode_features(frame, self.encoding, source=source)
        return self.transform(X, source=source)

    def transform(self, X_raw: Any, *, source: str = "the data") -> np.ndarray:
        """Standardise encoded features: ``(X_raw - mean) / scale`` (overflow-free, as at training)."""
        X = np.asarray(X_raw, dtype=np.float64)
        d = len(self.mean)
        require(X.ndim == 2 and X.shape[1] == d, f"expected {d} feature columns, got an array of shape {X.shape}")
        if self.header["features"]["standardized"]:
            X = apply_standardization(X, self.mean, self.scale)
        big = ~(np.abs(X) <= _FLOAT32_MAX)  # also catches NaN
        if big.any():
            row, col = (int(v[0]) for v in np.nonzero(big))
            raise FastfairError(
                f"feature {self.feature_names[col]!r} of {source} has a value beyond float32's range once "
                f"standardised (data row {row + 1}); the model cannot score it"
            )
        return X

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits of standardised features ``X`` (n, d), float64, computed in the network's dtype: f(z) (n,) for
        a binary model, (n, C) for C classes."""
        config = TrainConfig(dtype=self.dtype, device="cpu")
        return predict_logits(self.model, np.asarray(X, dtype=np.float64), config)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Binary: P(positive | x) = σ(f(z)), (n,); multiclass: the softmax of the logits, (n, C), rows summing
        to 1 (:func:`class_probabilities`)."""
        return class_probabilities(self.decision_function(X))

    def predict_codes(self, X: Any) -> np.ndarray:
        """Label codes for standardised features ``X``: 1[f(z) > 0] (binary) or the argmax of the logits."""
        return predicted_codes(self.decision_function(X))

    def predictions(self, frame: pd.DataFrame, *, source: str = "the data") -> pd.DataFrame:
        """One row per row of ``frame``, in its order: ``row`` (0-based data row), ``prediction`` (the label's
        name: the original value of the target column) and ``probability`` (of the positive class) -- or, for a
        multiclass model, one column ``probability[<name>]`` per class, in code order."""
        return self.prediction_table(self.features(frame, source=source), np.arange(len(frame)))

    def prediction_table(self, X: Any, rows: Any) -> pd.DataFrame:
        """``row``, ``prediction`` and the probabilities (:meth:`predictions`) for standardised features ``X``
        whose rows are ``rows``."""
        logits = self.decision_function(X)
        names = np.asarray(self.label_names, dtype=object)
        table = pd.DataFrame({"row": np.asarray(rows, dtype=np.int64), "prediction": names[predicted_codes(logits)]})
        return pd.concat([table, probability_frame(logits, self.label_names)], axis=1)

    def labels(self, values: pd.Series, *, column: str, source: str = "the data") -> np.ndarray:
        """Label codes of a target column's values: 1 where the value is the positive label, 0 where it is the
        negative one (or, one-vs-rest, any other value); for a multiclass model, the code of the class whose
        value (or name) it is. A value matching no label is an error naming it."""
        negative, positive = self.label_values[0], self.label_values[-1]
        texts = values.astype(str).to_numpy()
        missing = values.isna().to_numpy() | (np.char.strip(texts.astype(str)) == "")
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise FastfairError(
                f"target column {column!r} of {source} has {int(missing.sum())} missing value(s), first in data "
                f"row {row + 1}"
            )
        if self.multiclass:
            return self._class_codes(values, texts, column=column, source=source)
        pos = _matches(values, texts, positive, self.label_names[-1])
        if negative is None:
            return pos.astype(np.int64)
        neg = _matches(values, texts, negative, self.label_names[0])
        neither = ~(pos | neg)
        if neither.any():
            row = int(np.flatnonzero(neither)[0])
            raise FastfairError(
                f"target column {column!r} of {source} has value {texts[row]!r} (data row {row + 1}), which is "
                f"not one of the model's labels {self.label_names[0]!r}, {self.label_names[-1]!r}"
            )
        return pos.astype(np.int64)

    def _class_codes(self, values: pd.Series, texts: np.ndarray, *, column: str, source: str) -> np.ndarray:
        """The multiclass codes of a target column (first matching class; a value of no class is an error)."""
        codes = np.full(len(values), -1, dtype=np.int64)
        for code, (value, name) in enumerate(zip(self.label_values, self.label_names, strict=True)):
            codes[(codes < 0) & _matches(values, texts, value, name)] = code
        unseen = codes < 0
        if unseen.any():
            row = int(np.flatnonzero(unseen)[0])
            shown = ", ".join(repr(n) for n in self.label_names[:10]) + (", ..." if self.n_classes > 10 else "")
            raise FastfairError(
                f"target column {column!r} of {source} has value {texts[row]!r} (data row {row + 1}), which is "
                f"not one of the model's {self.n_classes} classes ({shown})"
            )
        return codes

    # -- the training data ---------------------------------------------------------------------------------
    def training_dataset(self, csv: str | os.PathLike[str] | None = None) -> Dataset:
        """The training data's :class:`~fastfair.datasets.Dataset`, rebuilt with the recorded seed and options:
        a bundled dataset by name, a CSV from ``csv``, which must be the training file (same sha256).

        The rebuilt features must be those the model was trained on (names and standardisation, bit for bit);
        :class:`FastfairError` otherwise.
        """
        info = self.header["dataset"]
        options = dict(info.get("options") or {})
        seed = int(info.get("seed") or 0)
        if info.get("kind") == "csv":
            require(
                csv is not None,
                f"the model was trained on the CSV file {info.get('file')!r}; give it with --data to rebuild a split",
            )
            digest = file_sha256(csv)
            require(
                digest == info.get("sha256"),
                f"{Path(csv).name} is not the file the model was trained on (sha256 {digest[:12]}..., expected "
                f"{str(info.get('sha256'))[:12]}...); its splits cannot be rebuilt, evaluate all its rows instead",
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # already said when the model was trained
                data = load_csv(csv, seed=seed, **options)
        else:
            data = load(self.dataset_name, seed=seed, **options)
        same = (
            list(data.feature_names) == self.feature_names
            and np.array_equal(data.mean, self.mean)
            and np.array_equal(data.scale, self.scale)
        )
        require(same, f"dataset {data.name!r} no longer gives the features the model was trained on")
        return data

    def split(self, name: str, csv: str | os.PathLike[str] | None = None) -> Split:
        """One split (``train``, ``val`` or ``test``) of :meth:`training_dataset`."""
        return self.training_dataset(csv).split(name)


def class_probabilities(logits: np.ndarray) -> np.ndarray:
    r"""Probabilities from logits: σ(f) (the positive class) for (n,) binary logits; for (n, C) the softmax
    :math:`p_k = e^{f_k - m}/\sum_j e^{f_j - m}`, :math:`m = \max_j f_j`, in float64 (no overflow, rows sum to
    1). The training run's own rule (:func:`fastfair.training.probabilities`), so that scores match it bit for bit."""
    return probabilities(np.asarray(logits, dtype=np.float64))


def predicted_codes(logits: np.ndarray) -> np.ndarray:
    """Label codes from logits: 1[f > 0] for (n,) binary logits, the argmax (lowest code on ties) for (n, C): the
    training run's rule (:func:`fastfair.training.predicted_labels`)."""
    return predicted_labels(np.asarray(logits))


def probability_columns(label_names: Sequence[Any]) -> list[str]:
    """Names of the probability columns of a prediction table: ``probability`` (of the positive class) for a
    binary model, ``probability[<name>]`` per class, in code order, for C >= 3 classes."""
    if len(label_names) <= 2:
        return ["probability"]
    return [f"probability[{name}]" for name in label_names]


def probability_frame(logits: np.ndarray, label_names: Sequence[Any]) -> pd.DataFrame:
    """The probability columns (:func:`probability_columns`) of logits (n,) or (n, C)."""
    p = class_probabilities(logits)
    return pd.DataFrame(p.reshape(len(p), -1), columns=probability_columns(label_names))


def _matches(values: pd.Series, texts: np.ndarray, value: Any, name: str) -> np.ndarray:
    """Where a target column holds ``value``: equal as values, or as text (the value's or its name's)."""
    out = texts == str(value)
    out |= texts == str(name)
    if isinstance(value, (bool, np.bool_)):
        out |= values.map(lambda v: isinstance(v, (bool, np.bool_)) and bool(v) == bool(value)).to_numpy(bool)
    elif isinstance(value, (int, float)) and pd.api.types.is_numeric_dtype(values.dtype):
        out |= values.to_numpy(dtype=np.float64) == float(value)
    return out


def load_model(path: str | os.PathLike[str]) -> SavedModel:
    """Read a model file (see the module docstring) without executing anything from it.

    Raises
    ------
    FastfairError
        One line, naming the file and what is wrong: missing or not a file; not a torch archive of tensors and
        plain values (in particular, a pickled object that would run code is refused before it runs); no
        fastfair header; a format version newer than :data:`FORMAT_VERSION`; a header or parameters that do
        not describe a network this version builds.
    """
    file = Path(path)
    require(file.exists(), f"model file not found: {file}")
    if file.is_dir():
        hint = f"; did you mean {file / 'model.pt'}?" if (file / "model.pt").is_file() else ""
        raise FastfairError(f"not a model file: {file} is a directory{hint}")
    require(file.is_file(), f"not a file: {file}")
    payload = _read_payload(file)
    where = f"model file {file}"
    require(
        isinstance(payload, dict) and payload.get("format") == FORMAT,
        f"{file} is not a fastfair model file (no {FORMAT!r} header)",
    )
    version = payload.get("format_version")
    require(
        isinstance(version, int) and not isinstance(version, bool) and version >= 1,
        f"{where} has an invalid format version {version!r}",
    )
    require(
        version <= FORMAT_VERSION,
        f"{where} has format version {version}, newer than this fastfair ({__version__}) reads "
        f"(up to {FORMAT_VERSION}); upgrade fastfair to use it",
    )
    try:
        header = json.loads(payload["header"])
    except (KeyError, TypeError, ValueError):
        raise FastfairError(f"{where} has no readable JSON header") from None
    require(isinstance(header, dict), f"{where} has no readable JSON header")
    _check_header(header, where)
    spec = header["model"]
    state = payload.get("state_dict")
    require(
        isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()),
        f"{where} has no parameters (state_dict)",
    )
    model = _build(spec, where)
    _check_state(state, spec, where)
    model.load_state_dict(state, strict=True)
    model.eval()
    d = spec["n_features"]
    mean, scale = (_vector(payload.get(key), d, key, where) for key in ("mean", "scale"))
    require(bool(np.all(scale > 0)), f"{where} has a non-positive standardisation scale")
    return SavedModel(path=file, header=header, model=model, mean=mean, scale=scale)


def _read_payload(file: Path) -> Any:
    """``torch.load(file, weights_only=True)``: tensors and plain containers only; every failure one line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on the pickle protocol of a foreign file
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = " ".join(str(exc).split())
        if "Weights only load failed" in text:
            found = re.search(r"(?:Unsupported global|unsupported GLOBAL|global): ?(?:GLOBAL )?([\w.]+)", text)
            what = f" ({found.group(1)})" if found else ""
            raise FastfairError(
                f"refused to load {file}: it holds Python objects{what}, not only tensors and plain values; a "
                "model file is data and is never executed (if it came from an older fastfair, retrain it)"
            ) from None
        raise FastfairError(f"{file} is not a fastfair model file (not a torch archive: {text[:120]})") from None
    except MemoryError:
        raise
    except Exception as exc:  # torch.load raises many types on foreign bytes (KeyError, EOFError, RuntimeError...)
        text = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise FastfairError(f"{file} is not a fastfair model file (not a readable torch archive: {text})") from None


def _check_header(header: dict[str, Any], where: str) -> None:
    """Every header entry that scoring relies on is there, with the right type."""
    expected: dict[str, tuple[type, ...]] = {
        "model": (dict,),
        "features": (dict,),
        "target": (dict,),
        "sensitive": (dict,),
        "dataset": (dict,),
        "training": (dict,),
    }
    for key, types in expected.items():
        require(isinstance(header.get(key), types), f"{where}: header entry {key!r} is missing or malformed")
    model = header["model"]
    for key, types in {
        "family": (str,),
        "n_features": (int,),
        "hidden": (list,),
        "activation": (str,),
        "n_outputs": (int,),
        "dtype": (str,),
    }.items():
        require(isinstance(model.get(key), types), f"{where}: header entry 'model.{key}' is missing or malformed")
    outputs = model["n_outputs"]
    require(
        outputs == 1 or 3 <= outputs <= MAX_CLASSES,
        f"{where} is a model with {outputs} outputs; this fastfair scores binary models (1 output) and multiclass "
        f"ones (3 to {MAX_CLASSES} outputs, one per class)",
    )
    require(model["dtype"] in ("float32", "float64"), f"{where}: unknown dtype {model['dtype']!r}")
    features = header["features"]
    encoding = features.get("encoding")
    require(
        isinstance(encoding, list)
        and all(isinstance(e, dict) and isinstance(e.get("column"), str) for e in encoding)
        and isinstance(features.get("names"), list)
        and isinstance(features.get("standardized"), bool),
        f"{where}: header entry 'features' is malformed",
    )
    for entry in encoding:
        kind = entry.get("kind")
        require(kind in (NUMERIC, ONE_HOT), f"{where}: unknown encoding {kind!r} of column {entry['column']!r}")
        if kind == ONE_HOT:
            require(
                isinstance(entry.get("categories"), list) and entry.get("unseen", "error") in ("error", "zeros"),
                f"{where}: malformed one-hot encoding of column {entry['column']!r}",
            )
    require(
        encoded_names(encoding) == features["names"] and len(features["names"]) == model["n_features"],
        f"{where}: the feature encoding does not give the model's {model['n_features']} inputs",
    )
    sensitive = header["sensitive"]
    require(
        sensitive.get("column") is None or isinstance(sensitive["column"], str),
        f"{where}: header entry 'sensitive.column' is malformed",
    )
    require(
        "columns" not in sensitive
        or (isinstance(sensitive["columns"], list) and all(isinstance(c, str) for c in sensitive["columns"])),
        f"{where}: header entry 'sensitive.columns' is malformed",
    )
    target = header["target"]
    require(
        isinstance(target.get("values"), list)
        and isinstance(target.get("names"), list)
        and len(target["values"]) == len(target["names"]) >= 2,
        f"{where}: header entry 'target' is malformed (label values and names, two or more of each)",
    )
    labels = len(target["values"])
    require(
        labels == (2 if outputs == 1 else outputs),
        f"{where} is a model with {outputs} outputs; this fastfair scores binary models (1 output) only with 2 "
        f"label values and C-class models with C outputs and C label values, but its header has {labels}",
    )


def _build(spec: dict[str, Any], where: str) -> nn.Module:
    try:
        hidden = check_hidden(spec["hidden"], "hidden")
        classes = {} if spec["n_outputs"] == 1 else {"n_classes": spec["n_outputs"]}
        model = build_model(
            spec["family"], spec["n_features"], hidden=hidden, activation=spec["activation"], seed=0, **classes
        )
    except (FastfairError, TypeError) as exc:
        raise FastfairError(f"{where} describes a network this fastfair cannot build: {exc}") from None
    return model.to(getattr(torch, spec["dtype"]))


def _check_state(state: Mapping[str, torch.Tensor], spec: dict[str, Any], where: str) -> None:
    """The parameters have exactly the names, shapes and dtype of the network ``spec`` describes."""
    reference = _build(spec, where).state_dict()
    require(
        sorted(state) == sorted(reference),
        f"{where}: its parameters ({', '.join(sorted(state))}) are not those of a {spec['family']} network "
        f"({', '.join(sorted(reference))})",
    )
    for name, tensor in state.items():
        want = reference[name]
        require(
            tuple(tensor.shape) == tuple(want.shape) and tensor.dtype == want.dtype,
            f"{where}: parameter {name!r} has shape {tuple(tensor.shape)} and dtype {tensor.dtype}, expected "
            f"{tuple(want.shape)} and {want.dtype}",
        )
        require(bool(torch.isfinite(tensor).all()), f"{where}: parameter {name!r} is not finite")


def _vector(value: Any, d: int, key: str, where: str) -> np.ndarray:
    require(
        isinstance(value, torch.Tensor) and value.shape == (d,) and value.dtype == torch.float64,
        f"{where}: {key!r} must be a float64 tensor of shape ({d},)",
    )
    out = value.numpy().copy()
    require(bool(np.isfinite(out).all()), f"{where}: {key!r} is not finite")
    return out
