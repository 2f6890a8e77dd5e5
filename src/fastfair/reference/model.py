"""The reference protocol's model, initialisation and loss.

Model. The reference's affine layer stores its weight as K of shape (in, out) = (d, 1) and computes
f(x) = x K + b (a matrix product, then the bias added): :class:`ReferenceAffine` does the same, so that the
rounding of every logit is the reference's.

Initialisation (:func:`reference_init`). The reference initialises K with ``kaiming_uniform_(K, a=√5)``.
torch reads the fan-in of a 2-d weight as its *second* dimension, which for K (d, 1) is 1, not d. So the bound is
gain·√3/√fan_in with gain = √(2/(1 + a²)) = √(1/3), i.e. exactly 1: K ~ U(-1, 1)ᵈ, whatever d. The bias is
drawn from U(-1/√fan_in, 1/√fan_in) with the same fan-in 1, so b ~ U(-1, 1). (A torch ``nn.Linear`` stores
(out, in) and gets bound 1/√d for both.) The draws come from the generator right after it is re-seeded with
the run's seed, K's d entries first, then b. :func:`our_init` gives fastfair's own initial weights
(:func:`fastfair.models.build_model`) in the same layout, for the ablation.

Loss (:func:`reference_loss`). The reference's objective is the batch mean of the logistic loss written with a
shift by the batch maximum m = maxᵢ fᵢ:

    t_i = log(e^{f_i - m} + e^{-m}) + m  (= log(1 + e^{f_i}) = softplus(f_i)),
    L = -1/n Σᵢ (y_i (f_i - t_i) - (1 - y_i) t_i)  (= 1/n Σᵢ softplus(f_i) - y_i f_i).

We evaluate the same expression in the same order, so the gradients that drive Adam round as the reference's
do. One guard: the reference's e^{-m} overflows float32 when m < -88 (its loss becomes inf/NaN); we shift by
max(m, -80) instead, which is the identical computation whenever m ≥ -80 and finite otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..models import build_model

#: ``kaiming_uniform_``'s negative-slope parameter a = √5: with fan-in 1 it makes the bound exactly 1.
KAIMING_A = math.sqrt(5.0)
#: Lowest shift of the loss' log-sum-exp: e^{80} ≈ 5.5e34 is finite in float32 (max ≈ 3.4e38).
LOSS_SHIFT_FLOOR = -80.0


class ReferenceAffine(nn.Module):
    """Logistic regression stored as the reference stores it: f(x) = x K + b with K (d, 1), b (1,); (n,) logits."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.K = nn.Parameter(torch.empty(d, 1))
        self.b = nn.Parameter(torch.empty(1))

    def forward(self, x: Tensor) -> Tensor:
        z = x @ self.K
        z = z + self.b
        return z.squeeze(-1)


def reference_init(d: int, generator: torch.Generator) -> ReferenceAffine:
    """:class:`ReferenceAffine` with the reference's initial weights drawn from ``generator`` (module docs)."""
    model = ReferenceAffine(d)
    with torch.no_grad():
        nn.init.kaiming_uniform_(model.K, a=KAIMING_A, generator=generator)
        fan_in = model.K.shape[1]  # torch's reading of a (d, 1) weight: fan-in 1
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(model.b, -bound, bound, generator=generator)
    return model


def our_init(d: int, seed: int) -> ReferenceAffine:
    """:class:`ReferenceAffine` holding fastfair's initial affine weights for ``seed`` (``nn.Linear``'s default
    U(-1/√d, 1/√d) for weight and bias, from :func:`fastfair.models.build_model`), K = Wᵀ."""
    ours = build_model("affine", d, seed=seed)
    model = ReferenceAffine(d)
    with torch.no_grad():
        model.K.copy_(ours.linear.weight.detach().T)
        model.b.copy_(ours.linear.bias.detach())
    return model


def reference_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Batch-mean logistic loss in the reference's shifted form (module docs); ``y`` in {0, 1}, any dtype."""
    f = logits
    m = torch.clamp(f.max(), min=LOSS_SHIFT_FLOOR)
    t = torch.log(torch.exp(f - m) + torch.exp(-m)) + m
    y = y.to(f.dtype)
    return -(1.0 / f.shape[0]) * (y * (f - t) - (1.0 - y) * t).sum()
