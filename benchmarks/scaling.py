"""Time (and peak memory) vs n and d: structured and generic TRS paths, analytic vs torch.func derivatives.

Same code as ``fastfair bench --scaling``; writes the CSV, Markdown and the log-log figure with ``--out``::

    python benchmarks/scaling.py --quick --out bench-results
    python benchmarks/scaling.py --threads 1 --out bench-results
"""

from __future__ import annotations

import sys

from fastfair.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["--scaling", *sys.argv[1:]], prog="benchmarks/scaling.py"))
