"""The outer loop: (robust) training of a classifier with Adam, and its evaluation.

Robust training solves

    min_θ  1/n Σ_i  max_{‖δ_i‖₂ ≤ r}  ℓ(f_θ(x_i + δ_i), y_i)

by alternating, on every mini-batch, an inner maximisation (a :mod:`fastfair.inner` solver returns the perturbed
batch x + δ*) with one Adam step on the loss taken at the perturbed points, as in the paper. ``clean_weight = w``
mixes in the clean loss: (1 - w)·ℓ(x + δ*) + w·ℓ(x). With ``solver="none"`` this is ordinary training. With
``solver="auto"`` the inner solver is chosen once, before the first epoch, from the model's structure
(:mod:`fastfair.inner.auto`); the choice and its reason are kept in :attr:`TrainResult.inner_choice`.

Row weights and a fairness penalty. With ``sample_weight`` w (one non-negative number per training row) every
mean over a mini-batch B becomes the weighted mean Σ_{i∈B} wᵢ ℓᵢ / Σ_{i∈B} wᵢ -- normalised over the batch, so
each step is the mini-batch estimate of the weighted data-set loss Σᵢ wᵢ ℓᵢ / Σᵢ wᵢ, which a full batch computes
exactly. Rows of weight 0 are removed before training (so that a zero weight is the same run as a removed
row), negative or non-finite weights are refused, and the weights are rescaled once (to mean 1 over the rows
kept, in float64: the weighted mean does not change) so that no float32 sum can overflow or vanish. The inner
maximiser ignores the weights: it maximises each row's loss, and a positive weight does not move the maximiser.
With integer weights, a full batch and float64, weighting is row repetition up to rounding.

``fairness_penalty = "dp"`` or ``"eo"`` with weight λ = ``fairness_weight`` adds λ·P to every mini-batch
objective, P the penalty of :func:`fastfair.losses.fairness_penalty` on the batch (groups absent from it are
ignored, so a one-group batch adds 0; the row weights weigh the group rates too):

    (1 - w)·ℓ̄(x + δ*) + w·ℓ̄(x) + λ·P(σ(f(x)), y, s)        (ℓ̄ the (weighted) batch mean).

The penalty is taken on the **clean** predictions σ(f(x)), also in robust training: the gaps it stands for are those
of the model's predictions on unperturbed inputs -- the ones it is deployed with and reported on (:func:`evaluate`).
The perturbed predictions are not those of any input the model will see: each δ* depends on the row's label and
pushes its prediction towards the wrong class (down for y = 1, up for y = 0), so a demographic-parity gap of
perturbed predictions would shrink or grow with the groups' base rates and with how hard the attack can push each
group, not with the model's selection rates. Each epoch's history then records the penalty of the whole training set
(``train_penalty``) and, when the validation rows' groups are known, of the validation set (``val_penalty``), both
on clean predictions, like ``train_loss``. λ = 0 with a penalty named trains exactly as without a penalty and
records it all the same.

Multiclass. Labels are integer codes 0..C-1; C = 2 is the binary case above (one logit per row, the logistic
loss, P(y = 1) = σ(f(x))), C ≥ 3 a model with C outputs trained on the softmax cross-entropy
(:func:`fastfair.losses.classification_loss`), with probabilities softmax(f(x)) and predictions argmax_c f_c(x).
Every inner solver but ``trs-paper`` (the reference's binary step) takes multiclass models; the fairness
penalties are defined for one logit, and a multiclass run with one is refused.

Time spent in the inner solver is measured separately from the rest of the epoch (``inner_seconds``), so that
the cost of robustness can be reported honestly; evaluation after each epoch is not counted in either.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from scipy.special import softmax as softmax_rows
from torch import nn

from . import metrics
from .config import TrainConfig, resolve_device
from .config import scale_range as scale_range  # re-exported: the settings' bounds, next to the training loop
from .datasets import Dataset, Split
from .errors import FastfairError, require
from .inner import AutoAdversary, make_inner, solver_options
from .losses import classification_loss, fairness_penalty, weighted_mean
from .models import build_model
from .vocabulary import DTYPES as DTYPE_NAMES
from .vocabulary import SPLITS

#: The torch dtype of each precision name.
DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


def seeded_options(config: TrainConfig) -> dict[str, Any]:
    """The solver options, with ``seed`` defaulting to the run's seed for solvers that draw random numbers
    (``random``, ``pgd`` with a random start, and the ``pgd`` candidate of ``auto``), so that a run never depends
    on torch's global RNG."""
    options = dict(config.solver_options)
    if config.solver == "auto":
        options["pgd"] = _with_seed(options.get("pgd") or {}, config.seed)
    elif "seed" in solver_options(config.solver):
        options = _with_seed(options, config.seed)
    return options


