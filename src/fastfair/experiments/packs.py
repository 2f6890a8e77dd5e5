"""The sweep planner's packs: cells that can train as one computation (:mod:`fastfair.packing`), grouped.

:func:`plan_packs` groups the cells still to run by what a pack shares -- data spec, model shape, solver and its
options other than the seed, batch size, epochs, lr, clean weight, train size and dtype -- and cuts each group
into packs of at most ``max_size`` cells; while there are fewer packs than workers, the largest packs are halved
(down to :data:`MIN_SPLIT` cells), so that ``--jobs`` and Dask have packs to distribute. A cell that cannot be
packed (a model or solver without a packed form: the MLP with ``trs`` / ``trs-paper``, ``auto``, a deep MLP; data
with three or more classes) is a pack of one and runs exactly as :func:`fastfair.experiments.cell.run_cell` runs it.

:func:`run_pack` is the executors' task: it loads each seed's data once, splits the pack further by the sizes
of the data (runs with different numbers of training or validation rows cannot share a batch), trains each
part with :func:`fastfair.packing.train_pack`, evaluates every cell on its own, and returns one record per cell,
as :func:`~fastfair.experiments.cell.run_cell` would, plus ``pack``: its size, id and the pack's own epoch and
inner-solver seconds. The timing columns of a packed cell are the pack's times divided by its size (amortised:
what one cell costs within the pack, not the time it takes alone). If a packed run fails in any way (e.g. one run
diverges), each cell of that part is run alone, so a failure is reported for the cell that fails, with its own
message: a :class:`~fastfair.errors.FastfairError` stops there (the cells before it are kept), any other error is
listed for that cell and the others still run.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import time
import traceback
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import FastfairError
from .cell import cell_record, isolated_cell, load_dataset, run_cell, warning_notes
from .grid import Cell

#: Most cells in one pack.
MAX_PACK = 64
#: Packs are split to give idle workers work only down to this many cells each.
MIN_SPLIT = 4


@dataclass(frozen=True)
class CellPack:
    """Cells that train together (one cell: it trains alone). A picklable task for the executors."""

    cells: tuple[Cell, ...]

    @property
    def cell_id(self) -> str:
        """The cell's id for a pack of one; else ``pack-`` and a hash of the cell ids."""
        if len(self.cells) == 1:
            return self.cells[0].cell_id
        text = ",".join(c.cell_id for c in self.cells)
        return "pack-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

    @property
    def data(self) -> Any:
        return self.cells[0].data

    @property
    def seed(self) -> int:
        return self.cells[0].seed

    @property
    def size(self) -> int:
        return len(self.cells)

    def spec(self) -> dict[str, Any]:
        return {"pack": [c.spec() for c in self.cells]}

    def describe(self) -> str:
        first = self.cells[0]
        if self.size == 1:
            return first.describe()
        seeds = sorted({c.seed for c in self.cells})
        radii = sorted({c.radius for c in self.cells})
        return (
            f"pack of {self.size}: {first.data.label} {first.model} {first.solver} "
            f"({len(radii)} radii, seeds {seeds[0]}..{seeds[-1]})"
        )


def pack_group_key(cell: Cell) -> tuple | None:
    """What the cells of one pack share (``None``: the cell runs alone)."""
    from ..packing import unpackable_reason

    try:
        config = cell.train_config()
    except FastfairError:
        return None  # it fails alone, with its own message
    if unpackable_reason(config) is not None or not _binary_data(cell):
        return None
    options = {k: v for k, v in sorted(cell.solver_options.items()) if k != "seed"}
    return (
        repr(sorted(cell.data.identity().items())),
        cell.model,
        repr(cell.hidden) if cell.model != "affine" else None,
        cell.activation if cell.model != "affine" else None,
        cell.solver,
        repr(options),
        cell.epochs,
        cell.batch_size,
        cell.lr,
        cell.train_size,
        cell.clean_weight,
        cell.dtype,
    )


#: Whether each data spec (by its identity) has two classes: packs train binary labels only.
_BINARY: dict[str, bool] = {}


def _binary_data(cell: Cell) -> bool:
    """Whether ``cell``'s data has two classes (loaded once per data spec and process; data that fails to load is
    left to fail alone, with its own message)."""
    key = repr(sorted(cell.data.identity().items()))
    if key not in _BINARY:
        try:
            _BINARY[key] = load_dataset(cell.data, cell.seed).n_classes == 2
        except FastfairError:
            _BINARY[key] = False
    return _BINARY[key]


