"""The Unfair2D decision-boundary figure: the non-robust and the TRS model over the data they were trained on.

The figure is drawn from models the sweep already trained and stored. They reach the report as plain arrays and
decision functions (:class:`fastfair.experiments.report_inputs.BoundaryInputs`); nothing is trained here. The
caption states each model's training accuracy, 1/n Σ_i 1[(f(x_i) > 0) = y_i] over the points drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from ..vocabulary import BASELINE
from .figures import SOLVER_STYLE, boundary_figure

if TYPE_CHECKING:
    from ..experiments.report_inputs import BoundaryInputs

#: The dataset of the figure (the paper draws its decision boundaries on Unfair2D).
DATASET = "unfair2d"
#: Report section of the figure.
SECTION = "Unfair2D decision boundaries"


def model_label(solver: str, radius: float) -> str:
    """Legend label of a model: ``non-robust`` for the baseline, else e.g. ``TRS, r=0.18``."""
    if solver == BASELINE:
        return "non-robust"
    return f"{SOLVER_STYLE.get(solver, {}).get('label', solver)}, r={radius:g}"


def describe_settings(inputs: BoundaryInputs) -> str:
    """The training settings both models share, e.g. ``affine model, seed 0, 10 epochs, ..., TRS radius 0.18``."""
    return (
        f"{inputs.model} model, seed {inputs.seed}, {inputs.epochs} epochs, batch size {inputs.batch_size}, "
        f"lr {inputs.lr:g}, TRS radius {inputs.radius:g}"
    )


def train_accuracy(decision_function, X: np.ndarray, y: np.ndarray) -> float:
    """Share of the points ``X`` whose predicted class 1[f(x) > 0] equals their label ``y`` (in {0, 1})."""
    predicted = (np.asarray(decision_function(X), dtype=float).reshape(-1) > 0).astype(np.int64)
    return float(np.mean(predicted == np.asarray(y).astype(np.int64)))


def unfair2d_boundary_figure(inputs: BoundaryInputs) -> tuple[Figure, str]:
    """The figure and a one-line caption with the settings and the training accuracy of both models."""
    X, y, s = np.asarray(inputs.X), np.asarray(inputs.y), np.asarray(inputs.s)
    labelled = [(model_label(m.solver, inputs.radius), m.decision_function) for m in inputs.models]
    accuracies = [f"{label}: train accuracy {100 * train_accuracy(fn, X, y):.1f}%" for label, fn in labelled]
    fig = boundary_figure(
        X,
        y,
        s,
        labelled,
        group_names=list(inputs.group_names),
        title=f"{inputs.dataset}: decision boundaries over the training data ({len(X)} points)",
    )
    caption = f"{inputs.dataset} decision boundaries ({describe_settings(inputs)}); " + "; ".join(accuracies) + "."
    return fig, caption


def skipped_note(reason: str) -> str:
    """The report note saying why the figure is not there."""
    return f"Unfair2D decision-boundary figure skipped: {reason}."
