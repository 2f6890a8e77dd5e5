r"""Batched input Hessian-vector products of the built-in multi-layer perceptrons, in closed form (R-operator).

For the built-in MLPs (:class:`~fastfair.models.MLP`, :class:`~fastfair.models.DeepMLP`) of any depth,

    a₀ = x,   z_l = W_l a_{l-1} + b_l,   a_l = φ(z_l)  (l = 1 … L),   f = vᵀa_L + c,   L(x) = ℓ(f, y),

the gradient and every Hessian-vector product of the loss in the input are computed from activations cached
once per batch, with plain matrix products: no autograd graph, no ``torch.func``.

Gradient (back-propagation). With ``s_l = ∂L/∂a_l`` and ``e_l = ∂L/∂z_l``:

    s_L = ℓ′ v,    e_l = φ′(z_l) ⊙ s_l,    s_{l-1} = W_lᵀ e_l,    ∇ₓL = W_1ᵀ e_1.

Hessian-vector product (Pearlmutter's R-operator: the directional derivative of the gradient along ``u``).
Forward, push the tangent through the layers: ``ż_1 = W_1 u``, ``ȧ_l = φ′(z_l) ⊙ ż_l``,
``ż_{l+1} = W_{l+1} ȧ_l``, ``ḟ = vᵀȧ_L`` (= ∇fᵀu). Backward, differentiate the gradient recursion:

    ṡ_L = ℓ″ ḟ v,    ė_l = φ″(z_l) ⊙ ż_l ⊙ s_l + φ′(z_l) ⊙ ṡ_l,    ṡ_{l-1} = W_lᵀ ė_l,    ∇²ₓL u = W_1ᵀ ė_1,

since ``ℓ′`` depends on x through f only (``d ℓ′ = ℓ″ ḟ``). The cache holds ``φ′(z_l)`` and ``κ_l = φ″(z_l) ⊙ s_l``
per layer, so one product costs 2L matrix products and about 3L element-wise operations for the whole batch:
one forward and one backward pass of the network, the least any product can cost.

The row space of the first layer. Every term above enters through ``W_1``: ``∇ₓL = W_1ᵀ e_1`` and
``∇²ₓL = W_1ᵀ (∂²L/∂z_1²) W_1``. With the thin QR factorisation ``W_1ᵀ = U R`` (U: d×k orthonormal,
k = min(d, h_1)) the gradient and the Hessian live in ``range(U)``: ``∇ₓL = U g̃`` and ``∇²ₓL = U H̃ Uᵀ`` with

    g̃ = R e_1,     H̃ ũ = R ė_1   (the forward pass starting from ż_1 = Rᵀ ũ).

When ``h_1 ≤ d/2`` the operator works in these k coordinates (``basis`` U): the trust-region subproblem in ``g̃``,
``H̃`` has the same optimal value as the full one (a step's part orthogonal to ``range(U)`` changes neither the
model nor the true loss, which sees x only through ``W_1 x``, and only spends radius), a product costs
``O(n·k·h_1)`` instead of ``O(n·d·h_1)``, and ``lift(p̃) = U p̃`` maps the reduced step to the input space. For
wider first layers it works in the input space (``basis`` None; ``basis="qr"`` forces the reduction whenever
``h_1 < d``).

C ≥ 3 classes. With f = V a_L + c (V: C×h_L) and the softmax cross-entropy, ℓ′v becomes Vᵀu with u = p - e_y,
and ℓ″ḟv becomes Vᵀ S ḟ with ḟ = V ȧ_L (C values) and S = diag(p) - ppᵀ
(:func:`fastfair.losses.softmax_logit_derivatives`):

    s_L = Vᵀu,    ṡ_L = Vᵀ S (V ȧ_L),

and everything else is as above (the cache holds S per row in place of ℓ″).

Rows are independent by construction (every operation above is per row), so no row-independence check is needed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..losses import logistic_logit_derivatives, logistic_loss, softmax_logit_derivatives
from ..models import MLP, DeepMLP, activation_module
from .activations import ANALYTIC_ACTIVATIONS, activation_derivatives
from .analytic import row_space_basis

__all__ = ["LayeredInputHessian", "has_layered_derivatives", "layered_input_hessian", "mlp_layers"]


@dataclass(frozen=True)
class _Layers:
    """The detached parameters of a built-in MLP: ``weights`` (W_1 … W_L), ``biases``, ``v`` (h_L,), ``c`` () --
    or, for C ≥ 3 outputs, ``v`` the output matrix V (C, h_L) and ``c`` (C,)."""

    weights: list[Tensor]
    biases: list[Tensor]
    v: Tensor
    c: Tensor
    activation: str


def mlp_layers(model: nn.Module) -> _Layers | None:
    """The layers of a built-in :class:`MLP` / :class:`DeepMLP` as plain tensors, or None for any other model
    (including subclasses that change ``forward`` and a ``DeepMLP`` whose ``net`` was altered)."""
    act = getattr(model, "activation", None)
    if act not in ANALYTIC_ACTIVATIONS:
        return None
    if isinstance(model, MLP):
        if type(model).forward is not MLP.forward or type(model).act is not MLP.act:
            return None
        linears = [model.hidden, model.out]
    elif isinstance(model, DeepMLP):
        if type(model).forward is not DeepMLP.forward or not isinstance(model.net, nn.Sequential):
            return None
        mods = list(model.net)
        if len(mods) < 3 or len(mods) % 2 == 0:
            return None
        linears = mods[0::2]
        kind, expected = _activation_signature(act)
        if any(type(m) is not kind or repr(m) != expected for m in mods[1::2]):
            return None
        if type(model.net).forward is not nn.Sequential.forward:
            return None
    else:
        return None
    n_classes = getattr(model, "n_classes", 2)
    outputs = 1 if n_classes == 2 else n_classes
    if not all(type(lin) is nn.Linear for lin in linears) or linears[-1].out_features != outputs:
        return None
    weights = [lin.weight.detach() for lin in linears[:-1]]
    biases = [
        lin.bias.detach() if lin.bias is not None else lin.weight.new_zeros(lin.out_features) for lin in linears[:-1]
    ]
    out = linears[-1]
    if outputs > 1:
        c = out.bias.detach() if out.bias is not None else out.weight.new_zeros(outputs)
        return _Layers(weights, biases, out.weight.detach(), c, act)
    c = out.bias.detach().reshape(()) if out.bias is not None else out.weight.new_zeros(())
    return _Layers(weights, biases, out.weight.detach().reshape(-1), c, act)


@functools.cache
def _activation_signature(activation: str) -> tuple[type, str]:
    """The type and repr of the built-in activation module (its settings, e.g. softplus's threshold)."""
    module = activation_module(activation)
    return type(module), repr(module)


def has_layered_derivatives(model: nn.Module) -> bool:
    """True for the built-in :class:`MLP` and :class:`DeepMLP` (any depth, any built-in activation)."""
    return mlp_layers(model) is not None


@dataclass(frozen=True)
class _Cache:
    """Everything a product needs, per row: ``M`` the first layer in the working coordinates (h_1, k), the
    other layers ``Ws``, ``v``, and per layer φ′(z_l) and κ_l = φ″(z_l) ⊙ s_l; ``d2`` = ℓ″ (n,). For C ≥ 3
    classes ``v`` is V (C, h_L) and ``d2`` is S = diag(p) - ppᵀ (n, C, C)."""

    M: Tensor
    Ws: list[Tensor]
    v: Tensor
    p1: list[Tensor]
    kappa: list[Tensor]
    d2: Tensor

    def rows(self, index: Tensor) -> _Cache:
        return _Cache(self.M, self.Ws, self.v, [t[index] for t in self.p1], [t[index] for t in self.kappa],
                      self.d2[index])  # fmt: skip

    def product(self, U: Tensor) -> Tensor:
        """Row i: H̃_i u_i (module docs: one forward and one backward pass of the tangent)."""
        zdots = []
        zdot = U @ self.M.T
        L = len(self.p1)
        for layer in range(L):
            zdots.append(zdot)
            adot = self.p1[layer] * zdot
            if layer + 1 < L:
                zdot = adot @ self.Ws[layer].T
        if self.v.ndim == 2:  # C outputs: ṡ_L = Vᵀ S (V ȧ_L)
            fdot = adot @ self.v.T
            sdot = torch.bmm(self.d2, fdot.unsqueeze(-1)).squeeze(-1) @ self.v
        else:
            fdot = adot @ self.v
            sdot = (self.d2 * fdot).unsqueeze(-1) * self.v
        for layer in range(L - 1, -1, -1):
            edot = torch.addcmul(self.kappa[layer] * zdots[layer], self.p1[layer], sdot)
            if layer > 0:
                sdot = edot @ self.Ws[layer - 1]
        return edot @ self.M


class LayeredInputHessian:
    r"""The per-row quadratic model of the loss of a built-in MLP, in the coordinates of ``basis``
    (module docs): ``grad`` (n, k), ``loss`` (n,), ``logits`` (n,) or (n, C), ``op(V)`` the products ``H̃_i v_i`` (n, k),
    ``lift(p)`` (n, d). Same interface as :class:`fastfair.derivatives.InputHessian` (``neg``, ``restrict``)."""

    method = "analytic"

    def __init__(self, cache: _Cache, grad: Tensor, loss: Tensor, logits: Tensor, basis: Tensor | None,
                 sign: float = 1.0) -> None:  # fmt: skip
        self._cache, self._grad, self._loss, self._logits = cache, grad, loss, logits
        self.basis, self._sign = basis, sign

    @property
    def grad(self) -> Tensor:
        """``(n, k)`` the (reduced) input gradients ``g̃`` (negated for :meth:`neg`)."""
        return self._grad if self._sign > 0 else -self._grad

    @property
    def loss(self) -> Tensor:
        return self._loss

    @property
    def logits(self) -> Tensor:
        return self._logits

    def __call__(self, V: Tensor) -> Tensor:
        """``(n, k)``: row ``i`` is ``H̃_i v_i`` (``-H̃_i v_i`` for :meth:`neg`)."""
        from ..errors import FastfairError

        if not isinstance(V, Tensor) or V.shape != self._grad.shape:
            shape = tuple(V.shape) if isinstance(V, Tensor) else type(V).__name__
            raise FastfairError(f"vectors must have shape {tuple(self._grad.shape)}, got {shape}")
        hv = self._cache.product(V.to(self._grad.dtype))
        return hv if self._sign > 0 else hv.neg_()

    def lift(self, p: Tensor) -> Tensor:
        """``(n, d)`` the input-space vectors ``U p`` of reduced vectors (``p`` itself without a basis)."""
        return p if self.basis is None else p @ self.basis.T

    def neg(self) -> LayeredInputHessian:
        """The quadratic model of ``-L`` (shares the cache)."""
        return LayeredInputHessian(self._cache, self._grad, self._loss, self._logits, self.basis, -self._sign)

    def restrict(self, index: Tensor) -> LayeredInputHessian:
        """The operator of the rows ``index`` (slices of the cache; nothing is recomputed)."""
        return LayeredInputHessian(self._cache.rows(index), self._grad[index], self._loss[index],
                                   self._logits[index], self.basis, self._sign)  # fmt: skip


@torch.no_grad()
def layered_input_hessian(model: nn.Module, x: Tensor, y: Tensor, *, basis: str = "auto") -> LayeredInputHessian:
    """The quadratic model of the loss of a built-in MLP at the batch (module docs): one forward and one
    backward pass, cached. ``basis``: ``"auto"`` works in the row space of W_1 when ``h_1 ≤ d/2`` (there the
    products' first and last matrix products at least halve, which pays for the QR factorisation and the lift
    ``U p̃``; e.g. h_1 = 128, d = 784), ``"qr"`` whenever h_1 < d, ``"none"`` in the input space. ``x`` (n, d)
    floating point, ``y`` (n,) in ``x``'s dtype (validated by the caller).

    Raises ValueError for a model that :func:`has_layered_derivatives` rejects (callers check first)."""
    layers = mlp_layers(model)
    if layers is None:
        raise ValueError(f"not a built-in MLP: {type(model).__name__}")
    like = dict(device=x.device, dtype=x.dtype)
    Ws = [w.to(**like) for w in layers.weights]
    bs = [b.to(**like) for b in layers.biases]
    v, c = layers.v.to(**like), layers.c.to(**like)
    a = x
    p1s, p2s = [], []
    for W, b in zip(Ws, bs, strict=True):
        a, p1, p2 = activation_derivatives(layers.activation, torch.addmm(b, a, W.T))
        p1s.append(p1)
        p2s.append(p2)
    if v.ndim == 2:  # C outputs: the softmax cross-entropy
        logits = torch.addmm(c, a, v.T)
        loss, u, d2 = softmax_logit_derivatives(logits, y)
        s = u @ v
    else:
        logits = torch.addmv(c, a, v)
        d1, d2 = logistic_logit_derivatives(logits, y)
        s = d1.unsqueeze(-1) * v
        loss = None
    kappa: list[Tensor] = [s] * len(Ws)
    for layer in range(len(Ws) - 1, -1, -1):
        kappa[layer] = p2s[layer] * s
        e = p1s[layer] * s
        if layer > 0:
            s = e @ Ws[layer]
    W1 = Ws[0]
    U, M = None, W1
    h1, d = W1.shape
    if (basis == "auto" and 2 * h1 <= d) or (basis == "qr" and h1 < d):
        U, R = row_space_basis(W1)
        M = R.T
    cache = _Cache(M, Ws[1:], v, p1s, kappa, d2)
    return LayeredInputHessian(cache, e @ M, logistic_loss(logits, y) if loss is None else loss, logits, U)
