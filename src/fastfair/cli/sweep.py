"""``fastfair sweep``: train a grid of datasets x models x solvers x radii x seeds, resumably, in parallel."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import FastfairError, require
from ..io import dumps_json
from .common import add_data_source_arguments, check_out_dir, format_table, parse_key_values, parse_value

#: Most cells a sweep runs (or lists with --dry-run) without --allow-large.
LARGE_GRID = 10_000
#: Exit status of a run stopped by SIGTERM (128 + 15, as a shell reports a process killed by it).
TERMINATED_EXIT = 128 + signal.SIGTERM

EPILOG = """\
grid file (--config FILE, YAML or TOML; only 'datasets' is required):
  datasets:                      # bundled names, or mappings:
    - unfair2d
    - {name: lsat, balanced: true, batch_size: 5}          # dataset options + per-dataset settings
    - {name: adult, batch_size: 100, train_size: 10000, radii: "0.10:0.20:0.02"}
    - {csv: my.csv, target: income, sensitive: sex, features: [age, hours], positive: ">50K", label: mine}
  solvers: [none, trs, pgd-paper, pgd, random]   # default [none, trs]; 'none' runs once, radius 0
  radii: "0.10:0.20:0.01"        # numbers and/or start:stop:step ranges (stop included)
  seeds: "0:5"                   # integers and/or start:stop ranges (stop excluded); default [0]
  models: [affine]               # affine, mlp
  epochs: 10                     # also batch_size, lr, train_size, hidden, activation, dtype, clean_weight
  solver_options: {pgd: {steps: 20}}
  Any key but 'datasets' may also go inside a dataset entry, overriding the top level for that dataset.
  Command-line options replace the file's top-level keys. CSV paths are relative to the file.

""" + f"""\
results in --out DIR:
  DIR/results.csv        one row per cell x split (cell_id, dataset, model, solver, radius, seed, split, n,
                         accuracy, auc, the five gaps, epoch_seconds, inner_seconds, training settings)
  DIR/cells/ID.json      one file per finished cell, written atomically as it finishes
  Re-running the same command reuses finished cells; an interrupted sweep (Ctrl-C, SIGTERM) loses nothing
  finished. A cell that fails on its input or settings stops the sweep with that error (a re-run would fail
  the same way); a cell lost otherwise (e.g. a worker died) is listed in DIR/failures.json and retried by a
  re-run. A grid of more than {LARGE_GRID:,} cells needs --allow-large.

examples:
  fastfair sweep --dataset unfair2d --solvers none trs pgd --radii 0.1:0.2:0.05 --seeds 0:3 \\
      --batch-size 5 --out results/u2d --jobs 2
  fastfair sweep --config grid.yaml --out results/grid --scheduler tcp://10.0.0.5:8786
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train a grid of datasets x solvers x radii x seeds, resumable, local or on Dask",
        description=(
            "Run one training per grid cell (dataset, model, solver, radius, seed), evaluate it on train /\n"
            "validation / test, and collect accuracy, fairness gaps and timing in a tidy results table.\n"
            "Finished cells are stored as they finish and reused when the command is run again."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid = p.add_argument_group("grid (a --config file, or these options; options override the file)")
    grid.add_argument("--config", metavar="FILE", help="YAML or TOML grid file (schema below)")
    grid.add_argument(
        "--dataset", metavar="NAME", nargs="+", help="bundled dataset(s): unfair2d, adult, lsat"
    )
    add_data_source_arguments(grid)
    grid.add_argument("--solvers", metavar="SOLVER", nargs="+", help="none, trs, pgd, pgd-paper, random")
    grid.add_argument(
        "--radii", metavar="R", nargs="+", help="radii and/or start:stop:step ranges (stop included)"
    )
    grid.add_argument(
        "--seeds", metavar="S", nargs="+", help="seeds and/or start:stop ranges (stop excluded)"
    )
    grid.add_argument("--model", metavar="MODEL", nargs="+", help="affine and/or mlp")
    train = p.add_argument_group("training settings (defaults as in 'fastfair train')")
    train.add_argument("--epochs", type=int, metavar="N")
    train.add_argument("--batch-size", type=int, metavar="N")
    train.add_argument("--lr", type=float, help="Adam learning rate")
    train.add_argument("--train-size", type=int, metavar="N", help="train on the first N training rows only")
    train.add_argument("--hidden", type=int, metavar="N", help="MLP hidden width")
    train.add_argument("--activation", metavar="NAME", help="MLP activation: tanh, sigmoid, softplus")
    train.add_argument("--dtype", metavar="NAME", help="float32 or float64")
    train.add_argument("--clean-weight", type=float, metavar="W", help="mix w·clean + (1-w)·robust loss")
    train.add_argument(
        "--solver-option",
        metavar="SOLVER.KEY=VALUE",
        action="append",
        help="inner-solver option for one solver, repeatable (e.g. pgd.steps=20)",
    )
    add_run_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="validate the grid and list its cells; run nothing")
    p.add_argument(
        "--report",
        action="store_true",
        help="also write report.md / report.html with tables and figures (gaps and accuracy vs radius)",
    )
    p.set_defaults(run=run)


