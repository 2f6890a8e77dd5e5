"""Tests of :mod:`fastfair.derivatives.hvp`: per-row input gradients and Hessian-vector products of the logistic loss.

Oracle: ``torch.func.hessian`` / ``torch.func.grad`` of the loss of *one* row at a time (float64), which cannot
see other rows at all, and the loss formula ℓ(z, y) = softplus(z) - y·z evaluated directly.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, hessian

from fastfair.derivatives import METHODS, InputHessian, check_row_independent, input_hessian
from fastfair.errors import FastfairError
from fastfair.trs import solve_trs, solve_trs_krylov

# torch.func's forward-mode AD loads its decompositions through the deprecated torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


class Custom(nn.Module):
    """A row-wise model with a skip connection, a product of features and (n, 1) output."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.a = nn.Linear(d, 6)
        self.b = nn.Linear(d, 6)
        self.out = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.a(x)) * torch.sigmoid(self.b(x)) + x[:, :1])


def models(d: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    eval_bn = nn.Sequential(nn.Linear(d, 8), nn.BatchNorm1d(8), nn.Softplus(), nn.Dropout(0.5), nn.Linear(8, 1))
    with torch.no_grad():  # non-trivial running statistics
        eval_bn[1].running_mean.uniform_(-1, 1)
        eval_bn[1].running_var.uniform_(0.5, 2)
    eval_bn.eval()
    return {
        "tanh-mlp-3": nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 1)),
        "gelu-layernorm": nn.Sequential(nn.Linear(d, 7), nn.LayerNorm(7), nn.GELU(), nn.Linear(7, 1)),
        "batchnorm-dropout-eval": eval_bn,
        "custom": Custom(d),
    }


def per_row_oracle(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Per-row loss, gradient and Hessian, one row at a time (no batch at all)."""
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def row_loss(xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        z = functional_call(model, (params, buffers), (xi.unsqueeze(0),)).reshape(())
        return torch.nn.functional.softplus(z) - yi * z

    losses, grads, hessians = [], [], []
    for xi, yi in zip(x, y, strict=True):
        losses.append(row_loss(xi, yi))
        grads.append(grad(row_loss)(xi, yi))
        hessians.append(hessian(row_loss)(xi, yi))
    return torch.stack(losses), torch.stack(grads), torch.stack(hessians)


def batch(n: int = 9, d: int = 5):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = (torch.rand(n, generator=gen) < 0.5).to(torch.float64)
    V = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x, y, V


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["tanh-mlp-3", "gelu-layernorm", "batchnorm-dropout-eval", "custom"])
def test_products_match_the_per_row_hessian(name: str, method: str) -> None:
    model = models(5)[name].double()
    x, y, V = batch()
    loss, g, Hs = per_row_oracle(model, x, y)
    op = input_hessian(model, x, y, method=method)
    torch.testing.assert_close(op.loss, loss, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(op.grad, g, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(op(V), (Hs @ V.unsqueeze(-1)).squeeze(-1), rtol=1e-10, atol=1e-13)
    # a second product reuses the same graph
    torch.testing.assert_close(op(2 * V), 2 * (Hs @ V.unsqueeze(-1)).squeeze(-1), rtol=1e-10, atol=1e-13)


def test_the_two_methods_agree_in_float32() -> None:
    model = models(30)["tanh-mlp-3"]
    gen = torch.Generator().manual_seed(2)
    x, V = torch.randn(64, 30, generator=gen), torch.randn(64, 30, generator=gen)
    y = (torch.rand(64, generator=gen) < 0.5).float()
    a = input_hessian(model, x, y, method="double-backward")(V)
    b = input_hessian(model, x, y, method="jvp")(V)
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_neg_and_restrict() -> None:
    model = models(5)["tanh-mlp-3"].double()
    x, y, V = batch()
    op = input_hessian(model, x, y)
    neg = op.neg()
    torch.testing.assert_close(neg.grad, -op.grad)
    torch.testing.assert_close(neg(V), -op(V))
    torch.testing.assert_close(neg.loss, op.loss)
    index = torch.tensor([1, 4, 7])
    sub = neg.restrict(index)
    assert isinstance(sub, InputHessian)
    torch.testing.assert_close(sub.grad, neg.grad[index])
    torch.testing.assert_close(sub(V[index]), neg(V)[index], rtol=1e-12, atol=1e-15)


def test_parameters_are_left_alone() -> None:
    model = models(5)["tanh-mlp-3"].double()
    x, y, V = batch()
    input_hessian(model, x, y)(V)
    input_hessian(model, x, y, method="jvp")(V)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_output_independent_of_the_input_gives_zeros() -> None:
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Parameter(torch.tensor([0.3], dtype=torch.float64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c.expand(x.shape[0])

    x, y, V = batch()
    for method in METHODS:
        op = input_hessian(Constant(), x, y, method=method)
        assert torch.equal(op.grad, torch.zeros_like(x))
        assert torch.equal(op(V), torch.zeros_like(V))


# ------------------------------------------------------------------------------------------------------------
# Models whose rows interact
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer", [nn.BatchNorm1d(8), nn.Dropout(0.2), nn.AlphaDropout(0.2)], ids=["batchnorm", "dropout", "alpha"]
)
def test_training_mode_batchnorm_and_dropout_are_refused(layer: nn.Module) -> None:
    model = nn.Sequential(nn.Linear(5, 8), layer, nn.Tanh(), nn.Linear(8, 1)).double()
    model.train()
    x, y, _ = batch()
    with pytest.raises(FastfairError, match=r"training mode.*model\.eval\(\)") as info:
        input_hessian(model, x, y)
    assert "\n" not in str(info.value)
    with pytest.raises(FastfairError):
        check_row_independent(model)
    model.eval()
    input_hessian(model, x, y)  # eval mode qualifies


class BatchCentred(nn.Module):
    """Subtracts the batch mean: every row's output depends on every row's input."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.lin(x))
        return self.out(h - h.mean(0, keepdim=True))


def test_runtime_probe_catches_row_mixing() -> None:
    x, y, _ = batch()
    mixing = BatchCentred(5).double()
    op = input_hessian(mixing, x, y)  # no layer the structural check knows about
    with pytest.raises(FastfairError, match="rows interact") as info:
        op.verify_rows()
    assert "\n" not in str(info.value)
    with pytest.raises(FastfairError, match="rows interact"):
        input_hessian(mixing, x, y, verify=True)
    for model in models(5).values():
        input_hessian(model.double(), x, y, verify=True)  # row-wise models pass


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((torch.zeros(3, 5), torch.zeros(3)), {"method": "hessian"}, "unknown method"),
        ((torch.zeros(5), torch.zeros(5)), {}, "shape"),
        ((torch.zeros(3, 5, dtype=torch.int64), torch.zeros(3)), {}, "floating-point"),
        ((torch.zeros(3, 5), torch.zeros(4)), {}, "labels"),
    ],
)
def test_bad_input_raises_a_one_line_error(args, kwargs, match) -> None:
    model = nn.Linear(5, 1)
    with pytest.raises(FastfairError, match=match) as info:
        input_hessian(model, *args, **kwargs)
    assert "\n" not in str(info.value)


