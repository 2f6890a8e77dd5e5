"""The ``fastfair`` command. Each subcommand lives in its own module with ``add_parser`` and ``run``.

Errors in user input surface as :class:`fastfair.errors.FastfairError`; :func:`main` prints them as one line,
``fastfair: error: <message>``, on stderr and exits with code 2 — never a traceback. A reader that closes the
pipe early (``fastfair train ... --json | head -c 10``) is not an error: the command stops silently with exit
code 141 (128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from importlib import import_module

from .. import __version__
from ..errors import FastfairError

#: Exit code after the reader of stdout went away: 128 + SIGPIPE (13).
EXIT_BROKEN_PIPE = 141

#: subcommand name -> module under fastfair.cli
SUBCOMMANDS = {"train": "train", "sweep": "sweep", "reproduce": "reproduce", "bench": "bench"}
SUBCOMMANDS.update(predict="predict", evaluate="evaluate")  # saved models: score new rows, audit them


class _Parser(argparse.ArgumentParser):
    """argparse with errors in our one-line format (argparse's own exit code, 2, is kept)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"fastfair: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with one subparser per subcommand."""
    parser = _Parser(
        prog="fastfair",
        description="Train robust and fairer classifiers with an exact, batched trust-region inner solver.",
    )
    parser.add_argument("--version", action="version", version=f"fastfair {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in SUBCOMMANDS.values():
        import_module(f"{__name__}.{module}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastfair`` console script; returns the process exit code."""
    try:
        return _run(argv)
    except BrokenPipeError:  # the reader of stdout went away (e.g. `| head`): stop silently
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:  # --help, --version or a usage error: flush now, so that a closed pipe is handled
        sys.stdout.flush()
        raise
    show = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at interpreter exit
        return code
    except BrokenPipeError:
        raise
    except FastfairError as exc:
        print(f"fastfair: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an --out directory that cannot be created or written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"fastfair: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastfair: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = show


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of what is still buffered does not fail
    on the closed pipe again (the recipe of Python's documentation of ``signal``, 'Note on SIGPIPE')."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (e.g. captured in tests): nothing to flush
        pass


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on the command line: ``fastfair: warning: <message>``, one line, no source excerpt."""
    print(f"fastfair: warning: {message}", file=sys.stderr if file is None else file)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
