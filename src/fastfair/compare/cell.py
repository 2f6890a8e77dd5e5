"""One cell of the comparison: a method at one knob value and one seed, trained and scored on every split.

:class:`CompareCell` is a frozen, picklable value with the face the sweep machinery expects (``cell_id``,
``spec()``, ``describe()``, ``data``, ``seed``), so that :func:`fastfair.experiments.run_sweep` stores, resumes
and distributes these cells (``--jobs``, Dask) exactly as it does training cells. :func:`run_compare_cell`
trains and scores it, in the same conditions as :func:`fastfair.experiments.cell.run_cell` (one torch
thread, torch's RNG seeded from the cell).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..experiments.cell import METRICS, isolated_cell, load_dataset, warning_notes
from ..experiments.grid import DataSpec
from ..experiments.store import finished_rows
from ..vocabulary import SPLITS
from .methods import knob_text, method, penalty_of
from .scoring import SCORING_RULE, expected_summary

#: Bump when the meaning of a comparison cell changes, to invalidate stored cells.
COMPARE_SCHEMA = 1

#: Per-group robustness summary columns, filled on the test rows of each method's selected model (``selected``):
#: at ``robustness_radius``, the flip rate and robust accuracy of all test points, and the largest minus the
#: smallest over the groups (the full per-group table is ``robustness.csv``).
ROBUSTNESS = ("robustness_radius", "flip_rate", "flip_rate_gap", "robust_accuracy", "robust_accuracy_gap")
#: Columns of the comparison's results table, one row per cell x split.
COLUMNS = (
    "cell_id",
    "dataset",
    "method",
    "knob_name",
    "knob",
    "seed",
    "split",
    "n",
    *METRICS,
    "uses_sensitive_at_prediction",
    "selected",
    *ROBUSTNESS,
    "fit_seconds",
    "solver",
    "radius",
    "fairness_penalty",
    "fairness_weight",
    "eg_max_iter",
    "model",
    "hidden",
    "activation",
    "epochs",
    "batch_size",
    "lr",
    "train_size",
    "dtype",
    "scoring",
    "fairlearn_version",
)


@dataclass(frozen=True)
class CompareCell:
    """A method (:mod:`.methods`) at one knob value, trained with one seed and the shared settings."""

    data: DataSpec
    method: str
    knob: float | None
    seed: int
    model: str = "affine"
    hidden: int | tuple[int, ...] = 16
    activation: str = "tanh"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-2
    train_size: int | None = None
    dtype: str = "float32"
    solver: str = "trs"  #: the robust methods' inner solver (``trs`` or ``auto``)
    penalty_radius: float = 0.1  #: the radius of ``robust-penalty-*`` (their knob is λ)
    eg_max_iter: int = 50

    def spec(self) -> dict[str, Any]:
        """Everything that determines this cell's numbers, as a canonical plain dict."""
        m = method(self.method)
        return {
            "schema": COMPARE_SCHEMA,
            "kind": "compare",
            "data": self.data.identity(),
            "method": self.method,
            "knob": self.knob if m.knob is not None else None,
            "seed": self.seed,
            "model": self.model,
            "hidden": (self.hidden if isinstance(self.hidden, int) else list(self.hidden))
            if self.model != "affine"
            else None,
            "activation": self.activation if self.model != "affine" else None,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "train_size": self.train_size,
            "dtype": self.dtype,
            "solver": self.solver if m.robust else None,
            "penalty_radius": self.penalty_radius if self.method.startswith("robust-penalty-") else None,
            "eg_max_iter": self.eg_max_iter if self.method.startswith("eg-") else None,
            "fairlearn": _fairlearn_version() if m.standard else None,
        }

    @property
    def cell_id(self) -> str:
        """Readable and unique: method, knob and seed, then 12 hex digits of the SHA-256 of :meth:`spec`,
        e.g. ``eg-dp-eps0.02-seed1-3fa9c0d2e1b4``."""
        text = json.dumps(self.spec(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        knob = knob_text(self.method, self.knob).replace("=", "").replace("lambda", "lam")
        return "-".join(part for part in (self.method, knob, f"seed{self.seed}", digest) if part)

    @property
    def dataset(self) -> str:
        return self.data.label

    @property
    def cost(self) -> float:
        """Rough relative cost, to start dear cells first: ExponentiatedGradient fits many models."""
        base = self.epochs * (self.train_size or 1000) / self.batch_size**0.5
        return base * (self.eg_max_iter / 4 if self.method.startswith("eg-") else 1.0)

    def describe(self) -> str:
        """E.g. ``adult eg-dp eps=0.02 seed 1``."""
        knob = knob_text(self.method, self.knob)
        return " ".join(part for part in (self.data.label, self.method, knob, f"seed {self.seed}") if part)

    def radius(self) -> float | None:
        """The training radius of a robust method, else None."""
        if self.method == "robust":
            return self.knob
        if self.method.startswith("robust-penalty-"):
            return self.penalty_radius
        return None

    def estimator(self, **changes: Any) -> Any:
        """The unfitted :class:`~fastfair.estimator.RobustFairClassifier` of this cell's method (without the
        Fairlearn wrapper): the shared settings, plus the method's solver, radius and penalty."""
        from ..estimator import RobustFairClassifier

        params: dict[str, Any] = {
            "solver": "none",
            "model": self.model,
            "hidden": self.hidden,
            "activation": self.activation,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
            "dtype": self.dtype,
        }
        radius = self.radius()
        if radius is not None:
            params.update(solver=self.solver, radius=radius)
        penalty = penalty_of(self.method)
        if penalty is not None:
            params.update(fairness_penalty=penalty, fairness_weight=self.knob)
        params.update(changes)
        return RobustFairClassifier(**params)


def _fairlearn_version() -> str:
    import fairlearn

    return str(fairlearn.__version__)


class Fitted:
    """A fitted method: the probability of predicting 1 (``pmf``), a ranking score (``scores``), and what it
    predicts with, for the robustness analysis: ``models``, a list of ``{"weight", "state", "constant"}`` (the
    weights of a torch model as nested lists, or the constant label of a constant predictor). One model of
    weight 1 for our methods; ExponentiatedGradient's mixture (whose oracle returns a constant predictor when
    the reweighted labels hold one class); none for ThresholdOptimizer, whose thresholds depend on the group."""

    def __init__(self, pmf: Any, scores: Any, models: list[dict[str, Any]]) -> None:
        self.pmf, self.scores, self.models = pmf, scores, models


def _entry(weight: float, predictor: Any) -> dict[str, Any]:
    model = getattr(predictor, "model_", None)
    if model is not None:
        state = {k: v.detach().cpu().double().tolist() for k, v in model.state_dict().items()}
        return {"weight": weight, "state": state, "constant": None}
    # sklearn's DummyClassifier(strategy="constant"): the label it always predicts
    return {"weight": weight, "state": None, "constant": int(predictor.constant)}


def fit_method(cell: CompareCell, X: np.ndarray, y: np.ndarray, s: np.ndarray) -> Fitted:
    """Fit ``cell``'s method on the training rows (X, y, s) and return how it predicts."""
    from scipy.special import expit

    name = cell.method
    if name.startswith("eg-"):
        from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient

        moment = DemographicParity if name == "eg-dp" else EqualizedOdds
        eg = ExponentiatedGradient(
            cell.estimator(), moment(difference_bound=cell.knob), eps=cell.knob, max_iter=cell.eg_max_iter
        )
        eg.fit(X, y, sensitive_features=s)

        def pmf(Xq: np.ndarray, sq: np.ndarray) -> np.ndarray:
            return np.asarray(eg._pmf_predict(Xq))[:, 1]

        models = [_entry(float(w), h) for w, h in zip(eg.weights_, eg.predictors_, strict=True) if w > 0]
        return Fitted(pmf, pmf, models)
    if name.startswith("to-"):
        from fairlearn.postprocessing import ThresholdOptimizer

        base = cell.estimator().fit(X, y)
        to = ThresholdOptimizer(
            estimator=base,
            constraints="demographic_parity" if name == "to-dp" else "equalized_odds",
            objective="accuracy_score",
            prefit=True,
            predict_method="predict_proba",
        )
        to.fit(X, y, sensitive_features=s)

        def pmf(Xq: np.ndarray, sq: np.ndarray) -> np.ndarray:
            return np.asarray(to._pmf_predict(Xq, sensitive_features=sq))[:, 1]

        return Fitted(pmf, pmf, [])
    est = cell.estimator()
    if penalty_of(name) is not None:
        est.fit(X, y, sensitive_features=s)
    else:
        est.fit(X, y)
    return Fitted(
        lambda Xq, sq: (est.decision_function(Xq) > 0).astype(np.float64),
        lambda Xq, sq: expit(est.decision_function(Xq)),
        [_entry(1.0, est)],
    )


def run_compare_cell(cell: CompareCell) -> dict[str, Any]:
    """Train and score one comparison cell; return its record ``{"cell_id", "spec", "rows", ...}``.

    ``rows`` holds one dict per split with the :data:`COLUMNS` (the training rows are the rows trained on);
    ``models`` what the fitted method predicts with (:class:`Fitted`), from which the robustness analysis
    rebuilds it without training.
    """
    m = method(cell.method)
    start, cpu_start, started_at = time.perf_counter(), time.process_time(), time.time()
    with isolated_cell(cell.seed) as caught:
        data = load_dataset(cell.data, cell.seed)
        train = data.train if cell.train_size is None else data.train.head(cell.train_size)
        t_fit = time.perf_counter()
        fitted = fit_method(cell, train.X, train.y, train.s)
        fit_seconds = time.perf_counter() - t_fit
        rows = []
        for split_name in SPLITS:
            split = train if split_name == "train" else data.split(split_name)
            summary = expected_summary(split.y, fitted.pmf(split.X, split.s), split.s, fitted.scores(split.X, split.s))
            rows.append({"split": split_name, "n": len(split), **summary})
    notes = warning_notes(caught)
    base = {
        "cell_id": cell.cell_id,
        "dataset": cell.dataset,
        "method": cell.method,
        "knob_name": m.knob,
        "knob": cell.knob if m.knob is not None else None,
        "seed": cell.seed,
    }
    settings = {
        "uses_sensitive_at_prediction": m.uses_sensitive_at_prediction,
        "fit_seconds": fit_seconds,
        "solver": cell.solver if m.robust else "none",
        "radius": cell.radius(),
        "fairness_penalty": penalty_of(cell.method),
        "fairness_weight": cell.knob if penalty_of(cell.method) is not None else None,
        "eg_max_iter": cell.eg_max_iter if cell.method.startswith("eg-") else None,
        "model": cell.model,
        "hidden": cell.hidden if cell.model != "affine" else None,
        "activation": cell.activation if cell.model != "affine" else None,
        "epochs": cell.epochs,
        "batch_size": cell.batch_size,
        "lr": cell.lr,
        "train_size": cell.train_size,
        "dtype": cell.dtype,
        "scoring": SCORING_RULE,
        "fairlearn_version": _fairlearn_version(),
    }
    # the robustness columns are filled in afterwards, for the selected models (fastfair.compare.robustness)
    out_rows = [{**base, **row, "selected": False, **dict.fromkeys(ROBUSTNESS), **settings} for row in rows]
    return {
        "cell_id": cell.cell_id,
        "description": cell.describe(),
        "spec": cell.spec(),
        "data": cell.data.to_dict(),
        "rows": out_rows,
        "models": fitted.models,
        "warnings": notes,
        "wall_seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "started_at": started_at,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def compare_frame(cells: list[CompareCell], records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The comparison's results table: one row per finished cell x split, in the order of ``cells``."""
    frame = pd.DataFrame(finished_rows(cells, records), columns=list(COLUMNS))
    for col in ("n", "seed", "epochs", "batch_size"):
        frame[col] = frame[col].astype("int64")
    for col in ("knob", *METRICS, "fit_seconds", "lr", *ROBUSTNESS, "radius", "fairness_weight"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["train_size"] = frame["train_size"].astype("Int64")
    frame["eg_max_iter"] = frame["eg_max_iter"].astype("Int64")
    for col in ("uses_sensitive_at_prediction", "selected"):
        frame[col] = frame[col].astype(bool)
    return frame


__all__ = [
    "COLUMNS",
    "CompareCell",
    "compare_frame",
    "fit_method",
    "run_compare_cell",
]
