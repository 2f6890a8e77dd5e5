"""Experiments: sweep grids, one-cell runs, a resumable results store, local and Dask executors, paper grid.

* :mod:`.grid` -- the specs: :class:`DataSpec`, :class:`Cell`, :class:`Grid` (plain values, counted before
  they are expanded).
* :mod:`.grid_config` -- the YAML/TOML schema, read and resolved into a grid (:func:`grid_from_dict`,
  :func:`grid_from_file`, :func:`load_config`); the value parsers it uses are in :mod:`.parse`
  (:func:`parse_radii`, :func:`parse_seeds`).
* :mod:`.paper_protocol` -- the grid of the paper's experiments (``fastfair reproduce``): :func:`paper_grid`.
* :mod:`.cell` -- :func:`run_cell`, one training run evaluated on train / val / test as tidy rows.
* :mod:`.store` -- :class:`ResultsStore`: ``DIR/cells/<cell_id>.json`` + ``DIR/results.csv``, atomic,
  resumable.
* :mod:`.executors` -- serial, local processes, ``dask.distributed``.
* :mod:`.sweep` -- :func:`run_sweep`, tying them together.

Importing the package does not load torch: a cell imports the training layer when it runs.
"""

from __future__ import annotations

from .cell import COLUMNS, run_cell
from .executors import DaskExecutor, Executor, ProcessExecutor, SerialExecutor, make_executor
from .grid import Cell, DataSpec, Grid, GridTooLarge
from .grid_config import grid_from_dict, grid_from_file, load_config
from .paper_protocol import DatasetProtocol, paper_grid
from .parse import parse_radii, parse_seeds
from .store import ResultsStore, read_results, results_frame
from .sweep import CellFailed, SweepSummary, run_sweep

__all__ = [
    "COLUMNS",
    "Cell",
    "CellFailed",
    "DaskExecutor",
    "DataSpec",
    "DatasetProtocol",
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
    "paper_grid",
    "parse_radii",
    "parse_seeds",
    "read_results",
    "results_frame",
    "run_cell",
    "run_sweep",
]
