"""Datasets: the paper's three (bundled or generated, offline, verified), a multiclass benchmark and your own CSV
files.

>>> from fastfair import datasets
>>> data = datasets.load("adult", seed=0)                 # doctest: +SKIP
>>> data.train.X.shape, data.group_names                  # doctest: +SKIP
((24130, 5), ('Female', 'Male'))

Every loader returns a :class:`Dataset` with ``train``, ``val`` and ``test`` :class:`Split` objects holding
``X`` (float64, (n, d)), ``y`` (int64 class codes: in {0, 1} for binary data, 1 = positive outcome; ``0 .. C-1``
for ``C >= 3`` classes) and ``s`` (int64 group codes), plus the standardisation statistics (from the training split
only), ``label_names`` (one name per class code: the text of the negative and the positive outcome for binary data)
and an ``info`` dict with provenance and options.

Whatever would make a run fail after training is refused when the data is loaded: a group missing from any of
the three splits, and a feature value that is not finite or beyond float32's range (after standardisation,
which itself cannot overflow).

Bundled files are verified against the sha256 in ``data/provenance.json`` before first use; parsed files are
cached per process, so repeated loads are fast. See ``data/PROVENANCE.md`` for sources and licences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import FastfairError
from . import adult as _adult
from . import colored_digits as _colored_digits
from . import lsat as _lsat
from . import unfair2d as _unfair2d
from ._bundled import ENV_VAR, data_dir, provenance
from ._common import check_seed, resolve_options
from ._containers import SPLIT_NAMES, Dataset, Split
from .unfair2d import generate_unfair2d
from .user_csv import load_csv

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "SPLIT_NAMES",
    "Dataset",
    "Split",
    "data_dir",
    "dataset_options",
    "generate_unfair2d",
    "load",
    "load_csv",
    "provenance",
]

#: Names accepted by :func:`load`.
DATASETS = ("unfair2d", "adult", "lsat", "colored_digits")

_LOADERS: dict[str, tuple[Callable[[int, dict[str, Any]], Dataset], dict[str, Any]]] = {
    "unfair2d": (_unfair2d.load_unfair2d, _unfair2d.DEFAULTS),
    "adult": (_adult.load_adult, _adult.DEFAULTS),
    "lsat": (_lsat.load_lsat, _lsat.DEFAULTS),
    "colored_digits": (_colored_digits.load_colored_digits, _colored_digits.DEFAULTS),
}


def dataset_options(name: str) -> dict[str, Any]:
    """The options :func:`load` accepts for dataset ``name``, with their defaults."""
    return dict(_lookup(name)[1])


def load(name: str, *, seed: int = 0, **options: Any) -> Dataset:
    """Load a bundled or generated dataset, split into train / validation / test.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`:

        ``"unfair2d"``
            The paper's synthetic data (:mod:`fastfair.datasets.unfair2d`). Options: ``p1=0.5`` (fraction of
            class 0 in group s=1), ``p2=0.5`` (fraction of class 1 in group s=1), ``alpha=0.1`` (shift
            length), ``u=(1, 1)`` (shift direction), ``n_per_class=250`` (train + validation points per
            class, split ``val_fraction=0.2`` per class: 200 + 50), ``n_test_per_class=50`` (an
            independent draw), ``standardize=False``. Groups ("A", "B"); features ("x1", "x2"); labels
            ("0", "1"). A group left empty in some split (e.g. ``p1=p2=0``) is refused.
            **Not standardised by default**: the paper's radii (e.g. r = 0.18) are in unit-square units.
        ``"adult"``
            UCI Adult (:mod:`fastfair.datasets.adult`). Options: ``features="default"`` (age, education-num,
            capital-gain, capital-loss, hours-per-week) or ``"all"`` (one-hot categoricals) or a list;
            ``sensitive="sex"`` (groups ("Female", "Male")), ``"race"`` (("non-white", "white")) or
            ``"race_all"`` (five groups); ``val_fraction=0.2``; ``missing="any"`` (drop records with a '?' in
            any column) or ``"used"``; ``standardize=True``. Test is the official adult.test. Labels
            ("<=50K", ">50K"): income above 50K is positive.
        ``"lsat"``
            Law-school data (:mod:`fastfair.datasets.lsat`): features LSAT, UGPA; label first-year pass;
            groups ("non-white", "white"); labels ("fail", "pass"). Options: ``balanced=False`` (equal (y, s)
            cells in train),
            ``val_fraction=0.2``, ``test_fraction=0.2``, ``standardize=True``.
        ``"colored_digits"``
            Multiclass (:mod:`fastfair.datasets.colored_digits`): scikit-learn's bundled 8x8 digits, each image
            drawn in one of ``n_colors`` colour channels, the colour (the group) correlated with the label.
            Options: ``classes=(1, 8, 9)`` (the digits, class ``c`` is ``classes[c]``; labels their texts),
            ``n_colors=2`` (groups ("red", "green"); 3 adds "blue"), ``correlation=0.9`` (P(colour = the class's
            own colour) in train and validation), ``test_correlation=0.1`` (the same in test: reversed),
            ``label_noise=0.0`` (fraction of labels replaced by another class), ``val_fraction=0.2``,
            ``test_fraction=0.2``, ``standardize=True``. 64 features per colour.
    seed : int
        Seeds everything random (generation, splits, balancing): same seed, same dataset.
    **options
        Dataset options as above; ``standardize`` overrides the dataset's default. Standardisation always uses
        the training split's mean and standard deviation (a constant column gets scale 1), computed without
        overflow.

    Raises
    ------
    FastfairError
        Unknown dataset or option, an invalid option value, options that leave a group without rows in a split,
        or a bundled file that is missing or fails its checksum.
    """
    loader, defaults = _lookup(name)
    seed = check_seed(seed)
    resolved = resolve_options(name.strip().lower(), options, defaults)
    return loader(seed, resolved)


def _lookup(name: Any) -> tuple[Callable[[int, dict[str, Any]], Dataset], dict[str, Any]]:
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in _LOADERS:
        raise FastfairError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return _LOADERS[key]
