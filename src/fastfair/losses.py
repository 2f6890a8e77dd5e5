r"""The logistic loss: the one loss every layer (training, the inner solvers, the benchmarks) evaluates.

For a logit ``z = f(x)`` and a label ``y ∈ [0, 1]`` (hard labels 0/1 or soft labels in between),

    ℓ(z, y) = softplus(z) - y·z = y·softplus(-z) + (1 - y)·softplus(z)      (binary cross-entropy with logits)

with logit derivatives

    ℓ′(z, y) = σ(z) - y = (1 - y)·σ(z) - y·σ(-z),        ℓ″(z) = σ(z)(1 - σ(z)) = σ(z)·σ(-z).

The right-hand forms are the ones evaluated. Both terms of each are non-negative, so nothing cancels: the loss
and its derivatives keep full relative accuracy for confidently classified points, where the left-hand forms
round to 0 (in float64 ``σ(40) - 1`` is 0 while the true ℓ′(40, 1) = -σ(-40) ≈ -4.25e-18, and
``binary_cross_entropy_with_logits`` returns 0 for ℓ(-40, 0) = log1p(e^-40) ≈ 4.25e-18). For y ∈ {0, 1} and
finite z, sign(ℓ′) = 1 - 2y exactly.

The per-row loss is differentiable by autograd (training back-propagates through it); its autograd derivative
in z is ``(1 - y)σ(z) - yσ(-z)``, the accurate ℓ′, with no kink at z = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from .errors import FastfairError

__all__ = ["SOFTPLUS_IDENTITY_ABOVE", "logistic_logit_derivatives", "logistic_loss", "logistic_loss_derivatives"]

#: softplus(t) is evaluated as t above this input: there ``softplus(t) - t = log1p(e^-t) < e^-40 ≈ 4.2e-18``, whose
#: ratio to ``t`` (≤ 1e-19) is below the float64 unit roundoff, so the identity is exact to rounding.
SOFTPLUS_IDENTITY_ABOVE = 40.0


def logistic_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-row ``ℓ(z, y) = y·softplus(-z) + (1 - y)·softplus(z)``; ``logits`` and ``y`` of one shape (FastfairError
    otherwise), ``y`` cast to ``logits``' dtype.

    Cancellation-free (module docs). Built from element-wise kernels only: on CPU the fused library call
    (``binary_cross_entropy_with_logits``, through ``log_sigmoid``) opens an OpenMP parallel region even for tiny
    batches, which costs milliseconds per call on a loaded machine -- too much for solvers that evaluate the loss
    thousands of times.
    """
    if logits.shape != y.shape:  # broadcasting (n, 1) against (n,) would silently give an (n, n) loss
        shapes = f"{tuple(logits.shape)} and {tuple(y.shape)}"
        raise FastfairError(f"logits and labels must have the same shape, got {shapes}")
    y = y.to(logits.dtype)
    return y * F.softplus(-logits, threshold=SOFTPLUS_IDENTITY_ABOVE) + (1 - y) * F.softplus(
        logits, threshold=SOFTPLUS_IDENTITY_ABOVE
    )


def logistic_logit_derivatives(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``(ℓ′, ℓ″) = ((1 - y)σ(z) - yσ(-z), σ(z)σ(-z))`` without the loss; ``y`` must already be in ``z``'s dtype."""
    s_pos, s_neg = torch.sigmoid(logits), torch.sigmoid(-logits)
    return (1 - y) * s_pos - y * s_neg, s_pos * s_neg


def logistic_loss_derivatives(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(ℓ, ℓ′, ℓ″)`` per row (module docs for the forms evaluated); ``y`` is cast to ``logits``' dtype."""
    y = y.to(logits.dtype)
    return (logistic_loss(logits, y), *logistic_logit_derivatives(logits, y))
