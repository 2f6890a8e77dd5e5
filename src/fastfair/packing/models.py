"""Packed models: M models of one shape with stacked weights, evaluated on one batch of rows.

A packed batch holds the M models' mini-batches one after the other: n = M·k rows, rows m·k .. (m+1)·k - 1
belong to model m. Called on such a batch, a packed model returns the n logits, row i from the model that owns
it, with one batched matrix product for all models (no loop over models):

* :class:`PackedAffine`, weights w (M, d) and b (M,): f(xᵢ) = w_{m(i)}ᵀxᵢ + b_{m(i)};
* :class:`PackedMLP`, W (M, h, d), b (M, h), v (M, h), c (M,): f(xᵢ) = v_{m(i)}ᵀφ(W_{m(i)}xᵢ + b_{m(i)}) + c_{m(i)}.

Each model's row block goes through its own weights only, so the logits, their input gradients and the
gradients of Σ_m (mean loss of block m) with respect to model m's weights are those of model m alone.

A solver that drops rows as they converge evaluates the model on a subset of the batch: :meth:`PackedModel.view`
returns
a view of the same (detached) weights that evaluates rows whose owners are given explicitly; :meth:`view` gives it
for a batch, its ``rows(index)`` for a subset of that batch's rows.
:func:`pack_models` stacks plain models (:func:`fastfair.models.build_model`'s) into a packed one and
:meth:`unpack` builds plain models back with the trained weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import FastfairError
from ..models import MLP, Affine, activate


class PackedModel(nn.Module):
    """Base of the packed models: ``pack_size`` M models, and the owner of each row of a packed batch."""

    pack_size: int

    def owners(self, n: int, device: torch.device) -> Tensor:
        """(n,) the model owning each row of a packed batch of n = M·k rows: ``m`` for rows m·k .. (m+1)·k - 1."""
        if n % self.pack_size:
            raise FastfairError(f"a packed batch of {n} rows does not split into {self.pack_size} models")
        return torch.arange(self.pack_size, device=device).repeat_interleave(n // self.pack_size)

    def view(self, owner: Tensor) -> RowsOf:
        """The same models on rows owned by ``owner`` (n,) (any order, any subset of a packed batch), as a plain
        callable on the detached weights (no autograd through them; gradients with respect to x flow)."""
        return RowsOf(self, owner, {k: p.detach() for k, p in self.named_parameters()})

    @staticmethod
    def forward_rows(params: dict[str, Tensor], x: Tensor, owner: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class RowsOf:
    """A packed model evaluated on rows of given owners: ``rows(x)`` -> (n,) logits, row i by model ``owner[i]``.

    Cheap to make (no ``nn.Module``): a solver that drops converged rows makes one per iteration."""

    def __init__(self, packed: PackedModel, owner: Tensor, params: dict[str, Tensor]) -> None:
        self.packed, self.owner, self.params = packed, owner, params
        self.pack_size = packed.pack_size

    def __call__(self, x: Tensor) -> Tensor:
        return self.packed.forward_rows(self.params, x, self.owner)

    def rows(self, index: Tensor) -> RowsOf:
        """The rows ``index`` of this view's rows."""
        return RowsOf(self.packed, self.owner[index], self.params)


