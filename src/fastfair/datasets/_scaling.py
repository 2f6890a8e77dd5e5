"""Standardisation that cannot overflow: per-column statistics and the transform, scaled by powers of two."""

from __future__ import annotations

import numpy as np

#: Smallest scaling exponent used; 2^1000 is finite, and columns this small cannot overflow anyway.
MIN_EXPONENT = -1000

def standardization(X_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and (population) standard deviation of the training rows; a zero scale becomes 1.

    Overflow-free for any finite column: each column ``x`` is first scaled by the power of two
    ``c = 2^e`` with ``max |x| = a · 2^e``, ``a ∈ [½, 1)`` (``numpy.frexp``), so ``|x / c| < 1`` and its squares
    cannot overflow; then ``mean = c · mean(x / c)`` and ``std = c · std(x / c)``. Scaling by a power of two
    is exact, so the results are bit for bit those of ``x.mean()`` and ``x.std()`` wherever these do not
    overflow (unless some entries are 2^1022 times smaller than the column's largest and underflow when scaled);
    and ``|mean| ≤ max |x|`` and ``std ≤ sqrt(mean(x²)) ≤ max |x|`` are always finite.
    """
    X_train = np.asarray(X_train, dtype=np.float64)
    if not len(X_train):
        return np.zeros(X_train.shape[1]), np.ones(X_train.shape[1])
    exponent = _column_exponents(X_train)
    Z = X_train * np.ldexp(1.0, -exponent)  # exact: a product with a power of two
    mean = np.ldexp(Z.mean(axis=0), exponent)
    scale = np.ldexp(Z.std(axis=0), exponent)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return mean.astype(np.float64), scale.astype(np.float64)


def apply_standardization(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(X - mean) / scale`` per column, computed without intermediate overflow.

    Numerator and denominator are divided by the same power of two ``c`` per column (that of ``max |mean|,
    scale``): ``((X / c) - (mean / c)) / (scale / c)``. This is bit for bit the plain formula whenever that
    one does not overflow, and finite whenever the true result is.
    """
    X = np.asarray(X, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    down = np.ldexp(1.0, -_column_exponents(np.vstack([mean, scale])))
    with np.errstate(over="ignore"):  # a result beyond float64 becomes inf and is reported by Dataset
        Z = X * down
        Z -= mean * down
        Z /= scale * down
    return Z


def _column_exponents(A: np.ndarray) -> np.ndarray:
    """Per column, ``e`` with ``max |column| = a · 2^e``, ``a ∈ [½, 1)`` (0 for an all-zero column).

    Raised to at least -1000 (columns below 2^-1000 need no care against overflow), so that ``2^-e`` is finite.
    """
    peak = np.abs(A).max(axis=0) if len(A) else np.zeros(A.shape[1])
    peak = np.where(np.isfinite(peak), peak, 0.0)
    return np.maximum(np.frexp(peak)[1].astype(np.int64), MIN_EXPONENT)
