"""Inner maximisers: per-sample worst-case L2 perturbations of a batch, all behind one interface.

    inner = make_inner("trs")                     # None for "none"
    result = inner.perturb(model, x, y, radius)   # InnerResult: x_adv, loss, iterations, certificate, extras
    x_adv = inner.attack(model, x, y, r)          # the training loop's call: x + δ only, trusted inputs

Solvers (``SOLVERS``, the order of :data:`fastfair.vocabulary.SOLVERS`):

* ``"auto"`` -- :class:`AutoAdversary`: picks ``"trs"`` or ``"pgd"`` from the model's structure (closed-form TRS
  for affine models, PGD for piecewise-linear ones such as relu networks, TRS for smooth ones), says why, and
  delegates to it (:mod:`fastfair.inner.auto`).
* ``"trs"`` -- :class:`TrustRegionAdversary`: exact maximiser of the quadratic model of the loss over the
  ball, by the path that fits the model (closed form for affine models, the factored one-hidden-layer form,
  the row space of W for softmax regression, Hessian products or a dense Hessian otherwise); ``extras["path"]``
  says which.
* ``"trs-paper"`` -- :class:`PaperTrustRegionAdversary`: the reference code's TRS step reproduced, defect included
  (per-row eigendecomposition, the interior Newton step accepted whenever it fits in the ball whatever the sign
  of the Hessian, else bisection on λ); ``extras["branch"]`` says which branch each row took
  (:mod:`fastfair.inner.trs_paper`). Not a certified maximiser: its interior steps can lower the loss. Binary
  models only.

Every solver but ``"trs-paper"`` takes multiclass models too (C ≥ 3 logits per row, the softmax cross-entropy).
* ``"pgd-paper"`` -- :class:`PaperPGDAdversary`: the paper's back-tracking PGD (step 0.1, ÷1.5, ≤ 5000 its).
* ``"pgd"`` -- :class:`ProjectedGradientAdversary`: tuned L2 PGD (10 normalised steps of 0.25·r).
* ``"random"`` -- :class:`RandomAdversary`: a random direction on the sphere (or in the ball).
"""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import FastfairError
from ..vocabulary import SOLVERS
from .auto import AutoAdversary, AutoChoice
from .base import InnerMaximizer, InnerResult
from .pgd import PaperPGDAdversary, ProjectedGradientAdversary
from .random import RandomAdversary
from .trs import TrustRegionAdversary
from .trs_paper import PaperTrustRegionAdversary

__all__ = [
    "SOLVERS",
    "AutoAdversary",
    "AutoChoice",
    "InnerMaximizer",
    "InnerResult",
    "PaperPGDAdversary",
    "PaperTrustRegionAdversary",
    "ProjectedGradientAdversary",
    "RandomAdversary",
    "TrustRegionAdversary",
    "make_inner",
    "solver_options",
]

_REGISTRY: dict[str, type[InnerMaximizer]] = {
    "auto": AutoAdversary,
    "trs": TrustRegionAdversary,
    "trs-paper": PaperTrustRegionAdversary,
    "pgd": ProjectedGradientAdversary,
    "pgd-paper": PaperPGDAdversary,
    "random": RandomAdversary,
}


def solver_options(name: str) -> dict[str, Any]:
    """The options a solver accepts, with their defaults (``{}`` for ``"none"``)."""
    _check_name(name)
    if name == "none":
        return {}
    params = inspect.signature(_REGISTRY[name].__init__).parameters
    return {k: p.default for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def make_inner(name: str, **options: Any) -> InnerMaximizer | None:
    """Build the inner maximiser ``name`` with ``options``; ``None`` for ``"none"`` (no perturbation).

    Raises :class:`FastfairError` for an unknown solver, an unknown option, or an invalid option value.
    """
    _check_name(name)
    valid = solver_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        choices = ", ".join(valid) if valid else "none"
        raise FastfairError(f"unknown option {names} for solver {name!r}; valid options: {choices}")
    if name == "none":
        return None
    return _REGISTRY[name](**options)


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or name not in SOLVERS:
        raise FastfairError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")
