"""The cases of the inner-maximiser comparison: the models, the contenders, the batch, and its memory.

* :func:`bench_model` -- a model by name: ``affine``, ``mlp`` (one hidden layer) or a deeper
  ``mlp-<widths>-<activation>`` such as ``mlp-128-64-tanh`` (:data:`DEEP_MODELS`), with the case defaults of
  its kind (:data:`SHALLOW_DEFAULTS`, :data:`DEEP_DEFAULTS`).
* :class:`SolverSpec` and :func:`default_solvers` -- the contenders: ``trs``, a ladder of tuned ``pgd``
  settings (:func:`pgd_ladder`), ``pgd-paper``, ``random`` and ``auto``.
* :func:`make_case` -- one synthetic, standardised batch x ~ N(0, I) with labels from a planted logistic teacher
  (:func:`synthetic_batch`, seeded) and one model built from a seed and pretrained non-robustly on it, so that
  the weights are not at their initialisation. Deterministic: the same arguments rebuild the same case.
* :func:`estimated_case_bytes` -- a rough peak memory of one case, to refuse plans that cannot fit.
* :func:`mean_loss` and :func:`relative_gap` -- the objective (mean per-sample loss, accumulated in float64)
  and the relative gap (objective - reference) / |reference| that the records report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import check_setting, hidden_widths
from ..errors import FastfairError, require
from ..inner import make_inner
from ..models import build_model
from ..training import DTYPES, TrainConfig, train_arrays
from .scaling import METHODS, estimated_bytes

#: The deeper models of the default plan: 3-layer MLPs (widths 128, 64, 1), smooth and piecewise linear.
DEEP_MODELS: tuple[str, ...] = ("mlp-128-64-tanh", "mlp-128-64-relu")
#: Defaults of the cases of the one-hidden-layer models (and affine): input dimensions, radii, dtype.
SHALLOW_DEFAULTS: dict[str, Any] = {"dims": (5, 100), "radii": (0.1,), "dtype": "float64"}
#: Defaults of the cases of deeper models: images (d = 784) and wide tabular data (d = 100), r = 0.5 in
#: standardised units, float32 (what training uses).
DEEP_DEFAULTS: dict[str, Any] = {"dims": (100, 784), "radii": (0.5,), "dtype": "float32"}



@dataclass(frozen=True)
class BenchModel:
    """A model of the comparison, by its name (:func:`bench_model`), with the settings that build it."""

    name: str
    model: str
    hidden: int | tuple[int, ...] | None = None
    activation: str | None = None

    @property
    def deep(self) -> bool:
        """Two or more hidden layers."""
        return self.hidden is not None and len(hidden_widths(self.hidden)) > 1

    def defaults(self) -> dict[str, Any]:
        """The dimensions, radii and dtype of its cases unless the plan names them."""
        return DEEP_DEFAULTS if self.deep else SHALLOW_DEFAULTS


def bench_model(name: str, hidden: int | tuple[int, ...] = 16) -> BenchModel:
    """Parse a model name of the comparison.

    ``affine``; ``mlp`` (one hidden layer of width ``hidden``, tanh); or ``mlp-W1-...-Wk[-ACT]``: an MLP with
    hidden widths W1, ..., Wk (first layer first) and activation ACT (default tanh), e.g. ``mlp-128-64-relu``
    (:data:`DEEP_MODELS`). The parts are checked as the training settings are (:func:`fastfair.config.check_setting`):
    an unknown family, width or activation raises :class:`FastfairError` with the message of that setting.
    """
    require(isinstance(name, str), f"a benchmark model must be a name such as 'mlp-128-64-tanh', got {name!r}")
    family, *parts = name.split("-")
    family = check_setting("model", family)
    if family == "affine":
        require(not parts, f"model {name!r}: the affine model takes no widths or activation")
        return BenchModel(name, "affine")
    activation = "tanh"
    if parts and not parts[-1].isdigit():
        activation = check_setting("activation", parts.pop(), name=f"model {name!r}")
    widths: Any = hidden
    if parts:
        try:
            widths = [int(p) for p in parts]
        except ValueError:
            raise FastfairError(
                f"model {name!r}: expected mlp-W1-...-Wk-ACT with integer widths, e.g. mlp-128-64-tanh"
            ) from None
    return BenchModel(name, "mlp", check_setting("hidden", widths, name=f"model {name!r}: hidden"), activation)


@dataclass(frozen=True)
class SolverSpec:
    """One contender: a solver name of :func:`fastfair.inner.make_inner`, its options, and a short label."""

    solver: str
    options: dict[str, Any] = field(default_factory=dict)
    setting: str = ""

    @property
    def label(self) -> str:
        return f"{self.solver}[{self.setting}]" if self.setting else self.solver

    def build(self):
        return make_inner(self.solver, **self.options)


def pgd_spec(steps: int, rel_step: float) -> SolverSpec:
    """Tuned PGD with ``steps`` normalised steps of ``rel_step``·r from the centre, no random start."""
    return SolverSpec("pgd", {"steps": steps, "rel_step": rel_step}, f"steps={steps},rel_step={rel_step:.4g}")


def pgd_ladder(quick: bool = False) -> list[SolverSpec]:
    """The tuned-PGD settings searched for ``pgd-matched``, cheapest first.

    Step counts 1 … 200 (1 … 50 with ``quick``); for each, step lengths 2.5·r/steps (the library default: the
    walk can cross the ball 1.25 times) and 1·r/steps (just reaches the boundary on a straight path); one step
    of length r (the fast gradient method) for ``steps=1``. The library default (10 steps of 0.25·r) is in it.
    """
    counts = (1, 2, 3, 5, 10, 20, 50) if quick else (1, 2, 3, 5, 10, 20, 50, 100, 200)
    specs = []
    for steps in counts:
        rels = (1.0,) if steps == 1 else (2.5 / steps, 1.0 / steps)
        specs += [pgd_spec(steps, rel) for rel in rels]
    return specs


#: ``pgd-paper``'s iteration cap under ``--quick`` (the paper's 5000 makes a few non-converging samples cost
#: tens of seconds per batch on the CPU).
QUICK_PAPER_MAX_ITER = 100


def default_solvers(quick: bool = False, seed: int = 0, *, deep: bool = False) -> list[SolverSpec]:
    """The contenders, in table order.

    * ``trs`` -- the lean training path (``certify=False``: structured paths, :mod:`fastfair.trs`'s fixed point,
      the Krylov solver for deeper models), i.e. the step ``fastfair train --solver trs`` takes; it is the
      reference of every ratio;
    * ``trs[certified]`` -- the same step from the certified solver, with its KKT certificate (diagnostic);
    * the tuned-PGD ladder (:func:`pgd_ladder`), ``pgd-paper`` (with ``quick``: capped at
      :data:`QUICK_PAPER_MAX_ITER` iterations, and labelled so; not for ``deep`` models, where its backtracking
      line search -- up to 40 forward passes of the whole network per iteration, shared by the batch -- takes
      minutes per call at n = 4096, and which the paper did not use), ``random`` (seeded, on the sphere);
    * ``auto`` -- the solver ``--solver auto`` picks for the model, timed as training calls it.
    """
    paper = (
        SolverSpec("pgd-paper", {"max_iter": QUICK_PAPER_MAX_ITER}, f"max_iter={QUICK_PAPER_MAX_ITER}")
        if quick
        else SolverSpec("pgd-paper")
    )
    return [
        SolverSpec("trs", {"certify": False}),
        SolverSpec("trs", {}, "certified"),
        *pgd_ladder(quick),
        *([] if deep else [paper]),
        SolverSpec("random", {"seed": seed}),
        SolverSpec("auto"),
    ]


@dataclass
class BenchCase:
    """One batch and one model: what every solver of a comparison is given."""

    model_name: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    info: dict[str, Any]

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def d(self) -> int:
        return int(self.x.shape[1])


def synthetic_batch(n: int, d: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardised features x ~ N(0, I) (n, d), labels y ~ Bernoulli(σ(2·xᵀβ/‖β‖ + 0.5·sin(3x₁))); seeded.

    The teacher's logit has unit-variance signal and a mild non-linearity: neither model fits it perfectly, so
    a trained model has both confident and misclassified points, as on real data.
    """
    require(n >= 1 and d >= 1, f"a benchmark batch needs n >= 1 and d >= 1, got n={n}, d={d}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    beta = rng.standard_normal(d)
    logit = 2.0 * (x @ beta) / np.linalg.norm(beta) + 0.5 * np.sin(3.0 * x[:, 0])
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return x, y


def make_case(
    model: str,
    d: int,
    n: int,
    *,
    hidden: int | tuple[int, ...] = 16,
    seed: int = 0,
    dtype: str = "float64",
    pretrain_epochs: int = 2,
    device: str = "cpu",
) -> BenchCase:
    """Build the batch and the (briefly pre-trained) model of one case; see the module docs. ``model`` is a
    name of :func:`bench_model` (``hidden`` is the width of plain ``mlp``)."""
    spec = bench_model(model, hidden)
    check_setting("dtype", dtype)
    X, Y = synthetic_batch(n, d, seed=seed)
    shape = {} if spec.model == "affine" else {"hidden": spec.hidden, "activation": spec.activation}
    net = build_model(spec.model, d, seed=seed, dtype=DTYPES[dtype], **shape)
    info: dict[str, Any] = {
        "pretrain_epochs": int(pretrain_epochs),
        "hidden": spec.hidden,
        "activation": spec.activation,
    }
    if pretrain_epochs > 0:
        config = TrainConfig(
            model=spec.model,
            solver="none",
            epochs=int(pretrain_epochs),
            batch_size=128,
            lr=1e-2,
            seed=seed,
            dtype=dtype,
            device=device,
            **shape,
        )
        result = train_arrays(X, Y, config, model=net)
        net = result.model
        info["pretrain_accuracy"] = result.history[-1]["train_accuracy"]
    net = net.to(device=device, dtype=DTYPES[dtype]).eval()
    for p in net.parameters():
        p.requires_grad_(True)
    x = torch.as_tensor(X, dtype=DTYPES[dtype], device=device)
    y = torch.as_tensor(Y, dtype=DTYPES[dtype], device=device)
    return BenchCase(model, net, x, y, info)


#: The solvers of a comparison each keep a few (n, d) tensors (iterate, gradient, autograd graph), more than the
#: structured TRS alone; their working set is taken as this many times the TRS estimate.
SOLVER_MEMORY_FACTOR = 2.0


#: The Krylov TRS keeps its basis and probe vectors, each (n, d), and the double-backward graph of the model:
#: its working set is taken as this many (n, d) tensors (a basis of a few to a few tens of vectors per row).
KRYLOV_WORKING_VECTORS = 32
#: The dense path holds the (n, d, d) Hessian, its eigenvectors, and torch.func's intermediates of that size.
DENSE_HESSIAN_COPIES = 4


def estimated_case_bytes(
    model: str,
    n: int,
    d: int,
    *,
    hidden: int | tuple[int, ...] = 16,
    dtype: str = "float64",
    dense_rows: int = 0,
) -> float:
    """Rough peak memory of one case of :func:`make_case` and :func:`fastfair.bench.inner.compare_solvers`, in bytes.

    The batch is drawn in float64 (numpy, 8·n·d bytes, plus a draw of the same size) and copied to a tensor
    (itemsize·n·d); the solvers' working set is :data:`SOLVER_MEMORY_FACTOR` times the TRS's: for the affine
    and one-hidden-layer models the structured path's, as :func:`fastfair.bench.scaling.estimated_bytes`
    estimates it, for deeper models the Krylov path's (:data:`KRYLOV_WORKING_VECTORS` (n, d) tensors and a few
    (n, width) activations per layer). ``dense_rows`` adds the dense comparison on that many rows
    (:data:`DENSE_HESSIAN_COPIES` (rows, d, d) tensors). Only used to refuse plans that cannot fit.
    """
    spec = bench_model(model, hidden)
    check_setting("dtype", dtype)
    itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
    batch = 2 * 8 * n * d + itemsize * n * d
    if spec.deep:
        widths = sum(hidden_widths(spec.hidden))
        trs_bytes = itemsize * n * (KRYLOV_WORKING_VECTORS * d + 4 * widths)
    else:
        trs = next(m for m in METHODS if m.model == spec.model and m.kind == "trs" and not m.dense)
        trs_bytes = estimated_bytes(trs, n, d, spec.hidden or hidden, itemsize)
    dense = DENSE_HESSIAN_COPIES * itemsize * dense_rows * d * d
    return batch + SOLVER_MEMORY_FACTOR * trs_bytes + dense


def mean_loss(loss: torch.Tensor) -> float:
    """The objective: mean per-sample loss, accumulated in float64."""
    return float(loss.detach().double().mean().item())


def relative_gap(objective: float, reference: float) -> float:
    """(objective - reference) / |reference|: > 0 means above the reference. Pure."""
    if reference == 0:
        return 0.0 if objective == 0 else math.copysign(math.inf, objective)
    return (objective - reference) / abs(reference)
