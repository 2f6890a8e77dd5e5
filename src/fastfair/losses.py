r"""The classification loss -- the one loss every layer (training, the inner solvers, the benchmarks) evaluates --
and the fairness penalties that training can add to it.

:func:`classification_loss` is the entry point: one logit per row (shape (n,)) is the binary case, the logistic
loss below; C ≥ 3 logits per row (shape (n, C)) with integer class codes y ∈ {0, …, C-1} is the softmax
cross-entropy (section "Softmax cross-entropy" below).

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

Softmax cross-entropy
---------------------
For logits z ∈ ℝᶜ and a class code y, with p = softmax(z), pᶜ = e^{z_c} / Σⱼ e^{z_j},

    ℓ(z, y) = logsumexp(z) - z_y = log Σⱼ e^{z_j - z_y}.

With m = z_a the largest logit (a = y where z_y is largest, else the first arg-max) this is, exactly,

    ℓ(z, y) = (m - z_y) + log1p(Σ_{j≠a} e^{z_j - m}),

the form evaluated: both terms are non-negative, so nothing cancels (``logsumexp(z) - z_y`` loses all relative
accuracy on a confidently classified row: for z = (40, 0, 0), y = 0, the true loss log1p(2e^-40) ≈ 8.5e-18 is
a difference of two numbers near 40), and no exponential overflows for finite z. Its logit derivatives are

    ∇_z ℓ = p - e_y,          ∇²_z ℓ = diag(p) - ppᵀ.

The Hessian is positive semi-definite (vᵀ(diag(p) - ppᵀ)v = Σ_c p_c v_c² - (Σ_c p_c v_c)² is the variance of v
under p, ≥ 0) of rank C - 1 when every p_c > 0: its null space is spanned by the all-ones vector (adding a constant
to every logit changes nothing). :func:`softmax_logit_derivatives` evaluates both without cancellation: the y-th
entry of the gradient is p_y - 1 = -Σ_{c≠y} p_c (the sum of the other probabilities, not 1 - p_y, which rounds to
0 for a confidently classified row), and the diagonal of the Hessian is p_c·(1 - p_c) with 1 - p_c = Σ_{j≠c} p_j.
For C = 2 this is the logistic loss of the logit difference z_1 - z_0.

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

(restricted to the rows R of the active term). Given the active groups (and term), P is linear in p, so it is
evaluated as Σᵢ cᵢpᵢ with these coefficients cᵢ, found without an autograd graph (:func:`gap_coefficients`);
autograd then returns exactly the closed form above. At a tie it takes the first arg-max and arg-min group (and
the first term): the gradient of one of the smooth pieces that meet there. Equal rates give gap 0 and gradient
0. In the limit of hard predictions p ∈ {0, 1} with unit weights, r_a is group a's selection rate (``"dp"``), or its TPR
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
    "classification_loss",
    "fairness_penalty",
    "gap_coefficients",
    "logistic_logit_derivatives",
    "logistic_loss",
    "logistic_loss_derivatives",
    "softmax_cross_entropy",
    "softmax_logit_derivatives",
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


def classification_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-row loss (n,): :func:`logistic_loss` for (n,) logits (binary, the very same numbers), the softmax
    cross-entropy ``logsumexp(z) - z_y`` (:func:`softmax_cross_entropy`) for (n, C) logits with integer class codes
    ``y`` (n,) in 0..C-1 (of any dtype: float codes such as 2.0 are read as integers).

    FastfairError (one line) for logits that are neither (n,) nor (n, C) with C ≥ 2, labels of the wrong shape, or
    (multiclass) a label that is not an integer code in 0..C-1 (negative, too large, fractional or NaN).
    """
    if logits.ndim <= 1:
        return logistic_loss(logits, y)
    return softmax_cross_entropy(logits, y)


