"""The outer loop: (robust) training of a classifier with Adam, and its evaluation.

Robust training solves

    min_θ  1/n Σ_i  max_{‖δ_i‖₂ ≤ r}  ℓ(f_θ(x_i + δ_i), y_i)

by alternating, on every mini-batch, an inner maximisation (a :mod:`fastfair.inner` solver returns the perturbed
batch x + δ*) with one Adam step on the loss taken at the perturbed points, as in the paper. ``clean_weight = w``
mixes in the clean loss: (1 - w)·ℓ(x + δ*) + w·ℓ(x). With ``solver="none"`` this is ordinary training.

Time spent in the inner solver is measured separately from the rest of the epoch (``inner_seconds``), so that
the cost of robustness can be reported honestly; evaluation after each epoch is not counted in either.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from . import metrics
from .datasets import Dataset, Split
from .errors import FastfairError, require, require_positive
from .inner import SOLVERS, make_inner, solver_options
from .models import ACTIVATIONS, MODELS, bce_per_sample, build_model

DTYPES = {"float32": torch.float32, "float64": torch.float64}
SPLITS = ("train", "val", "test")


@dataclass
class TrainConfig:
    """Everything that defines one training run. Same config and data ⇒ same numbers."""

    model: str = "affine"
    hidden: int = 16
    activation: str = "tanh"
    solver: str = "none"
    radius: float = 0.1
    clean_weight: float = 0.0
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-2
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    train_size: int | None = None
    solver_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        """Check every field, raising :class:`FastfairError` with a one-line message on the first bad one."""
        require(self.model in MODELS, f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        require(
            self.activation in ACTIVATIONS,
            f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}",
        )
        require(self.solver in SOLVERS, f"unknown solver {self.solver!r}; choose one of {', '.join(SOLVERS)}")
        require_positive("hidden", self.hidden, integer=True)
        require_positive("radius", self.radius)
        require(np.isfinite(self.radius), f"radius must be finite, got {self.radius!r}")
        require(0.0 <= self.clean_weight <= 1.0, f"clean weight must be in [0, 1], got {self.clean_weight!r}")
        require_positive("epochs", self.epochs, integer=True)
        require_positive("batch size", self.batch_size, integer=True)
        require_positive("learning rate", self.lr)
        require(np.isfinite(self.lr), f"learning rate must be finite, got {self.lr!r}")
        require(self.dtype in DTYPES, f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.train_size is not None:
            require_positive("train size", self.train_size, integer=True)
        resolve_device(self.device)
        make_inner(self.solver, **self.solver_options)  # validates solver options
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-friendly)."""
        return asdict(self)


def _seeded(config: TrainConfig) -> dict[str, Any]:
    """The solver options, with ``seed`` defaulting to the run's seed for solvers that draw random numbers
    (``random``, ``pgd`` with a random start), so that a run never depends on torch's global RNG."""
    options = dict(config.solver_options)
    if "seed" in solver_options(config.solver) and options.get("seed") is None and "generator" not in options:
        options["seed"] = config.seed
    return options


def resolve_device(name: str) -> torch.device:
    """Parse a device string, with a clear error when CUDA is asked for but absent."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise FastfairError(f"unknown device {name!r}; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FastfairError(f"device {name!r} requested but CUDA is not available on this machine")
    require(device.type in ("cpu", "cuda"), f"unsupported device {name!r}; use 'cpu' or 'cuda'")
    return device


@dataclass
class TrainResult:
    """A trained model with its per-epoch history and timing."""

    model: nn.Module
    config: TrainConfig
    history: list[dict[str, float]]

    @property
    def epoch_seconds(self) -> float:
        """Mean wall time of one epoch (inner solver included, evaluation excluded)."""
        return float(np.mean([h["epoch_seconds"] for h in self.history]))

    @property
    def inner_seconds(self) -> float:
        """Mean wall time per epoch spent in the inner maximiser."""
        return float(np.mean([h["inner_seconds"] for h in self.history]))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits f(x) for a float array X of shape (n, d)."""
        return predict_logits(self.model, X, self.config)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(y = 1 | x) = σ(f(x))."""
        return expit(self.decision_function(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Hard labels 1[f(x) > 0]."""
        return (self.decision_function(X) > 0).astype(np.int64)


