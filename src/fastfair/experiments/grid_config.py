"""Grid config files and options: the YAML/TOML schema, read and resolved into a :class:`~.grid.Grid`.

Config file schema
------------------
A YAML (``.yaml``/``.yml``) or TOML (``.toml``) mapping. Only ``datasets`` is required::

    datasets:                       # non-empty list; each entry is one of
      - unfair2d                    #   a bundled dataset name (unfair2d, adult, lsat)
      - {name: lsat, balanced: true, batch_size: 5}
                                    #   name + dataset options (passed to fastfair.datasets.load)
                                    #   + per-dataset grid/training keys (below)
      - {csv: data/my.csv, target: income, sensitive: sex, features: [age, hours], positive: ">50K",
         label: mine}               #   your own CSV (path relative to the config file); any other key that is
                                    #   not a grid/training key is passed to fastfair.datasets.load_csv
    solvers: [none, trs, pgd]       # inner solvers (default [none, trs]); none = non-robust baseline
    radii: [0.1, 0.15]              # radii > 0, or a range "start:stop:step" (stop included), or a list
                                    # mixing both; required when a robust solver is listed
    seeds: [0, 1, 2]                # non-negative integers, or a range "start:stop" (stop excluded);
                                    # default [0]
    models: [affine]                # affine and/or mlp (a single string is accepted); default [affine]
    epochs: 10                      # training settings (defaults: fastfair.config.TrainConfig)
    batch_size: 32
    lr: 0.01
    train_size: null                # train on the first N training rows only (null: all)
    hidden: 16                      # MLP hidden width(s) and activation (ignored for affine): one width, or
    activation: tanh                # a list, one per hidden layer, e.g. [64, 32] (1 to 8 layers)
    dtype: float32
    clean_weight: 0.0
    solver_options: {pgd: {steps: 20}}   # per-solver options, keyed by solver name

Every key except ``datasets`` may also appear inside a dataset entry, where it overrides the top-level value
for that dataset only (e.g. ``batch_size: 100`` and ``train_size: 10000`` for adult, or its own ``radii``).
A dataset's ``label`` (the ``dataset`` column of the results) defaults to its name (or the CSV file's stem);
labels must be unique. Solver ``none`` runs once per (dataset, model, seed) with radius 0, not once per
radius.

Unknown keys, wrong types, non-positive radii, empty lists, duplicate values and unknown datasets, models or
solvers are rejected with a one-line :class:`~fastfair.errors.FastfairError` before anything runs. Each training
setting is checked by :func:`fastfair.config.check_setting`, the check :class:`~fastfair.config.TrainConfig`
uses. So is every value that :meth:`fastfair.config.TrainConfig.validate` refuses (e.g. a seed torch cannot
take): each distinct value of each axis is put through it (:meth:`.grid.Grid.validate`), not just the first.
``grid_from_dict(..., max_cells=N)`` refuses a larger grid with :class:`~.grid.GridTooLarge` before validating
or expanding it; a range holds at most :data:`~.parse.MAX_RANGE_VALUES` values.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .. import datasets
from ..config import TrainConfig
from ..errors import FastfairError, one_line, require
from ..vocabulary import BASELINE, MODELS, SOLVERS
from .grid import DatasetPlan, DataSpec, Grid, GridTooLarge
from .parse import (
    check_keys,
    parse_names,
    parse_radii,
    parse_seeds,
    parse_setting,
    parse_solver_options,
    plain_value,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        tomllib = None  # type: ignore[assignment]

#: Keys allowed at the top level and inside a dataset entry (overriding the top level).
GRID_KEYS = ("solvers", "radii", "seeds", "models", "solver_options")
TRAINING_KEYS = ("epochs", "batch_size", "lr", "train_size", "hidden", "activation", "dtype", "clean_weight")
TOP_KEYS = ("datasets", *GRID_KEYS, *TRAINING_KEYS)
#: Keys of a dataset entry that describe the data itself.
CSV_KEYS = ("csv", "target", "sensitive", "features", "positive")
DEFAULT_SOLVERS = ("none", "trs")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_spec(entry: Any, where: str, base_dir: str | os.PathLike[str] | None = None) -> DataSpec:
    """The :class:`DataSpec` of one dataset entry of a grid file (a bundled name, or a mapping with ``name`` or
    ``csv``, see ``fastfair sweep --help``), checked as a grid file's entries are; a relative CSV path is taken
    relative to ``base_dir`` (default: the current directory). Grid and training keys are refused."""
    spec, overrides = _data_spec(entry, where, Path.cwd() if base_dir is None else Path(base_dir))
    require(not overrides, f"{where}: {', '.join(sorted(overrides))} cannot go in a dataset entry here")
    return spec


def _data_spec(entry: Any, where: str, base_dir: Path) -> tuple[DataSpec, dict[str, Any]]:
    """Split a dataset entry into its DataSpec and its grid/training overrides."""
    if isinstance(entry, str):
        entry = {"name": entry}
    require(isinstance(entry, Mapping), f"{where} must be a dataset name or a mapping, got {entry!r}")
    for key in entry:
        require(isinstance(key, str), f"{where}: keys must be strings, got {key!r}")
    overrides = {k: v for k, v in entry.items() if k in GRID_KEYS or k in TRAINING_KEYS}
    rest = {k: v for k, v in entry.items() if k not in overrides}
    label = rest.pop("label", None)
    require(
        label is None or (isinstance(label, str) and label.strip() != ""),
        f"{where}.label must be a non-empty string",
    )
    has_name, has_csv = "name" in rest, "csv" in rest
    require(has_name != has_csv, f"{where} needs exactly one of 'name' (a bundled dataset) or 'csv' (a file)")
    if has_name:
        name = rest.pop("name")
        require(
            isinstance(name, str) and name in datasets.DATASETS,
            f"{where}: unknown dataset {name!r}; choose from {', '.join(datasets.DATASETS)} or give 'csv'",
        )
        for key in ("target", "features", "positive"):
            require(key not in rest, f"{where}: {key!r} goes with 'csv', not with a bundled dataset")
        known = datasets.dataset_options(name)
        check_keys(rest, [*known, "name", "label", *GRID_KEYS, *TRAINING_KEYS], f"{where} ({name})")
        options = {k: plain_value(v) for k, v in rest.items()}
        return DataSpec(label=label or name, name=name, options=options), overrides
    path = rest.pop("csv")
    require(isinstance(path, str) and path != "", f"{where}.csv must be a file path, got {path!r}")
    csv = Path(path).expanduser()
    if not csv.is_absolute():
        csv = base_dir / csv
    problem = file_problem(csv)
    require(problem is None, f"{where}: CSV file {path!r} {problem}")
    target, sensitive = rest.pop("target", None), rest.pop("sensitive", None)
    require(isinstance(target, str), f"{where}: a CSV dataset needs 'target' (the label column)")
    require(isinstance(sensitive, str), f"{where}: a CSV dataset needs 'sensitive' (the group column)")
    features = rest.pop("features", None)
    if features is not None:
        require(
            isinstance(features, (list, tuple))
            and len(features) > 0
            and all(isinstance(f, str) for f in features),
            f"{where}.features must be a non-empty list of column names",
        )
        features = tuple(features)
    positive = plain_value(rest.pop("positive", None))
    options = {k: plain_value(v) for k, v in rest.items()}
    spec = DataSpec(
        label=label or csv.stem,
        csv=str(csv.resolve()),
        csv_sha256=_sha256(csv),
        target=target,
        sensitive=sensitive,
        features=features,
        positive=positive,
        options=options,
    )
    return spec, overrides


def grid_from_dict(
    config: Any,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    source: str = "config",
    max_cells: int | None = None,
) -> Grid:
    """Validate a grid mapping (the schema in this module's docstring) and resolve it into a :class:`Grid`.

    ``base_dir`` is where relative CSV paths start (the config file's folder; default: the working directory).
    A grid of more than ``max_cells`` cells (``None``: no limit) raises :class:`GridTooLarge` before any
    per-value validation or expansion. Errors are raised as :class:`FastfairError` prefixed with ``source``.
    """
    try:
        return _grid_from_dict(config, Path(base_dir) if base_dir is not None else Path.cwd(), max_cells)
    except GridTooLarge:
        raise
    except FastfairError as exc:
        raise FastfairError(f"{source}: {exc}") from None


def _grid_from_dict(config: Any, base_dir: Path, max_cells: int | None) -> Grid:
    require(
        isinstance(config, Mapping),
        f"the grid must be a mapping of keys to values, got {type(config).__name__}",
    )
    check_keys(config, TOP_KEYS, "top level")
    require("datasets" in config, "missing key 'datasets' (a list of dataset names or mappings)")
    entries = config["datasets"]
    if isinstance(entries, (str, Mapping)):
        entries = [entries]
    require(isinstance(entries, (list, tuple)), "datasets must be a list")
    require(len(entries) > 0, "datasets must not be empty")

    defaults = TrainConfig()
    top = {k: config[k] for k in config if k != "datasets"}
    plans = []
    labels: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"datasets[{i}]"
        data, overrides = _data_spec(entry, where, base_dir)
        require(
            data.label not in labels, f"{where}: two datasets share label {data.label!r}; give one a 'label'"
        )
        labels.add(data.label)
        merged = {**top, **overrides}

        def origin(key: str, where: str = where, overrides: dict[str, Any] = overrides) -> str:
            return f"{where}.{key}" if key in overrides else key

        solvers = parse_names(merged.get("solvers", list(DEFAULT_SOLVERS)), origin("solvers"), SOLVERS, "solver")
        robust = [s for s in solvers if s != BASELINE]
        if "radii" in merged:
            radii = parse_radii(merged["radii"], origin("radii"))
        else:
            require(not robust, f"{where}: radii are required for solver(s) {', '.join(robust)}")
            radii = ()
        seeds = parse_seeds(merged.get("seeds", [0]), origin("seeds"))
        models = parse_names(merged.get("models", [defaults.model]), origin("models"), MODELS, "model")
        # the dtype first: it bounds the learning rate
        dtype = parse_setting("dtype", merged["dtype"], origin("dtype")) if "dtype" in merged else defaults.dtype
        settings = {
            key: parse_setting(key, merged[key], origin(key), dtype=dtype) if key in merged else getattr(defaults, key)
            for key in TRAINING_KEYS
        }
        options = parse_solver_options(merged.get("solver_options", {}), origin("solver_options"))
        plan = DatasetPlan(
            data=data,
            solvers=solvers,
            radii=radii,
            seeds=seeds,
            models=models,
            settings=settings,
            solver_options=options,
        )
        plans.append(plan)
    grid = Grid(plans=tuple(plans))
    grid.check_size(max_cells)  # before anything proportional to the axis lengths
    for i, plan in enumerate(plans):
        plan.validate(f"datasets[{i}]")
    return grid


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML or TOML grid file into a mapping (by extension; unknown extensions are tried as YAML)."""
    p = Path(path)
    problem = file_problem(p)
    require(problem is None, f"config file {str(path)!r} {problem}")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FastfairError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise FastfairError(f"config file {str(path)!r} is not UTF-8 text") from None
    if p.suffix.lower() == ".toml":
        require(tomllib is not None, "TOML config files need Python 3.11+ (or the tomli package); use YAML")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FastfairError(f"{p.name}: malformed TOML: {one_line(exc)}") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FastfairError(f"{p.name}: malformed YAML: {one_line(exc)}") from None
    require(
        isinstance(data, dict), f"{p.name}: the file must hold a mapping of keys (datasets, solvers, ...)"
    )
    return data


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, as the end of a sentence ("not found", "is a directory", "is a
    symlink loop", "cannot be read: <reason>"), or None when it can be opened for reading."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "is a broken symlink" if path.is_symlink() else "not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop"
        return f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    if not os.access(path, os.R_OK):
        return "cannot be read: permission denied"
    return None


def grid_from_file(
    path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None, *, max_cells: int | None = None
) -> Grid:
    """Load, validate and resolve a grid file; ``overrides`` replace top-level keys (command-line options).
    ``max_cells`` as in :func:`grid_from_dict`."""
    config = load_config(path)
    if overrides:
        config = {**config, **overrides}
    return grid_from_dict(
        config, base_dir=Path(path).resolve().parent, source=Path(path).name, max_cells=max_cells
    )
