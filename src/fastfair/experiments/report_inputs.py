"""What the report needs besides the results table, read from the results store: the decision-boundary models, and
the reference TRS's branches measured on the stored models.

The report is a pure view of a sweep and trains nothing. Its Unfair2D figure (the decision boundaries f(x) = 0 of
the non-robust model and of the TRS model at r = 0.18, over the training points) is drawn from two models the
sweep has already trained: every cell file keeps its model's weights (``record["model_state"]``, written by
:func:`fastfair.experiments.cell.run_cell`). :func:`unfair2d_boundaries` picks the two cells, loads the training
rows they were trained on, rebuilds both models from their stored weights and hands the report plain arrays and
decision functions (:class:`BoundaryInputs`), or, when the store cannot give them, the reason as one line of text.

Which cells: among the rows of ``results`` whose dataset is ``unfair2d``, the affine model's (the paper's logistic
regression; the first model of the table if there is no affine one); the non-robust cell (solver ``none``) and
the TRS cell at the radius, of the lowest seed that has both with the same training settings.

A rebuilt model computes exactly the logits of the trained one: the weights are stored as float64 lists, which
hold every float32 value exactly, and the model is rebuilt in the cell's own dtype.

The reference TRS's defect (:func:`defect_measurements`): for every ``trs-paper`` cell of the lowest seed that has
one, its stored model and the non-robust model of the same seed and settings are rebuilt, and on the first
:data:`DEFECT_ROWS` training rows the cell trained on, the reference TRS (``trs-paper``, with the cell's batch size
for its 1/b scaling, as in training) and the exact TRS (``trs``) are run once at the cell's radius. Counted: the
branch each row takes (interior Newton step, boundary, degenerate, no bracket), the rows whose loss the
reference step *lowers*, and the mean loss each solver attains. Nothing is trained.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import FastfairError
from ..inner import make_inner
from ..inner.trs_paper import BRANCHES
from ..io import dumps_json
from ..models import build_model
from ..vocabulary import BASELINE, DTYPES, round_radius
from .cell import load_dataset
from .grid import DataSpec
from .store import ResultsStore

#: The dataset of the figure, as the ``dataset`` column of the results names it.
DATASET = "unfair2d"
#: The robust model of the figure: TRS at the radius of the paper's Unfair2D figure.
ROBUST_SOLVER = "trs"
RADIUS = 0.18
#: Results columns the two cells must agree on (besides dataset, model and seed) to be drawn side by side.
SHARED_SETTINGS = ("epochs", "batch_size", "lr", "train_size", "hidden", "activation", "dtype")
#: Entries of a stored cell spec that rebuilding its model and describing the figure read.
SPEC_KEYS = ("model", "hidden", "activation", "solver", "radius", "seed", "epochs", "batch_size", "lr", "dtype")
#: The solver whose defect is measured, and the exact solver it is compared with.
PAPER_TRS = "trs-paper"
EXACT_TRS = "trs"
#: Training rows (the first ones) on which the defect is measured, per stored model.
DEFECT_ROWS = 2000
#: Columns of :func:`defect_measurements`: the cell, whose weights (``weights``: the trs-paper model or the
#: non-robust one), the share of rows per branch, the share whose loss the reference step lowers, mean losses.
DEFECT_COLUMNS = (
    "dataset",
    "model",
    "radius",
    "seed",
    "weights",
    "rows",
    *(b.replace("-", "_") for b in BRANCHES),
    "lowered",
    "clean_loss",
    "paper_loss",
    "trs_loss",
)


@dataclass(frozen=True, eq=False)
class StoredModel:
    """One model rebuilt from its cell's stored weights."""

    cell_id: str
    solver: str
    #: sha256 of the stored weights (canonical JSON): the identity of :attr:`decision_function`.
    state_sha256: str
    #: Logits f(x) of an (m, d) float array, as an (m,) float64 array.
    decision_function: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class BoundaryInputs:
    """The decision-boundary figure's inputs: the training rows and the models, non-robust first."""

    dataset: str
    X: np.ndarray  #: (n, 2) float64 training features (the rows the models were trained on)
    y: np.ndarray  #: (n,) labels in {0, 1}
    s: np.ndarray  #: (n,) group codes, code j named ``group_names[j]``
    group_names: tuple[str, ...]
    model: str
    seed: int
    epochs: int
    batch_size: int
    lr: float
    radius: float  #: radius of the robust model
    models: tuple[StoredModel, ...]

    def fingerprint(self) -> str:
        """sha256 of everything the figure is drawn from: settings, weights (by their hash) and points."""
        meta = {
            "dataset": self.dataset,
            "group_names": list(self.group_names),
            "model": self.model,
            "seed": self.seed,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "radius": self.radius,
            "models": [[m.cell_id, m.solver, m.state_sha256] for m in self.models],
        }
        digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
        for array in (self.X, self.y, self.s):
            a = np.ascontiguousarray(array)
            digest.update(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
        return digest.hexdigest()


def unfair2d_boundaries(
    store: str | os.PathLike[str] | ResultsStore, results: pd.DataFrame, *, radius: float = RADIUS
) -> BoundaryInputs | str:
    """The Unfair2D decision-boundary models of ``results``, rebuilt from the cell files of ``store``.

    ``store`` is the sweep directory (or its :class:`ResultsStore`); ``results`` the results table the report is
    built from. Returns :class:`BoundaryInputs`, or a one-line reason (without final period) when the store lacks
    what the figure needs: Unfair2D or one of the two cells is not in ``results``, a cell file is missing, holds
    no weights or weights that do not fit its model, or the data cannot be loaded. Nothing is trained.
    """
    store = store if isinstance(store, ResultsStore) else ResultsStore(store)
    pair = _pick_cells(results, radius)
    if isinstance(pair, str):
        return pair
    records = []
    for cell_id in pair:
        record = _read_record(store, cell_id)
        if isinstance(record, str):
            return record
        records.append(record)
    baseline, robust = records
    if baseline["data"] != robust["data"]:
        return f"cells {pair[0]} and {pair[1]} were trained on different data"
    spec = baseline["spec"]
    try:
        data = load_dataset(_data_spec(baseline["data"]), int(spec["seed"]))
    except FastfairError as exc:
        return f"the training data of cell {pair[0]} cannot be loaded: {exc}"
    train = data.train if spec.get("train_size") is None else data.train.head(int(spec["train_size"]))
    if train.X.shape[1] != 2:
        return f"{DATASET} has {train.X.shape[1]} features here; the figure draws 2"
    models = []
    for record in records:
        model = _rebuild(record, train.X.shape[1])
        if isinstance(model, str):
            return model
        models.append(model)
    return BoundaryInputs(
        dataset=DATASET,
        X=np.asarray(train.X, dtype=np.float64),
        y=np.asarray(train.y),
        s=np.asarray(train.s),
        group_names=tuple(str(g) for g in train.group_names),
        model=str(spec["model"]),
        seed=int(spec["seed"]),
        epochs=int(spec["epochs"]),
        batch_size=int(spec["batch_size"]),
        lr=float(spec["lr"]),
        radius=float(robust["spec"]["radius"]),
        models=tuple(models),
    )


def _pick_cells(results: pd.DataFrame, radius: float) -> tuple[str, str] | str:
    """Cell ids of the non-robust and the TRS cell of the figure (see the module docstring), or why there are none."""
    cells = results.drop_duplicates("cell_id")
    cells = cells[cells["dataset"].astype(str) == DATASET]
    if cells.empty:
        return f"{DATASET} is not in these results"
    models = list(dict.fromkeys(cells["model"].astype(str)))
    model = "affine" if "affine" in models else models[0]
    cells = cells[cells["model"].astype(str) == model]
    baselines = cells[cells["solver"] == BASELINE].sort_values("seed", kind="stable")
    target = round_radius(radius)
    robust = cells[(cells["solver"] == ROBUST_SOLVER) & (cells["radius"].map(round_radius) == target)]
    if baselines.empty:
        return f"no non-robust {DATASET} cell (solver {BASELINE}) in these results"
    if robust.empty:
        return f"no {DATASET} cell with solver {ROBUST_SOLVER} at r={radius:g} in these results"
    for _, base in baselines.iterrows():
        for _, other in robust[robust["seed"] == base["seed"]].iterrows():
            if all(_same(base[c], other[c]) for c in SHARED_SETTINGS if c in cells.columns):
                return str(base["cell_id"]), str(other["cell_id"])
    return (
        f"no non-robust and {ROBUST_SOLVER} (r={radius:g}) {DATASET} cells of the same seed and training settings "
        "in these results"
    )


def _same(a: Any, b: Any) -> bool:
    """Equal, where two missing values (None, NaN, <NA>) count as equal."""
    if pd.isna(a) or pd.isna(b):
        return bool(pd.isna(a) and pd.isna(b))
    return bool(a == b)


def _read_record(store: ResultsStore, cell_id: str) -> dict[str, Any] | str:
    """The stored record of ``cell_id`` with its weights, or why it cannot be used."""
    path = store.cell_path(cell_id)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"the cell file {str(path)!r} is missing or unreadable"
    if not isinstance(record, dict) or record.get("cell_id") != cell_id or not isinstance(record.get("spec"), dict):
        return f"the cell file {str(path)!r} does not hold cell {cell_id}"
    if any(key not in record["spec"] for key in SPEC_KEYS):
        return f"the cell file {str(path)!r} does not say how cell {cell_id} was trained"
    if not isinstance(record.get("data"), dict):
        return f"the cell file {str(path)!r} does not say which data cell {cell_id} was trained on"
    if not isinstance(record.get("model_state"), dict) or not record["model_state"]:
        return f"the cell file {str(path)!r} holds no model weights"
    return record


def _data_spec(data: dict[str, Any]) -> DataSpec:
    """The :class:`DataSpec` of a stored record's ``data`` entry (:meth:`DataSpec.to_dict` inverted)."""
    features = data.get("features")
    return DataSpec(
        label=str(data["label"]),
        name=data.get("name"),
        csv=data.get("csv"),
        csv_sha256=data.get("csv_sha256"),
        target=data.get("target"),
        sensitive=data.get("sensitive"),
        features=tuple(features) if features is not None else None,
        positive=data.get("positive"),
        options=dict(data.get("options") or {}),
    )


def _rebuild_module(record: dict[str, Any], n_features: int) -> tuple[torch.nn.Module, torch.dtype] | str:
    """The module of ``record`` with its stored weights (eval mode) and its dtype, or why they do not fit it."""
    spec, cell_id = record["spec"], record["cell_id"]
    dtype_name = spec.get("dtype")
    if dtype_name not in DTYPES:
        return f"cell {cell_id} has an unknown dtype {dtype_name!r}"
    dtype = getattr(torch, dtype_name)
    state = record["model_state"]
    shape = {k: spec[k] for k in ("hidden", "activation") if spec.get(k) is not None}  # None for affine
    try:
        model = build_model(str(spec["model"]), n_features, seed=int(spec["seed"]), dtype=dtype, **shape)
        model.load_state_dict({k: torch.tensor(v, dtype=dtype) for k, v in state.items()})
    except (FastfairError, RuntimeError, TypeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the stored weights of cell {cell_id} do not fit its {spec.get('model')} model: {first}"
    model.eval()
    return model, dtype


def _rebuild(record: dict[str, Any], n_features: int) -> StoredModel | str:
    """The model of ``record`` with its stored weights, or why they do not fit it."""
    built = _rebuild_module(record, n_features)
    if isinstance(built, str):
        return built
    model, dtype = built
    sha = hashlib.sha256(dumps_json(record["model_state"], sort_keys=True).encode()).hexdigest()
    return StoredModel(record["cell_id"], str(record["spec"]["solver"]), sha, _decision_function(model, dtype))


def _decision_function(model: torch.nn.Module, dtype: torch.dtype) -> Callable[[np.ndarray], np.ndarray]:
    """f(X) of ``model`` on a numpy array, evaluated in ``dtype`` without building a graph, as float64."""

    def decision_function(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(X, dtype=np.float64), dtype=dtype)
            return model(x).reshape(-1).double().numpy()

    return decision_function


def defect_measurements(store: str | os.PathLike[str] | ResultsStore, results: pd.DataFrame) -> pd.DataFrame | str:
    """The reference TRS's branches and attained losses on the stored models of ``results`` (module docs).

    One row per measured model (:data:`DEFECT_COLUMNS`): for each ``trs-paper`` cell of the lowest seed with one
    (per dataset, model and radius), its own model (``weights = "trs-paper"``) and the non-robust model of the same
    seed and settings (``weights = "none"``, when there is one). Returns a one-line reason (without final period)
    instead when there is no ``trs-paper`` cell or nothing could be measured; a cell whose file or data cannot be
    used is left out.
    """
    store = store if isinstance(store, ResultsStore) else ResultsStore(store)
    cells = results.drop_duplicates("cell_id")
    paper = cells[cells["solver"].astype(str) == PAPER_TRS]
    if paper.empty:
        return f"no {PAPER_TRS} cell in these results"
    paper = paper.sort_values("seed", kind="stable").drop_duplicates(["dataset", "model", "radius"], keep="first")
    baselines = cells[cells["solver"].astype(str) == BASELINE]
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for _, cell in paper.iterrows():
        same = baselines[
            (baselines["dataset"] == cell["dataset"])
            & (baselines["model"] == cell["model"])
            & (baselines["seed"] == cell["seed"])
        ]
        same = same[
            [all(_same(b[c], cell[c]) for c in SHARED_SETTINGS if c in cells.columns) for _, b in same.iterrows()]
        ]
        ids = [("trs-paper", str(cell["cell_id"]))] + [("none", str(same["cell_id"].iloc[0]))] * (not same.empty)
        for weights, cell_id in ids:
            measured = _measure(store, cell_id, cell, weights)
            (skipped if isinstance(measured, str) else rows).append(measured)  # type: ignore[arg-type]
    if not rows:
        return f"no {PAPER_TRS} model could be measured: {skipped[0]}"
    return pd.DataFrame(rows, columns=list(DEFECT_COLUMNS))


def _measure(store: ResultsStore, cell_id: str, cell: pd.Series, weights: str) -> dict[str, Any] | str:
    """One row of :func:`defect_measurements`: the stored model of ``cell_id`` at the radius of ``cell``."""
    record = _read_record(store, cell_id)
    if isinstance(record, str):
        return record
    spec = record["spec"]
    try:
        data = load_dataset(_data_spec(record["data"]), int(spec["seed"]))
    except FastfairError as exc:
        return f"the training data of cell {cell_id} cannot be loaded: {exc}"
    train = data.train if spec.get("train_size") is None else data.train.head(int(spec["train_size"]))
    built = _rebuild_module(record, train.X.shape[1])
    if isinstance(built, str):
        return built
    model, dtype = built
    radius = float(cell["radius"])
    x = torch.as_tensor(np.asarray(train.X[:DEFECT_ROWS], dtype=np.float64), dtype=dtype)
    y = torch.as_tensor(np.asarray(train.y[:DEFECT_ROWS], dtype=np.float64), dtype=dtype)
    paper = make_inner(PAPER_TRS, batch_size=int(cell["batch_size"])).perturb(model, x, y, radius)
    exact = make_inner(EXACT_TRS).perturb(model, x, y, radius)
    n = int(x.shape[0])
    counts = torch.bincount(paper.extras["branch"], minlength=len(BRANCHES)).tolist()
    return {
        "dataset": str(cell["dataset"]),
        "model": str(cell["model"]),
        "radius": radius,
        "seed": int(cell["seed"]),
        "weights": weights,
        "rows": n,
        **{b.replace("-", "_"): counts[i] / n for i, b in enumerate(BRANCHES)},
        "lowered": float((paper.loss < paper.extras["clean_loss"]).double().mean()),
        "clean_loss": float(paper.extras["clean_loss"].double().mean()),
        "paper_loss": float(paper.loss.double().mean()),
        "trs_loss": float(exact.loss.double().mean()),
    }


__all__ = ["DEFECT_COLUMNS", "BoundaryInputs", "StoredModel", "defect_measurements", "unfair2d_boundaries"]
