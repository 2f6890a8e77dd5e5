"""Built-in models: deterministic construction from the seed, forward passes against hand-built references,
the activations, and the validation of hidden widths."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from scipy.special import erf, expit
from torch import nn

from fastfair.errors import FastfairError
from fastfair.models import MLP, Affine, DeepMLP, build_model
from fastfair.vocabulary import ACTIVATIONS, PIECEWISE_LINEAR_ACTIVATIONS, SOLVERS

#: φ in float64 numpy, written from the definitions (softplus as torch's: linear above 20).
NUMPY_ACTIVATIONS = {
    "tanh": np.tanh,
    "sigmoid": expit,
    "softplus": lambda z: np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20)))),
    "gelu": lambda z: z * 0.5 * (1 + erf(z / np.sqrt(2))),
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
}


def _numpy_forward(layers: list[nn.Linear], activation: str, x: np.ndarray) -> np.ndarray:
    """f(x) = vᵀφ(W_L φ(⋯) + b_L) + c in float64 numpy from the Linear layers' weights."""
    phi = NUMPY_ACTIVATIONS[activation]
    h = x
    for i, layer in enumerate(layers):
        W, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
        h = h @ W.T + b
        if i < len(layers) - 1:
            h = phi(h)
    return h[:, 0]


def test_vocabulary_names():
    assert ACTIVATIONS == ("tanh", "sigmoid", "softplus", "gelu", "relu", "leaky_relu")
    assert PIECEWISE_LINEAR_ACTIVATIONS == ("relu", "leaky_relu")
    assert SOLVERS == ("none", "auto", "trs", "trs-paper", "pgd-paper", "pgd", "random")


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
@pytest.mark.parametrize("hidden", [16, (16,), [5]])
@pytest.mark.parametrize("seed", [0, 7])
def test_one_hidden_layer_keeps_its_seeded_weights(activation, hidden, seed):
    """Same seed, same weights as the construction the MLP has always had: Linear(d, h) then Linear(h, 1)
    drawn right after torch.manual_seed(seed)."""
    d, h = 5, hidden if isinstance(hidden, int) else hidden[0]
    torch.manual_seed(seed)
    first, out = nn.Linear(d, h), nn.Linear(h, 1)
    torch.manual_seed(12345)  # build_model must not depend on (or disturb) the global RNG state
    state = torch.random.get_rng_state()
    model = build_model("mlp", d, hidden=hidden, activation=activation, seed=seed)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert type(model) is MLP and model.activation == activation
    assert torch.equal(model.hidden.weight, first.weight) and torch.equal(model.hidden.bias, first.bias)
    assert torch.equal(model.out.weight, out.weight) and torch.equal(model.out.bias, out.bias)


def test_affine_keeps_its_seeded_weights():
    torch.manual_seed(3)
    ref = nn.Linear(4, 1)
    model = build_model("affine", 4, seed=3, dtype=torch.float64)
    assert type(model) is Affine and model.linear.weight.dtype == torch.float64
    assert torch.equal(model.linear.weight, ref.weight.double())
    assert torch.equal(model.linear.bias, ref.bias.double())


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_forward_matches_numpy(activation):
    model = build_model("mlp", 4, hidden=6, activation=activation, seed=1, dtype=torch.float64)
    with torch.no_grad():
        for param in model.parameters():  # spread the pre-activations over both sides of every kink
            param.mul_(8)
    x = np.random.default_rng(0).normal(size=(50, 4))
    got = model(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(got, _numpy_forward([model.hidden, model.out], activation, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_deep_mlp_against_hand_built_sequential(activation):
    """DeepMLP computes the same logits as an nn.Sequential of the same layers with the same weights."""
    d, widths = 5, (7, 6, 3)
    model = build_model("mlp", d, hidden=widths, activation=activation, seed=2, dtype=torch.float64)
    assert type(model) is DeepMLP and model.widths == widths and model.activation == activation
    acts = {
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "softplus": nn.Softplus,
        "gelu": nn.GELU,
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,
    }
    sizes = (d, *widths, 1)
    layers = [nn.Linear(a, b).double() for a, b in pairwise(sizes)]
    own = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in own] == list(pairwise(sizes))
    with torch.no_grad():
        for mine, ref in zip(own, layers, strict=True):
            mine.weight.mul_(4)  # make the pre-activations cross the kinks
            ref.weight.copy_(mine.weight)
            ref.bias.copy_(mine.bias)
    modules: list[nn.Module] = []
    for layer in layers[:-1]:
        modules += [layer, acts[activation]()]
    reference = nn.Sequential(*modules, layers[-1])
    x = torch.randn(40, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = model(x)
    assert got.shape == (40,)
    torch.testing.assert_close(got, reference(x)[:, 0], rtol=0, atol=0)
    np.testing.assert_allclose(
        got.detach().numpy(), _numpy_forward(layers, activation, x.numpy()), rtol=1e-12, atol=1e-12
    )


def test_deep_mlp_weights_come_from_the_seed():
    torch.manual_seed(4)
    ref = [nn.Linear(3, 8), nn.Linear(8, 2), nn.Linear(2, 1)]
    model = build_model("mlp", 3, hidden=[8, 2], activation="relu", seed=4)
    own = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for mine, theirs in zip(own, ref, strict=True):
        assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)
    other = build_model("mlp", 3, hidden=(8, 2), activation="relu", seed=5)
    assert not torch.equal(other.net[0].weight, model.net[0].weight)
    assert isinstance(model.net[1], nn.ReLU)


def test_leaky_relu_has_torch_default_slope():
    model = build_model("mlp", 2, hidden=(3, 3), activation="leaky_relu")
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {nn.LeakyReLU().negative_slope} == {0.01}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_second_derivative_vanishes_exactly_for_the_piecewise_linear_activations(activation):
    """φ″ from autograd, at points away from 0: identically zero for relu and leaky_relu, not for the others."""
    model = MLP(1, hidden=1, activation=activation).double()
    z = torch.linspace(-3, 3, 60, dtype=torch.float64) + 0.013  # never exactly at the kink
    second = torch.func.vmap(torch.func.grad(torch.func.grad(lambda t: model.act(t))))(z)
    if activation in PIECEWISE_LINEAR_ACTIVATIONS:
        assert bool((second == 0).all())
    else:
        assert float(second.abs().max()) > 1e-2


def test_integer_like_widths_are_accepted():
    assert type(build_model("mlp", 3, hidden=np.int64(4))) is MLP
    assert build_model("mlp", 3, hidden=(np.int64(4), 2)).widths == (4, 2)


@pytest.mark.parametrize("hidden", [0, -3, (), [], (8, 0), 2.5, True, "16", (8, "a"), None, (4.0, 2)])
def test_bad_hidden_widths_are_one_line_errors(hidden):
    with pytest.raises(FastfairError, match="hidden widths must be positive integers") as info:
        build_model("mlp", 3, hidden=hidden)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "build", [lambda: build_model("mlp", 3, activation="swish"), lambda: DeepMLP(3, activation="")]
)
def test_unknown_activation(build):
    with pytest.raises(FastfairError, match="unknown activation"):
        build()


def test_unknown_model():
    with pytest.raises(FastfairError, match="unknown model 'cnn'"):
        build_model("cnn", 3)