def add_run_arguments(p: argparse.ArgumentParser, *, jobs_default: int | None = None) -> None:
    """--out, --jobs, --scheduler, --json, --no-progress (shared with ``fastfair reproduce``)."""
    run = p.add_argument_group("execution and output")
    run.add_argument("--out", metavar="DIR", required=True, help="sweep directory (results.csv, cells/)")
    run.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        default=None,
        help=f"local worker processes (default: {jobs_default if jobs_default else 1})",
    )
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the cells on this dask.distributed scheduler (tcp://host:8786)",
    )
    run.add_argument("--json", action="store_true", help="print a JSON summary to stdout")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument(
        "--allow-large",
        action="store_true",
        help=f"accept a grid of more than {LARGE_GRID:,} cells",
    )


def grid_options(args: argparse.Namespace) -> dict[str, Any]:
    """The grid keys given on the command line (only those given), in config-file form."""
    config: dict[str, Any] = {}
    options = parse_key_values(args.data_option, "--data-option")
    entries: list[dict[str, Any]] = []
    for name in args.dataset or []:
        entry = {"name": name, **options}
        if args.sensitive is not None and args.data is None:
            entry["sensitive"] = args.sensitive
        entries.append(entry)
    if args.data is not None:
        require(
            args.target is not None and args.sensitive is not None, "--data needs --target and --sensitive"
        )
        entry = {"csv": args.data, "target": args.target, "sensitive": args.sensitive, **options}
        if args.features is not None:
            entry["features"] = list(args.features)
        if args.positive is not None:
            entry["positive"] = args.positive
        entries.append(entry)
    else:
        require(
            args.target is None and args.features is None and args.positive is None,
            "--target, --features and --positive go with --data",
        )
    if entries:
        config["datasets"] = entries
    else:
        require(not options, "--data-option goes with --dataset or --data")
        require(args.sensitive is None, "--sensitive goes with --dataset or --data")
    for key, value in (("solvers", args.solvers), ("models", args.model)):
        if value is not None:
            config[key] = _split(value)
    if args.radii is not None:
        config["radii"] = _split(args.radii)
    if args.seeds is not None:
        config["seeds"] = _split(args.seeds)
    for key in ("epochs", "batch_size", "lr", "train_size", "hidden", "activation", "dtype", "clean_weight"):
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    if args.solver_option:
        solver_options: dict[str, dict[str, Any]] = {}
        for item in args.solver_option:
            head, sep, value = item.partition("=")
            solver, dot, key = head.partition(".")
            require(
                bool(sep) and bool(dot) and solver.strip() != "" and key.strip() != "",
                f"malformed --solver-option {item!r}; expected SOLVER.KEY=VALUE, e.g. pgd.steps=20",
            )
            solver_options.setdefault(solver.strip(), {})[key.strip().replace("-", "_")] = parse_value(value)
        config["solver_options"] = solver_options
    return config


def _split(tokens: list[str]) -> list[str]:
    """Accept both ``--radii 0.1 0.2`` and ``--radii 0.1,0.2``."""
    return [part for token in tokens for part in token.split(",") if part.strip() != ""]


