"""Report of a results store: tables (pandas), figures (matplotlib Agg, no pyplot), claims, Markdown, HTML.

The entry point is :func:`build_report`; the table and claim functions are pure (DataFrame in, DataFrame out)
and usable on their own.
"""

from __future__ import annotations

from .build import build_report, build_report_cached, key_numbers
from .claims import RULES, evaluate_claims
from .comparisons import Comparison, compare
from .published import PAPER
from .tables import mean_ci, run_configuration, summarize, t_half_width, timing_long, timing_table

__all__ = [
    "PAPER",
    "RULES",
    "Comparison",
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
