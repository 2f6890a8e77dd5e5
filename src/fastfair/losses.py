r"""The logistic loss -- the one loss every layer (training, the inner solvers, the benchmarks) evaluates -- and
the fairness penalties that training can add to it.

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

Fairness penalties (:func:`fairness_penalty`) act on the predicted probabilities p = σ(z) of a batch, with
per-row weights w ≥ 0 and group codes s. For a set of rows R, the weighted rate of group a is

    r_a(R) = Σ_{i∈R, s_i=a} w_i p_i / Σ_{i∈R, s_i=a} w_i,

defined for the groups A(R) = {a : Σ_{i∈R, s_i=a} w_i > 0} (a group absent from R, or of zero weight there, is
ignored), and the gap of R is

    G(R) = max_{a∈A(R)} r_a(R) - min_{a∈A(R)} r_a(R)        (0 when A(R) has fewer than two groups).

* ``"dp"`` (demographic parity): P_dp = G(batch).
* ``"eo"`` (equalized odds): P_eo = max(G({i : y_i = 1}), G({i : y_i = 0})), the larger of the gaps among the
  positives (true-positive rates) and among the negatives (false-positive rates).

Both are piecewise smooth in z: away from ties between groups for the max or the min, the gradient is that of
r_A - r_B for the arg-max group A and arg-min group B of the active term,

    ∂P/∂z_i = σ(z_i)σ(-z_i) · w_i · (1[s_i = A]/W_A - 1[s_i = B]/W_B),    W_a = Σ_{i∈R, s_i=a} w_i,

(restricted to the rows R of the active term), and autograd returns a subgradient at ties (torch spreads the
gradient of a max or min evenly over tied entries: all-equal predictions give gap 0 and gradient 0). In the
limit of hard predictions p ∈ {0, 1} with unit weights, r_a is group a's selection rate (``"dp"``), or its TPR
and FPR (``"eo"``), so P_dp is the ``independence`` gap of :func:`fastfair.metrics.fairness_gaps` and P_eo is
max(``separation_tpr``, ``separation_fpr``), Fairlearn's ``equalized_odds_difference``. (Where a group has no
positives, or no negatives, :mod:`fastfair.metrics` reports that rate's gap as NaN; the penalty ignores the
group in that term instead.) The max of the two terms, rather than their sum, keeps that identity with the
reported equalized-odds gap, so that λ weighs the quantity a user reads off; it is differentiable almost
everywhere like the terms themselves.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from .errors import FastfairError, require

__all__ = [
    "SOFTPLUS_IDENTITY_ABOVE",
    "fairness_penalty",
    "group_rate_gap",
    "logistic_logit_derivatives",
    "logistic_loss",
    "logistic_loss_derivatives",
    "weighted_mean",
]

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


def weighted_mean(values: Tensor, weight: Tensor | None = None) -> Tensor:
    """``Σ wᵢ vᵢ / Σ wᵢ`` over the rows (the plain mean when ``weight`` is ``None``).

    A zero total weight gives 0, not NaN: the denominator is held at the dtype's smallest normal number, and the
    numerator is then 0 too (weights are non-negative). With unit weights the value is the plain mean's.
    """
    if weight is None:
        return values.mean()
    return (weight * values).sum() / weight.sum().clamp_min(torch.finfo(values.dtype).tiny)


def group_rate_gap(p: Tensor, groups: Tensor, weight: Tensor, n_groups: int) -> Tensor:
    """G = max_a r_a - min_a r_a over the groups of positive weight, r_a = Σ_{s_i=a} w_i p_i / Σ_{s_i=a} w_i.

    ``p`` (n,) values (probabilities), ``groups`` (n,) integer codes in [0, n_groups), ``weight`` (n,) ≥ 0 (a zero
    weight takes the row out). 0 when fewer than two groups have positive weight. No host synchronisation and
    no NaN, in value or gradient: absent groups are masked out of the max and min, and divide by 1 instead of 0.
    """
    zeros = p.new_zeros(n_groups)
    mass = zeros.index_add(0, groups, weight)
    present = mass > 0
    rates = zeros.index_add(0, groups, weight * p) / torch.where(present, mass, torch.ones_like(mass))
    hi = torch.where(present, rates, torch.full_like(rates, -torch.inf)).amax()
    lo = torch.where(present, rates, torch.full_like(rates, torch.inf)).amin()
    return torch.where(present.sum() >= 2, hi - lo, p.new_zeros(()))


def fairness_penalty(
    logits: Tensor,
    y: Tensor,
    groups: Tensor,
    kind: str,
    *,
    weight: Tensor | None = None,
    n_groups: int | None = None,
) -> Tensor:
    """The fairness penalty ``kind`` (``"dp"`` or ``"eo"``, module docs) of one batch, a differentiable scalar.

    ``logits`` (n,) are f(x), the probabilities are σ(f(x)); ``y`` (n,) labels in {0, 1}; ``groups`` (n,) integer
    group codes 0, 1, ...; ``weight`` (n,) non-negative row weights (``None``: all ones); ``n_groups`` the
    number of codes (default: the largest code + 1, which costs a host synchronisation on an accelerator).
    """
    require(kind in ("dp", "eo"), f"unknown fairness penalty {kind!r}; choose one of dp, eo")
    if logits.shape != y.shape or logits.shape != groups.shape:
        shapes = f"{tuple(logits.shape)}, {tuple(y.shape)} and {tuple(groups.shape)}"
        raise FastfairError(f"logits, labels and groups must have the same shape, got {shapes}")
    if logits.numel() == 0:
        return logits.new_zeros(())
    groups = groups.long()
    k = int(groups.max()) + 1 if n_groups is None else n_groups
    p = torch.sigmoid(logits)
    w = torch.ones_like(p) if weight is None else weight.to(p.dtype)
    if kind == "dp":
        return group_rate_gap(p, groups, w, k)
    positive = (y.to(p.dtype) > 0.5).to(p.dtype)
    return torch.maximum(group_rate_gap(p, groups, w * positive, k), group_rate_gap(p, groups, w * (1 - positive), k))