def plan_packs(
    cells: Sequence[Cell], *, jobs: int = 1, max_size: int = MAX_PACK, alone: Collection[str] = ()
) -> list[CellPack]:
    """Group ``cells`` into packs (module docs), in grid order within each pack; the cells whose ids are in
    ``alone`` (e.g. timing runs) each train alone."""
    groups: dict[tuple, list[Cell]] = {}
    singles: list[CellPack] = []
    for cell in cells:
        key = None if cell.cell_id in alone else pack_group_key(cell)
        if key is None:
            singles.append(CellPack((cell,)))
        else:
            groups.setdefault(key, []).append(cell)
    chunks: list[list[Cell]] = []
    for members in groups.values():
        parts = math.ceil(len(members) / max_size)
        size = math.ceil(len(members) / parts)
        chunks.extend(members[i : i + size] for i in range(0, len(members), size))
    # fewer packs than workers: halve the largest packs (none below MIN_SPLIT cells) until every worker has one
    while len(chunks) + len(singles) < jobs:
        largest = max(range(len(chunks)), key=lambda i: len(chunks[i]), default=None)
        if largest is None or len(chunks[largest]) < 2 * MIN_SPLIT:
            break
        members = chunks.pop(largest)
        half = math.ceil(len(members) / 2)
        chunks[largest:largest] = [members[:half], members[half:]]
    return [CellPack(tuple(c)) for c in chunks] + singles


def run_pack(pack: CellPack) -> dict[str, Any]:
    """Train and evaluate the cells of ``pack``; return ``{"records": [...], "failure": None | {...}, "errors":
    [...]}`` (module docs). ``failure`` names the first cell that failed on its input or settings (``{"cell_id",
    "cell", "error"}``); the records hold the cells finished before it. ``errors`` lists the cells that failed
    otherwise (an unexpected exception: ``{"cell_id", "cell", "error", "traceback"}``); the others still run."""
    if pack.size == 1:
        return {"records": [run_cell(pack.cells[0])], "failure": None, "errors": []}
    records: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    data = {}
    for cell in pack.cells:
        if cell.seed not in data:
            data[cell.seed] = load_dataset(cell.data, cell.seed)
    parts: dict[tuple[int, int, int], list[Cell]] = {}
    for cell in pack.cells:
        d = data[cell.seed]
        n = len(d.train) if cell.train_size is None else min(len(d.train), cell.train_size)
        parts.setdefault((n, len(d.val), d.train.X.shape[1]), []).append(cell)
    for members in parts.values():
        try:
            records.extend(_run_part(pack, members, data))
        except Exception:  # any failure of the packed run: each cell runs alone and speaks for itself
            for cell in members:
                try:
                    records.append(run_cell(cell))
                except FastfairError as exc:
                    failure = {"cell_id": cell.cell_id, "cell": cell.describe(), "error": str(exc)}
                    return {"records": records, "failure": failure, "errors": errors}
                except Exception as exc:  # reported like a failed cell of the executors; the rest go on
                    errors.append(
                        {
                            "cell_id": cell.cell_id,
                            "cell": cell.describe(),
                            "error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc(),
                        }
                    )
    return {"records": records, "failure": None, "errors": errors}


def _run_part(pack: CellPack, cells: list[Cell], data: dict[int, Any]) -> list[dict[str, Any]]:
    """Train ``cells`` (equal data sizes) as one pack and build their records."""
    from ..packing import train_pack
    from ..training import evaluate

    if len(cells) == 1:
        return [run_cell(cells[0])]
    start, cpu_start, started_at = time.perf_counter(), time.process_time(), time.time()
    sets = [data[c.seed] for c in cells]
    if any(d.n_classes != 2 for d in sets):
        raise FastfairError("packs train binary labels only")
    with isolated_cell(cells[0].seed) as caught:
        configs = [c.train_config() for c in cells]
        results, timing = train_pack(
            [d.train.X for d in sets],
            [d.train.y for d in sets],
            configs,
            X_vals=[d.val.X for d in sets],
            y_vals=[d.val.y for d in sets],
        )
    shared_notes = warning_notes(caught)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    size = len(cells)
    info = {
        "id": pack.cell_id,
        "size": size,
        "epoch_seconds": timing.epoch_seconds,
        "inner_seconds": timing.inner_seconds,
        "wall_seconds": wall,
    }
    amortised = {"epoch_seconds": timing.epoch_seconds / size, "inner_seconds": timing.inner_seconds / size}
    records = []
    for cell, result, d in zip(cells, results, sets, strict=True):
        t0 = time.perf_counter()
        with isolated_cell(cell.seed) as caught:
            evaluation = evaluate(result, d)
        record = cell_record(cell, d, result, evaluation, amortised, sorted({*shared_notes, *warning_notes(caught)}))
        record.update(
            {
                "pack": info,
                "wall_seconds": wall / size + (time.perf_counter() - t0),
                "cpu_seconds": cpu / size,
                "started_at": started_at,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
        )
        records.append(record)
    return records
