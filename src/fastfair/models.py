"""Classifier models: torch modules mapping features (n, d) to one logit per sample (n,).

Three built-in families, built by :func:`build_model` with deterministic initial weights:

* :class:`Affine` -- logistic regression, f(x) = wᵀx + b.
* :class:`MLP` -- one hidden layer, f(x) = vᵀφ(Wx + b) + c, W of shape (h, d).
* :class:`DeepMLP` -- L ≥ 2 hidden layers, f(x) = vᵀφ(W_L φ(⋯ φ(W_1 x + b_1) ⋯) + b_L) + c.

The activation φ is one of (:data:`fastfair.vocabulary.ACTIVATIONS`)

    tanh, sigmoid σ(z) = 1/(1 + e⁻ᶻ), softplus log(1 + eᶻ) (torch's, linear above z = 20),
    gelu z·Φ(z) (the exact form with the normal CDF Φ, torch's default), relu max(z, 0),
    leaky_relu max(z, 0.01·z) (torch's default slope).

relu and leaky_relu are piecewise linear (:data:`fastfair.vocabulary.PIECEWISE_LINEAR_ACTIVATIONS`): φ″ = 0
away from the kink at 0, so a network built from them has ∇²f = 0 almost everywhere, and its input Hessian
through the logistic loss ℓ is ℓ″∇f∇fᵀ, rank one. The automatic inner solver uses this
(:mod:`fastfair.inner.auto`).

Input derivatives of the loss (:mod:`fastfair.derivatives`) follow the model's structure:

* Affine: closed form, ∇ₓL = ℓ′w and ∇²ₓL = ℓ″wwᵀ (path ``"affine-closed-form"``);
* MLP: factored, ∇f = Wᵀ(v ⊙ φ′(z)) and ∇²f = Wᵀ diag(v ⊙ φ″(z)) W with z = Wx + b, all in the row space of W
  (path ``"mlp-subspace"``);
* DeepMLP: Hessian-vector products in closed form (path ``"krylov"`` at every d): one forward pass caches φ′ and
  φ″ of every layer, and each product pushes the tangent v forward (J v) and back (the R-operator), with the
  φ″ ⊙ (W v) terms of each layer, in the first layer's row space when that layer is at most half as wide as d;
* any other ``nn.Module`` mapping (n, d) to (n,) logits whose rows do not interact: Hessian-vector products by
  automatic differentiation, one double backward of the summed loss per product (path ``"krylov"``; a dense
  Hessian where d is tiny).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

from .errors import FastfairError
from .vocabulary import ACTIVATIONS, MODELS

#: Slope of leaky_relu for z < 0 (torch's default ``negative_slope``).
LEAKY_RELU_SLOPE = 0.01


def check_activation(activation: object) -> str:
    """``activation`` if it names one of :data:`~fastfair.vocabulary.ACTIVATIONS`, else FastfairError."""
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise FastfairError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    return activation


def hidden_widths(hidden: object) -> tuple[int, ...]:
    """The hidden widths as a tuple of positive ints: an int h gives (h,), a sequence gives its entries.

    Raises FastfairError (one line) for anything else: an empty sequence, a width below 1, a bool, a float, a
    string.
    """
    if _is_int(hidden):
        widths: tuple = (hidden,)
    elif isinstance(hidden, Sequence) and not isinstance(hidden, str | bytes):
        widths = tuple(hidden)
    else:
        widths = ()
    if not widths or not all(_is_int(h) and h >= 1 for h in widths):
        raise FastfairError(
            f"hidden widths must be positive integers, one per hidden layer (e.g. 16 or (64, 32)), got {hidden!r}"
        )
    return tuple(int(h) for h in widths)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def activate(activation: str, z: torch.Tensor) -> torch.Tensor:
    """φ(z) for the named activation (element-wise)."""
    if activation == "tanh":
        return torch.tanh(z)
    if activation == "sigmoid":
        return torch.sigmoid(z)
    if activation == "softplus":
        return F.softplus(z)
    if activation == "gelu":
        return F.gelu(z)
    if activation == "relu":
        return F.relu(z)
    if activation == "leaky_relu":
        return F.leaky_relu(z, LEAKY_RELU_SLOPE)
    raise FastfairError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")


def activation_module(activation: str) -> nn.Module:
    """The ``torch.nn`` module computing :func:`activate` for ``activation`` (e.g. ``nn.ReLU()`` for relu)."""
    modules = {
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "softplus": nn.Softplus,
        "gelu": nn.GELU,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(LEAKY_RELU_SLOPE),
    }
    return modules[check_activation(activation)]()


class Affine(nn.Module):
    """Logistic regression: logit f(x) = wᵀx + b."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class MLP(nn.Module):
    """One hidden layer: logit f(x) = vᵀφ(Wx + b) + c, with W of shape (hidden, d).

    ``activation`` names φ (any of :data:`~fastfair.vocabulary.ACTIVATIONS`); ``self.hidden`` is the Linear
    layer (W, b) and ``self.out`` the output layer (vᵀ, c).
    """

    def __init__(self, d: int, hidden: int = 16, activation: str = "tanh") -> None:
        super().__init__()
        self.activation = check_activation(activation)
        self.hidden = nn.Linear(d, hidden)
        self.out = nn.Linear(hidden, 1)

    def act(self, z: torch.Tensor) -> torch.Tensor:
        """φ(z) for the configured activation."""
        return activate(self.activation, z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(x))).squeeze(-1)


class DeepMLP(nn.Module):
    """Several hidden layers: f(x) = vᵀφ(W_L φ(⋯ φ(W_1 x + b_1) ⋯) + b_L) + c, widths ``hidden`` = (h_1, …, h_L).

    A plain ``nn.Module``: ``self.net`` is the ``nn.Sequential`` (Linear(d, h_1), φ, Linear(h_1, h_2), φ, …,
    Linear(h_L, 1)) with φ as a ``torch.nn`` module (:func:`activation_module`), and ``forward`` returns its
    output as (n,) logits. ``activation`` names φ and ``widths`` holds (h_1, …, h_L).
    """

    def __init__(self, d: int, hidden: Sequence[int] = (64, 32), activation: str = "tanh") -> None:
        super().__init__()
        self.activation = check_activation(activation)
        self.widths = hidden_widths(hidden)
        sizes = (d, *self.widths)
        layers: list[nn.Module] = []
        for fan_in, fan_out in pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), activation_module(activation)]
        layers.append(nn.Linear(sizes[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def build_model(
    name: str,
    d: int,
    *,
    hidden: int | Sequence[int] = 16,
    activation: str = "tanh",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """Build a named model with deterministic initial weights drawn from ``seed``.

    ``name`` is "affine" or "mlp". For "mlp", one hidden width (an int h, or a 1-sequence (h,)) gives the
    one-hidden-layer :class:`MLP`, two or more widths a :class:`DeepMLP`. The weights are torch's default
    ``nn.Linear`` initialisation drawn, layer by layer from the input, right after ``torch.manual_seed(seed)``;
    torch's global RNG is restored afterwards. Raises FastfairError for an unknown model or activation, or bad
    hidden widths.
    """
    if name not in MODELS:
        raise FastfairError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    widths = hidden_widths(hidden)
    if name == "mlp":
        check_activation(activation)
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        if name == "affine":
            model: nn.Module = Affine(d)
        elif len(widths) == 1:
            model = MLP(d, hidden=widths[0], activation=activation)
        else:
            model = DeepMLP(d, hidden=widths, activation=activation)
    finally:
        torch.random.set_rng_state(gen_state)
    return model.to(dtype)