def build_grid(args: argparse.Namespace) -> Any:
    """The validated grid of the command line (and --config file); refused above :data:`LARGE_GRID` cells
    unless --allow-large, before it is validated value by value or expanded."""
    from ..experiments import grid_from_dict, grid_from_file

    options = grid_options(args)
    limit = cell_limit(args)
    with large_grid_hint():
        if args.config is not None:
            return grid_from_file(args.config, overrides=options, max_cells=limit)
        require(
            "datasets" in options, "give --config FILE, or --dataset NAME / --data CSV with the grid options"
        )
        return grid_from_dict(options, source="options", max_cells=limit)


def cell_limit(args: argparse.Namespace) -> int | None:
    """The most cells ``args`` allow: :data:`LARGE_GRID`, or no limit with --allow-large."""
    return None if args.allow_large else LARGE_GRID


@contextlib.contextmanager
def large_grid_hint() -> Iterator[None]:
    """Re-raise a too-large grid with the way out: --allow-large, or a smaller grid."""
    from ..experiments.grid import GridTooLarge

    try:
        yield
    except GridTooLarge as exc:
        raise FastfairError(
            f"the grid has {exc.cells:,} cells, more than {exc.limit:,}; "
            "pass --allow-large to run it anyway, or use fewer radii / seeds"
        ) from None


def execute(grid: Any, args: argparse.Namespace, *, default_jobs: int = 1, desc: str = "sweep") -> Any:
    """Run a grid with the execution options of ``args``; Ctrl-C or SIGTERM keeps finished cells (see
    :func:`run_interruptibly`). The cell counts go to stderr once the run has passed its checks (not with
    --json)."""
    from ..experiments import run_sweep

    require(
        args.jobs is None or args.scheduler is None,
        "give --jobs (local processes) or --scheduler (Dask), not both",
    )
    jobs = args.jobs if args.jobs is not None else default_jobs
    require(jobs >= 1, f"--jobs must be a positive integer, got {jobs}")
    progress = not (args.json or args.no_progress) and sys.stderr.isatty()
    announce = None if args.json else _to_stderr
    return run_sweep(
        grid, args.out, jobs=jobs, scheduler=args.scheduler, progress=progress, desc=desc, announce=announce
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
        return 130


def interrupted_message(out: str, what: str = "interrupted") -> str:
    return (
        f"fastfair: {what}; finished cells are kept in {out}/cells and {out}/results.csv - "
        "run the same command again to resume"
    )


def run(args: argparse.Namespace) -> int:
    check_out_dir(args.out)
    return run_interruptibly(lambda: _run(args), args.out)


def _run(args: argparse.Namespace) -> int:
    from ..experiments.sweep import summarize_cells

    grid = build_grid(args)
    cells = grid.cells()
    if args.dry_run:
        table = summarize_cells(cells)
        if args.json:
            print(dumps_json({"cells": len(cells), "grid": table.to_dict(orient="records")}))
        else:
            print(format_table(table.set_index("cell_id"), "{:g}"))
            print(f"{len(cells)} cells; nothing run (--dry-run)")
        return 0
    summary = execute(grid, args)
    report(summary, args)
    if summary.failed:
        return 1
    if args.report and not summary.results.empty:
        from ..report import build_report_cached

        written = build_report_cached(summary.results, Path(args.out), paper=False)
        if not args.json:
            print(f"report: {written['report_md']} and {written['report_html']}")
    return 0


def report(summary: Any, args: argparse.Namespace, *, table: bool = True) -> None:
    """Print the outcome: JSON, or a short table of test means and the one-line summary."""
    if args.json:
        print(dumps_json(summary.to_dict()))
        return
    if table and not summary.results.empty:
        overview = test_overview(summary.results)
        if len(overview) <= 60:
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


def test_overview(results: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy and gaps per (dataset, model, solver, radius), with the number of seeds."""
    test = results[results["split"] == "test"]
    keys = ["dataset", "model", "solver", "radius"]
    cols = [
        "accuracy",
        "independence",
        "separation_tpr",
        "separation_fpr",
        "sufficiency_ppv",
        "sufficiency_for",
    ]
    out = test.groupby(keys, sort=False)[cols].mean()
    out.insert(0, "seeds", test.groupby(keys, sort=False)["seed"].nunique())
    return out


__all__ = ["FastfairError", "add_parser", "run"]
