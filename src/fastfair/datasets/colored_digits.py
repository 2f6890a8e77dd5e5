r"""Colored digits: a small multiclass benchmark with a colour spuriously correlated with the label.

In the spirit of colored MNIST (Arjovsky et al. 2019), built offline from scikit-learn's bundled 8×8 digits
(``sklearn.datasets.load_digits``: 1,797 grey images with pixel values 0..16, the test part of the UCI "Optical
Recognition of Handwritten Digits" data; no network access). The sensitive attribute is the colour an image is
drawn in, and in training the colour predicts the label, so a classifier can lean on the colour (the group)
instead of the shape; at test time the correlation is weakened or reversed.

Construction (seeded: ``rng = numpy.random.default_rng(seed)``, used in this order)
--------------------------------------------------------------------------------------
1. **Classes.** The images of the digits in ``classes`` (default ``(1, 8, 9)``), in that order: digit
   ``classes[c]`` gets the label code ``c``, so ``C = len(classes)`` and ``label_names`` are the digits' texts.
   The default triple is the most mutually confused one in a 5-fold cross-validated logistic regression on all ten
   digits (scikit-learn's defaults, pixels / 16: 33 of its images confused among the three, against 7 for the
   digits 0, 1, 2), so shape alone is an imperfect cue (about 94% cross-validated accuracy on the three, 98% on
   0, 1, 2) and the colour has room to matter.
2. **Label noise** (optional, ``label_noise = η``, default 0): ``round(η N)`` of the ``N`` images, chosen at
   random, get a label drawn uniformly from the *other* ``C - 1`` classes (colored MNIST flips 25%).
3. **Split**, stratified by label (:func:`fastfair.datasets._common.stratified_split`): ``val_fraction`` and
   ``test_fraction`` of each class to validation and test, the rest to train.
4. **Colour.** ``K = n_colors`` colours (2: red, green; 3: red, green, blue). Class ``c`` has its own colour
   :math:`k(c) = c \bmod K`. With correlation :math:`\rho` (``correlation`` in train and validation,
   ``test_correlation`` in test), the colour :math:`S` of an image of label :math:`Y = c` follows

   .. math::

       P(S = k(c) \mid Y = c) = \rho, \qquad P(S = j \mid Y = c) = \frac{1 - \rho}{K - 1} \quad (j \ne k(c)),

   realised exactly up to rounding: of the :math:`n` images of class :math:`c` in a split,
   :math:`\lfloor \rho n + \tfrac12 \rfloor` chosen at random get colour :math:`k(c)` and the others are dealt
   round-robin (in a random order) to the other colours. :math:`\rho = 1/K` makes colour and label independent;
   :math:`\rho < 1/K` reverses the correlation (the default test value 0.1 with two colours: nine in ten images
   get the *other* colour).
5. **Features.** The image :math:`x \in [0, 1]^{64}` (pixel / 16, row-major) drawn in colour :math:`S` is
   :math:`e_S \otimes x \in [0, 1]^{64K}`: the image fills the 64 features of its colour's channel, the other
   channels are 0 (feature names ``red_r0c0 .. red_r7c7``, ``green_r0c0``, ...). Standardised with the training
   split's mean and scale (``standardize=True``, as the other loaders; a pixel that is always 0 in train keeps
   scale 1).

Sizes with the defaults: 536 images (182 ones, 174 eights, 180 nines; per split in ``info["rows"]``), split
60 / 20 / 20 per class, 128 features. Each split keeps the images in ``load_digits`` order.

``info`` records the source, scikit-learn's version, the sha256 of the digits (:data:`DIGITS_SHA256`: the 1,797 × 64
pixel values as uint8, row-major, followed by the 1,797 targets as uint8; checked on every load), the seed, the
options, the realised rate :math:`P(S = k(Y))` per split and the rows per class and split.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import FastfairError, require
from ._common import check_bool, check_probability, check_split_fractions, make_dataset, stratified_split
from ._containers import Dataset

#: sha256 of scikit-learn's bundled digits: pixels (1797 x 64, uint8, row-major) then targets (1797, uint8).
DIGITS_SHA256 = "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826"
#: Colour names, by colour code; ``n_colors`` takes the first K.
COLOR_NAMES = ("red", "green", "blue")
#: The pixel grid of one image.
IMAGE_SHAPE = (8, 8)

DEFAULTS: dict[str, Any] = {
    "classes": (1, 8, 9),
    "n_colors": 2,
    "correlation": 0.9,
    "test_correlation": 0.1,
    "label_noise": 0.0,
    "val_fraction": 0.2,
    "test_fraction": 0.2,
    "standardize": True,
}


def load_colored_digits(seed: int, options: dict[str, Any]) -> Dataset:
    """Colored digits (see the module docstring for the construction). Options: ``classes`` ((1, 8, 9)),
    ``n_colors`` (2), ``correlation`` (0.9), ``test_correlation`` (0.1), ``label_noise`` (0.0),
    ``val_fraction`` (0.2), ``test_fraction`` (0.2), ``standardize`` (True)."""
    classes = _check_classes(options["classes"])
    n_colors = _check_colors(options["n_colors"], len(classes))
    rho = check_probability("correlation", options["correlation"])
    rho_test = check_probability("test_correlation", options["test_correlation"])
    noise = check_probability("label_noise", options["label_noise"])
    val_fraction, test_fraction = check_split_fractions(options["val_fraction"], options["test_fraction"])
    standardize = check_bool("standardize", options["standardize"])

    pixels, digits = _digits()
    keep = np.flatnonzero(np.isin(digits, classes))
    images = pixels[keep] / 16.0
    code_of = {d: c for c, d in enumerate(classes)}
    y = np.array([code_of[int(d)] for d in digits[keep]], dtype=np.int64)

    rng = np.random.default_rng(seed)
    y = _add_label_noise(y, len(classes), noise, rng)
    train_idx, val_idx, test_idx = stratified_split(y, [val_fraction, test_fraction], rng)
    parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    agreement: dict[str, float] = {}
    for key, idx, corr in (("train", train_idx, rho), ("val", val_idx, rho), ("test", test_idx, rho_test)):
        s = draw_colors(y[idx], n_colors, corr, rng)
        parts[key] = (colorize(images[idx], s, n_colors), y[idx], s)
        agreement[key] = float(np.mean(s == y[idx] % n_colors)) if len(idx) else float("nan")
    import sklearn

    info = {
        "source": "scikit-learn's bundled 8x8 digits (sklearn.datasets.load_digits; UCI Optical Recognition of "
        "Handwritten Digits, test part), coloured as in colored MNIST",
        "sklearn_version": sklearn.__version__,
        "digits_sha256": DIGITS_SHA256,
        "seed": seed,
        "options": {
            "classes": list(classes),
            "n_colors": n_colors,
            "correlation": rho,
            "test_correlation": rho_test,
            "label_noise": noise,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "standardize": standardize,
        },
        "label": "y = c for the digit classes[c]" + (f", {noise:g} of the labels replaced at random" if noise else ""),
        "sensitive": f"the colour s of the image; class c's own colour is c mod {n_colors}",
        "own_color_rate": agreement,
        "rows": {
            key: {str(d): int(np.sum(parts[key][1] == c)) for c, d in enumerate(classes)} for key in parts
        },
        "row_order": "each split in load_digits order",
    }
    return make_dataset(
        "colored_digits",
        parts,
        feature_names=feature_names(n_colors),
        group_names=COLOR_NAMES[:n_colors],
        label_names=tuple(str(d) for d in classes),
        standardize=standardize,
        info=info,
    )


def draw_colors(y: np.ndarray, n_colors: int, correlation: float, rng: np.random.Generator) -> np.ndarray:
    r"""The colour code of each image of labels ``y``: per class ``c``, :math:`\lfloor \rho n_c + \frac12 \rfloor`
    of its ``n_c`` images (chosen with ``rng``) get colour ``c mod K``, the others are dealt round-robin to the
    other ``K - 1`` colours in a random order (so each gets :math:`(1 - \rho) n_c / (K - 1)` up to rounding)."""
    y = np.asarray(y, dtype=np.int64)
    s = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        own = int(c) % n_colors
        n_own = int(np.floor(correlation * len(rows) + 0.5))
        others = np.array([j for j in range(n_colors) if j != own], dtype=np.int64)
        s[rows[:n_own]] = own
        s[rows[n_own:]] = others[np.arange(len(rows) - n_own) % len(others)]
    return s


def colorize(images: np.ndarray, s: np.ndarray, n_colors: int) -> np.ndarray:
    r"""``(n, 64 K)`` features: row ``i`` is :math:`e_{s_i} \otimes x_i`, image ``i`` in channel ``s_i``, zeros in
    the other channels."""
    images = np.asarray(images, dtype=np.float64)
    n, p = images.shape
    out = np.zeros((n, n_colors, p))
    out[np.arange(n), np.asarray(s, dtype=np.int64)] = images
    return out.reshape(n, n_colors * p)


def feature_names(n_colors: int) -> tuple[str, ...]:
    """``<colour>_r<row>c<column>`` for each colour channel, then each pixel in row-major order."""
    rows, cols = IMAGE_SHAPE
    return tuple(f"{color}_r{r}c{c}" for color in COLOR_NAMES[:n_colors] for r in range(rows) for c in range(cols))


def _add_label_noise(y: np.ndarray, n_classes: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``round(noise · n)`` labels, at random rows, replaced by a uniformly drawn other class."""
    flip = rng.permutation(len(y))[: int(np.floor(noise * len(y) + 0.5))]
    out = y.copy()
    out[flip] = (y[flip] + rng.integers(1, n_classes, size=len(flip))) % n_classes
    return out


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (1797, 64) uint8 pixels and (1797,) int64 digits, checked against
    :data:`DIGITS_SHA256` (read-only arrays, cached per process)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.asarray(bunch.data).astype(np.uint8)
    digits = np.asarray(bunch.target).astype(np.uint8)
    digest = digits_sha256(pixels, digits)
    if digest != DIGITS_SHA256 or not np.array_equal(pixels, bunch.data):
        raise FastfairError(
            f"scikit-learn's bundled digits differ from those colored_digits is defined on: sha256 {digest}, "
            f"expected {DIGITS_SHA256}"
        )
    pixels.flags.writeable = False
    out = digits.astype(np.int64)
    out.flags.writeable = False
    return pixels, out


def digits_sha256(pixels: np.ndarray, digits: np.ndarray) -> str:
    """sha256 of the pixels (uint8, row-major) followed by the digits (uint8)."""
    data = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    data += np.ascontiguousarray(digits, dtype=np.uint8).tobytes()
    return hashlib.sha256(data).hexdigest()


def _check_classes(value: Any) -> tuple[int, ...]:
    ok = isinstance(value, (list, tuple)) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and 0 <= d <= 9 for d in value
    )
    require(ok, f"classes must be a list of digits 0..9, got {value!r}")
    classes = tuple(int(d) for d in value)
    require(len(classes) >= 2, f"classes needs at least 2 digits, got {value!r}")
    require(len(set(classes)) == len(classes), f"classes lists a digit twice: {value!r}")
    return classes


def _check_colors(value: Any, n_classes: int) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 2 <= value <= len(COLOR_NAMES)
    require(ok, f"n_colors must be 2 or 3, got {value!r}")
    require(
        int(value) <= n_classes,
        f"n_colors={value} needs at least as many classes ({n_classes} given), so that every colour is some "
        "class's own colour",
    )
    return int(value)
