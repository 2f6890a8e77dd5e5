r"""Input checks of the TRS solvers: one-line :class:`~fastfair.errors.FastfairError` messages, no tracebacks.

The solvers accept float32 and float64 data. A radius is accepted when, *after conversion to the data's
dtype*, it lies in

.. math::

    \frac{\text{tiny}}{\varepsilon} \;\le\; r \;\le\; \text{max}\cdot\varepsilon

(``tiny`` the smallest normal number, ``max`` the largest finite one, ``ε`` the machine epsilon of the dtype):
the radius and its working-precision neighbourhood ``[r ε, r/ε]`` are normal, finite numbers. That is

* float32: ``2⁻¹⁰³ ≈ 9.86e-32 ≤ r ≤ (2 - 2⁻²³)·2¹⁰⁴ ≈ 4.06e31``,
* float64: ``2⁻⁹⁷⁰ ≈ 1.00e-292 ≤ r ≤ (2 - 2⁻⁵²)·2⁹⁷¹ ≈ 3.99e292``.

Inside that range every solver works in units of ``r`` (the step is ``r u`` with ``‖u‖ ≤ 1``), so every
component of the step that matters (``≥ ε r``) is a normal number and nothing is lost to underflow or
overflow of ``r`` itself. Outside it a radius is zero, subnormal or infinite in the dtype (``1e-50`` or
``1e39`` in float32, ``1e-320`` in float64) or too close to those ends to keep working precision, and it is
refused. (Values such as ``q(p) ≈ ½λ₁r²`` may still exceed the float range for large ``r`` and data; they are
then ``±inf``, never NaN.)
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from torch import Tensor

from fastfair.errors import FastfairError

__all__ = ["radius_bounds", "radius_tensor"]


def radius_bounds(dtype: torch.dtype) -> tuple[float, float]:
    """``(lo, hi)``: the radii the solvers accept for data of ``dtype`` (float32 or float64), inclusive.

    ``lo = tiny/eps`` (a power of two) and ``hi = max·eps`` of the dtype (module docs), both exactly
    representable in it: float32 ``(2⁻¹⁰³, (2 - 2⁻²³)·2¹⁰⁴) ≈ (9.86e-32, 4.06e31)``, float64
    ``(2⁻⁹⁷⁰, (2 - 2⁻⁵²)·2⁹⁷¹) ≈ (1.00e-292, 3.99e292)``.
    """
    info = torch.finfo(dtype)
    return info.tiny / info.eps, info.max * info.eps


def _range_message(dtype: torch.dtype) -> str:
    lo, hi = radius_bounds(dtype)
    return f"[{lo:.3g}, {hi:.3g}] for {str(dtype).removeprefix('torch.')} data"


def radius_tensor(radius: float | Tensor, n: int, like: Tensor) -> Tensor:
    """The radius as an ``(n,)`` tensor of ``like``'s dtype/device.

    FastfairError unless every entry is a number that, converted to ``like``'s dtype, lies in
    :func:`radius_bounds` (positive, finite, not subnormal; module docs). Shared by the solvers here and by
    :mod:`fastfair.inner`.
    """
    if isinstance(radius, bool):
        raise FastfairError(f"radius must be a positive number, got {radius!r}")
    lo, hi = radius_bounds(like.dtype)
    if isinstance(radius, Tensor):
        if radius.dtype == torch.bool or radius.is_complex():
            raise FastfairError(f"radius must be a real-valued tensor, got {radius.dtype}")
        r = radius.detach().to(dtype=like.dtype, device=like.device)
        if r.ndim == 0:
            r = r.expand(n)
        elif r.shape != (n,):
            raise FastfairError(f"radius must be a float or a tensor of shape ({n},), got {tuple(r.shape)}")
        if r.numel() and not bool(((r >= lo) & (r <= hi)).all()):  # NaN fails both comparisons
            if not bool((torch.isfinite(r) & (r > 0)).all()):
                raise FastfairError("radius must be positive and finite for every sample")
            raise FastfairError(f"radius must lie in {_range_message(like.dtype)} for every sample")
        return r.contiguous()
    if not isinstance(radius, Real):  # a string, even "0.5", is not a radius
        raise FastfairError(f"radius must be a positive number, got {radius!r}")
    try:
        value = float(radius)
    except (TypeError, ValueError, OverflowError):
        raise FastfairError(f"radius must be a positive number, got {radius!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise FastfairError(f"radius must be positive and finite, got {radius!r}")
    # the value as the dtype holds it (float32: 1e-50 -> 0, 1e39 -> inf), compared in that dtype
    r = torch.tensor(value, dtype=torch.float64).to(like.dtype)
    if not (lo <= float(r) <= hi):
        raise FastfairError(f"radius {value:g} is outside the solvable range {_range_message(like.dtype)}")
    return r.to(like.device).expand(n).contiguous()


def check_lean_radius(radius: Tensor, like: Tensor) -> None:
    """The lean solvers' radius check: an ``(n,)`` tensor of ``like``'s dtype within :func:`radius_bounds`."""
    n = like.shape[0]
    if not isinstance(radius, Tensor) or radius.shape != (n,) or radius.dtype != like.dtype:
        shape = tuple(radius.shape) if isinstance(radius, Tensor) else type(radius).__name__
        raise FastfairError(f"radius must be a tensor of shape ({n},) and dtype {like.dtype}, got {shape}")
    lo, hi = radius_bounds(like.dtype)
    if n:
        r_min, r_max = torch.aminmax(radius)
        if not (lo <= float(r_min) and float(r_max) <= hi):  # NaN fails both comparisons
            raise FastfairError(f"radius must lie in {_range_message(like.dtype)} for every sample")


def check_tol(tol: object) -> float | None:
    """``tol`` of :func:`~fastfair.trs.solve_trs`: None or a finite number ``≥ 0``."""
    if tol is None:
        return None
    if isinstance(tol, bool) or not isinstance(tol, Real) or not (math.isfinite(tol) and tol >= 0):
        raise FastfairError(f"tol must be a finite number >= 0 (or None), got {tol!r}")
    return float(tol)


def check_max_iter(max_iter: object) -> int:
    """``max_iter`` of the solvers: an integer ``≥ 0``."""
    if isinstance(max_iter, bool) or not isinstance(max_iter, Integral) or max_iter < 0:
        raise FastfairError(f"max_iter must be an integer >= 0, got {max_iter!r}")
    return int(max_iter)


def check_tensor(name: str, t: object, ndim: int) -> None:
    """``t`` is a float32/float64 tensor with ``ndim`` dimensions and a non-empty last dimension."""
    if not isinstance(t, Tensor):
        raise FastfairError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != ndim:
        raise FastfairError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if t.shape[-1] == 0:
        raise FastfairError(f"{name} must have a non-empty last dimension, got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        raise FastfairError(f"{name} must be float32 or float64, got {t.dtype}")


def check_same(a: Tensor, b: Tensor, na: str, nb: str) -> None:
    """``a`` and ``b`` share dtype and device."""
    if a.dtype != b.dtype or a.device != b.device:
        raise FastfairError(
            f"{na} and {nb} must share dtype and device, got {a.dtype}/{a.device} and {b.dtype}/{b.device}"
        )


def check_finite(name: str, t: Tensor) -> None:
    """No NaN or Inf entry in ``t``."""
    # A NaN/Inf entry makes the sum non-finite; a finite sum thus proves finiteness with one cheap reduction
    # (isfinite(t).all() materialises a mask as large as t). Only an overflowing sum needs the exact check.
    if t.numel() and not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        raise FastfairError(f"{name} contains NaN or Inf")
