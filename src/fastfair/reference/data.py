"""The data of the reference protocol: Unfair2D and Adult exactly as the authors' code builds them.

Unfair2D, reference draw (:func:`draw_unfair2d`, :func:`reference_unfair2d`). The reference seeds torch's CPU
generator with the run's seed and then, for ``n`` points per class,

1. draws ``4n`` points ``x ~ U[0, 1)²`` in one call (``rand(4n, 2)``, float32);
2. keeps, in draw order, the first ``n`` with ``1 - x₁ - x₂ > 0`` as class ``y = 0`` and the first ``n`` of the
   others as class ``y = 1`` (rejection: the ``4n`` draws hold about ``2n`` of each, so ``n`` are almost surely
   there; if not, the reference crashes and we raise :class:`~fastfair.errors.FastfairError`);
3. draws a permutation of ``n`` (``randperm(n)``) and gives ``s = 1`` to its first ``max(1, ⌊p1·n⌋)`` entries of
   class 0, then another permutation for class 1 with ``p2``;
4. shifts ``(s = 0, y = 1)`` by ``-α·u`` and ``(s = 1, y = 0)`` by ``+α·u`` (in float32, ``α·u`` rounded first);
5. concatenates class 0 then class 1 and shuffles with ``randperm(2n)``.

The protocol calls this with ``n = 250`` and keeps the *first 200* shuffled points as training set and the other
300 as validation set, then draws the test set with ``n = 50`` (100 points) from the same generator, right
after. The same seed therefore fixes every point; with seed 42 the first training point is
``(0.162977, 0.988455)``, ``y = 1``, ``s = 1``. We replicate the sequence of generator calls, not the code, so
that the reference's data set is reproduced bit for bit from its seed (float32, as the reference).

Adult, reference record handling (:func:`reference_adult`). The reference reads ``adult.data`` with pandas'
default header handling, which takes the first *record* as the header (32,560 of 32,561 records remain), and
``adult.test`` with ``header=1``, which skips the ``|1x3 Cross validator`` line and takes the first record as
the header (16,280 of 16,281 remain). Rows with ``?`` are kept (only categorical columns have them, and the
protocol uses the five continuous columns age, education-num, capital-gain, capital-loss, hours-per-week).
Those five are standardised in float32 with the mean and the *unbiased* standard deviation of all 32,560
``adult.data`` rows (before the split), and the same statistics are applied to the test rows. The label is
``y = 1`` for ``<=50K`` (the reference's convention: the favourable outcome ``>50K`` is the *negative* class);
the sensitive attribute is sex, Female 0 and Male 1 (sorted names). The training set is the first 10,000
rows of ``adult.data`` as read, the validation set the remaining 22,560, in file order, unshuffled.

Our own conventions, used by the ablation to switch one difference at a time: every record, rows with any
``?`` dropped, ``y = 1`` for ``>50K``, a seeded split stratified by (y, s) with 20% validation, standardised
with the training split's statistics, training on the first 10,000 training rows (see
:mod:`fastfair.datasets.adult`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..datasets._bundled import data_dir
from ..datasets._common import strata_codes, stratified_split
from ..datasets._scaling import apply_standardization, standardization
from ..datasets.adult import DEFAULT_FEATURES, _adult_frames
from ..datasets.unfair2d import generate_unfair2d
from ..errors import FastfairError, require

#: The reference's Unfair2D sizes: 250 per class drawn for train + validation (the first 200 shuffled points
#: train), then 50 per class for test.
UNFAIR2D_PER_CLASS = 250
UNFAIR2D_TRAIN_ROWS = 200
UNFAIR2D_TEST_PER_CLASS = 50
#: Our Unfair2D split of the same 500 points: 200 + 200 train, 50 + 50 validation.
UNFAIR2D_OUR_TRAIN_ROWS = 400
#: The reference trains on the first 10,000 Adult rows; so does our protocol (of its own training split).
ADULT_TRAIN_ROWS = 10_000
#: Our validation share of adult.data (stratified by (y, s)).
ADULT_OUR_VAL_FRACTION = 0.2

Part = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class ReferenceData:
    """Three splits ``(X, y, s)``: X float32 (n, d), y and s int64 (n,), plus what was done to build them."""

    name: str
    train: Part
    val: Part
    test: Part
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Part:
        """The split ``"train"``, ``"val"`` or ``"test"``."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]


