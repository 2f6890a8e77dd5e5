"""Inner maximisers on identical batches and weights: time, objective, pgd-matched.

Same code and options as ``fastfair bench`` (see ``--help``), e.g.::

    python benchmarks/bench_inner.py --quick
    python benchmarks/bench_inner.py --threads 1 --out bench-results
    python benchmarks/bench_inner.py --models mlp --dims 100 --radius 0.1 0.5 1.0   # radius sensitivity
"""

from __future__ import annotations

import sys

from fastfair.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="benchmarks/bench_inner.py"))
