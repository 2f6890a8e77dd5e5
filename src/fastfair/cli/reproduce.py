"""``fastfair reproduce``: the paper's experiments (a sweep of :mod:`fastfair.experiments.paper_protocol`) + report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..errors import FastfairError, require
from ..experiments import Grid, paper_protocol
from ..io import dumps_json
from ._grid_run import add_run_arguments, cell_limit, execute, large_grid_hint, print_sweep_summary, run_interruptibly
from .common import add_command, check_out_dir


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


HELP = "run the paper's experiments (or a quick version) and write a report with tables and figures"
DESCRIPTION = (
    "Reproduce Fast & Fair (Minch, Vu, Warren, arXiv:2401.02012): datasets unfair2d, adult and\n"
    "lsat; solvers none, trs, trs-paper, pgd-paper, pgd and random over the paper's radii; several\n"
    "seeds; and trs-paper beside trs on an MLP, where the reference TRS's defect can bite.\n"
    "Writes results.csv (resumable: a re-run reuses finished cells), the timing table, figures,\n"
    "report.md and report.html into --out."
)
EPILOG = paper_protocol.describe()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "reproduce", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small version (few radii, 1 seed, few epochs, subsampled data) that runs in about a minute",
    )
    p.add_argument("--seeds", type=int, metavar="K", help="seeds 0..K-1 (default: 5; 1 with --quick)")
    p.add_argument(
        "--pgd-paper-seeds",
        type=int,
        metavar="K",
        help="run the slow pgd-paper solver with the first K seeds only (default: all); the report says so",
    )
    p.add_argument("--no-report", action="store_true", help="run the sweep only")
    add_run_arguments(p, jobs_default=_cores())
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = check_out_dir(args.out)
    require(args.seeds is None or args.seeds >= 1, f"--seeds must be a positive integer, got {args.seeds}")
    require(
        args.pgd_paper_seeds is None or args.pgd_paper_seeds >= 1,
        f"--pgd-paper-seeds must be a positive integer, got {args.pgd_paper_seeds}",
    )
    grid, notes = paper_protocol.paper_grid(quick=args.quick, seeds=args.seeds, pgd_paper_seeds=args.pgd_paper_seeds)
    with large_grid_hint():
        grid.check_size(cell_limit(args))
    grid.validate()
    return run_interruptibly(lambda: _run(args, grid, notes, out), args.out)


def _run(args: argparse.Namespace, grid: Grid, notes: list[str], out: Path) -> int:
    start = time.perf_counter()
    summary = execute(grid, args, default_jobs=_cores(), desc="reproduce")
    if summary.failed or args.no_report or not args.json:
        print_sweep_summary(summary, args, table=False)
    if summary.failed:
        print(
            f"fastfair: {len(summary.failed)} cell(s) failed; no report was built (re-run to retry them)",
            file=sys.stderr,
        )
        return 1
    if args.no_report:
        return 0
    notes.append(
        "Epoch times are measured inside each cell with one torch thread; cells that ran side by side "
        "(--jobs, Dask) shared the machine, which can inflate their times."
    )
    try:
        from ..experiments.report_inputs import defect_measurements, unfair2d_boundaries
        from ..report import build_report_cached
    except ImportError as exc:
        raise FastfairError(f"the report builder is not available: {exc}") from None
    if not args.json:
        print("building the report (tables, figures, Unfair2D boundaries, trs-paper branches)...", file=sys.stderr)
    t_report = time.perf_counter()
    written = build_report_cached(
        summary.results,
        Path(out),
        quick=args.quick,
        notes=notes,
        boundaries=unfair2d_boundaries(out, summary.results),
        defect=defect_measurements(out, summary.results),
    )
    report_seconds = time.perf_counter() - t_report
    total = time.perf_counter() - start
    html = written.get("report_html", Path(out) / "report.html")
    md = written.get("report_md", Path(out) / "report.md")
    if args.json:
        print(
            dumps_json(
                {
                    **summary.to_dict(),
                    "report": {k: str(v) for k, v in written.items()},
                    "report_seconds": report_seconds,
                    "total_seconds": total,
                }
            )
        )
    else:
        print(f"report: {md} and {html} ({len(written)} files, {report_seconds:.1f} s); total {total:.1f} s")
    return 0
