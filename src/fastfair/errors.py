"""The one exception type for bad user input.

Everything a user can get wrong (an unknown dataset, a malformed CSV, a non-positive radius, ...) raises
:class:`FastfairError` with a one-line, human-readable message. The command line turns it into
``fastfair: error: <message>`` on stderr and exit code 2; library users can catch it (it is a ``ValueError``).
"""

from __future__ import annotations


class FastfairError(ValueError):
    """Invalid user input or configuration. The message is a single line meant for the user."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`FastfairError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise FastfairError(message)


def require_positive(name: str, value: float, *, integer: bool = False) -> None:
    """Check that a user-supplied number is strictly positive (and an integer, if asked)."""
    if integer and (isinstance(value, bool) or int(value) != value):
        raise FastfairError(f"{name} must be a positive integer, got {value!r}")
    if not (value > 0):  # also rejects NaN
        raise FastfairError(f"{name} must be positive, got {value!r}")


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line: its text with every run of whitespace (newlines included) made one
    space, for a :class:`FastfairError` that quotes a library's multi-line error; the exception's type name when it
    has no text."""
    return " ".join(str(exc).split()) or type(exc).__name__
