"""Helpers shared by the test modules (imported as ``from helpers import ...``: pytest puts this folder, which
has no ``__init__.py``, on ``sys.path`` when it imports a test module from it)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
from torch import nn

from fastfair import cli

#: The example CSV of the quick tour, and the options that train on it.
LOANS = Path(__file__).resolve().parents[1] / "examples" / "loans.csv"
LOANS_ARGS = ("--data", str(LOANS), "--target", "approved", "--sensitive", "region", "--positive", "yes")


def cli_output(*argv: str) -> tuple[int, str, str]:
    """Run ``fastfair ARGV`` in this process, capturing its output without pytest's ``capsys`` (usable in
    module-scoped fixtures); return its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def one_line_error(code: int, out: str, err: str) -> str:
    """Assert the command failed the house way (exit 2, nothing on stdout, one ``fastfair: error:`` line on
    stderr) and return that line."""
    assert code == 2 and out == "", (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastfair: error: "), err
    return lines[0]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``fastfair ARGV`` in this process; return its exit code and what it printed to stdout and stderr."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class TwoHidden(nn.Module):
    """A user's own module with no closed-form derivatives: two hidden layers of ``widths`` with ``activations``
    (default: 7 tanh units, then 4 softplus units), one logit per row."""

    def __init__(
        self,
        d: int,
        widths: tuple[int, int] = (7, 4),
        activations: tuple[type[nn.Module], type[nn.Module]] = (nn.Tanh, nn.Softplus),
    ) -> None:
        super().__init__()
        (h1, h2), (act1, act2) = widths, activations
        self.net = nn.Sequential(nn.Linear(d, h1), act1(), nn.Linear(h1, h2), act2(), nn.Linear(h2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def bce_reference(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row logistic loss from torch's own ``binary_cross_entropy_with_logits``: an oracle independent of
    :mod:`fastfair.losses`."""
    return nn.functional.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none")
