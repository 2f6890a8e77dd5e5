"""fastfair: robust and fairer classifiers with an exact, batched trust-region inner solver."""

from __future__ import annotations

__version__ = "0.1.0"