def _class_index(logits: Tensor, y: Tensor) -> Tensor:
    """``y`` as an (n, 1) int64 index into the columns of the (n, C) ``logits`` (FastfairError on a shape mismatch or
    a label that is not an integer code in 0..C-1)."""
    if logits.ndim != 2 or logits.shape[1] < 2 or y.shape != logits.shape[:1]:
        shapes = f"{tuple(logits.shape)} and {tuple(y.shape)}"
        raise FastfairError(f"multiclass logits must be (n, C) with C >= 2 and labels (n,), got {shapes}")
    y = y.detach().to(device=logits.device)
    index = y.long()
    C = logits.shape[1]
    if _transformed(y) or _transformed(logits):  # inside torch.func (vmap): no data-dependent check is possible there
        return index.unsqueeze(-1)
    bad = (index < 0) | (index >= C) | (y != index) if y.is_floating_point() else (index < 0) | (index >= C)
    if bool(bad.any()):
        value = y[bad][0].item()
        raise FastfairError(f"class codes must be integers in 0..{C - 1} for {C} logits, got {value!r}")
    return index.unsqueeze(-1)


def _transformed(t: Tensor) -> bool:
    """Whether ``t`` is a torch.func (vmap / grad) wrapper, whose values cannot be inspected."""
    from torch._C._functorch import is_functorch_wrapped_tensor

    return bool(is_functorch_wrapped_tensor(t))


def softmax_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Per-row ``ℓ(z, y) = logsumexp(z) - z_y`` for logits (n, C) and class codes ``y`` (n,), evaluated as
    ``(m - z_y) + log1p(Σ_{j≠a} e^{z_j - m})`` with m = z_a the largest logit (module docs): cancellation-free.

    Differentiable by autograd, with derivative softmax(z) - e_y in z: the form is an identity in z for the
    fixed index a, and the gradient reaches m through the one entry z_a. Where y = a the first term is held at
    the constant 0, so the y-th derivative -Σ_{j≠y} p_j keeps full relative accuracy too.
    """
    index = _class_index(logits, y)
    return _cross_entropy(logits, index)


def _cross_entropy(logits: Tensor, index: Tensor) -> Tensor:
    """``(m - z_y) + log1p(Σ_{j≠a} e^{z_j - m})`` with a = y where z_y is a largest logit (then the first term is
    the constant 0, so autograd's derivative in z_y is -Σ_{j≠y} p_j from the one term, not 1 - 1 - Σ_{j≠y} p_j,
    which rounds to 0 on a confident row), else the first arg-max."""
    z_y = logits.gather(-1, index)
    top = logits.argmax(dim=-1, keepdim=True)
    y_on_top = z_y >= logits.gather(-1, top)
    a = torch.where(y_on_top, index, top)
    m = logits.gather(-1, a)
    others = torch.exp(logits - m).scatter(-1, a, 0.0).sum(-1)  # Σ_{j≠a} e^{z_j - m}, the e^0 term left out
    lead = torch.where(y_on_top, torch.zeros_like(m), m - z_y).squeeze(-1)
    return lead + torch.log1p(others)


def softmax_logit_derivatives(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(ℓ, ∇_z ℓ, ∇²_z ℓ)`` per row: (n,), (n, C) and (n, C, C), cancellation-free (module docs).

    ∇_z ℓ = p - e_y with its y-th entry -Σ_{c≠y} p_c; ∇²_z ℓ = diag(p) - ppᵀ with diagonal p_c Σ_{j≠c} p_j.
    """
    index = _class_index(logits, y)
    p = torch.softmax(logits, dim=-1)
    onehot = torch.zeros_like(p).scatter_(-1, index, 1.0)
    others = p * (1 - onehot)  # p with its y-th entry zeroed
    grad = others - onehot * others.sum(-1, keepdim=True)  # p_c off y, -Σ_{c≠y} p_c at y
    C = p.shape[-1]
    off = 1 - torch.eye(C, dtype=p.dtype, device=p.device)
    rest = p @ off  # 1 - p_c as Σ_{j≠c} p_j: full relative accuracy where p_c is close to 1
    hess = -p.unsqueeze(-1) * p.unsqueeze(-2)
    hess.diagonal(dim1=-2, dim2=-1).copy_(p * rest)
    return _cross_entropy(logits, index), grad, hess


def weighted_mean(values: Tensor, weight: Tensor | None = None) -> Tensor:
    """``Σ wᵢ vᵢ / Σ wᵢ`` over the rows (the plain mean when ``weight`` is ``None``).

    A zero total weight gives 0, not NaN: the denominator is held at the dtype's smallest normal number, and the
    numerator is then 0 too (weights are non-negative). With unit weights the value is the plain mean's.
    """
    if weight is None:
        return values.mean()
    return (weight * values).sum() / weight.sum().clamp_min(torch.finfo(values.dtype).tiny)


