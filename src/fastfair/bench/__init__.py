"""Benchmarks: honest, same-run comparisons of the inner maximisers, scaling studies, end-to-end epoch costs.

* :mod:`fastfair.bench.inner` -- every inner maximiser on identical batches and weights: median time, attained
  objective, ``pgd-matched`` (the cheapest tuned PGD that does as well as TRS), and what ``auto`` chose against
  the alternative; for the affine, one-hidden-layer and deeper MLPs (``mlp-128-64-tanh``, ``mlp-128-64-relu``);
  :mod:`fastfair.bench.inner_cases` -- its models, contenders and batches; :mod:`fastfair.bench.inner_tables` --
  its tables.
* :mod:`fastfair.bench.deep` -- the deeper models' extras: the dense path per row against the Krylov path, and
  the peak-RSS growth of one Krylov solve.
* :mod:`fastfair.bench.scaling` -- time (and peak memory) against n and d for the structured and generic TRS
  paths and for the derivative backends, as a table and a log-log figure.
* :mod:`fastfair.bench.end_to_end` -- robust / non-robust epoch-time ratio per solver on Adult and Unfair2D, and
  of a two-hidden-layer MLP on Adult with every feature.
* :mod:`fastfair.bench.timing` -- interleaved round-robin repeats, medians, machine description.
* :mod:`fastfair.bench.render` -- number formats and plain-text / Markdown tables.

These print numbers; tests assert behaviour only, never timings. The command line is ``fastfair bench``.
"""

from __future__ import annotations

from .inner import (
    DEEP_MODELS,
    RECORD_KEYS,
    BenchCase,
    BenchModel,
    InnerBenchPlan,
    SolverSpec,
    auto_comparison,
    bench_model,
    compare_solvers,
    default_solvers,
    make_case,
    pgd_matched,
    run_inner_bench,
)
from .inner_cases import pgd_ladder
from .timing import interleaved, machine_info

__all__ = [
    "DEEP_MODELS",
    "RECORD_KEYS",
    "BenchCase",
    "BenchModel",
    "InnerBenchPlan",
    "SolverSpec",
    "auto_comparison",
    "bench_model",
    "compare_solvers",
    "default_solvers",
    "interleaved",
    "machine_info",
    "make_case",
    "pgd_ladder",
    "pgd_matched",
    "run_inner_bench",
]
