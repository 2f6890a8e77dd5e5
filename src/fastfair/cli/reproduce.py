"""``fastfair reproduce``: the paper's experiments and their report, under one of two protocols.

``--protocol corrected`` (the default): a sweep of :mod:`fastfair.experiments.paper_protocol`, fastfair's own
data, splits and solvers over several seeds, resumable cell by cell. ``--protocol reference``: the authors'
exact setup (:mod:`fastfair.reference`), one cell at a time in the reference's order of random draws, its rows
beside the published numbers, and (full run) the seed spread and the ablation; its files are written as one set.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

from ..errors import FastfairError, require
from ..experiments import Grid, paper_protocol
from ..io import dumps_json
from ._grid_run import (
    INTERRUPTED_EXIT,
    TERMINATED_EXIT,
    Terminated,
    add_run_arguments,
    cell_limit,
    execute,
    large_grid_hint,
    print_sweep_summary,
    run_interruptibly,
    sigterm_as_interrupt,
)
from .common import add_command, check_out_dir

#: The protocols of ``--protocol``; the first is the default.
PROTOCOLS = ("corrected", "reference")
#: The full reference run: seeds of the seed spread (besides 42) and of the ablation (42 and 0, 1, ...).
REFERENCE_SPREAD_SEEDS = 20
REFERENCE_ABLATION_SEEDS = 6
#: Measured wall time of the full reference run on this project's 2-core machine, for --help.
REFERENCE_FULL_MINUTES = 12


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


HELP = "run the paper's experiments (or a quick version) and write a report with tables and figures"
DESCRIPTION = (
    "Reproduce Fast & Fair (Minch, Vu, Warren, arXiv:2401.02012) under one of two protocols.\n"
    "\n"
    "--protocol corrected (default): fastfair's own setup. Datasets unfair2d, adult and lsat;\n"
    "solvers none, trs, trs-paper, pgd-paper, pgd and random over the paper's radii; several\n"
    "seeds; and trs-paper beside trs on an MLP, where the reference TRS's defect can bite.\n"
    "Writes results.csv (resumable: a re-run reuses finished cells), the timing table, figures,\n"
    "report.md and report.html into --out.\n"
    "\n"
    "--protocol reference: the authors' exact setup (their Unfair2D draw from torch's generator\n"
    "with seed 42 and 200 training points, their Adult records and label, initialisation, batch\n"
    "order, loss, trs-paper and pgd-paper), one cell at a time in their order of random draws,\n"
    "beside the numbers their code prints. Writes results.csv (protocol = reference),\n"
    "reference.md, report.md and report.html into --out as one set: all files or none."
)
_S, _A = REFERENCE_SPREAD_SEEDS, REFERENCE_ABLATION_SEEDS
REFERENCE_EPILOG = f"""protocol reference:
  --quick: Unfair2D non-robust and trs-paper r = 0.18 (10 epochs, batch 5); Adult non-robust
    (10 epochs) and trs-paper r = 0.1 after 1 epoch (batch 100); seed 42 only (about 20 s)
  full: those rows and the reference's pgd-paper rows (Unfair2D r = 0.18; Adult r = 0.1 and
    0.2, 1 epoch); the Unfair2D trs-paper r = 0.18 row over seeds 0-{_S - 1} and 42 (the seed
    spread); the ablation over {_A} seeds (42, 0-{_A - 2}), one difference at a time, with Holm's
    correction. It takes about {REFERENCE_FULL_MINUTES} minutes on a 2-core machine (most of it the
    reference's pgd-paper on Adult) and cannot be resumed: an interrupted run writes nothing.
  --seeds K sets the seed spread's seeds (0..K-1, besides 42); --jobs, --scheduler,
  --pgd-paper-seeds and --allow-large do not apply (one cell at a time, in the reference's order).
  An existing --out must be empty or an earlier reference run, which the new one replaces.
  LSAT is not part of it: the reference downloads its own preparation of the data at run time.
  example: fastfair reproduce --protocol reference --quick --out results/reference"""
EPILOG = paper_protocol.describe() + "\n\n" + REFERENCE_EPILOG


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "reproduce", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="corrected",
        help="corrected: fastfair's own setup (default); reference: the authors' exact setup (see below)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small version (few radii, 1 seed, few epochs, subsampled data) that runs in about a minute; "
        "--protocol reference: the four headline cells at seed 42 (about 20 s)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        metavar="K",
        help=f"seeds 0..K-1 (default: 5; 1 with --quick); --protocol reference: the seed spread's seeds "
        f"(default {REFERENCE_SPREAD_SEEDS})",
    )
    p.add_argument(
        "--pgd-paper-seeds",
        type=int,
        metavar="K",
        help="run the slow pgd-paper solver with the first K seeds only (default: all); the report says so",
    )
    p.add_argument(
        "--no-report", action="store_true", help="run the sweep only (--protocol reference: no report.md / .html)"
    )
    add_run_arguments(p, jobs_default=_cores())
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.protocol == "reference":
        return run_reference(args)
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
    timed = [] if args.no_pack else paper_protocol.timing_cells(grid.cells())
    # the timing runs are protocol cells trained alone (not packed): the sweep runs them once, for both stores
    summary = execute(grid, args, default_jobs=_cores(), desc="reproduce", alone={c.cell_id for c in timed})
    timing = None
    if timed and not summary.failed:
        # Table 1 from these runs, one model at a time: a packed cell's times are amortised, not its own
        timing_dir = Path(out) / TIMING_DIR
        _share_alone_cells(Path(out), timing_dir, timed)
        timing = execute(
            timed,
            argparse.Namespace(**{**vars(args), "out": str(timing_dir), "no_pack": True}),
            default_jobs=_cores(),
            desc="reproduce timing",
        )
    if summary.failed or args.no_report or not args.json:
        print_sweep_summary(summary, args, table=False)
        if timing is not None:
            print_sweep_summary(timing, args, table=False)
    failed = len(summary.failed) + (len(timing.failed) if timing is not None else 0)
    if failed:
        print(f"fastfair: {failed} cell(s) failed; no report was built (re-run to retry them)", file=sys.stderr)
        return 1
    if args.no_report:
        return 0
    if timing is None:
        notes.append(
            "Epoch times are measured inside each cell with one torch thread (--no-pack: every cell trained alone); "
            "cells that ran side by side (--jobs, Dask) shared the machine, which can inflate their times."
        )
    else:
        notes.append(
            f"Timing (Table 1 and the timing claims) comes from dedicated timing runs in {TIMING_DIR}/: one model "
            "at a time (not packed), with one torch thread, for each dataset, model and solver the cell of its "
            "first seed at the radii of the paper's timing claims, trained alone with all its epochs (they are "
            "the protocol's own cells, excluded from the packs); runs side by side (--jobs, Dask) shared the "
            "machine. Everything else comes from the packed sweep, whose cells trained together in packs: "
            "their epoch_seconds and inner_seconds in results.csv (and the defect section's epoch ratios for the "
            "packed affine cells) are amortised -- the pack's time divided by its size -- not the time of one cell "
            "alone; each cell file keeps its pack's own times under 'pack'."
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
        timing=None if timing is None else timing.results,
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
                    "timing": None if timing is None else timing.to_dict(),
                    "report": {k: str(v) for k, v in written.items()},
                    "report_seconds": report_seconds,
                    "total_seconds": total,
                }
            )
        )
    else:
        print(f"report: {md} and {html} ({len(written)} files, {report_seconds:.1f} s); total {total:.1f} s")
    return 0


def _share_alone_cells(out: Path, timing_dir: Path, cells: list) -> None:
    """Copy the stored records of ``cells`` that trained alone (no ``pack``) from the sweep's store into the
    timing store, so that its sweep reuses them instead of training them again."""
    from ..experiments import ResultsStore

    source, target = ResultsStore(out), ResultsStore(timing_dir)
    target.check_layout()
    target.cells_dir.mkdir(parents=True, exist_ok=True)
    for cell in cells:
        record = source.load(cell)
        if record is not None and "pack" not in record and target.load(cell) is None:
            target.save(record)


#: Sub-directory of ``--out`` holding the dedicated timing runs (a store of its own).
TIMING_DIR = "timing"

#: Options of the corrected protocol that a reference run refuses, with why (one line each).
_NOT_FOR_REFERENCE = {
    "jobs": "--jobs does not apply to --protocol reference: its cells run one at a time, in the reference's order "
    "of random draws",
    "scheduler": "--scheduler does not apply to --protocol reference: its cells run one at a time in this process, "
    "in the reference's order of random draws",
    "pgd_paper_seeds": "--pgd-paper-seeds does not apply to --protocol reference: its pgd-paper rows are the "
    "reference's, at seed 42",
    "allow_large": "--allow-large does not apply to --protocol reference: its set of cells is fixed",
}


def run_reference(args: argparse.Namespace) -> int:
    """``fastfair reproduce --protocol reference``: check the options and ``--out`` before any work, run the
    cells, write every file into a new directory beside ``--out`` and rename it into place (all files or none; an
    earlier reference run there is replaced), then print the rows beside the published numbers."""
    for name, message in _NOT_FOR_REFERENCE.items():
        require(getattr(args, name) in (None, False), message)
    if args.seeds is not None:
        require(
            not args.quick,
            "--seeds does not apply to --protocol reference --quick, which runs the reference's seed 42 only; "
            "it sets the seed spread of the full reference run",
        )
        require(
            args.seeds >= 2, f"--seeds must be at least 2 for the reference protocol's seed spread, got {args.seeds}"
        )
    from ..reference.reproduce import check_reference_out

    replace = check_reference_out(args.out) if args.out else False
    out = check_out_dir(args.out, fresh=True, force=replace)
    assert out is not None  # --out is required
    try:
        with sigterm_as_interrupt():
            return _run_reference(args, out, replace)
    except Terminated:
        print(_reference_interrupted(out, replace, "terminated"), file=sys.stderr)
        return TERMINATED_EXIT
    except KeyboardInterrupt:
        print(_reference_interrupted(out, replace, "interrupted"), file=sys.stderr)
        return INTERRUPTED_EXIT


def _reference_interrupted(out: Path, replace: bool, what: str) -> str:
    kept = "the earlier reference run there is intact" if replace else "nothing was written there"
    return f"fastfair: {what}; a reference run writes its files only once every cell has finished: {kept}"


def _run_reference(args: argparse.Namespace, out: Path, replace: bool) -> int:
    from ..io import atomic_directory
    from ..reference.reproduce import run_reference_protocol, write_reference_files
    from ..report.reference import build_reference_report

    start = time.perf_counter()
    quick = bool(args.quick)
    if not args.json:
        what = (
            "4 headline cells at seed 42"
            if quick
            else f"7 published rows, the seed spread over {args.seeds or REFERENCE_SPREAD_SEEDS} seeds and 42, and "
            f"the ablation over {REFERENCE_ABLATION_SEEDS} seeds (about {REFERENCE_FULL_MINUTES} minutes)"
        )
        print(f"reference protocol: {what}, one cell at a time...", file=sys.stderr, flush=True)
    progress = not (args.json or args.no_progress) and sys.stderr.isatty()
    outputs = run_reference_protocol(
        quick=quick,
        spread_seeds=args.seeds or REFERENCE_SPREAD_SEEDS,
        ablation_seeds=REFERENCE_ABLATION_SEEDS,
        progress=progress,
    )
    with atomic_directory(out, replace=replace) as tmp:
        written = write_reference_files(outputs, tmp)
        if not args.no_report:
            files = [(p.name, _REFERENCE_FILES.get(name, "")) for name, p in written.items()]
            written.update(
                build_reference_report(
                    tmp,
                    outputs.rows,
                    spread_summary=outputs.spread_summary,
                    ablation=outputs.ablation,
                    figure="seed_spread_png" in written,
                    quick=quick,
                    files=files,
                    spread=outputs.spread,
                )
            )
    written = {name: out / path.relative_to(tmp) for name, path in written.items()}
    total = time.perf_counter() - start
    if args.json:
        print(
            dumps_json(
                {
                    "protocol": "reference",
                    "quick": quick,
                    "rows": outputs.rows.to_dict(orient="records"),
                    "files": {k: str(v) for k, v in written.items()},
                    "total_seconds": total,
                }
            )
        )
        return 0
    print("the authors' setup (reference protocol), ours beside the published numbers:")
    print(reference_overview(outputs.rows).to_string(index=False))
    print()
    print(f"reference section: {written['reference_md']}")
    if "report_md" in written:
        print(f"report: {written['report_md']} and {written['report_html']}; total {total:.1f} s")
    else:
        print(f"total {total:.1f} s")
    return 0


#: What each file of a reference run holds (for the report's list of files).
_REFERENCE_FILES = {
    "results_csv": "one row per cell (protocol = reference): accuracy and the five gaps per split, timing, and "
    "the published numbers beside them",
    "reference_md": "the reference protocol's section in brief",
    "seed_spread_csv": "the Unfair2D trs-paper r = 0.18 row, one row per seed",
    "seed_spread_summary_csv": "its summary per metric",
    "seed_spread_png": "the seed-spread figure",
    "ablation_csv": "the ablation: change per switch and metric, 95% CI, p-value, Holm-adjusted p-value",
    "ablation_runs_csv": "every run behind the ablation",
}


def reference_overview(rows: pd.DataFrame) -> pd.DataFrame:
    """The printed table: per cell, our train / val / test accuracy (%) and training independence gap beside the
    published ones, and whether they match at the printed precision."""
    table = []
    for _, r in rows.iterrows():
        has = "published_train" in r and pd.notna(r["published_train"])
        gap = r.get("published_train_independence", float("nan"))
        table.append(
            {
                "dataset": r["dataset"],
                "solver": r["solver"],
                "r": f"{r['radius']:g}",
                "epochs": int(r["epochs"]),
                "train %": f"{100 * r['train_accuracy']:.2f}",
                "val %": f"{100 * r['val_accuracy']:.4f}",
                "test %": f"{100 * r['test_accuracy']:.4f}",
                "train gap": f"{r['train_independence']:.3f}",
                "published train / val / test %": (
                    " / ".join(f"{r[f'published_{k}']:g}" for k in ("train", "val", "test")) if has else "-"
                ),
                "published gap": f"{gap:g}" if pd.notna(gap) else "-",
                "match": ("yes" if bool(r["matches"]) else "NO") if has else "-",
            }
        )
    return pd.DataFrame(table)
