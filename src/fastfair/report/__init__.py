"""Report of a results store: tables (pandas), figures (matplotlib Agg, no pyplot), claims, Markdown, HTML.

The entry point is :func:`build_report` (or :func:`build_report_cached`, which skips an unchanged report). The
report is a pure view: it reads the results table and, for the Unfair2D decision-boundary figure, the models the
sweep stored (see :func:`fastfair.experiments.report_inputs.unfair2d_boundaries`); it trains nothing. The table
and claim functions are pure (DataFrame in, DataFrame out) and usable on their own. A run of the reference
protocol (the authors' exact setup) has its own report, :func:`build_reference_report` (:mod:`.reference`).
"""

from __future__ import annotations

from .build import build_report
from .cache import build_report_cached
from .claims import RULES, evaluate_claims
from .comparisons import Comparison, compare
from .compose import key_numbers
from .published import PAPER
from .reference import build_reference_report
from .tables import mean_ci, run_configuration, summarize, t_half_width, timing_long, timing_table

__all__ = [
    "PAPER",
    "RULES",
    "Comparison",
    "build_reference_report",
    "build_report",
    "build_report_cached",
    "compare",
    "evaluate_claims",
    "key_numbers",
    "mean_ci",
    "run_configuration",
    "summarize",
    "t_half_width",
    "timing_long",
    "timing_table",
]
