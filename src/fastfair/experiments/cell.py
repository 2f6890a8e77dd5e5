"""Running one cell of a sweep: train, evaluate on train / val / test, return tidy rows.

:func:`run_cell` is a top-level function of picklable arguments, so that it runs the same in this process, in
a local worker process or on a Dask worker. It always trains on the CPU with one torch thread (restored
afterwards), so a cell's numbers do not depend on where it ran; only the timing columns do.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from .. import datasets
from ..errors import FastfairError
from ..io import dumps_json
from ..vocabulary import BASELINE, GAP_KEYS, SPLITS
from .grid import Cell, DataSpec

#: The metric columns: accuracy, AUC and the five fairness gaps.
METRICS = ("accuracy", "auc", *GAP_KEYS)
#: The timing columns (wall seconds per epoch, and the inner solver's part of it).
TIMING = ("epoch_seconds", "inner_seconds")
#: The columns that identify a row of the results table: the cell and the split.
KEYS = ("cell_id", "dataset", "model", "solver", "radius", "seed", "split")
#: Columns of the results table, in order: one row per cell x split.
COLUMNS = (
    *KEYS,
    "n",
    *METRICS,
    *TIMING,
    "epochs",
    "batch_size",
    "lr",
    "train_size",
    "hidden",
    "activation",
    "clean_weight",
    "dtype",
)

_DATA_CACHE: OrderedDict[tuple[str, int], Any] = OrderedDict()
_DATA_CACHE_SIZE = 4


def load_dataset(spec: DataSpec, seed: int) -> datasets.Dataset:
    """The data of ``spec``, split with ``seed``, through :mod:`fastfair.datasets`.

    A process keeps the last few datasets it loaded: the cells of one dataset and seed share one load. An
    option the loader does not take is a :class:`FastfairError` that names the dataset.
    """
    key = (dumps_json(spec.to_dict(), sort_keys=True), seed)
    if key in _DATA_CACHE:
        _DATA_CACHE.move_to_end(key)
        return _DATA_CACHE[key]
    data = _load(spec, seed)
    _DATA_CACHE[key] = data
    while len(_DATA_CACHE) > _DATA_CACHE_SIZE:
        _DATA_CACHE.popitem(last=False)
    return data


def _load(spec: DataSpec, seed: int) -> datasets.Dataset:
    try:
        if spec.csv is not None:
            return datasets.load_csv(
                spec.csv,
                target=spec.target,
                sensitive=spec.sensitive,
                features=list(spec.features) if spec.features is not None else None,
                positive=spec.positive,
                seed=seed,
                **dict(spec.options),
            )
        return datasets.load(spec.name, seed=seed, **dict(spec.options))
    except TypeError as exc:  # an unknown dataset option
        raise FastfairError(f"dataset {spec.label!r}: {exc}") from exc


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch with one intra-op thread inside the block.

    The previous setting is restored only in the main thread: tasks running concurrently in worker threads
    (Dask) would otherwise restore each other's setting mid-run.
    """
    import torch  # here, not at the top: reading results and specs (the report, --dry-run) needs no torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread() and torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def isolated_cell(seed: int) -> Iterator[list[warnings.WarningMessage]]:
    """The environment every cell runs in: one torch thread (:func:`single_thread`), torch's global RNG forked
    and seeded with ``seed`` (solvers and learners that draw without their own seed then do not depend on what
    ran before in this process; the state is restored afterwards), and every warning recorded rather than
    printed (undefined gaps and the like go into the cell file, not once per cell onto the terminal). Yields the
    list the warnings are recorded in; :func:`warning_notes` turns it into the cell's notes."""
    import torch  # here, not at the top: see single_thread

    with single_thread(), torch.random.fork_rng(devices=[]), warnings.catch_warnings(record=True) as caught:
        torch.manual_seed(seed)
        warnings.simplefilter("always")
        yield caught


def warning_notes(caught: list[warnings.WarningMessage]) -> list[str]:
    """The distinct recorded warnings as sorted ``"Category: message"`` lines."""
    return sorted({f"{w.category.__name__}: {w.message}" for w in caught})


def run_cell(cell: Cell) -> dict[str, Any]:
    """Train and evaluate one cell; return its record ``{"cell_id", "spec", "rows", "history", ...}``.

    ``rows`` holds one dict per split with the :data:`COLUMNS`. Raises
    :class:`~fastfair.errors.FastfairError` on bad input (e.g. a diverging run).
    """
    from ..training import evaluate, train

    start, cpu_start, started_at = time.perf_counter(), time.process_time(), time.time()
    with isolated_cell(cell.seed) as caught:
        config = cell.train_config()
        data = load_dataset(cell.data, cell.seed)
        result = train(data, config)
        evaluation = evaluate(result, data)
    notes = warning_notes(caught)
    timing = {"epoch_seconds": result.epoch_seconds, "inner_seconds": result.inner_seconds}
    record = cell_record(cell, data, result, evaluation, timing, notes)
    record.update(
        {
            "wall_seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start,
            "started_at": started_at,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
    )
    return record


def cell_record(
    cell: Cell,
    data: datasets.Dataset,
    result: Any,
    evaluation: dict[str, Any],
    timing: dict[str, float],
    notes: list[str],
) -> dict[str, Any]:
    """The record of a trained and evaluated cell (without its wall-time fields): ``rows`` (one per split, the
    :data:`COLUMNS`, with ``timing`` as the timing columns), history, trained weights and warning notes."""
    base = {
        "cell_id": cell.cell_id,
        "dataset": cell.dataset,
        "model": cell.model,
        "solver": cell.solver,
        "radius": cell.radius,
        "seed": cell.seed,
    }
    settings = {
        "epochs": cell.epochs,
        "batch_size": cell.batch_size,
        "lr": cell.lr,
        "train_size": cell.train_size,
        "hidden": cell.hidden if cell.model != "affine" else None,
        "activation": cell.activation if cell.model != "affine" else None,
        "clean_weight": cell.clean_weight if cell.solver != BASELINE else 0.0,
        "dtype": cell.dtype,
    }
    rows = []
    for split in SPLITS:
        if split not in evaluation:
            continue
        summary = evaluation[split]["summary"]
        n = len(data.split(split))
        if split == "train" and cell.train_size is not None:
            n = min(n, cell.train_size)
        row = {**base, "split": split, "n": n}
        row.update({m: _float(summary.get(m)) for m in METRICS})
        row.update(timing)
        row.update(settings)
        rows.append(row)
    return {
        "cell_id": cell.cell_id,
        "description": cell.describe(),
        "spec": cell.spec(),
        "data": cell.data.to_dict(),
        "rows": rows,
        "history": result.history,
        # the trained weights (small for the built-in models): a cell's model can be rebuilt without training
        "model_state": {k: v.detach().cpu().double().tolist() for k, v in result.model.state_dict().items()},
        "warnings": notes,
    }


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)
