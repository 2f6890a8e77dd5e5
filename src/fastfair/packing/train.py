"""Training a pack: M runs that share everything but their seed, radius and seeded solver options, as one computation.

The runs of a pack share the model shape (affine, or one-hidden-layer MLP of one width and activation), the
solver and its options other than ``seed``, batch size b, epochs, learning rate, ``clean_weight``, dtype, and the
number of training rows n (after ``train_size``). Each run m keeps

* its initial weights: those :func:`fastfair.models.build_model` draws from its seed;
* its shuffling: a ``torch.Generator`` seeded with its seed, one ``randperm(n)`` per epoch, as
  :func:`fastfair.training.train_arrays` draws it;
* its data: the training sets are stacked, X (M, n, d), so runs whose seeds split the data differently each
  train on their own rows;
* its radius r_m, and for the solvers that draw (``random``, ``pgd`` with a random start) its own generator.

Every step takes model m's mini-batch B_m (k rows) from its own order, stacks the M mini-batches into one packed
batch of M·k rows (:mod:`fastfair.packing.models`), runs the inner solver once on it (:mod:`fastfair.packing.inner`),
and takes one Adam step on the stacked weights for

    L = Σ_m  [(1 - w)·mean_{i∈B_m} ℓ(f_m(xᵢ + δᵢ), yᵢ) + w·mean_{i∈B_m} ℓ(f_m(xᵢ), yᵢ)].

Model m's weights appear in the m-th term only, so ∂L/∂θ_m is the gradient run m computes alone, and Adam is
element-wise, so its update of θ_m is run m's update. The results agree with the runs trained alone up to the
rounding of the batched products (tested: probabilities within 1e-5 in float32, 1e-10 in float64). The only
Python loops over the models are the per-model random draws (shuffling, random starts), which cannot be merged
without changing each run's random stream.

Timing: a pack's epoch time is the time of all M runs together; :class:`PackTiming` keeps it, and each run's
``epoch_seconds`` / ``inner_seconds`` are the pack's divided by M (amortised, not a run's own time).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import TrainConfig
from ..errors import FastfairError, require
from ..losses import logistic_loss
from ..models import build_model
from ..training import DTYPES, TrainResult, feature_tensor, seeded_options
from .inner import make_packed_inner
from .models import pack_models, packable_model

#: Solvers a pack can run, per model kind.
PACKABLE_SOLVERS = {
    "affine": ("none", "trs", "trs-paper", "pgd", "pgd-paper", "random"),
    "mlp": ("none", "pgd", "pgd-paper", "random"),
}


@dataclass(frozen=True)
class PackTiming:
    """Wall times of a pack: its size, the mean epoch and inner-solver seconds of the whole pack."""

    size: int
    epoch_seconds: float
    inner_seconds: float


def pack_key(config: TrainConfig, n: int, d: int) -> tuple | None:
    """What runs must share to train in one pack (``None``: this run cannot be packed, and why is
    :func:`unpackable_reason`)."""
    if unpackable_reason(config) is not None:
        return None
    options = {k: v for k, v in sorted(config.solver_options.items()) if k != "seed"}
    model = (config.model, config.hidden, config.activation) if config.model == "mlp" else (config.model,)
    return (
        model,
        config.solver,
        repr(options),
        config.batch_size,
        config.epochs,
        config.lr,
        config.clean_weight,
        config.dtype,
        n,
        d,
    )


def unpackable_reason(config: TrainConfig) -> str | None:
    """Why a run must train alone, or ``None`` if it can join a pack."""
    if config.device not in ("cpu", None) and str(config.device) != "cpu":
        return "packs run on the CPU only"
    if config.fairness_penalty is not None:
        return "a fairness penalty couples the rows of a batch"
    if config.model not in PACKABLE_SOLVERS:
        return f"model {config.model!r} has no packed form"
    if config.model == "mlp" and not isinstance(config.hidden, int) and len(config.hidden) != 1:
        return "only the one-hidden-layer MLP has a packed form"
    if config.solver not in PACKABLE_SOLVERS[config.model]:
        return f"solver {config.solver!r} has no packed form for model {config.model!r}"
    if config.solver_options.get("generator") is not None:
        return "a solver with its own torch.Generator cannot be split per model"
    return None


def train_pack(
    Xs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
    configs: Sequence[TrainConfig],
    *,
    X_vals: Sequence[np.ndarray] | None = None,
    y_vals: Sequence[np.ndarray] | None = None,
) -> tuple[list[TrainResult], PackTiming]:
    """Train M runs as one pack (module docs); return one :class:`~fastfair.training.TrainResult` per run, each
    with a plain model (as :func:`fastfair.training.train_arrays` returns it), and the pack's timing.

    ``Xs[m]`` (n, d), ``ys[m]`` (n,) in {0, 1}: run m's training data (cut to ``train_size`` here, as alone);
    ``X_vals`` / ``y_vals``: run m's validation data for the history (all of one size, or absent).
    Raises :class:`FastfairError` if the runs cannot share a pack, or if any run diverges.
    """
    M = len(configs)
    require(M > 0 and len(Xs) == M and len(ys) == M, "a pack needs one dataset per run")
    configs = [c.validate() for c in configs]
    first = configs[0]
    Xs = [np.asarray(X, dtype=np.float64) for X in Xs]
    if first.train_size is not None:
        Xs = [X[: first.train_size] for X in Xs]
        ys = [np.asarray(y)[: first.train_size] for y in ys]
    n, d = Xs[0].shape
    require(
        all(np.isin(np.asarray(y), (0, 1)).all() for y in ys),
        "a pack trains binary runs only (labels 0 and 1); multiclass runs train alone",
    )
    keys = {pack_key(c, len(X), X.shape[1]) for c, X in zip(configs, Xs, strict=True)}
    require(None not in keys, f"run cannot be packed: {unpackable_reason(first) or 'see its settings'}")
    require(len(keys) == 1, "the runs of a pack must share model, solver options, settings and data size")
    dtype = DTYPES[first.dtype]
    x_t = torch.stack([feature_tensor(X, first, "X") for X in Xs])  # (M, n, d)
    y_t = torch.stack([torch.as_tensor(np.asarray(y), dtype=dtype) for y in ys])  # (M, n)
    has_val = X_vals is not None and y_vals is not None and all(len(X) > 0 for X in X_vals)
    if has_val:
        require(len({len(X) for X in X_vals}) == 1, "the runs of a pack must have validation sets of one size")
        xv_t = torch.stack([feature_tensor(np.asarray(X, dtype=np.float64), first, "X_val") for X in X_vals])
        yv_t = torch.stack([torch.as_tensor(np.asarray(y), dtype=dtype) for y in y_vals])

    plain = [
        build_model(c.model, d, hidden=c.hidden, activation=c.activation, seed=c.seed).to(dtype=dtype) for c in configs
    ]
    require(all(packable_model(m) for m in plain), "only affine and one-hidden-layer MLP models can be packed")
    packed = pack_models(plain)
    options = {k: v for k, v in seeded_options(first).items() if k != "seed"}
    seeds = tuple(int(seeded_options(c).get("seed", c.seed)) for c in configs)
    inner = make_packed_inner(first.solver, options, seeds)
    optimizer = torch.optim.Adam(packed.parameters(), lr=first.lr)
    optimizer.step()  # as alone: the first step imports torch's compiler stack; without gradients it changes nothing
    generators = [torch.Generator().manual_seed(c.seed) for c in configs]
    b, w = first.batch_size, first.clean_weight
    radii = torch.tensor([float(c.radius) for c in configs], dtype=dtype)
    histories: list[list[dict[str, float]]] = [[] for _ in range(M)]
    epoch_times, inner_times = [], []
    for epoch in range(1, first.epochs + 1):
        packed.train()
        # each run's own order: the one loop over the runs in an epoch (their random streams are separate)
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators])  # (M, n)
        inner_time = 0.0
        t_epoch = time.perf_counter()
        for start in range(0, n, b):
            idx = orders[:, start : start + b]  # (M, k)
            k = idx.shape[1]
            xb = torch.gather(x_t, 1, idx[:, :, None].expand(M, k, d)).reshape(M * k, d)
            yb = torch.gather(y_t, 1, idx).reshape(M * k)
            if inner is not None:
                t_inner = time.perf_counter()
                x_adv = inner.attack(packed, xb, yb, radii.repeat_interleave(k))
                inner_time += time.perf_counter() - t_inner
                loss = logistic_loss(packed(x_adv), yb).reshape(M, k).mean(1).sum()
                if w > 0:
                    clean = logistic_loss(packed(xb), yb).reshape(M, k).mean(1).sum()
                    loss = (1 - w) * loss + w * clean
            else:
                loss = logistic_loss(packed(xb), yb).reshape(M, k).mean(1).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        epoch_times.append(time.perf_counter() - t_epoch)
        inner_times.append(inner_time)
        packed.eval()
        train_loss, train_acc = _loss_acc(packed, x_t, y_t)
        val = _loss_acc(packed, xv_t, yv_t) if has_val else None
        bad = ~np.isfinite(train_loss)
        if bad.any():
            m = int(np.argmax(bad))
            raise FastfairError(
                f"training diverged at epoch {epoch} (loss is not finite) in the run with seed {configs[m].seed} "
                f"and radius {configs[m].radius:g}; try a smaller learning rate lr"
            )
        for m in range(M):  # bookkeeping only: plain floats into each run's history
            record = {
                "epoch": epoch,
                "epoch_seconds": epoch_times[-1] / M,
                "inner_seconds": inner_time / M,
                "train_loss": float(train_loss[m]),
                "train_accuracy": float(train_acc[m]),
            }
            if val is not None:
                record["val_loss"], record["val_accuracy"] = float(val[0][m]), float(val[1][m])
            histories[m].append(record)
    packed.eval()
    models = packed.unpack(plain)
    results = [
        TrainResult(model=model.eval(), config=config, history=history, inner_choice=None)
        for model, config, history in zip(models, configs, histories, strict=True)
    ]
    timing = PackTiming(size=M, epoch_seconds=float(np.mean(epoch_times)), inner_seconds=float(np.mean(inner_times)))
    return results, timing


def _loss_acc(packed: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Each run's mean loss and accuracy on its own rows x[m] (M, n, d), labels y[m]."""
    M, n, d = x.shape
    with torch.no_grad():
        logits = packed(x.reshape(M * n, d)).reshape(M, n)
        loss = logistic_loss(logits, y).mean(1)
        acc = ((logits > 0).to(y.dtype) == y).double().mean(1)
    return loss.double().numpy(), acc.numpy()
