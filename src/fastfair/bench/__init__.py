"""Benchmarks: honest, same-run comparisons of the inner maximisers, scaling studies, end-to-end epoch costs.

* :mod:`fastfair.bench.inner` -- every inner maximiser on identical batches and weights: median time, attained
  objective, and ``pgd-matched`` (the cheapest tuned PGD that does as well as TRS);
  :mod:`fastfair.bench.inner_tables` -- its tables.
* :mod:`fastfair.bench.scaling` -- time (and peak memory) against n and d for the structured and generic TRS
  paths and for the derivative backends, as a table and a log-log figure.
* :mod:`fastfair.bench.end_to_end` -- robust / non-robust epoch-time ratio per solver on Adult and Unfair2D.
* :mod:`fastfair.bench.timing` -- interleaved round-robin repeats, medians, machine description.
* :mod:`fastfair.bench.render` -- number formats and plain-text / Markdown tables.

These print numbers; tests assert behaviour only, never timings. The command line is ``fastfair bench``.
"""

from __future__ import annotations

from .inner import (
    RECORD_KEYS,
    BenchCase,
    InnerBenchPlan,
    SolverSpec,
    compare_solvers,
    default_solvers,
    make_case,
    pgd_ladder,
    pgd_matched,
    run_inner_bench,
)
from .timing import interleaved, machine_info

__all__ = [
    "RECORD_KEYS",
    "BenchCase",
    "InnerBenchPlan",
    "SolverSpec",
    "compare_solvers",
    "default_solvers",
    "interleaved",
    "machine_info",
    "make_case",
    "pgd_ladder",
    "pgd_matched",
    "run_inner_bench",
]
