r"""Per-row input gradients and Hessian-vector products of the classification loss, for any row-wise model.

For a batch ``X`` (``(n, d)``) with labels ``y``, a model ``f`` and the per-row loss
``L_i(x_i) = ℓ(f(X)_i, y_i)`` (:func:`fastfair.losses.classification_loss`: the logistic loss of one logit per
row, or the softmax cross-entropy of C logits per row), the TRS needs, per row, the input
gradient ``g_i = ∇_{x_i} L_i`` and products ``H_i v_i`` with the input Hessian ``H_i = ∇²_{x_i} L_i``.

Why one backward pass serves every row
--------------------------------------
If **row i of the output depends on row i of the input only** (``∂f(X)_i/∂x_j = 0`` for ``j ≠ i``), then for
the summed loss ``S(X) = Σ_i L_i`` the block structure is diagonal:

    ``∇_X S = [g_1; …; g_n]``,       ``∇²_X S = blockdiag(H_1, …, H_n)``,

so one backward pass of ``S`` gives every row's gradient, and for ``V = [v_1; …; v_n]``

    ``∇_X ⟨∇_X S, V⟩ = (∇²_X S) V = [H_1 v_1; …; H_n v_n]``:

one more backward pass (double backward, ``method="double-backward"``: differentiate the graph of ``∇_X S``
kept from the first pass) or one forward-mode pass over the gradient computation (forward-over-reverse,
``method="jvp"``: ``torch.func.jvp`` of ``X ↦ ∇_X S``) gives all ``n`` products at once. Double backward
builds the graph of the gradient once per batch and then costs one backward pass per product;
forward-over-reverse re-runs the forward and backward pass (with tangents) for every product. On the 3-layer
tanh MLP (widths 128, 64, 1; d = 784; n = 4096; float32; one CPU thread) double backward was the faster, so it
is the default.

Which models qualify
--------------------
Any ``nn.Module`` mapping ``(n, d)`` inputs to ``n`` logits (shape ``(n,)`` or ``(n, 1)``), or to ``(n, C)``
logits of C classes, whose rows do not
interact: linear and convolutional layers, element-wise activations, per-sample normalisation (``LayerNorm``,
``GroupNorm``, ``InstanceNorm``), and ``BatchNorm`` / ``Dropout`` **in eval mode** (a per-row affine map and the
identity). They do **not** qualify: ``BatchNorm`` in training mode (the batch statistics couple all rows: the
products above would contain cross terms ``∂²S/∂x_i∂x_j`` and the "gradient" rows would not be ``∇L_i``),
``Dropout`` in training mode (a random mask: the loss is not a fixed function of ``x``), and anything that
reduces or attends over the batch axis. :func:`input_hessian` refuses models with BatchNorm or Dropout layers
in training mode (one-line :class:`~fastfair.errors.FastfairError`: call ``model.eval()``); row mixing of any
other kind is caught by the optional runtime probe :meth:`InputHessian.verify_rows` (one extra backward pass
and one product).

The model is called with detached parameters and buffers (``torch.func.functional_call``): nothing reaches
the parameters' ``.grad`` and no graph through the parameters is built.

The built-in MLPs (:class:`~fastfair.models.MLP`, :class:`~fastfair.models.DeepMLP`) do not need autograd at all:
:mod:`.layered` computes their gradient and products in closed form from activations cached once per batch (one
forward and one backward pass of the tangent per product, in the row space of the first layer when it is
narrower than the input). This module serves every other row-wise ``nn.Module``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import FastfairError
from ..losses import classification_loss
from .analytic import check_inputs, model_logits

__all__ = ["METHODS", "InputHessian", "check_row_independent", "input_hessian"]

METHODS = ("double-backward", "jvp")

#: Layers whose training-mode behaviour couples the rows of a batch (or randomises the function).
_ROW_COUPLING_IN_TRAINING: tuple[type[nn.Module], ...] = tuple(
    cls
    for cls in (
        getattr(nn, name, None)
        for name in (
            "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm",
            "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d",
            "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
        )
    )
    if cls is not None
)  # fmt: skip


def check_row_independent(model: nn.Module) -> None:
    """Refuse (FastfairError) a model with a BatchNorm or Dropout layer in training mode (see module docs)."""
    if not isinstance(model, nn.Module):
        raise FastfairError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, module in model.named_modules():
        if module.training and isinstance(module, _ROW_COUPLING_IN_TRAINING):
            where = f" ({name})" if name else ""
            raise FastfairError(
                f"{type(module).__name__}{where} in training mode couples the rows of a batch (or randomises "
                "the loss), so per-row input Hessians are not defined; call model.eval() first"
            )


class _Graph:
    """The differentiable computation shared by an :class:`InputHessian` and its negation (internal)."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, method: str) -> None:
        from torch.func import functional_call

        self.model, self.x, self.y, self.method = model, x, y, method
        params = {k: p.detach() for k, p in model.named_parameters()}
        buffers = {k: b.detach() for k, b in model.named_buffers()}

        def forward(t: Tensor) -> Tensor:
            return model_logits(functional_call(model, (params, buffers), (t,)), t.shape[0])

        self.forward = forward
        self.product: Callable[[Tensor], Tensor]
        with torch.enable_grad():
            xv = x.detach().requires_grad_(True)
            logits = forward(xv)
            loss = classification_loss(logits, y)
            g = None
            if loss.requires_grad:  # False when the output does not depend on x (then g = 0, H = 0)
                create = method == "double-backward"
                (g,) = torch.autograd.grad(loss.sum(), xv, create_graph=create, allow_unused=True)
        if g is None:
            g = torch.zeros_like(x)
        self.logits, self.loss, self.grad = logits.detach(), loss.detach(), g.detach()
        if method == "double-backward":
            graph = g if g.requires_grad else None

            def product(v: Tensor) -> Tensor:
                if graph is None:
                    return torch.zeros_like(v)
                with torch.enable_grad():
                    (hv,) = torch.autograd.grad(graph, xv, grad_outputs=v, retain_graph=True, allow_unused=True)
                return torch.zeros_like(v) if hv is None else hv

        else:
            from torch.func import grad, jvp

            x0 = x.detach()
            grad_fn = grad(lambda t: classification_loss(forward(t), y).sum())

            def product(v: Tensor) -> Tensor:
                with warnings.catch_warnings():
                    # the first forward-mode call loads decompositions through the deprecated torch.jit.script
                    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
                    return jvp(grad_fn, (x0,), (v,))[1]

        self.product = product