def gap_coefficients(p: Tensor, cells: Tensor, weight: Tensor, n_groups: int, n_columns: int = 1) -> Tensor:
    """Per-row coefficients c with cᵀp = the largest of the column gaps G_c = max_a r_{c,a} - min_a r_{c,a}.

    Row i lies in cell ``cells[i] = c·n_groups + a`` (column c, group a; one column for demographic parity, one
    per label for equalized odds), r_{c,a} = Σ_{i∈(c,a)} wᵢpᵢ / W_{c,a} with W_{c,a} = Σ_{i∈(c,a)} wᵢ, over the
    cells of positive weight. For the largest gap's column c and its arg-max and arg-min groups A and B (the first
    of each at ties), cᵢ = wᵢ·(1[i∈(c,A)]/W_{c,A} - 1[i∈(c,B)]/W_{c,B}), and c = 0 when no column has two groups.
    As the active groups are fixed almost everywhere, the penalty is cᵀp there, linear in p: its gradient in p
    is c. Computed without a graph (call it under ``torch.no_grad``), without host synchronisation, and without
    NaN (an empty cell divides by 1, and is masked out of the max and min). The reductions run along the last,
    contiguous axis with ``argmax`` / ``argmin``: on CPU, ``max(dim=0)`` of a 2 x 2 tensor can take milliseconds.
    """
    k = n_groups * n_columns
    mass = p.new_zeros(k).index_add_(0, cells, weight)
    present = mass > 0
    safe = mass + (~present).to(p.dtype)  # 1 for an empty cell
    rates = (p.new_zeros(k).index_add_(0, cells, weight * p) / safe).view(n_columns, n_groups)
    grid = present.view(n_columns, n_groups)
    high = rates.masked_fill(~grid, -torch.inf)
    low = rates.masked_fill(~grid, torch.inf)
    top, bottom = high.argmax(dim=1, keepdim=True), low.argmin(dim=1, keepdim=True)
    gaps = (high.gather(1, top) - low.gather(1, bottom)).squeeze(1)
    gaps = gaps.masked_fill(grid.sum(dim=1) < 2, 0.0)
    column = gaps.argmax()
    a, b = column * n_groups + top[column, 0], column * n_groups + bottom[column, 0]
    scale = (gaps[column] > 0).to(p.dtype)  # 0 when no column has two groups (or every gap is 0)
    return scale * weight * ((cells == a).to(p.dtype) / safe[a] - (cells == b).to(p.dtype) / safe[b])


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
    group codes 0, 1, ...; ``weight`` (n,) non-negative row weights (``None``: all ones; they are constants, not
    differentiated); ``n_groups`` the number of codes (default: the largest code + 1, which costs a host
    synchronisation on an accelerator).

    Evaluated as cᵀσ(z) with the coefficients c of the active groups (:func:`gap_coefficients`), found without a
    graph: the value is the gap, and autograd's gradient is cᵢσ(zᵢ)σ(-zᵢ), the closed form of the module docs
    (at ties, that of the first arg-max and arg-min group), from a three-node graph. Differentiating the gap's
    own graph (scatters, divisions, masked max and min) gives the same gradient away from ties, but in a TRS run
    on Adult (batch 100, ``"eo"``) it added about twice as much time per epoch.
    """
    require(kind in ("dp", "eo"), f"unknown fairness penalty {kind!r}; choose one of dp, eo")
    if logits.shape != y.shape or logits.shape != groups.shape:
        shapes = f"{tuple(logits.shape)}, {tuple(y.shape)} and {tuple(groups.shape)}"
        raise FastfairError(f"logits, labels and groups must have the same shape, got {shapes}")
    if logits.numel() == 0:
        return logits.new_zeros(())
    p = torch.sigmoid(logits)
    with torch.no_grad():
        groups = groups.long()
        k = int(groups.max()) + 1 if n_groups is None else n_groups
        w = torch.ones_like(p) if weight is None else weight.to(p.dtype)
        if kind == "dp":
            coef = gap_coefficients(p, groups, w, k)
        else:
            coef = gap_coefficients(p, (y > 0.5).long() * k + groups, w, k, n_columns=2)
    return (coef * p).sum()
