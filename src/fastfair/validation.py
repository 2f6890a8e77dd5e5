"""Validators of user-given options: one semantics for every layer, one-line :class:`FastfairError` messages.

Each ``check_*`` function returns the value in its canonical Python type (``bool``, ``int``, ``float``) or raises
``FastfairError("<name> must be ..., got <value>")``. The module is torch-free (numpy scalars are accepted where
a number is: they come out of pandas and numpy code).

Semantics:

* a **flag** is a boolean: ``True``/``False`` or a ``numpy.bool_``. Integers are refused, 0 and 1 included: a
  flag given as a number is more often a misplaced count than a boolean, and the command line and the config
  files spell booleans ``true``/``false``.
* a **number** is a real number that is not a boolean (``True`` is not 1 here): ``int``, ``float`` or a numpy
  scalar.
* an **integer** option is a number equal to an integer (``3.0`` is accepted as 3; ``2.5``, NaN and ±inf are
  not).
* a **seed** is an integer ``0 ≤ seed < 2**63`` (what ``torch.Generator.manual_seed`` and numpy take).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .errors import FastfairError

__all__ = [
    "SEED_LIMIT",
    "check_bool",
    "check_nonnegative_int",
    "check_optional_nonnegative_float",
    "check_positive_float",
    "check_positive_int",
    "check_seed_value",
    "is_number",
]

#: Seeds are integers in ``[0, SEED_LIMIT)``: non-negative and within a signed 64-bit integer.
SEED_LIMIT = 2**63


def is_number(value: Any) -> bool:
    """A real number (``int``, ``float``, numpy scalar), not a bool."""
    return isinstance(value, numbers.Real) and not _is_boolean(value)


def check_bool(name: str, value: Any) -> bool:
    """A flag: ``True``/``False`` or a ``numpy.bool_`` (integers, 0 and 1 included, are refused)."""
    if not _is_boolean(value):
        raise FastfairError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def check_positive_int(name: str, value: Any) -> int:
    """An integer ≥ 1."""
    if not is_number(value) or not math.isfinite(value) or value != int(value) or value < 1:
        raise FastfairError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_nonnegative_int(name: str, value: Any) -> int:
    """An integer ≥ 0."""
    if not is_number(value) or not math.isfinite(value) or value != int(value) or value < 0:
        raise FastfairError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: Any, *, above: float = 0.0) -> float:
    """A finite number strictly greater than ``above``."""
    if not is_number(value):
        raise FastfairError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > above):
        raise FastfairError(f"{name} must be finite and greater than {above:g}, got {value!r}")
    return value


def check_optional_nonnegative_float(name: str, value: Any) -> float | None:
    """``None``, or a finite number ≥ 0."""
    if value is None:
        return None
    if not is_number(value) or not (math.isfinite(float(value)) and value >= 0):
        raise FastfairError(f"{name} must be a non-negative number or null, got {value!r}")
    return float(value)


def check_seed_value(name: str, value: Any) -> int:
    """An integral seed ``0 ≤ seed < 2**63`` (floats such as ``3.0`` are refused: a seed is an identifier)."""
    if not (isinstance(value, numbers.Integral) and not _is_boolean(value)):
        raise FastfairError(f"{name} must be an integer, got {value!r}")
    if not 0 <= int(value) < SEED_LIMIT:
        raise FastfairError(f"{name} must be an integer with 0 <= {name} < 2**63, got {value!r}")
    return int(value)


def _is_boolean(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))
