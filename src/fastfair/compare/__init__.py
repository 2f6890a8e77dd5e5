"""Robust training against the fairness toolbox: trade-off curves, dominance, a verdict (``fastfair compare``).

* :mod:`.methods` -- the methods and their knobs: unmitigated, robust training (r), Fairlearn's
  ExponentiatedGradient (eps) and ThresholdOptimizer, the fairness penalty (lambda) alone and with robust
  training.
* :mod:`.protocol` -- the knob grids and settings per dataset, full and quick: :func:`compare_plan`.
* :mod:`.cell` -- :class:`CompareCell` and :func:`run_compare_cell`: one method, knob and seed, trained and
  scored on every split (cells run, are stored and resume through :mod:`fastfair.experiments`).
* :mod:`.scoring` -- the one scoring rule: metrics of the expected confusion matrix.
* :mod:`.analysis` -- points with CIs, selection on validation, the dominance rule, the verdict.
* :mod:`.report` -- figures, tables and ``report.md``.
* :mod:`.run` -- :func:`run_compare`, tying them together.
"""

from __future__ import annotations

from .cell import CompareCell, compare_frame, run_compare_cell
from .methods import METHODS, Method
from .protocol import ComparePlan, compare_plan
from .run import CompareOutcome, run_compare

__all__ = [
    "METHODS",
    "CompareCell",
    "CompareOutcome",
    "ComparePlan",
    "Method",
    "compare_frame",
    "compare_plan",
    "run_compare",
    "run_compare_cell",
]