class PackedAffine(PackedModel):
    """M affine models f_m(x) = w_mᵀx + b_m, weights ``weight`` (M, d) and ``bias`` (M,)."""

    packed_kind = "affine"

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())
        self.pack_size = int(weight.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        """(n,) logits of a packed batch x (n, d), n = M·k: ``b_m + X_m w_m`` per block, one batched product."""
        n, d = x.shape
        if n % self.pack_size:
            raise FastfairError(f"a packed batch of {n} rows does not split into {self.pack_size} models")
        k = n // self.pack_size
        out = torch.baddbmm(self.bias[:, None, None], x.reshape(self.pack_size, k, d), self.weight[:, :, None])
        return out.reshape(n)

    @staticmethod
    def forward_rows(params: dict[str, Tensor], x: Tensor, owner: Tensor) -> Tensor:
        # every model on every row (n × M products, one matrix product like the model's own), then each row's
        # own: the same kernel as a plain model's, so the same rounding (a solver's branches do not move)
        return torch.addmm(params["bias"], x, params["weight"].T).gather(1, owner[:, None]).squeeze(1)

    def row_affine(self, like: Tensor, owner: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(w (n, d), b (n,)): row i the weights of the model owning row i of the batch ``like`` (n, d)."""
        if owner is None:
            owner = self.owners(like.shape[0], like.device)
        return self.weight[owner], self.bias[owner]

    def unpack(self, models: Sequence[nn.Module]) -> list[nn.Module]:
        """Copy model m's trained weights into ``models[m]`` (plain :class:`~fastfair.models.Affine`)."""
        with torch.no_grad():
            for m, model in enumerate(models):
                assert isinstance(model, Affine)
                model.linear.weight.copy_(self.weight[m][None, :])
                model.linear.bias.copy_(self.bias[m : m + 1])
        return list(models)


class PackedMLP(PackedModel):
    """M one-hidden-layer MLPs f_m(x) = v_mᵀφ(W_m x + b_m) + c_m with one activation φ."""

    packed_kind = "mlp"

    def __init__(self, W: Tensor, b: Tensor, v: Tensor, c: Tensor, activation: str) -> None:
        super().__init__()
        self.W = nn.Parameter(W.detach().clone())  # (M, h, d)
        self.b = nn.Parameter(b.detach().clone())  # (M, h)
        self.v = nn.Parameter(v.detach().clone())  # (M, h)
        self.c = nn.Parameter(c.detach().clone())  # (M,)
        self.activation = activation
        self.pack_size = int(W.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        n, d = x.shape
        if n % self.pack_size:
            raise FastfairError(f"a packed batch of {n} rows does not split into {self.pack_size} models")
        k = n // self.pack_size
        z = torch.baddbmm(self.b[:, None, :], x.reshape(self.pack_size, k, d), self.W.transpose(1, 2))
        out = torch.baddbmm(self.c[:, None, None], activate(self.activation, z), self.v[:, :, None])
        return out.reshape(n)

    @staticmethod
    def forward_rows(params: dict[str, Tensor], x: Tensor, owner: Tensor, activation: str = "tanh") -> Tensor:
        # as PackedAffine.forward_rows: all models' products, then each row's own
        W, b, v, c = params["W"], params["b"], params["v"], params["c"]
        M, h, d = W.shape
        z = torch.addmm(b.reshape(M * h), x, W.reshape(M * h, d).T).reshape(-1, M, h)
        z = z.gather(1, owner[:, None, None].expand(-1, 1, h)).squeeze(1)  # (n, h)
        return torch.addmm(c, activate(activation, z), v.T).gather(1, owner[:, None]).squeeze(1)

    def view(self, owner: Tensor) -> RowsOf:
        params = {k: p.detach() for k, p in self.named_parameters()}
        return _MLPRows(self, owner, params)

    def unpack(self, models: Sequence[nn.Module]) -> list[nn.Module]:
        """Copy model m's trained weights into ``models[m]`` (plain one-hidden-layer :class:`~fastfair.models.MLP`)."""
        with torch.no_grad():
            for m, model in enumerate(models):
                assert isinstance(model, MLP)
                model.hidden.weight.copy_(self.W[m])
                model.hidden.bias.copy_(self.b[m])
                model.out.weight.copy_(self.v[m][None, :])
                model.out.bias.copy_(self.c[m : m + 1])
        return list(models)


def packable_model(model: nn.Module) -> bool:
    """True for the models a pack can hold: :class:`Affine`, and the one-hidden-layer :class:`MLP` (with
    biases, their own ``forward``)."""
    if type(model) is Affine:
        return model.linear.bias is not None
    if type(model) is MLP:
        return model.hidden.bias is not None and model.out.bias is not None
    return False


def pack_models(models: Sequence[nn.Module]) -> PackedAffine | PackedMLP:
    """Stack plain models of one kind and shape into one packed model (their weights, copied)."""
    if not models or not all(packable_model(m) for m in models):
        raise FastfairError("only affine and one-hidden-layer MLP models of one shape can be packed")
    first = models[0]
    if isinstance(first, Affine):
        if not all(isinstance(m, Affine) and m.linear.weight.shape == first.linear.weight.shape for m in models):
            raise FastfairError("the models of a pack must have one shape")
        weight = torch.cat([m.linear.weight.detach() for m in models])
        bias = torch.cat([m.linear.bias.detach() for m in models])
        return PackedAffine(weight, bias)
    shapes = {(type(m), m.hidden.weight.shape, m.activation) for m in models}  # type: ignore[union-attr]
    if len(shapes) != 1:
        raise FastfairError("the models of a pack must have one shape and one activation")
    return PackedMLP(
        torch.stack([m.hidden.weight.detach() for m in models]),  # type: ignore[union-attr]
        torch.stack([m.hidden.bias.detach() for m in models]),  # type: ignore[union-attr]
        torch.stack([m.out.weight.detach()[0] for m in models]),  # type: ignore[union-attr]
        torch.cat([m.out.bias.detach() for m in models]),  # type: ignore[union-attr]
        first.activation,  # type: ignore[arg-type]
    )


class _MLPRows(RowsOf):
    """:class:`RowsOf` of a :class:`PackedMLP` (its activation)."""

    def __call__(self, x: Tensor) -> Tensor:
        return PackedMLP.forward_rows(self.params, x, self.owner, self.packed.activation)  # type: ignore[attr-defined]

    def rows(self, index: Tensor) -> RowsOf:
        return _MLPRows(self.packed, self.owner[index], self.params)
