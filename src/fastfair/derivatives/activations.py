r"""Hidden-layer activations φ of the one-hidden-layer MLP with their first and second derivatives, in closed form.

    tanh:        φ = tanh z,                 φ′ = 1 - tanh²z,            φ″ = -2 tanh z · (1 - tanh²z)
    sigmoid:     φ = s = σ(z),               φ′ = s(1 - s),              φ″ = s(1 - s)(1 - 2s)
    softplus:    φ = log(1 + eᶻ),            φ′ = σ(z),                  φ″ = σ(z)(1 - σ(z))
                 (as ``torch.nn.functional.softplus``: the identity above z = 20, where φ′ = 1 and φ″ = 0;
                 at z = 20 itself the log1p branch, as torch's forward)
    gelu:        φ = z Φ(z),                 φ′ = Φ(z) + z ϕ(z),         φ″ = ϕ(z)(2 - z²)
                 (the exact GELU of ``torch.nn.functional.gelu``; Φ, ϕ the standard normal CDF and density)
    relu:        φ = max(z, 0),              φ′ = [z > 0],               φ″ = 0
    leaky_relu:  φ = z or a·z (a = 0.01),    φ′ = 1 or a,                φ″ = 0

For relu and leaky_relu φ is piecewise linear: φ″ = 0 everywhere except at the kink z = 0, where φ′ jumps and
φ″ does not exist (a Dirac mass in the distributional sense). φ′ at the kink follows torch's autograd (0 for
relu, ``a`` for leaky_relu), so the closed forms agree with ``torch.func`` at every input.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from ..errors import FastfairError
from ..models import LEAKY_RELU_SLOPE
from ..vocabulary import ACTIVATIONS

__all__ = ["ANALYTIC_ACTIVATIONS", "LEAKY_RELU_SLOPE", "SOFTPLUS_THRESHOLD", "activation_derivatives"]

#: ``torch.nn.functional.softplus`` switches to the identity above this input (default ``threshold=20``).
SOFTPLUS_THRESHOLD = 20.0
#: The activations :func:`activation_derivatives` knows: every built-in one (leaky_relu with the models' slope,
#: ``fastfair.models.LEAKY_RELU_SLOPE``, re-exported here).
ANALYTIC_ACTIVATIONS = ACTIVATIONS

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def activation_derivatives(name: str, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(φ(z), φ′(z), φ″(z))`` element-wise for the activation ``name`` (module docs for the formulas)."""
    if name == "tanh":
        t = torch.tanh(z)
        d1 = 1.0 - t * t
        return t, d1, -2.0 * t * d1
    if name == "sigmoid":
        s = torch.sigmoid(z)
        d1 = s * torch.sigmoid(-z)
        return s, d1, d1 * (1.0 - 2.0 * s)
    if name == "softplus":
        s = torch.sigmoid(z)
        linear = z > SOFTPLUS_THRESHOLD
        d1 = torch.where(linear, torch.ones_like(z), s)
        d2 = torch.where(linear, torch.zeros_like(z), s * torch.sigmoid(-z))
        return F.softplus(z), d1, d2
    if name == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(z * _INV_SQRT_2))
        pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
        return F.gelu(z), cdf + z * pdf, pdf * (2.0 - z * z)
    if name == "relu":
        return F.relu(z), (z > 0).to(z.dtype), torch.zeros_like(z)
    if name == "leaky_relu":
        d1 = torch.where(z > 0, torch.ones_like(z), torch.full_like(z, LEAKY_RELU_SLOPE))
        return F.leaky_relu(z, LEAKY_RELU_SLOPE), d1, torch.zeros_like(z)
    raise FastfairError(f"unknown activation {name!r}; choose one of {', '.join(ANALYTIC_ACTIVATIONS)}")
