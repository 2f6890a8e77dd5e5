"""Running a grid from the command line, as ``fastfair sweep`` and ``fastfair reproduce`` both do.

Their shared options (``--out``, ``--jobs``, ``--scheduler``, ``--json``, ``--no-progress``, ``--allow-large``,
``--no-pack``),
the size limit of a grid, the call of the executor, the handling of Ctrl-C and SIGTERM (finished cells are
kept, the command says how to resume), and the printed summary of a finished sweep.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import pandas as pd

from ..errors import FastfairError, require
from ..experiments import Cell, Grid, GridTooLarge, SweepSummary, run_sweep
from ..io import dumps_json
from ..vocabulary import GAP_KEYS
from .common import format_table

#: Most cells a sweep runs (or lists with --dry-run) without --allow-large.
LARGE_GRID = 10_000
#: Exit status of a run stopped by SIGTERM (128 + 15, as a shell reports a process killed by it).
TERMINATED_EXIT = 128 + signal.SIGTERM
#: Exit status of a run stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED_EXIT = 130
#: The printed table of test means is left out above this many rows (the results file has them all).
MAX_OVERVIEW_ROWS = 60


def add_run_arguments(p: argparse.ArgumentParser, *, jobs_default: int | None = None) -> None:
    """--out, --jobs, --scheduler, --json, --no-progress, --allow-large, --no-pack."""
    run = p.add_argument_group("execution and output")
    run.add_argument("--out", metavar="DIR", required=True, help="sweep directory (results.csv, cells/)")
    run.add_argument("--jobs", type=int, metavar="N", help=f"local worker processes (default: {jobs_default or 1})")
    run.add_argument(
        "--scheduler", metavar="ADDRESS", help="run the cells on this dask.distributed scheduler (tcp://host:8786)"
    )
    run.add_argument("--json", action="store_true", help="print a JSON summary to stdout")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--allow-large", action="store_true", help=f"accept a grid of more than {LARGE_GRID:,} cells")
    run.add_argument(
        "--no-pack",
        action="store_true",
        help="train one cell at a time (default: cells that share data, model shape, solver and settings train "
        "together as one packed computation, with the same per-cell results; use this for timing runs)",
    )


def cell_limit(args: argparse.Namespace) -> int | None:
    """The most cells ``args`` allow: :data:`LARGE_GRID`, or no limit with --allow-large."""
    return None if args.allow_large else LARGE_GRID


@contextlib.contextmanager
def large_grid_hint() -> Iterator[None]:
    """Re-raise a too-large grid with the way out: --allow-large, or a smaller grid."""
    try:
        yield
    except GridTooLarge as exc:
        raise FastfairError(
            f"the grid has {exc.cells:,} cells, more than {exc.limit:,}; "
            "pass --allow-large to run it anyway, or use fewer radii / seeds"
        ) from None


def execute(
    grid: Grid | Sequence[Cell],
    args: argparse.Namespace,
    *,
    default_jobs: int = 1,
    desc: str = "sweep",
    alone: Collection[str] = (),
) -> SweepSummary:
    """Run a grid with the execution options of ``args``; Ctrl-C or SIGTERM keeps finished cells (see
    :func:`run_interruptibly`). The cell counts go to stderr once the run has passed its checks (not with
    --json)."""
    require(
        args.jobs is None or args.scheduler is None,
        "give --jobs (local processes) or --scheduler (Dask), not both",
    )
    jobs = args.jobs if args.jobs is not None else default_jobs
    require(jobs >= 1, f"--jobs must be a positive integer, got {jobs}")
    progress = not (args.json or args.no_progress) and sys.stderr.isatty()
    announce = None if args.json else _to_stderr
    return run_sweep(
        grid,
        args.out,
        jobs=jobs,
        scheduler=args.scheduler,
        progress=progress,
        desc=desc,
        announce=announce,
        pack=not getattr(args, "no_pack", False),
        alone=alone,
    )


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run stops exactly as on Ctrl-C (workers stopped, finished
    cells flushed to results.csv)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (once: a second SIGTERM is
    ignored, so that it cannot cut the flushing of results short; SIGKILL still ends the process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_interruptibly(body: Callable[[], int], out: str) -> int:
    """Run a sweep-like command: Ctrl-C exits 130 and SIGTERM exits 143, each with one line on stderr, after
    the sweep has stopped its workers and written results.csv from the finished cells."""
    try:
        with sigterm_as_interrupt():
            return body()
    except Terminated:
        print(interrupted_message(out, "terminated"), file=sys.stderr)
        return TERMINATED_EXIT
    except KeyboardInterrupt:
        print(interrupted_message(out), file=sys.stderr)
        return INTERRUPTED_EXIT


def interrupted_message(out: str, what: str = "interrupted") -> str:
    """The line printed when a run stops early: where the finished cells are, and how to resume."""
    return (
        f"fastfair: {what}; finished cells are kept in {out}/cells and {out}/results.csv - "
        "run the same command again to resume"
    )


def print_sweep_summary(summary: SweepSummary, args: argparse.Namespace, *, table: bool = True) -> None:
    """Print the outcome of a sweep: its JSON document with --json; else the test means per setting
    (:func:`means_over_seeds`, unless ``table`` is false or it is long), failed cells on stderr, and the
    one-line summary."""
    if args.json:
        print(dumps_json(summary.to_dict()))
        return
    if table and not summary.results.empty:
        overview = means_over_seeds(summary.results)
        if len(overview) <= MAX_OVERVIEW_ROWS:
            print("test split, mean over seeds:")
            print(format_table(overview))
            print()
    for failure in summary.failed:
        print(f"failed: {failure['cell']}: {failure['error']}", file=sys.stderr)
    if summary.failed:
        print(
            f"details in {summary.out_dir / 'failures.json'}; re-run the command to retry the failed cells",
            file=sys.stderr,
        )
    print(summary.line())


def means_over_seeds(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Mean accuracy and fairness gaps on ``split`` per (dataset, model, solver, radius), in the order of the
    results, after a ``seeds`` column that counts the seeds averaged over."""
    rows = results[results["split"] == split]
    keys = ["dataset", "model", "solver", "radius"]
    out = rows.groupby(keys, sort=False)[["accuracy", *GAP_KEYS]].mean()
    out.insert(0, "seeds", rows.groupby(keys, sort=False)["seed"].nunique())
    return out
