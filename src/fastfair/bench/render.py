"""Plain-text and Markdown tables of benchmark records (pure string functions, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def fmt_seconds(seconds: float | None) -> str:
    """Human units: ``812 µs``, ``3.41 ms``, ``1.25 s``; ``-`` for missing."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None or not math.isfinite(ratio):
        return "-"
    return f"{ratio:.3g}×"


def fmt_gap(gap: float | None) -> str:
    """A relative objective gap: ``0``, ``+3.1e-08``, ``-1.2e-05``."""
    if gap is None or not math.isfinite(gap):
        return "-"
    return "0" if gap == 0 else f"{gap:+.1e}"


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """Aligned plain-text table; ``align``: one character per column, ``l`` or ``r`` (default: first left)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    align = align or "l" + "r" * (len(header) - 1)
    lines = []
    for k, row in enumerate(cells):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align, strict=True)]
        lines.append("  ".join(parts).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """GitHub Markdown table; ``align`` as in :func:`text_table`."""
    align = align or "l" + "r" * (len(header) - 1)
    esc = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    lines = ["| " + " | ".join(str(h) for h in header) + " |"]
    lines.append("|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in esc]
    return "\n".join(lines)
