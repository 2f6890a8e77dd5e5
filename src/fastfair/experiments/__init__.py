"""Experiments: sweep grids, one-cell runs, a resumable results store, local and Dask executors, paper grid.

* :mod:`.grid` -- :class:`Grid` / :class:`Cell` and the YAML/TOML schema (:func:`grid_from_dict`,
  :func:`grid_from_file`).
* :mod:`.cell` -- :func:`run_cell`, one training run evaluated on train / val / test as tidy rows.
* :mod:`.store` -- :class:`ResultsStore`: ``DIR/cells/<cell_id>.json`` + ``DIR/results.csv``, atomic,
  resumable.
* :mod:`.executors` -- serial, local processes, ``dask.distributed``.
* :mod:`.sweep` -- :func:`run_sweep`, tying them together.
* :mod:`.paper` -- the grid of the paper's experiments (``fastfair reproduce``).
"""

from __future__ import annotations

from .cell import COLUMNS, run_cell
from .executors import DaskExecutor, Executor, ProcessExecutor, SerialExecutor, make_executor
from .grid import (
    Cell,
    DataSpec,
    Grid,
    GridTooLarge,
    grid_from_dict,
    grid_from_file,
    load_config,
    parse_radii,
    parse_seeds,
)
from .store import ResultsStore, read_results, results_frame
from .sweep import CellFailed, SweepSummary, run_sweep

__all__ = [
    "COLUMNS",
    "Cell",
    "CellFailed",
    "DaskExecutor",
    "DataSpec",
    "Executor",
    "Grid",
    "GridTooLarge",
    "ProcessExecutor",
    "ResultsStore",
    "SerialExecutor",
    "SweepSummary",
    "grid_from_dict",
    "grid_from_file",
    "load_config",
    "make_executor",
    "parse_radii",
    "parse_seeds",
    "read_results",
    "results_frame",
    "run_cell",
    "run_sweep",
]