# ------------------------------------------------------------------------------------------------------------
# Unfair2D
# ------------------------------------------------------------------------------------------------------------


def draw_unfair2d(
    n_per_class: int,
    generator: torch.Generator,
    *,
    p1: float = 0.5,
    p2: float = 0.5,
    alpha: float = 0.1,
    u: Sequence[float] = (1.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``2·n_per_class`` Unfair2D points drawn from ``generator`` in the reference's order of calls (module docs).

    Returns X (2n, 2) float32 and y, s (2n,) int64, shuffled. The generator is advanced by exactly the
    reference's draws: ``rand(4n, 2)``, ``randperm(n)`` twice, ``randperm(2n)``.
    """
    n = int(n_per_class)
    require(n >= 1, f"n_per_class must be a positive integer, got {n_per_class!r}")
    x = torch.rand(4 * n, 2, generator=generator)
    below = (1 - x[:, 0] - x[:, 1]) > 0  # the reference's classifier -x₁ - x₂ + 1 > 0: class 0
    x0, x1 = x[below][:n], x[~below][:n]
    if len(x0) < n or len(x1) < n:
        raise FastfairError(f"the {4 * n} uniform draws hold fewer than {n} points of one class; use another seed")
    parts_y, parts_s = [], []
    for label, p in ((0, p1), (1, p2)):
        s = torch.zeros(n, dtype=torch.int64)
        s[torch.randperm(n, generator=generator)[: max(1, math.floor(p * n))]] = 1
        parts_y.append(torch.full((n,), label, dtype=torch.int64))
        parts_s.append(s)
    X, y, s = torch.cat((x0, x1)), torch.cat(parts_y), torch.cat(parts_s)
    shift = alpha * torch.tensor(tuple(float(v) for v in u))
    X[(s == 0) & (y == 1)] -= shift
    X[(s == 1) & (y == 0)] += shift
    order = torch.randperm(2 * n, generator=generator)
    return X[order], y[order], s[order]


def reference_unfair2d(
    seed: int,
    *,
    draw: str = "reference",
    splits: str = "reference",
    generator: torch.Generator | None = None,
) -> ReferenceData:
    """Unfair2D of the reference protocol for ``seed``, with the draw and the split sizes switchable to ours.

    ``draw="reference"``: :func:`draw_unfair2d` from torch's CPU generator seeded with ``seed`` (250 per class,
    then 50 per class for test); ``draw="ours"``: fastfair's generator
    (:func:`fastfair.datasets.unfair2d.generate_unfair2d`, numpy, seeded with ``seed``) with the same sizes
    and order of draws. ``splits="reference"``: the first 200 of the 500 shuffled points train, the other 300
    validate; ``splits="ours"``: the first 400 train and the other 100 validate (our split sizes).

    ``generator`` (optional) is the generator to draw from, seeded here; it is left where the reference
    leaves torch's global generator.
    """
    _check_choice("draw", draw)
    _check_choice("splits", splits)
    gen = generator if generator is not None else torch.Generator()
    gen.manual_seed(int(seed))
    if draw == "reference":
        X, y, s = (t.numpy() for t in draw_unfair2d(UNFAIR2D_PER_CLASS, gen))
        Xt, yt, st = (t.numpy() for t in draw_unfair2d(UNFAIR2D_TEST_PER_CLASS, gen))
    else:
        rng = np.random.default_rng(int(seed))
        X, y, s = generate_unfair2d(UNFAIR2D_PER_CLASS, rng=rng)
        Xt, yt, st = generate_unfair2d(UNFAIR2D_TEST_PER_CLASS, rng=rng)
        X, Xt = X.astype(np.float32), Xt.astype(np.float32)
    cut = UNFAIR2D_TRAIN_ROWS if splits == "reference" else UNFAIR2D_OUR_TRAIN_ROWS
    return ReferenceData(
        name="unfair2d",
        train=(X[:cut], y[:cut], s[:cut]),
        val=(X[cut:], y[cut:], s[cut:]),
        test=(Xt, yt, st),
        info={"seed": int(seed), "draw": draw, "splits": splits},
    )


# ------------------------------------------------------------------------------------------------------------
# Adult
# ------------------------------------------------------------------------------------------------------------


def reference_adult(
    *,
    records: str = "reference",
    label: str = "reference",
    splits: str = "reference",
    seed: int = 0,
) -> ReferenceData:
    """Adult of the reference protocol (module docs), with each of three conventions switchable to ours.

    ``records``: ``"reference"`` drops the first record of each file and keeps rows with ``?``; ``"ours"`` keeps
    every record and drops the rows with a ``?`` in any column. ``label``: ``"reference"`` is ``y = 1`` for
    ``<=50K``; ``"ours"`` is ``y = 1`` for ``>50K``. ``splits``: ``"reference"`` standardises (float32, unbiased
    std) over all of ``adult.data`` and trains on its first 10,000 rows, validating on the rest;
    ``"ours"`` splits ``adult.data`` stratified by (y, s) with 20% validation (seeded by ``seed``, the only
    use of it), standardises with the training split's statistics and trains on its first 10,000 rows.
    """
    for name, value in (("records", records), ("label", label), ("splits", splits)):
        _check_choice(name, value)
    pool, test = _adult_frames(str(data_dir()))
    if records == "reference":
        pool, test = pool.iloc[1:], test.iloc[1:]
    else:
        pool = pool.loc[pool.notna().all(axis=1)]
        test = test.loc[test.notna().all(axis=1)]

    def arrays(frame: Any) -> Part:
        X = frame[list(DEFAULT_FEATURES)].to_numpy(dtype=np.float32)
        y = frame["income"].to_numpy(dtype=np.int64)  # 1 = >50K
        if label == "reference":
            y = 1 - y
        s = (frame["sex"] == "Male").to_numpy(dtype=np.int64)
        return X, y, s

    X, y, s = arrays(pool)
    Xt, yt, st = arrays(test)
    if splits == "reference":
        xs = torch.from_numpy(X.copy())
        mean, std = xs.mean(dim=0, keepdim=True), xs.std(dim=0, keepdim=True)
        X = ((xs - mean) / std).numpy()
        Xt = ((torch.from_numpy(Xt.copy()) - mean) / std).numpy()
        train_idx, val_idx = np.arange(ADULT_TRAIN_ROWS), np.arange(ADULT_TRAIN_ROWS, len(y))
    else:
        rng = np.random.default_rng(int(seed))
        train_idx, val_idx = stratified_split(strata_codes(y, s), [ADULT_OUR_VAL_FRACTION], rng)
        center, scale = standardization(X[train_idx].astype(np.float64))
        X = apply_standardization(X.astype(np.float64), center, scale).astype(np.float32)
        Xt = apply_standardization(Xt.astype(np.float64), center, scale).astype(np.float32)
        train_idx = train_idx[:ADULT_TRAIN_ROWS]
    return ReferenceData(
        name="adult",
        train=(X[train_idx], y[train_idx], s[train_idx]),
        val=(X[val_idx], y[val_idx], s[val_idx]),
        test=(Xt, yt, st),
        info={"records": records, "label": label, "splits": splits, "seed": int(seed), "rows": (len(y), len(yt))},
    )


def _check_choice(name: str, value: Any) -> None:
    require(value in ("reference", "ours"), f"{name} must be 'reference' or 'ours', got {value!r}")