class InputHessian:
    r"""The per-row quadratic model of the classification loss in the input: ``grad`` (``(n, d)``), ``loss``
    (``(n,)``) and ``logits`` (``(n,)`` or ``(n, C)``), and ``H_i v_i`` for a batch of vectors by calling the
    object: ``op(V)`` (``(n, d)``).

    Built by :func:`input_hessian`. ``op.neg()`` is the model of ``-L`` (gradient ``-g``, products ``-Hv``),
    the form :func:`fastfair.trs.solve_trs_krylov` needs to *maximise* the loss; ``op.restrict(index)``
    is the operator of the rows ``index`` only (a new graph on those rows, so later products cost in
    proportion to them). Products carry no autograd graph; with ``method="double-backward"`` the object holds
    the autograd graph of the gradient (the batch's activations) until it is dropped.
    """

    def __init__(self, graph: _Graph, sign: float = 1.0) -> None:
        self._graph = graph
        self._sign = sign

    @property
    def grad(self) -> Tensor:
        """``(n, d)`` the per-row input gradients ``∇_{x_i} L_i`` (negated for :meth:`neg`)."""
        g = self._graph.grad
        return g if self._sign > 0 else -g

    @property
    def loss(self) -> Tensor:
        """``(n,)`` the per-row loss ``ℓ(f(x_i), y_i)`` (always the loss itself, also for :meth:`neg`)."""
        return self._graph.loss

    @property
    def logits(self) -> Tensor:
        """``(n,)`` (binary) or ``(n, C)`` the model's logits at ``x``."""
        return self._graph.logits

    @property
    def method(self) -> str:
        return self._graph.method

    def __call__(self, V: Tensor) -> Tensor:
        """``(n, d)``: row ``i`` is ``H_i v_i`` (``-H_i v_i`` for :meth:`neg`)."""
        x = self._graph.x
        if not isinstance(V, Tensor) or V.shape != x.shape:
            shape = tuple(V.shape) if isinstance(V, Tensor) else type(V).__name__
            raise FastfairError(f"vectors must have the shape of the inputs {tuple(x.shape)}, got {shape}")
        hv = self._graph.product(V.to(dtype=x.dtype, device=x.device)).detach()
        return hv if self._sign > 0 else hv.neg_()

    def neg(self) -> InputHessian:
        """The quadratic model of ``-L`` (shares the graph; nothing is recomputed)."""
        return InputHessian(self._graph, -self._sign)

    def restrict(self, index: Tensor) -> InputHessian:
        """The operator of the rows ``index`` of this batch (a new graph on ``x[index]``)."""
        gr = self._graph
        graph = _Graph(gr.model, gr.x[index], gr.y[index], gr.method)
        return InputHessian(graph, self._sign)

    def verify_rows(self, *, seed: int = 0) -> None:
        """Runtime probe that the model's rows do not interact (FastfairError if they do).

        A random half ``S`` of the rows gets random weights ``w`` (first order: the gradient of ``Σ_{i∈S}
        w_i L_i``) and random vectors (second order: one product); for a row-wise model every row outside ``S``
        must then be exactly zero in both. Costs one backward pass and one product.
        """
        gr = self._graph
        x, y = gr.x, gr.y
        n = x.shape[0]
        if n < 2:
            return
        gen = torch.Generator(device=x.device)
        gen.manual_seed(seed)
        inside = torch.rand(n, generator=gen, device=x.device) < 0.5
        inside[0], inside[1] = True, False
        w = torch.randn(n, generator=gen, device=x.device, dtype=x.dtype) * inside
        V = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype) * inside.unsqueeze(-1)
        with torch.enable_grad():
            xv = x.detach().requires_grad_(True)
            loss = classification_loss(gr.forward(xv), y)
            first = None
            if loss.requires_grad:
                (first,) = torch.autograd.grad(loss, xv, grad_outputs=w, allow_unused=True)
        second = gr.product(V)
        for name, t in (("gradient", first), ("Hessian-vector product", second)):
            if t is not None and bool((t[~inside] != 0).any()):
                raise FastfairError(
                    f"the model's rows interact: the {name} of some rows depends on other rows' inputs "
                    "(a layer that mixes the batch, e.g. batch statistics); per-row input Hessians are not defined"
                )


def input_hessian(
    model: nn.Module, x: Tensor, y: Tensor, *, method: str = "double-backward", verify: bool = False
) -> InputHessian:
    """Per-row input gradient, loss and Hessian-vector products of the classification loss (see module docs).

    Args:
        model: an ``nn.Module`` mapping ``(n, d)`` to ``n`` logits, or to ``(n, C)`` logits, whose rows do not
            interact.
        x: ``(n, d)`` floating-point inputs; ``y``: ``(n,)`` labels in [0, 1] (one logit) or class codes 0..C-1.
        method: ``"double-backward"`` (default) or ``"jvp"`` (forward-over-reverse); same products.
        verify: also run the runtime row-independence probe (:meth:`InputHessian.verify_rows`).

    Raises:
        FastfairError: a malformed batch, an unknown method, a model with BatchNorm/Dropout in training mode,
            a model that does not return one logit (or C logits) per row, or (``verify``) a model whose rows interact.
    """
    if method not in METHODS:
        raise FastfairError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    check_row_independent(model)
    x, y = check_inputs(x, y)
    op = InputHessian(_Graph(model, x, y, method))
    if verify:
        op.verify_rows()
    return op
