"""The names every layer shares, in one torch-free place.

A name that more than one module needs (a solver, a model family, an activation, a dtype, a split, a fairness
gap, the rounding that makes two radii "the same radius") is defined here once and imported by everyone who needs
it: the command line, the estimator, the sweep planner, the results store and the report all speak of the same
things in the same order. The module imports nothing but the standard library, so that light layers (config
parsing, the report) can use it without loading torch.
"""

from __future__ import annotations

#: Inner maximisers, in the order tables, figures and ``--help`` list them. ``"none"`` is ordinary training;
#: ``"auto"`` picks ``"trs"`` or ``"pgd"`` from the model's structure (see :mod:`fastfair.inner.auto`); ``"trs-paper"``
#: and ``"pgd-paper"`` reproduce the reference code's solvers (see :mod:`fastfair.inner`).
SOLVERS: tuple[str, ...] = ("none", "auto", "trs", "trs-paper", "pgd-paper", "pgd", "random")
#: The solver that means "no perturbation": the non-robust baseline every robust cell is compared against.
BASELINE = "none"

#: Built-in model families (see :mod:`fastfair.models`).
MODELS: tuple[str, ...] = ("affine", "mlp")
#: Hidden-layer activations of the built-in MLPs (one hidden layer or several).
ACTIVATIONS: tuple[str, ...] = ("tanh", "sigmoid", "softplus", "gelu", "relu", "leaky_relu")
#: The activations that are piecewise linear (φ″ = 0 away from their kink): a network built from them has a
#: rank-one input Hessian through the logistic loss.
PIECEWISE_LINEAR_ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu")
#: Floating-point precisions a run may use, by name.
DTYPES: tuple[str, ...] = ("float32", "float64")

#: The three splits of every dataset, in their natural order.
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Fairness gap -> the per-group rate it compares (max - min over groups), in the order the gaps are reported.
#: Independence compares selection rates P(ŷ=1 | s); separation compares TPR P(ŷ=1 | y=1, s) and FPR
#: P(ŷ=1 | y=0, s); sufficiency compares PPV P(y=1 | ŷ=1, s) and FOR P(y=1 | ŷ=0, s).
GAP_RATES: dict[str, str] = {
    "independence": "selection_rate",
    "separation_tpr": "tpr",
    "separation_fpr": "fpr",
    "sufficiency_ppv": "ppv",
    "sufficiency_for": "for",
}
#: The gap names, in order.
GAP_KEYS: tuple[str, ...] = tuple(GAP_RATES)

#: Fairness penalties the training objective can add (see :func:`fastfair.losses.fairness_penalty`): ``"dp"``, the
#: demographic-parity gap of the predicted probabilities, and ``"eo"``, their equalized-odds gap.
FAIRNESS_PENALTIES: tuple[str, ...] = ("dp", "eo")

#: Radii are identified by their value rounded to this many decimals: 0.1 + 0.2 and 0.3 are the same cell.
RADIUS_DECIMALS = 10


def round_radius(radius: float) -> float:
    """The canonical value of a radius: ``round(radius, RADIUS_DECIMALS)`` as a Python float."""
    return round(float(radius), RADIUS_DECIMALS)
