"""fastfair: robust and fairer classifiers with an exact, batched trust-region inner solver.

The scikit-learn estimator is exported lazily (``fastfair.RobustFairClassifier``) so that ``import fastfair``
stays cheap for the command line.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["RobustFairClassifier", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "RobustFairClassifier":
        from .estimator import RobustFairClassifier

        return RobustFairClassifier
    raise AttributeError(f"module 'fastfair' has no attribute {name!r}")
