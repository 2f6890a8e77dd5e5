"""Classifier models: torch modules mapping features (n, d) to one logit per sample (n,), or, for C ≥ 3 classes,
to C logits per sample (n, C).

Three built-in families, built by :func:`build_model` with deterministic initial weights:

* :class:`Affine` -- logistic regression, f(x) = wᵀx + b; with C ≥ 3 classes softmax regression, f(x) = Wx + b
  with W of shape (C, d).
* :class:`MLP` -- one hidden layer, f(x) = vᵀφ(Wx + b) + c, W of shape (h, d) (C ≥ 3: V of shape (C, h) and
  c (C,) in place of v and c).
* :class:`DeepMLP` -- L ≥ 2 hidden layers, f(x) = vᵀφ(W_L φ(⋯ φ(W_1 x + b_1) ⋯) + b_L) + c (C outputs likewise).

``n_classes`` = 2 is the binary case: one logit per row, exactly the model (and initial weights) it always was.
``n_classes`` = C ≥ 3 gives C outputs; the loss is then the softmax cross-entropy
(:func:`fastfair.losses.classification_loss`). Every model carries ``model.n_classes``.

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

With C ≥ 3 classes: softmax regression has ∇ₓL = Wᵀ(p - e_y) and ∇²ₓL = Wᵀ(diag(p) - ppᵀ)W, in the row space
of W (path ``"softmax-subspace"``); the one-hidden-layer MLP's gradient and Hessian also live in the row space of
its first layer (path ``"mlp-softmax-subspace"``); the DeepMLP keeps its closed-form Hessian-vector products, with
the C×C softmax Hessian at the output (path ``"krylov"``); any other module with C outputs takes the general paths
(dense for tiny d, Hessian-vector products by automatic differentiation otherwise).
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


def check_n_classes(n_classes: object) -> int:
    """``n_classes`` as an int ≥ 2 (FastfairError, one line, otherwise)."""
    if not _is_int(n_classes) or n_classes < 2:
        raise FastfairError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    return int(n_classes)


def _outputs(n_classes: int) -> int:
    """Width of the last layer: one logit for the binary case, C logits for C ≥ 3 classes."""
    return 1 if n_classes == 2 else n_classes


def _logits(out: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n,) logits for the binary case (the single output squeezed), (n, C) otherwise."""
    return out.squeeze(-1) if n_classes == 2 else out


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
    """Logistic regression: logit f(x) = wᵀx + b; with ``n_classes`` C ≥ 3 softmax regression, logits f(x) = Wx + b
    (W of shape (C, d), ``forward`` returns (n, C))."""

    def __init__(self, d: int, n_classes: int = 2) -> None:
        super().__init__()
        self.n_classes = check_n_classes(n_classes)
        self.linear = nn.Linear(d, _outputs(self.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _logits(self.linear(x), self.n_classes)


class MLP(nn.Module):
    """One hidden layer: logit f(x) = vᵀφ(Wx + b) + c, with W of shape (hidden, d).

    ``activation`` names φ (any of :data:`~fastfair.vocabulary.ACTIVATIONS`); ``self.hidden`` is the Linear
    layer (W, b) and ``self.out`` the output layer (vᵀ, c); with ``n_classes`` C ≥ 3 the output layer has C
    outputs and ``forward`` returns (n, C) logits.
    """

    def __init__(self, d: int, hidden: int = 16, activation: str = "tanh", n_classes: int = 2) -> None:
        super().__init__()
        self.activation = check_activation(activation)
        self.n_classes = check_n_classes(n_classes)
        self.hidden = nn.Linear(d, hidden)
        self.out = nn.Linear(hidden, _outputs(self.n_classes))

    def act(self, z: torch.Tensor) -> torch.Tensor:
        """φ(z) for the configured activation."""
        return activate(self.activation, z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _logits(self.out(self.act(self.hidden(x))), self.n_classes)


class DeepMLP(nn.Module):
    """Several hidden layers: f(x) = vᵀφ(W_L φ(⋯ φ(W_1 x + b_1) ⋯) + b_L) + c, widths ``hidden`` = (h_1, …, h_L).

    A plain ``nn.Module``: ``self.net`` is the ``nn.Sequential`` (Linear(d, h_1), φ, Linear(h_1, h_2), φ, …,
    Linear(h_L, 1)) with φ as a ``torch.nn`` module (:func:`activation_module`), and ``forward`` returns its
    output as (n,) logits. ``activation`` names φ and ``widths`` holds (h_1, …, h_L). With ``n_classes`` C ≥ 3
    the last layer is Linear(h_L, C) and ``forward`` returns (n, C) logits.
    """

    def __init__(
        self, d: int, hidden: Sequence[int] = (64, 32), activation: str = "tanh", n_classes: int = 2
    ) -> None:
        super().__init__()
        self.activation = check_activation(activation)
        self.n_classes = check_n_classes(n_classes)
        self.widths = hidden_widths(hidden)
        sizes = (d, *self.widths)
        layers: list[nn.Module] = []
        for fan_in, fan_out in pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), activation_module(activation)]
        layers.append(nn.Linear(sizes[-1], _outputs(self.n_classes)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _logits(self.net(x), self.n_classes)


def build_model(
    name: str,
    d: int,
    *,
    hidden: int | Sequence[int] = 16,
    activation: str = "tanh",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    n_classes: int = 2,
) -> nn.Module:
    """Build a named model with deterministic initial weights drawn from ``seed``.

    ``name`` is "affine" or "mlp". For "mlp", one hidden width (an int h, or a 1-sequence (h,)) gives the
    one-hidden-layer :class:`MLP`, two or more widths a :class:`DeepMLP`. The weights are torch's default
    ``nn.Linear`` initialisation drawn, layer by layer from the input, right after ``torch.manual_seed(seed)``;
    torch's global RNG is restored afterwards. ``n_classes`` = 2 (default) gives the binary model, one logit per
    row; C ≥ 3 a last layer of C outputs ((n, C) logits; "affine" is then softmax regression). The binary model's
    initial weights are the same numbers whatever ``n_classes`` path built it. Raises FastfairError for an unknown
    model or activation, bad hidden widths, or ``n_classes`` < 2.
    """
    if name not in MODELS:
        raise FastfairError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    widths = hidden_widths(hidden)
    n_classes = check_n_classes(n_classes)
    if name == "mlp":
        check_activation(activation)
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        if name == "affine":
            model: nn.Module = Affine(d, n_classes=n_classes)
        elif len(widths) == 1:
            model = MLP(d, hidden=widths[0], activation=activation, n_classes=n_classes)
        else:
            model = DeepMLP(d, hidden=widths, activation=activation, n_classes=n_classes)
    finally:
        torch.random.set_rng_state(gen_state)
    return model.to(dtype)
