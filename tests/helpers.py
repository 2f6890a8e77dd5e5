"""Helpers shared by the test modules (imported as ``from helpers import ...``: pytest puts this folder, which
has no ``__init__.py``, on ``sys.path`` when it imports a test module from it)."""

from __future__ import annotations

import pytest

from fastfair import cli


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``fastfair ARGV`` in this process; return its exit code and what it printed to stdout and stderr."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
