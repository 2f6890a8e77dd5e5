"""Robust / non-robust epoch-time ratio per solver on Adult (10,000 rows, batch 100) and Unfair2D (batch 5).

Same code as ``fastfair bench --end-to-end``::

    python benchmarks/end_to_end.py --quick
    python benchmarks/end_to_end.py --threads 1 --radius 0.1 0.2 --solvers trs pgd pgd-paper random
"""

from __future__ import annotations

import sys

from fastfair.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["--end-to-end", *sys.argv[1:]], prog="benchmarks/end_to_end.py"))