def predict_logits(model: nn.Module, X: np.ndarray, config: TrainConfig, chunk: int = 65536) -> np.ndarray:
    """Evaluate the model's logits on a numpy array, in chunks, without building a graph."""
    device, dtype = resolve_device(config.device), DTYPES[config.dtype]
    out = []
    with torch.no_grad():
        for start in range(0, len(X), chunk):
            xb = torch.as_tensor(np.asarray(X[start : start + chunk]), dtype=dtype, device=device)
            out.append(model(xb).reshape(-1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _eval_loss_acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(x)
        loss = bce_per_sample(logits, y).mean().item()
        acc = ((logits > 0).to(y.dtype) == y).double().mean().item()
    return loss, acc


def train_arrays(
    X: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    *,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    model: nn.Module | None = None,
    progress: bool = False,
    desc: str = "train",
) -> TrainResult:
    """Train on arrays X (n, d) float and y (n,) in {0, 1}; the core loop behind :func:`train`.

    Each epoch shuffles the rows with a generator seeded by ``config.seed``; the model's initial weights come from
    the same seed, so a run is deterministic on a given device.
    """
    config.validate()
    device, dtype = resolve_device(config.device), DTYPES[config.dtype]
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    require(X.ndim == 2 and len(X) == len(y) and len(X) > 0, "X must be a non-empty (n, d) array matching y")
    if config.train_size is not None:
        X, y = X[: config.train_size], y[: config.train_size]
    x_t = torch.as_tensor(X, dtype=dtype, device=device)
    y_t = torch.as_tensor(y, dtype=dtype, device=device)
    has_val = X_val is not None and y_val is not None and len(X_val) > 0
    if has_val:
        xv_t = torch.as_tensor(np.asarray(X_val, dtype=np.float64), dtype=dtype, device=device)
        yv_t = torch.as_tensor(np.asarray(y_val), dtype=dtype, device=device)

    if model is None:
        model = build_model(
            config.model, X.shape[1], hidden=config.hidden, activation=config.activation, seed=config.seed
        )
    model = model.to(device=device, dtype=dtype)
    inner = make_inner(config.solver, **_seeded(config))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    # The first optimizer step of a process imports torch's compiler stack (seconds on this machine class). A
    # step without gradients does that and changes nothing, so the epoch clock measures training alone.
    optimizer.step()
    gen = torch.Generator().manual_seed(config.seed)
    n, w = len(X), config.clean_weight
    radius = torch.full((min(n, config.batch_size),), float(config.radius), dtype=dtype, device=device)

    history: list[dict[str, float]] = []
    epochs = range(1, config.epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=desc, unit="epoch", leave=False)
    for epoch in epochs:
        model.train()
        order = torch.randperm(n, generator=gen).to(device)
        inner_time = 0.0
        _sync(device)
        t_epoch = time.perf_counter()
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            xb, yb = x_t[idx], y_t[idx]
            if inner is not None:
                t_inner = time.perf_counter()
                x_adv = inner.attack(model, xb, yb, radius[: len(idx)])
                _sync(device)
                inner_time += time.perf_counter() - t_inner
                loss = bce_per_sample(model(x_adv), yb).mean()
                if w > 0:
                    loss = (1 - w) * loss + w * bce_per_sample(model(xb), yb).mean()
            else:
                loss = bce_per_sample(model(xb), yb).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        epoch_time = time.perf_counter() - t_epoch
        model.eval()
        record = {"epoch": epoch, "epoch_seconds": epoch_time, "inner_seconds": inner_time}
        record["train_loss"], record["train_accuracy"] = _eval_loss_acc(model, x_t, y_t)
        if has_val:
            record["val_loss"], record["val_accuracy"] = _eval_loss_acc(model, xv_t, yv_t)
        if not np.isfinite(record["train_loss"]):
            raise FastfairError(f"training diverged at epoch {epoch} (loss is not finite); try a smaller --lr")
        history.append(record)
        if progress and hasattr(epochs, "set_postfix"):
            epochs.set_postfix(loss=f"{record['train_loss']:.4f}", acc=f"{record['train_accuracy']:.3f}")
    model.eval()
    return TrainResult(model=model, config=config, history=history)


def train(data: Dataset, config: TrainConfig, *, model: nn.Module | None = None, progress: bool = False) -> TrainResult:
    """Train on ``data.train`` (its first ``config.train_size`` rows if set), tracking ``data.val`` per epoch."""
    return train_arrays(
        data.train.X,
        data.train.y,
        config,
        X_val=data.val.X,
        y_val=data.val.y,
        model=model,
        progress=progress,
        desc=f"{data.name} {config.solver}",
    )


def inner_diagnostics(result: TrainResult, X: np.ndarray, y: np.ndarray, max_rows: int = 4096) -> dict[str, Any]:
    """Run the run's inner solver once more on (the first ``max_rows`` of) ``X`` with the trained model and
    report what it attains: mean clean loss ℓ(x) and perturbed loss ℓ(x + δ), mean iterations, and for TRS the
    path taken, the number of hard cases and the largest relative KKT violation of its certificate
    (:meth:`fastfair.trs.TRSCertificate.max_violation`). ``{}`` for ``solver="none"``."""
    config = result.config
    if config.solver == "none":
        return {}
    options = _seeded(config)
    if config.solver == "trs":
        options["certify"] = True  # the certificate is the point of a diagnostic
    inner = make_inner(config.solver, **options)
    device, dtype = resolve_device(config.device), DTYPES[config.dtype]
    x = torch.as_tensor(np.asarray(X[:max_rows], dtype=np.float64), dtype=dtype, device=device)
    yt = torch.as_tensor(np.asarray(y[:max_rows]), dtype=dtype, device=device)
    res = inner.perturb(result.model, x, yt, config.radius)
    with torch.no_grad():
        clean = bce_per_sample(result.model(x), yt)
    out: dict[str, Any] = {
        "solver": config.solver,
        "radius": config.radius,
        "rows": int(x.shape[0]),
        "clean_loss": float(clean.double().mean()),
        "perturbed_loss": float(res.loss.double().mean()),
        "iterations": float(res.iterations.double().mean()),
    }
    if res.certificate is not None:
        out["path"] = res.extras.get("path")
        out["hard_cases"] = int(res.extras["hard_case"].sum()) if "hard_case" in res.extras else 0
        out["max_kkt_violation"] = float(res.certificate.max_violation().max())
        out["certified_fraction"] = float(res.certificate.ok().double().mean())
    return out


def evaluate_split(result: TrainResult, split: Split) -> dict[str, Any]:
    """Accuracy, AUC and the five fairness gaps on one split, plus its per-group table."""
    logits = result.decision_function(split.X)
    scores, y_pred = expit(logits), (logits > 0).astype(np.int64)
    names = np.asarray(split.group_names, dtype=object)[split.s]  # warnings then name the group, not its code
    summary = metrics.classification_summary(split.y, y_pred, names, scores=scores)
    table = metrics.group_table(split.y, y_pred, split.s, scores=scores, group_names=list(split.group_names))
    return {"summary": summary, "groups": table}


def evaluate(result: TrainResult, data: Dataset, splits: tuple[str, ...] = SPLITS) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_split` on each named split. The training split is evaluated on the rows trained on."""
    out = {}
    for name in splits:
        split = data.split(name)
        if name == "train" and result.config.train_size is not None:
            split = split.head(result.config.train_size)
        out[name] = evaluate_split(result, split)
    return out