def test_model_with_the_wrong_output_shape_and_wrong_vectors() -> None:
    x, y, V = batch()
    with pytest.raises(FastfairError, match="logits"):
        input_hessian(nn.Linear(5, 2).double(), x, y)
    op = input_hessian(nn.Linear(5, 1).double(), x, y)
    with pytest.raises(FastfairError, match="shape of the inputs"):
        op(V[:3])
    with pytest.raises(FastfairError):
        input_hessian("not a model", x, y)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# With the Krylov solver
# ------------------------------------------------------------------------------------------------------------


def test_krylov_trs_on_a_model_matches_the_dense_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Maximising the loss's quadratic model: the Krylov solver on the operator equals the dense exact solver on
    the per-row Hessians (torch.func), including the restricted operator once most rows have finished."""
    restricted: list[int] = []
    original = InputHessian.restrict

    def counting(self: InputHessian, index: torch.Tensor) -> InputHessian:
        restricted.append(index.numel())
        return original(self, index)

    monkeypatch.setattr(InputHessian, "restrict", counting)
    model = models(12)["tanh-mlp-3"].double()
    gen = torch.Generator().manual_seed(3)
    x = 2 * torch.randn(40, 12, generator=gen, dtype=torch.float64)
    y = (torch.rand(40, generator=gen) < 0.5).to(torch.float64)
    _, g, Hs = per_row_oracle(model, x, y)
    r = torch.linspace(0.05, 3.0, 40, dtype=torch.float64)
    op = input_hessian(model, x, y).neg()
    res = solve_trs_krylov(op.grad, op, r)
    ref = solve_trs(-g, -Hs, r)
    q = (-g * res.step).sum(-1) - 0.5 * (res.step * (Hs @ res.step.unsqueeze(-1)).squeeze(-1)).sum(-1)
    size = torch.linalg.vector_norm(g, dim=-1) * r + torch.linalg.matrix_norm(Hs, 2) * r * r
    assert ((q - ref.objective).abs() <= 1e-9 * torch.maximum(ref.objective.abs(), 1e-3 * size)).all()
    assert (res.certificate().max_violation() <= 1e-9).all()
    assert restricted and restricted[0] <= 20  # the slow rows ran on a restricted operator
