"""Running a sweep: expand the grid, reuse finished cells, run the rest on an executor, store as they finish.

:func:`run_sweep` is the library face of ``fastfair sweep``::

    from fastfair.experiments import grid_from_dict, run_sweep

    grid = grid_from_dict({"datasets": ["unfair2d"], "solvers": ["none", "trs"], "radii": "0.1:0.2:0.05",
                           "seeds": "0:3", "epochs": 10, "batch_size": 5})
    summary = run_sweep(grid, "results/mysweep", jobs=2)
    summary.results            # the tidy DataFrame, also in results/mysweep/results.csv

Re-running the same grid into the same directory only runs the cells that are not stored yet.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from ..errors import FastfairError, require
from . import cell as _cell
from .cell import load_dataset, run_cell
from .executors import Executor, SerialExecutor, _describe_error, make_executor
from .grid import Cell, Grid
from .manifest import write_manifest
from .packs import CellPack, plan_packs, run_pack
from .store import ResultsStore, results_frame

#: Rough relative cost of a solver, used to start expensive cells first (better load balance).
#: ``auto`` takes ``trs`` or ``pgd`` by the model: counted as the dearer of the two.
SOLVER_COST = {
    "pgd-paper": 100.0, "trs-paper": 10.0, "pgd": 10.0, "auto": 10.0, "trs": 3.0, "random": 1.5, "none": 1.0
}


class CellFailed(FastfairError):
    """A cell failed on its input or settings (it raised :class:`FastfairError`); the sweep stopped there."""


@dataclass
class SweepSummary:
    """What a sweep did: counts, time, where the results are, and the results themselves."""

    out_dir: Path
    results_path: Path
    total: int
    reused: int
    ran: int
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    where: str = ""
    results: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and self.reused + self.ran == self.total

    def line(self) -> str:
        """One-line summary."""
        failed = f", {len(self.failed)} failed" if self.failed else ""
        where = f" {self.where}" if self.ran else ""
        return (
            f"sweep: {self.total} cells ({self.ran} run, {self.reused} reused{failed}) "
            f"in {self.seconds:.1f} s"
            f"{where} -> {self.results_path}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out_dir),
            "results": str(self.results_path),
            "cells": self.total,
            "ran": self.ran,
            "reused": self.reused,
            "failed": [{k: v for k, v in f.items() if k != "traceback"} for f in self.failed],
            "rows": len(self.results),
            "seconds": self.seconds,
            "executor": self.where,
            "interrupted": self.interrupted,
        }


def check_data(cells: Sequence[Cell]) -> None:
    """Load each distinct dataset of ``cells`` once (first seed), so bad data options fail before any work."""
    seen = set()
    for cell in cells:
        key = repr(sorted(cell.data.to_dict().items()))
        if key in seen:
            continue
        seen.add(key)
        load_dataset(cell.data, cell.seed)


def _cost_order(cells: Sequence[Any]) -> list[Any]:
    """Cells sorted by decreasing estimated cost (solver, epochs, 1/batch size; or the cell's own ``cost``
    attribute where it has one; a pack: the sum over its cells), grid order within ties."""

    def cost(cell: Any) -> float:
        if isinstance(cell, CellPack):
            return sum(cost(c) for c in cell.cells)
        own = getattr(cell, "cost", None)
        if own is not None:
            return float(own)
        return (
            SOLVER_COST.get(cell.solver, 1.0) * cell.epochs * (cell.train_size or 1000) / cell.batch_size**0.5
        )

    return sorted(cells, key=lambda c: -cost(c))


def run_sweep(
    grid: Grid | Sequence[Cell],
    out_dir: str | os.PathLike[str],
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    executor: Executor | None = None,
    progress: bool | None = None,
    check: bool = True,
    flush_seconds: float = 2.0,
    desc: str = "sweep",
    announce: Callable[[str], None] | None = None,
    runner: Callable[[Any], dict[str, Any]] | None = None,
    table: Callable[[Sequence[Any], dict[str, dict[str, Any]]], pd.DataFrame] | None = None,
    preload: Sequence[str] = (),
    pack: bool = True,
    alone: Collection[str] = (),
) -> SweepSummary:
    """Run every cell of ``grid`` not yet stored in ``out_dir``; return a :class:`SweepSummary`.

    Each finished cell is written to ``out_dir/cells/<cell_id>.json`` at once, and ``out_dir/results.csv`` is
    rewritten (atomically, in grid order) every ``flush_seconds`` and at the end, also when interrupted.
    ``check`` first loads each dataset that still has cells to run, so bad data fails before anything is
    written. ``announce``, if given, receives one line with the cell counts once these checks have passed.

    Failures come in two kinds. A cell that raises :class:`~fastfair.errors.FastfairError` failed on its input
    or settings, and would fail the same way again: the sweep stops at once (queued and running cells are
    dropped), keeps what finished, and raises :class:`CellFailed` naming the cell. Any other exception (a
    worker that died, an unexpected error) is reported in ``summary.failed`` and ``out_dir/failures.json``, and
    the sweep goes on; such cells are not stored, so a re-run retries them.

    ``runner`` and ``table`` make the same machinery run other kinds of cells (e.g. the method comparison's):
    any frozen, picklable value with ``cell_id``, ``spec()``, ``describe()``, ``data`` and ``seed`` is a cell;
    ``runner(cell)`` returns its record (``{"cell_id", "spec", "rows", ...}``) and ``table(cells, records)``
    the results table, and ``preload`` names modules the local worker processes should start with. By default
    :func:`fastfair.experiments.cell.run_cell` and :func:`fastfair.experiments.store.results_frame`.

    ``pack`` (the default, for the built-in runner; another ``runner`` runs cell by cell): the cells to run are
    grouped into packs that train as one computation (:mod:`fastfair.experiments.packs`; cells without a packed
    form run alone), each finished cell still stored on its own (a killed run loses at most the packs in flight).
    ``pack=False`` runs one cell at a time (and trains again, alone, a stored cell that trained in a pack, so that
    every time is a cell's own); ``alone`` names cells (by id) that train alone even when packing. The
    timing columns of a packed cell are amortised (the pack's time over its size); its record keeps the pack's own
    times under ``pack``.
    """
    run_one = runner if runner is not None else run_cell
    frame_of = table if table is not None else results_frame
    start = time.perf_counter()
    cells = grid.cells() if isinstance(grid, Grid) else list(grid)
    require(len(cells) > 0, "the grid has no cells")
    store = ResultsStore(out_dir)
    store.check_layout()
    finished = store.finished(cells) if store.cells_dir.is_dir() else {}
    if not pack:  # one cell at a time means its own times too: a cell stored from a pack is trained again, alone
        finished = {cell_id: record for cell_id, record in finished.items() if not record.get("pack")}
    todo = [c for c in cells if c.cell_id not in finished]
    if check and todo:
        check_data(todo)
    if progress is None:
        progress = sys.stderr.isatty()
    if executor is None:
        executor = make_executor(jobs, scheduler, preload) if todo else SerialExecutor()
    if todo:
        executor.start()  # e.g. connect to the Dask scheduler before anything is written
    if announce is not None:
        where = f" {executor.describe()}" if todo else ""
        cells_text = f"{len(cells):,} cell{'s' if len(cells) != 1 else ''}"
        announce(f"{desc}: {cells_text} ({len(finished):,} stored, {len(todo):,} to run{where})")

    records = dict(finished)
    failed: list[dict[str, Any]] = []
    interrupted = False
    packing = pack and run_one is _cell.run_cell  # packs stand in for the built-in runner only
    if packing:
        workers = max(jobs, getattr(executor, "workers", 1) or 1)
        items: list[Any] = _cost_order(plan_packs(todo, jobs=workers, alone=set(alone)))
        run_item: Callable[[Any], Any] = run_pack
    else:
        items, run_item = _cost_order(todo), run_one
    with store.lock():
        if isinstance(grid, Grid):
            store.write_grid(grid.to_dict())
        write_manifest(
            store.root,
            _distinct_data(cells),
            devices=_devices(cells),
            extra={"command": desc, "executor": executor.describe(), "cells": len(cells), "to_run": len(todo)},
        )
        store.write_results(cells, records, frame_of)
        bar = _progress_bar(len(cells), len(finished), desc, progress)
        last_flush = time.monotonic()
        try:
            with executor:
                for outcome in executor.run(run_item, items):
                    cell = outcome.item
                    if outcome.error is None and packing:
                        for record in outcome.result["records"]:
                            records[record["cell_id"]] = store.save(record)
                            if bar is not None:
                                bar.update(1)
                        for error in outcome.result.get("errors", ()):
                            failed.append({"deterministic": False, **error})
                            if bar is not None:
                                bar.write(f"fastfair: cell {error['cell']} failed: {error['error']}")
                                bar.update(1)
                        failure = outcome.result["failure"]
                        if failure is not None:
                            failed.append({"deterministic": True, "traceback": "", **failure})
                            kept = len(records)
                            raise CellFailed(
                                f"cell {failure['cell']}: {failure['error']} (the sweep stopped; "
                                f"{kept} finished cell{'s' if kept != 1 else ''} kept in {store.root})"
                            )
                    elif outcome.error is None:
                        records[cell.cell_id] = store.save(outcome.result)
                    else:
                        deterministic = isinstance(outcome.error, FastfairError)
                        failed.append(
                            {
                                "cell_id": cell.cell_id,
                                "cell": cell.describe(),
                                "error": _describe_error(outcome.error),
                                "deterministic": deterministic,
                                "traceback": outcome.traceback,
                            }
                        )
                        if deterministic:
                            kept = len(records)
                            raise CellFailed(
                                f"cell {cell.describe()}: {_describe_error(outcome.error)} (the sweep stopped; "
                                f"{kept} finished cell{'s' if kept != 1 else ''} kept in {store.root})"
                            )
                        if bar is not None:
                            bar.write(
                                f"fastfair: cell {cell.describe()} failed: {_describe_error(outcome.error)}"
                            )
                    if bar is not None:
                        bar.set_postfix_str(f"last: {cell.describe()}", refresh=False)
                        if not (packing and outcome.error is None):
                            bar.update(getattr(cell, "size", 1))
                    if time.monotonic() - last_flush >= flush_seconds:
                        store.write_results(cells, records, frame_of)
                        last_flush = time.monotonic()
        except KeyboardInterrupt:
            interrupted = True
            # a cell whose file was written just before the interrupt may not be in `records` yet
            records.update(store.finished([c for c in cells if c.cell_id not in records]))
            raise
        finally:
            store.write_results(cells, records, frame_of)
            store.write_failures(failed)
            if bar is not None:
                bar.close()
    frame = frame_of(cells, records)
    return SweepSummary(
        out_dir=store.root,
        results_path=store.results_path,
        total=len(cells),
        reused=len(finished),
        ran=len(records) - len(finished),
        failed=failed,
        seconds=time.perf_counter() - start,
        where=executor.describe(),
        results=frame,
        interrupted=interrupted,
    )


def _distinct_data(cells: Sequence[Any]) -> list[Any]:
    """Each distinct data source of ``cells`` once (its ``data``), in first-use order."""
    seen: dict[str, Any] = {}
    for cell in cells:
        data = cell.data
        key = repr(sorted(data.to_dict().items())) if hasattr(data, "to_dict") else repr(data)
        seen.setdefault(key, data)
    return list(seen.values())


def _devices(cells: Sequence[Any]) -> list[str]:
    """The torch devices ``cells`` train on (their ``config.device``; CPU for cells without one)."""
    found = {str(getattr(getattr(cell, "config", None), "device", "cpu") or "cpu") for cell in cells}
    return sorted(found)


def _progress_bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="cell",
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} cells "
        "[{elapsed}<{remaining}{postfix}]",
    )


def summarize_cells(cells: Sequence[Cell]) -> pd.DataFrame:
    """A table of the cells of a grid (for ``--dry-run``): one row per cell, in grid order."""
    return pd.DataFrame(
        [
            {
                "cell_id": c.cell_id,
                "dataset": c.dataset,
                "model": c.model,
                "solver": c.solver,
                "radius": c.radius,
                "seed": c.seed,
                "epochs": c.epochs,
                "batch_size": c.batch_size,
                "lr": c.lr,
                "train_size": c.train_size,
            }
            for c in cells
        ]
    )


__all__ = ["SOLVER_COST", "CellFailed", "FastfairError", "SweepSummary", "check_data", "run_sweep", "summarize_cells"]