def _with_seed(options: dict[str, Any], seed: int) -> dict[str, Any]:
    """``options`` with ``seed`` set, unless they already name a seed or a generator."""
    if options.get("seed") is None and options.get("generator") is None:
        return {**options, "seed": seed}
    return dict(options)


@dataclass
class TrainResult:
    """A trained model with its per-epoch history and timing.

    ``inner_choice``: for ``solver="auto"``, the solver it chose and why, ``{"solver": ..., "reason": ...}``
    (:class:`fastfair.inner.AutoChoice`); ``None`` for every other solver. ``n_classes``: C, the number of classes
    (2 for a binary model); left ``None``, it is read from ``model.n_classes`` (2 for a model without one).
    """

    model: nn.Module
    config: TrainConfig
    history: list[dict[str, float]]
    inner_choice: dict[str, str] | None = None
    n_classes: int | None = None

    def __post_init__(self) -> None:
        if self.n_classes is None:
            self.n_classes = int(getattr(self.model, "n_classes", 2))

    @property
    def epoch_seconds(self) -> float:
        """Mean wall time of one epoch (inner solver included, evaluation excluded)."""
        return float(np.mean([h["epoch_seconds"] for h in self.history]))

    @property
    def inner_seconds(self) -> float:
        """Mean wall time per epoch spent in the inner maximiser."""
        return float(np.mean([h["inner_seconds"] for h in self.history]))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits f(x) for a float array X of shape (n, d): (n,) for a binary model, (n, C) for C classes."""
        return predict_logits(self.model, X, self.config)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Binary: P(y = 1 | x) = σ(f(x)), shape (n,). C classes: softmax(f(x)), shape (n, C), rows summing to 1."""
        return probabilities(self.decision_function(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Hard labels: 1[f(x) > 0] (binary), argmax_c f_c(x) (C classes; the first class at ties)."""
        return predicted_labels(self.decision_function(X))


def probabilities(logits: np.ndarray) -> np.ndarray:
    """σ(z) for (n,) logits, softmax(z) along each row for (n, C) logits."""
    return softmax_rows(logits, axis=1) if logits.ndim == 2 else expit(logits)


def predicted_labels(logits: np.ndarray) -> np.ndarray:
    """1[z > 0] for (n,) logits, argmax_c z_c for (n, C) logits, as int64 codes."""
    if logits.ndim == 2:
        return np.argmax(logits, axis=1).astype(np.int64)
    return (logits > 0).astype(np.int64)


def predict_logits(model: nn.Module, X: np.ndarray, config: TrainConfig, chunk: int = 65536) -> np.ndarray:
    """Evaluate the model's logits on a numpy array, in chunks, without building a graph: (n,) for a model with one
    output per row, (n, C) for a model with C ≥ 3 outputs per row."""
    device, dtype = resolve_device(config.device), DTYPES[config.dtype]
    out = []
    with torch.no_grad():
        for start in range(0, len(X), chunk):
            xb = torch.as_tensor(np.asarray(X[start : start + chunk]), dtype=dtype, device=device)
            z = model(xb)
            z = z if z.ndim == 2 and z.shape[1] >= 3 else z.reshape(-1)
            out.append(z.double().cpu().numpy())
    if out:
        return np.concatenate(out)
    width = int(getattr(model, "n_classes", 2))
    return np.zeros((0, width)) if width > 2 else np.zeros(0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _eval_loss_acc(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None = None,
    penalty: tuple[str, torch.Tensor, int] | None = None,
) -> tuple[float, float, float | None]:
    """(Weighted) mean loss and accuracy of the whole set, and its fairness penalty ``(kind, groups, n_groups)``."""
    with torch.no_grad():
        logits = model(x)
        loss = weighted_mean(classification_loss(logits, y), weight).item()
        if logits.ndim == 2:  # C classes: the arg-max class
            correct = (logits.argmax(dim=1).to(y.dtype) == y).double()
        else:
            correct = ((logits > 0).to(y.dtype) == y).double()
        acc = weighted_mean(correct, None if weight is None else weight.double()).item()
        gap = None
        if penalty is not None:
            kind, groups, n_groups = penalty
            gap = fairness_penalty(logits, y, groups, kind, weight=weight, n_groups=n_groups).item()
    return loss, acc, gap


def check_labels(y: np.ndarray, n_classes: int | None, what: str = "y") -> int:
    """The number of classes C of labels ``y`` (rules of :func:`train_arrays`), refusing labels that do not fit.

    ``n_classes`` None infers C (2 when every label lies in [0, 1], else the largest label + 1); a given C must be
    an integer ≥ 2. Binary labels are numbers in [0, 1]; multiclass labels integer codes 0..C-1. A one-line
    :class:`FastfairError` names the first label that does not fit.
    """
    if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer)):
        raise FastfairError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    require(n_classes is None or n_classes >= 2, f"n_classes must be an integer >= 2, got {n_classes!r}")
    try:
        labels = np.asarray(y, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise FastfairError(f"{what} must hold numeric labels (class codes 0..C-1)") from None
    bad = ~np.isfinite(labels)
    require(not bad.any(), f"{what} has NaN or infinite labels (first at row {int(np.argmax(bad))})")
    if labels.size == 0:
        return 2 if n_classes is None else int(n_classes)
    binary = bool(((labels >= 0) & (labels <= 1)).all())
    if n_classes is None:
        if binary:
            return 2
        wrong = (labels < 0) | (labels != np.round(labels))
        if wrong.any():
            row = int(np.argmax(wrong))
            raise FastfairError(
                f"{what} labels must be numbers in [0, 1] (binary) or integer codes 0, 1, 2, ... (multiclass), "
                f"got {labels[row]:g} at row {row}"
            )
        n_classes = int(labels.max()) + 1
    if n_classes == 2:
        row = int(np.argmax((labels < 0) | (labels > 1)))
        require(binary, f"{what} labels of a binary target must lie in [0, 1], got {labels[row]:g} at row {row}")
        return 2
    wrong = (labels < 0) | (labels >= n_classes) | (labels != np.round(labels))
    if wrong.any():
        row = int(np.argmax(wrong))
        raise FastfairError(
            f"{what} labels of a {n_classes}-class target must be integer codes 0..{n_classes - 1}, "
            f"got {labels[row]:g} at row {row}"
        )
    return int(n_classes)


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray:
    """``sample_weight`` as a float64 array of shape (n,), refusing what no weighted mean can use.

    One finite number ≥ 0 per row (a list, a numpy array, a pandas Series, ...), not all zero; a one-line
    :class:`FastfairError` names the first problem.
    """
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise FastfairError("sample_weight must be an array of numbers, one per training row") from None
    require(
        w.shape == (n,), f"sample_weight must hold one number per training row: expected shape ({n},), got {w.shape}"
    )
    bad = ~np.isfinite(w)
    require(not bad.any(), f"sample_weight has NaN or infinite values (first at row {int(np.argmax(bad))})")
    negative = w < 0
    require(
        not negative.any(),
        f"sample_weight must be >= 0, got {w[np.argmax(negative)]:g} at row {int(np.argmax(negative))}",
    )
    require(bool((w > 0).any()), "sample_weight is all zero: at least one weight must be positive")
    return w


def group_codes(groups: Any, n: int, what: str = "groups") -> tuple[np.ndarray, int]:
    """Integer codes 0..k-1 of one group label per row (any sortable labels), and k.

    A one-line :class:`FastfairError` for a wrong shape or missing labels (NaN / None).
    """
    import pandas as pd  # a heavy import, needed only here

    if isinstance(groups, (pd.Series, pd.Index)):
        groups = groups.to_numpy()
    g = np.asarray(groups)
    if g.ndim == 2 and g.shape[1] == 1:
        g = g[:, 0]
    require(g.shape == (n,), f"{what} must hold one group label per row: expected shape ({n},), got {g.shape}")
    require(not pd.isna(g).any(), f"{what} contains missing values (NaN/None)")
    try:
        labels, codes = np.unique(g, return_inverse=True)
    except TypeError:
        raise FastfairError(f"{what} must hold labels of one sortable type (e.g. all strings or all numbers)") from None
    return codes.astype(np.int64), len(labels)


def _float_array(X: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise FastfairError(f"{what} must be a numeric array") from None


def feature_tensor(X: np.ndarray, config: TrainConfig, what: str = "X") -> torch.Tensor:
    """``X`` (n, d) as a tensor of the run's dtype and device, refusing data the run cannot compute with.

    Every entry must be finite, and stay finite once rounded to the dtype: a float32 run cannot hold a
    feature of magnitude above 3.4e38 (it would become inf and every loss NaN). The error names the first
    offending column, so that the data, not the optimiser, is blamed.
    """
    t = torch.as_tensor(X, dtype=DTYPES[config.dtype], device=resolve_device(config.device))
    bad = ~torch.isfinite(t).all(dim=0) if t.ndim == 2 else torch.zeros(0, dtype=torch.bool)
    if bool(bad.any()):
        col = int(torch.nonzero(bad)[0, 0])
        column = np.asarray(X)[:, col]
        if not np.isfinite(column).all():
            raise FastfairError(f"{what} has NaN or infinite values in column {col}")
        big = float(np.abs(column).max())
        limit = float(torch.finfo(t.dtype).max)
        raise FastfairError(
            f"{what} column {col} has values of magnitude {big:.3g}, beyond the range of {config.dtype} "
            f"({limit:.3g}); rescale or standardise that column"
        )
    return t


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
    sample_weight: Any = None,
    groups: Any = None,
    groups_val: Any = None,
    n_classes: int | None = None,
) -> TrainResult:
    """Train on arrays X (n, d) float and y (n,) labels; the core loop behind :func:`train`.

    ``n_classes`` C: 2 (binary, labels in [0, 1]: hard 0/1 or soft), or C ≥ 3 (labels integer codes 0..C-1: a
    model with C outputs and the softmax cross-entropy, module docs); ``None``: 2 when every label lies in [0, 1],
    else the largest label + 1; a ``model`` passed in with C ≥ 3 outputs sets C when ``n_classes`` is None. Labels
    that do not fit (negative, fractional above 1, a code ≥ C), a model whose outputs do not match C, and a
    fairness penalty with C ≥ 3 are refused with a one-line :class:`FastfairError`.

    ``sample_weight`` (n,): non-negative row weights (module docs: weighted batch means, zero-weight rows removed);
    ``groups`` (n,): each row's group label, needed by ``config.fairness_penalty``; ``groups_val``: those of
    ``X_val`` (all of them), for the validation penalty in the history. With ``config.train_size`` the first two are
    cut to the first rows, like X and y.

    Each epoch shuffles the rows with a generator seeded by ``config.seed``; the model's initial weights come from
    the same seed, so a run is deterministic on a given device.
    """
    config.validate()
    device, dtype = resolve_device(config.device), DTYPES[config.dtype]
    X = _float_array(X, "X")
    y = np.asarray(y)
    require(X.ndim == 2 and len(X) == len(y) and len(X) > 0, "X must be a non-empty (n, d) array matching y")
    asked = n_classes
    n_classes = check_labels(y, n_classes)
    weight = None if sample_weight is None else check_sample_weight(sample_weight, len(X))
    codes, n_groups = (None, 0) if groups is None else group_codes(groups, len(X))
    kind = config.fairness_penalty
    require(
        kind is None or codes is not None,
        f"the fairness penalty {kind!r} needs the group of every training row (groups / sensitive features)",
    )
    if config.train_size is not None:
        X, y = X[: config.train_size], y[: config.train_size]
        weight = None if weight is None else weight[: config.train_size]
        codes = None if codes is None else codes[: config.train_size]
    if weight is not None:  # zero weight = removed row; then rescale to mean 1 (the weighted means do not change)
        keep = weight > 0
        require(bool(keep.any()), "sample_weight is all zero on the rows trained on (the first train_size rows)")
        if not keep.all():
            X, y, weight = X[keep], y[keep], weight[keep]
            codes = None if codes is None else codes[keep]
        weight = weight / weight.max()
        weight = weight / weight.mean()
    x_t = feature_tensor(X, config, "X")
    y_t = torch.as_tensor(y, dtype=dtype, device=device)
    w_t = None if weight is None else torch.as_tensor(weight, dtype=dtype, device=device)
    g_t = None if codes is None else torch.as_tensor(codes, device=device)
    has_val = X_val is not None and y_val is not None and len(X_val) > 0
    if has_val:
        xv_t = feature_tensor(_float_array(X_val, "X_val"), config, "X_val")
        yv_t = torch.as_tensor(np.asarray(y_val), dtype=dtype, device=device)
    track = None if kind is None else (kind, g_t, n_groups)
    track_val = None
    if kind is not None and has_val and groups_val is not None:
        codes_val, n_val = group_codes(groups_val, len(X_val), "groups_val")
        track_val = (kind, torch.as_tensor(codes_val, device=device), n_val)
    lam = config.fairness_weight if kind is not None else 0.0

    users_model = model is not None
    if model is None:
        model = build_model(
            config.model,
            X.shape[1],
            hidden=config.hidden,
            activation=config.activation,
            seed=config.seed,
            n_classes=n_classes,
        )
    model = model.to(device=device, dtype=dtype)
    if users_model:
        n_classes = _model_classes(model, x_t, y, n_classes, asked)
    require(
        n_classes == 2 or kind is None,
        f"the fairness penalty {kind!r} is defined for binary targets only, and this target has "
        f"{n_classes} classes; train without a fairness penalty",
    )
    if has_val:
        check_labels(np.asarray(y_val), n_classes, "y_val")
    inner = make_inner(config.solver, **seeded_options(config))
    inner_choice = None
    if isinstance(inner, AutoAdversary):  # chosen once: the model's structure does not change while it trains
        choice = inner.choose(model, X.shape[1])
        inner, inner_choice = inner.candidates[choice.solver], choice._asdict()
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
            wb = None if w_t is None else w_t[idx]
            clean = None
            if inner is not None:
                t_inner = time.perf_counter()
                x_adv = inner.attack(model, xb, yb, radius[: len(idx)])
                _sync(device)
                inner_time += time.perf_counter() - t_inner
                loss = weighted_mean(classification_loss(model(x_adv), yb), wb)
                if w > 0:
                    clean = model(xb)
                    loss = (1 - w) * loss + w * weighted_mean(classification_loss(clean, yb), wb)
            else:
                clean = model(xb)
                loss = weighted_mean(classification_loss(clean, yb), wb)
            if lam > 0:  # on the clean predictions (module docs)
                clean = model(xb) if clean is None else clean
                loss = loss + lam * fairness_penalty(clean, yb, g_t[idx], kind, weight=wb, n_groups=n_groups)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        epoch_time = time.perf_counter() - t_epoch
        model.eval()
        record = {"epoch": epoch, "epoch_seconds": epoch_time, "inner_seconds": inner_time}
        record["train_loss"], record["train_accuracy"], gap = _eval_loss_acc(model, x_t, y_t, w_t, track)
        if gap is not None:
            record["train_penalty"] = gap
        if has_val:
            record["val_loss"], record["val_accuracy"], gap = _eval_loss_acc(model, xv_t, yv_t, penalty=track_val)
            if gap is not None:
                record["val_penalty"] = gap
        if not np.isfinite(record["train_loss"]):
            raise FastfairError(
                f"training diverged at epoch {epoch} (loss is not finite); try a smaller learning rate lr"
            )
        history.append(record)
        if progress and hasattr(epochs, "set_postfix"):
            epochs.set_postfix(loss=f"{record['train_loss']:.4f}", acc=f"{record['train_accuracy']:.3f}")
    model.eval()
    return TrainResult(
        model=model, config=config, history=history, inner_choice=inner_choice, n_classes=n_classes
    )


def _model_classes(model: nn.Module, x: torch.Tensor, y: np.ndarray, n_classes: int, asked: int | None) -> int:
    """The number of classes of a user's ``model``, reconciled with the labels: C for (n, C) logits (C ≥ 3), 2 for one
    logit per row. Where the caller did not fix ``n_classes`` (``asked`` None) a C-output model takes any labels
    that fit in 0..C-1; otherwise the two must agree. One-line FastfairError for a mismatch or another output
    shape, from one forward pass of two rows in evaluation mode (modes restored)."""
    from .derivatives.analytic import model_logits

    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            out = model_logits(model(x[:2]), min(2, x.shape[0]))
    finally:
        for module, training in modes:
            module.training = training
    outputs = out.shape[1] if out.ndim == 2 else 2
    if outputs != n_classes and asked is None and outputs > 2:
        return check_labels(y, outputs)
    require(
        outputs == n_classes,
        f"the model has {'one output per row (binary)' if outputs == 2 else f'{outputs} outputs'} but the labels "
        f"have {n_classes} classes",
    )
    return n_classes


def train(
    data: Dataset,
    config: TrainConfig,
    *,
    model: nn.Module | None = None,
    progress: bool = False,
    sample_weight: Any = None,
) -> TrainResult:
    """Train on ``data.train`` (its first ``config.train_size`` rows if set), tracking ``data.val`` per epoch.

    The groups of the fairness penalty are the splits' sensitive attribute ``s``; ``sample_weight`` weighs the
    rows of ``data.train`` (:func:`train_arrays`). The number of classes is the data set's, ``data.n_classes``.
    """
    return train_arrays(
        data.train.X,
        data.train.y,
        config,
        X_val=data.val.X,
        y_val=data.val.y,
        model=model,
        progress=progress,
        desc=f"{data.name} {config.solver}",
        sample_weight=sample_weight,
        groups=data.train.s,
        groups_val=data.val.s,
        n_classes=data.n_classes,
    )


#: Rounding slack of the loss comparison, in units of the dtype's epsilon times the clean loss: each
#: per-sample loss carries a few rounding errors of relative size eps, so an exact maximiser can report a
#: mean perturbed loss a few eps below the clean one; 64·eps is far below any real loss decrease.
LOSS_SLACK_EPS = 64

#: Solvers whose job is to maximise the loss (``random`` only draws a perturbation, which may lower it).
MAXIMISERS = ("auto", "trs", "pgd", "pgd-paper")


def inner_diagnostics(result: TrainResult, X: np.ndarray, y: np.ndarray, max_rows: int = 4096) -> dict[str, Any]:
    """Run the run's inner solver once more on (the first ``max_rows`` rows of) ``X``, ``y`` with the trained
    model and report what it attains: mean clean loss ℓ(x) and perturbed loss ℓ(x + δ), mean iterations, and
    for TRS the path taken, the number of hard cases, the largest relative KKT violation of its certificate
    (:meth:`fastfair.trs.TRSCertificate.max_violation`) and the fraction of certified solves. For
    ``solver="auto"`` also the solver it chose for the model, ``"choice"``, and why, ``"reason"`` (a TRS choice
    then reports its path and certificate as above). ``{}`` for ``solver="none"``.

    The answer can be untrustworthy in two ways, each reported as a ``RuntimeWarning`` and listed under
    ``"warnings"`` (empty when all is well): a certified fraction below 1 (some solves failed their KKT
    certificate), and, for the maximisers (``auto``, ``trs``, ``pgd``, ``pgd-paper``), a mean perturbed loss below the
    clean one by more than ``LOSS_SLACK_EPS``·eps·ℓ(x) (or not finite), which no maximiser of ℓ over a ball
    containing δ = 0 should return: the radius is then far outside the region where the solver's model of
    the loss holds, and the run did not train against worst-case perturbations.
    """
    config = result.config
    if config.solver == "none":
        return {}
    require(len(X) == len(y), f"X and y must have the same number of rows, got {len(X)} and {len(y)}")
    options = seeded_options(config)
    if config.solver == "trs":  # the certificate is the point of a diagnostic
        options["certify"] = True
    elif config.solver == "auto":
        options["trs"] = {**(options.get("trs") or {}), "certify": True}
    inner = make_inner(config.solver, **options)
    device, dtype = resolve_device(config.device), DTYPES[config.dtype]
    x = torch.as_tensor(np.asarray(X[:max_rows], dtype=np.float64), dtype=dtype, device=device)
    yt = torch.as_tensor(np.asarray(y[:max_rows]), dtype=dtype, device=device)
    res = inner.perturb(result.model, x, yt, config.radius)
    with torch.no_grad():
        clean = classification_loss(result.model(x), yt)
    out: dict[str, Any] = {
        "solver": config.solver,
        "radius": config.radius,
        "rows": int(x.shape[0]),
        "clean_loss": float(clean.double().mean()),
        "perturbed_loss": float(res.loss.double().mean()),
        "iterations": float(res.iterations.double().mean()),
    }
    solver = config.solver
    if "auto" in res.extras:
        out["choice"], out["reason"] = res.extras["auto"]["solver"], res.extras["auto"]["reason"]
        solver = f"{out['choice']} (chosen by auto)"
    problems = []
    if res.certificate is not None:
        out["path"] = res.extras.get("path")
        out["hard_cases"] = int(res.extras["hard_case"].sum()) if "hard_case" in res.extras else 0
        out["max_kkt_violation"] = float(res.certificate.max_violation().max())
        out["certified_fraction"] = float(res.certificate.ok().double().mean())
        if not out["certified_fraction"] >= 1.0:
            problems.append(
                f"the {solver} inner solver certified only {100 * out['certified_fraction']:.1f}% of its "
                f"solves on the trained model at radius {config.radius:g} (max relative KKT violation "
                f"{out['max_kkt_violation']:.1e}): the loss the run trained on is not a certified worst case"
            )
    if config.solver in MAXIMISERS:
        clean_loss, perturbed = out["clean_loss"], out["perturbed_loss"]
        slack = LOSS_SLACK_EPS * torch.finfo(dtype).eps * abs(clean_loss)
        if not perturbed >= clean_loss - slack:  # also catches NaN
            problems.append(
                f"the {solver} inner solver lowered the mean loss on the trained model at radius "
                f"{config.radius:g} ({clean_loss:.4g} -> {perturbed:.4g}): at this radius it does not find "
                "worst-case perturbations, so the run did not train against them"
            )
    for message in problems:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    out["warnings"] = problems
    return out


def evaluate_split(result: TrainResult, split: Split) -> dict[str, Any]:
    """Accuracy, AUC and the five fairness gaps on one split, plus its per-group table.

    Binary: the scores are P(y = 1) (n,). C ≥ 3 classes: the scores are the (n, C) softmax probabilities and the
    metrics get ``n_classes`` (one-vs-rest gaps, the worst class as the headline; :mod:`fastfair.metrics`).
    """
    logits = result.decision_function(split.X)
    scores, y_pred = probabilities(logits), predicted_labels(logits)
    names = np.asarray(split.group_names, dtype=object)[split.s]  # warnings then name the group, not its code
    group_names = dict(enumerate(split.group_names))
    if logits.ndim == 2:
        C = logits.shape[1]
        summary = metrics.classification_summary(split.y, y_pred, names, scores=scores, n_classes=C)
        table = metrics.group_table(split.y, y_pred, split.s, scores=scores, group_names=group_names, n_classes=C)
        return {"summary": summary, "groups": table}
    summary = metrics.classification_summary(split.y, y_pred, names, scores=scores)
    # a split (e.g. the first --train-size training rows) need not hold every group: name the codes it has
    table = metrics.group_table(split.y, y_pred, split.s, scores=scores, group_names=group_names)
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
