r"""Per-group robustness of a trained classifier: flip rate and robust accuracy under L2 perturbations.

A binary classifier with logit :math:`f` predicts :math:`\hat y(x) = 1[f(x) > 0]` (the rule of fastfair's
training loop, estimator and metrics: a point exactly on the boundary, :math:`f(x) = 0`, is predicted 0). A
multiclass classifier with logits :math:`f_0, \dots, f_{C-1}` (:math:`C \ge 3`) predicts
:math:`\hat y(x) = \arg\max_k f_k(x)`, ties going to the lowest class code (numpy's and torch's ``argmax``). For a
radius :math:`r > 0` and a labelled point :math:`(x, y)`:

* :math:`x` **flips** at :math:`r` if some :math:`\delta` with :math:`\|\delta\|_2 \le r` has
  :math:`\hat y(x + \delta) \ne \hat y(x)`;
* :math:`x` is **robustly correct** at :math:`r` if :math:`\hat y(x + \delta) = y` for every
  :math:`\|\delta\|_2 \le r`, i.e. it is correctly classified and does not flip.

Per group :math:`g` of size :math:`n_g`: ``flip_rate`` = #flips / :math:`n_g`, ``robust_accuracy`` = #robustly
correct / :math:`n_g` :math:`\le` ``clean_accuracy``. The balls are nested, so both are monotone in :math:`r`
(flip rate non-decreasing, robust accuracy non-increasing).

Two ways to decide a flip, recorded per row of the result in ``method``:

``"exact"`` -- the affine model :math:`f(x) = w^\top x + b` (:class:`fastfair.models.Affine`). Over the ball,
    :math:`\min f(x+\delta) = f(x) - r\|w\|` and :math:`\max f(x+\delta) = f(x) + r\|w\|`, attained at
    :math:`x \mp r\,w/\|w\|`. With the tie rule above:

    * a point predicted 1 (:math:`f(x) > 0`) flips iff :math:`f(x)/\|w\| \le r` (its distance to the boundary is
      at most :math:`r`; the boundary itself predicts 0);
    * a point predicted 0 (:math:`f(x) \le 0`) flips iff :math:`|f(x)|/\|w\| < r` (strictly: at distance exactly
      :math:`r` it reaches only :math:`f = 0`, still predicted 0).

    With :math:`w = 0` the logit is the constant :math:`b`: there is no boundary, no point flips at any radius
    (flip rate 0, robust accuracy = clean accuracy). The logit is evaluated in float64 from the model's
    parameters, so this is exact up to float64 rounding (the model's own forward pass in float32 can disagree with
    it only for points within float32 rounding of the boundary).

    **Softmax regression** :math:`f_k(x) = w_k^\top x + b_k` (the affine model with :math:`C \ge 3` outputs). With
    the tie rule, the region predicted :math:`k` is the intersection of half-spaces
    :math:`R_k = \bigcap_{j<k}\{g_{kj} > 0\} \cap \bigcap_{j>k}\{g_{kj} \ge 0\}`,
    :math:`g_{kj}(x) = f_k(x) - f_j(x) = (w_k - w_j)^\top x + (b_k - b_j)`, and its complement is the union of
    the complementary half-spaces. A point predicted :math:`k` flips iff the ball meets that union, i.e. meets one
    of the half-spaces; over the ball :math:`\min g_{kj}(x+\delta) = g_{kj}(x) - r\|w_k - w_j\|`, so it flips iff
    for some :math:`j \ne k`

    * :math:`j < k` and :math:`g_{kj}(x) \le r\|w_k - w_j\|` (the closed half-space :math:`g_{kj} \le 0`), or
    * :math:`j > k` and :math:`g_{kj}(x) < r\|w_k - w_j\|` (the open half-space :math:`g_{kj} < 0`).

    Equivalently, the L2 distance from :math:`x` to the complement of :math:`R_k` is
    :math:`\min_{j \ne k} g_{kj}(x)/\|w_k - w_j\|`: the distance to a union is the smallest distance to one of its
    parts, and the distance to a half-space is the distance to its boundary hyperplane. A pair with
    :math:`w_k = w_j` has a constant :math:`g_{kj} > 0` (or :math:`\ge 0` for :math:`j > k`) and never causes a flip.

``"attack"`` -- any other ``nn.Module`` (or ``method="attack"``): multi-restart projected gradient descent on the
    signed margin :math:`m(\delta) = s\,f(x+\delta)` with :math:`s = +1` for a point predicted 1 and :math:`-1` for
    a point predicted 0. Restart 0 starts from the single normalised-gradient step of full length,
    :math:`\delta_0 = -r\,\nabla m / \|\nabla m\|` at :math:`\delta = 0` (the worst point of the linearised model);
    the other restarts start uniformly at random in the ball. For a multiclass model (:math:`C \ge 3` logits per
    row) the margin of a point predicted :math:`k` is :math:`m(\delta) = f_k(x+\delta) - \max_{j \ne k} f_j(x+\delta)`,
    and a flip is any change of the argmax. Each step is
    :math:`\delta \leftarrow P(\delta - \alpha_t \nabla m/\|\nabla m\|)` with the projection
    :math:`P(\delta) = \delta\min(1, r/\|\delta\|)` and step lengths :math:`\alpha_t` decaying geometrically from
    :data:`FIRST_STEP`·r to :data:`LAST_STEP`·r. A point flips as soon as **any** iterate of any restart changes
    its prediction (evaluated by the model itself), and is then dropped from the attack. Radii are attacked in
    increasing order, and a flip found at :math:`r` counts at every larger radius (the ball only grows).

    Every flip it reports is real (a witness :math:`\delta` in the ball was evaluated), but a point it does not
    flip may still flip: **the attack's flip rate is a lower bound** on the true flip rate, and its robust
    accuracy an upper bound. It is not a certificate; the column ``flip_rate_bound`` says ``"lower"`` for it
    (``"exact"`` for the affine model). Rows must not interact inside the model (no batch norm in training mode;
    the model is put in eval mode while it is attacked, and its mode restored afterwards).

    A non-finite logit at a perturbed point is no witness; a non-finite gradient gives no step.

Cost of the attack, per row and radius, at most: restarts·(steps + 1) + 1 forward passes and restarts·steps + 1
backward passes, batched over rows and restarts; flipped rows leave the batch. Deterministic for a given ``seed``
on a given device. Radii must lie in the range where r² is a finite normal number of the computation's dtype
(float64 for the exact method, the model's dtype for the attack).
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .errors import FastfairError
from .io import atomic_write_bytes
from .models import Affine
from .validation import check_positive_int, check_seed_value, is_number

__all__ = [
    "ALL_GROUP",
    "COLUMNS",
    "DEFAULT_RESTARTS",
    "DEFAULT_STEPS",
    "METHODS",
    "group_robustness",
    "robustness_figure",
]

#: The columns of :func:`group_robustness`, in order.
COLUMNS: tuple[str, ...] = (
    "radius",
    "group",
    "n",
    "flip_rate",
    "robust_accuracy",
    "clean_accuracy",
    "method",
    "flip_rate_bound",
)
#: The name of the row pooling every point.
ALL_GROUP = "all"
#: ``method`` values: ``"auto"`` is exact for :class:`~fastfair.models.Affine` (one logit or C >= 3), the attack
#: otherwise.
METHODS: tuple[str, ...] = ("auto", "exact", "attack")
#: Default number of attack restarts (restart 0 from the full normalised-gradient step, the rest random).
DEFAULT_RESTARTS = 8
#: Default number of projected-gradient steps per restart.
DEFAULT_STEPS = 20
#: First and last attack step length, as fractions of r (geometric decay in between): long steps cross the ball
#: early, short ones settle near the worst point of a curved boundary.
FIRST_STEP = 0.5
LAST_STEP = 0.02
#: Rows times restarts attacked in one batch (bounds memory: this many (d,) perturbations and their gradients).
BATCH_PAIRS = 1 << 12


# ----------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------
def group_robustness(
    model: nn.Module,
    X: Any,
    y: Any,
    groups: Any,
    radii: float | Sequence[float],
    *,
    seed: int = 0,
    restarts: int = DEFAULT_RESTARTS,
    steps: int = DEFAULT_STEPS,
    method: str = "auto",
) -> pd.DataFrame:
    """Flip rate and robust accuracy per group and radius (see the module docstring for the definitions).

    Parameters
    ----------
    model
        A binary classifier mapping (n, d) inputs to (n,) logits (``(n, 1)`` is accepted), predicting
        ``1[f(x) > 0]``, or a multiclass one mapping them to (n, C) logits, C >= 3, predicting the argmax. It is
        evaluated on its own device and in its own dtype (that of its first parameter).
    X, y
        Inputs (n, d) (numpy array, tensor, anything ``np.asarray`` takes; finite) and labels: in {0, 1} for a
        binary model, class codes in {0, ..., C-1} for a multiclass one.
    groups
        One group label per row (any mutually sortable labels), or None for the pooled row only.
    radii
        One radius or several, each finite and > 0; reported in increasing order, duplicates once.
    seed
        Seeds the attack's random starts (unused by the exact method).
    restarts, steps
        The attack's number of restarts (≥ 1) and of steps per restart (≥ 1).
    method
        ``"auto"`` (exact for :class:`~fastfair.models.Affine`, binary or softmax regression, the attack
        otherwise), ``"exact"`` (affine models only) or ``"attack"`` (any model, the affine one included).

    Returns
    -------
    pandas.DataFrame
        One row per (radius, group), groups sorted and then ``"all"`` (every point), with columns
        ``radius, group, n, flip_rate, robust_accuracy, clean_accuracy, method, flip_rate_bound``: ``method``
        is ``"exact"`` or ``"attack"``; ``flip_rate_bound`` is ``"exact"``, or ``"lower"`` for the attack (its
        flip rate is a lower bound, its robust accuracy an upper bound). ``attrs`` records ``seed``,
        ``restarts`` and ``steps``.

    Raises
    ------
    FastfairError
        One line, for empty input, inputs of different lengths, NaN or infinite features, labels other than 0/1
        (binary) or 0..C-1 (multiclass),
        a radius that is not finite and positive or lies outside the safe range of the computation's dtype, a group
        named ``"all"``, bad ``restarts``/``steps``/``seed``/``method``, ``method="exact"`` for a model that is not
        affine, a model that does not accept ``X`` or does not output one logit per row (or C >= 3), or
        non-finite weights
        (affine) or logits (attack).
    """
    if method not in METHODS:
        raise FastfairError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    seed = check_seed_value("seed", seed)
    restarts = check_positive_int("restarts", restarts)
    steps = check_positive_int("steps", steps)
    r = _check_radii(radii)
    x64 = _check_features(X)
    _check_length(y, len(x64))
    names, codes = _check_groups(groups, len(x64))
    if method == "exact" and not isinstance(model, Affine):
        raise FastfairError(f"method 'exact' needs the affine model, got {type(model).__name__}; use 'attack'")
    exact = isinstance(model, Affine) and method != "attack"
    _check_radius_range(r, torch.float64 if exact else _model_place(model)[0])
    if exact:
        w, b = _affine_parameters(model, x64.shape[1])
        labels = _check_labels(y, len(x64), _classes_of(len(b)))
        clean, flips = _affine_flips(w, b, x64, r)
    else:
        f = _clean_logits(model, x64)
        labels = _check_labels(y, len(x64), _classes_of(1 if f.ndim == 1 else f.shape[1]))
        clean, flips = _attack_flips(model, x64, f, r, seed=seed, restarts=restarts, steps=steps)
    frame = _tabulate(r, names, codes, labels, clean, flips, "exact" if exact else "attack")
    frame.attrs.update(seed=seed, restarts=restarts, steps=steps)
    return frame


def robustness_figure(frame: pd.DataFrame, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Draw flip rate and robust accuracy against the radius, one line per group, and write it as a PNG.

    ``frame`` is a result of :func:`group_robustness`. The pooled group ``"all"`` is the black dashed line. For
    the attack the panels say which way the numbers are bounded. The file is written atomically; returns its
    path. Raises FastfairError when ``frame`` lacks the columns or has no rows.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise FastfairError(f"the robustness frame lacks columns {', '.join(missing)}")
    if frame.empty:
        raise FastfairError("the robustness frame has no rows to draw")
    from io import BytesIO

    # here, not at the top: only the figure needs matplotlib, and it takes a while to load. No pyplot: the figure
    # has its own Agg canvas, and no global backend is set.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    attack = bool((frame["method"] == "attack").any())
    fig = Figure(figsize=(9.0, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    panels = (
        ("flip_rate", "flip rate" + (" (attack: lower bound)" if attack else "")),
        ("robust_accuracy", "robust accuracy" + (" (attack: upper bound)" if attack else "")),
    )
    order = [g for g in pd.unique(frame["group"]) if g != ALL_GROUP] + [ALL_GROUP]
    for ax, (column, label) in zip(axes, panels, strict=True):
        for group in order:
            rows = frame[frame["group"] == group].sort_values("radius")
            if rows.empty:
                continue
            style = {"color": "black", "ls": "--", "lw": 1.8} if group == ALL_GROUP else {"lw": 1.4}
            n = int(rows["n"].iloc[0])
            ax.plot(rows["radius"], rows[column], marker="o", ms=3.5, label=f"{group} (n={n})", **style)
        ax.set_xlabel("radius r (L2)")
        ax.set_title(label, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.82 if title else 0.9, wspace=0.22)
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------
def _numpy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x


def _check_radii(radii: Any) -> np.ndarray:
    if is_number(radii):
        values = [radii]
    elif isinstance(radii, str | bytes):
        values = []
    else:
        try:
            values = list(np.asarray(_numpy(radii), dtype=object).reshape(-1))
        except TypeError:
            values = []
    if not values:
        raise FastfairError(f"radii must be one positive number or a non-empty list of them, got {radii!r}")
    for r in values:
        if not is_number(r) or not (math.isfinite(float(r)) and float(r) > 0):
            raise FastfairError(f"every radius must be finite and greater than 0, got {r!r}")
    return np.unique(np.asarray(values, dtype=np.float64))


def _check_radius_range(radii: np.ndarray, dtype: torch.dtype) -> None:
    """Every radius r with r² a finite normal number of ``dtype``: 2^⌊e_min/2⌋ ≤ r ≤ 2^⌊e_max/2⌋, where
    2^e_min is the smallest normal and 2^e_max ≤ max < 2^(e_max+1) (float32: about [1.1e-19, 9.2e18]), so that r,
    r², r·‖w‖ and the steps of the attack neither overflow nor vanish."""
    info = torch.finfo(dtype)
    lo, hi = 2.0 ** (math.floor(math.log2(info.tiny)) // 2), 2.0 ** (math.floor(math.log2(info.max)) // 2)
    outside = radii[(radii < lo) | (radii > hi)]
    if outside.size:
        raise FastfairError(
            f"radius {outside[0]:g} is outside the range {dtype} computes with safely, [{lo:.3g}, {hi:.3g}]"
        )


def _check_features(X: Any) -> np.ndarray:
    try:
        x = np.asarray(_numpy(X), dtype=np.float64)
    except (TypeError, ValueError):
        raise FastfairError("X must be a numeric (n, d) array") from None
    if x.ndim != 2:
        raise FastfairError(f"X must be a two-dimensional (n, d) array, got shape {x.shape}")
    if x.shape[0] == 0:
        raise FastfairError("X is empty (no rows)")
    if not np.isfinite(x).all():
        raise FastfairError("X contains NaN or infinite values")
    return x


def _label_array(y: Any) -> np.ndarray:
    a = np.asarray(_numpy(y))
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise FastfairError(f"y must be one-dimensional, got shape {a.shape}")
    return a


def _check_length(y: Any, n: int) -> None:
    a = _label_array(y)
    if len(a) != n:
        raise FastfairError(f"X and y differ in length: X has {n} rows, y has {len(a)}")


def _classes_of(n_outputs: int) -> int:
    """Number of classes of a model with ``n_outputs`` logits per row: one logit is binary, C >= 3 are C classes."""
    return 2 if n_outputs == 1 else n_outputs


def _check_labels(y: Any, n: int, n_classes: int = 2) -> np.ndarray:
    """Labels as int64 class codes: 0/1 for a binary model, 0..C-1 for a C-class one."""
    a = _label_array(y)
    if len(a) != n:
        raise FastfairError(f"X and y differ in length: X has {n} rows, y has {len(a)}")
    allowed = "0 and 1" if n_classes == 2 else f"the class codes 0 to {n_classes - 1}"
    try:
        v = a.astype(np.float64)
    except (TypeError, ValueError):
        raise FastfairError(f"y must contain only {allowed}, got non-numeric values") from None
    bad = ~((v == np.round(v)) & (v >= 0) & (v < n_classes))  # also catches NaN
    if bad.any():
        first = a[bad][0]
        raise FastfairError(f"y must contain only {allowed}, found {getattr(first, 'item', lambda: first)()!r}")
    return v.astype(np.int64)


def _check_groups(groups: Any, n: int) -> tuple[list[Hashable], np.ndarray]:
    """Sorted group names and each row's code (all zeros and no names when ``groups`` is None)."""
    if groups is None:
        return [], np.zeros(n, dtype=np.intp)
    a = np.asarray(_numpy(groups))
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise FastfairError(f"groups must be one-dimensional, got shape {a.shape}")
    if len(a) != n:
        raise FastfairError(f"X and groups differ in length: X has {n} rows, groups has {len(a)}")
    if pd.isna(a).any():
        raise FastfairError("groups contains missing values (NaN/None)")
    try:
        names, codes = np.unique(a, return_inverse=True)
    except TypeError:
        raise FastfairError("group labels must be mutually sortable (mixed types found)") from None
    names_list = names.tolist()
    if ALL_GROUP in names_list:
        raise FastfairError(f"a group is named {ALL_GROUP!r}, the name of the pooled row; rename it")
    return names_list, codes.reshape(-1).astype(np.intp)


def _model_place(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    param = next(iter(model.parameters()), None)
    if param is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return param.dtype, param.device


# ----------------------------------------------------------------------------------------------------------
# Exact: the affine model
# ----------------------------------------------------------------------------------------------------------
def _affine_parameters(model: Affine, d: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine model's weights (m, d) and biases (m,) in float64: m = 1 logit (binary) or C >= 3."""
    w = model.linear.weight.detach().to("cpu", torch.float64).numpy()
    w = w.reshape(1, -1) if w.ndim == 1 else w
    m = w.shape[0]
    b = (
        model.linear.bias.detach().to("cpu", torch.float64).numpy().reshape(-1)
        if model.linear.bias is not None
        else np.zeros(m)
    )
    if m == 2:
        raise FastfairError(
            "the model must output one logit per row (a binary classifier) or C >= 3 (multiclass), got 2"
        )
    if d != w.shape[1]:
        raise FastfairError(f"the model takes {w.shape[1]} features, X has {d}")
    if not (np.isfinite(w).all() and np.isfinite(b).all()):
        raise FastfairError("the affine model's weights are not finite (NaN or inf)")
    return w, b


def _affine_flips(w: np.ndarray, b: np.ndarray, x: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clean predictions (n,) and flips (radii, n) of the affine model f(x) = Wx + b, W of shape (1, d) (binary)
    or (C, d), C >= 3 (softmax regression), exactly (module docstring)."""
    if w.shape[0] > 1:
        return _softmax_regression_flips(w, b, x, radii)
    w, b0 = w[0], float(b[0])
    f = x @ w + b0
    clean = f > 0
    norm = float(np.linalg.norm(w))
    if norm == 0.0:  # constant logit: no boundary, nothing flips
        return clean.astype(np.int64), np.zeros((len(radii), len(x)), dtype=bool)
    reach = radii[:, None] * norm  # how far the logit moves over the ball
    flips = np.where(clean, f - reach <= 0, f + reach > 0)
    return clean.astype(np.int64), flips


def _softmax_regression_flips(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, radii: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Clean argmax (n,) and flips (radii, n) of f(x) = Wx + b with C >= 3 rows: a point predicted k flips at r
    iff g_kj(x) = f_k(x) - f_j(x) <= r‖w_k - w_j‖ for some j < k, or < r‖w_k - w_j‖ for some j > k."""
    f = x @ w.T + b  # (n, C)
    k = np.argmax(f, axis=1)  # ties: the lowest code
    rows = np.arange(len(x))
    gap = f[rows, k][:, None] - f  # g_kj, (n, C); >= 0, and > 0 for j < k
    pair = np.linalg.norm(w[:, None, :] - w[None, :, :], axis=2)  # ‖w_k - w_j‖, (C, C)
    dist = pair[k]  # (n, C)
    j = np.arange(w.shape[0])[None, :]
    below, above = j < k[:, None], j > k[:, None]
    flips = np.empty((len(radii), len(x)), dtype=bool)
    for i, r in enumerate(radii):
        reach = r * dist
        flips[i] = ((below & (gap <= reach)) | (above & (gap < reach))).any(axis=1)
    return k.astype(np.int64), flips


# ----------------------------------------------------------------------------------------------------------
# Attack: any model
# ----------------------------------------------------------------------------------------------------------
def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's logits of the rows of ``x``: (m,) for a binary model, (m, C) for a C-class one (C >= 3)."""
    out = model(x)
    if out.ndim == 2 and out.shape[0] == len(x) and out.shape[1] >= 3:
        return out
    if out.numel() != len(x):
        raise FastfairError(
            "the model must output one logit per row (a binary classifier) or C >= 3 (multiclass), got shape "
            f"{tuple(out.shape)}"
        )
    return out.reshape(-1)


def _predict(f: torch.Tensor) -> torch.Tensor:
    """Class codes of logits: 1[f > 0] for (m,) logits, the argmax (lowest code on ties) for (m, C)."""
    return (f > 0).long() if f.ndim == 1 else torch.argmax(f, dim=1)


def _finite_rows(f: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(f) if f.ndim == 1 else torch.isfinite(f).all(dim=1)


def _clean_logits(model: nn.Module, x64: np.ndarray) -> torch.Tensor:
    """The model's logits of every row, batched, in eval mode (its mode restored); each error is one line."""
    dtype, device = _model_place(model)
    x = torch.as_tensor(x64, dtype=dtype, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                f = torch.cat([_logits(model, x[i : i + BATCH_PAIRS]) for i in range(0, len(x), BATCH_PAIRS)])
            except RuntimeError as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise FastfairError(f"the model does not accept X of shape {tuple(x.shape)}: {first}") from None
    finally:
        model.train(was_training)
    if not torch.isfinite(f).all():
        raise FastfairError("the model returns NaN or infinite logits on X")
    return f


def _attack_flips(
    model: nn.Module, x64: np.ndarray, f: torch.Tensor, radii: np.ndarray, *, seed: int, restarts: int, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Clean predictions (n,) and the attack's flips (radii, n) (module docstring), from the clean logits ``f``."""
    dtype, device = _model_place(model)
    x = torch.as_tensor(x64, dtype=dtype, device=device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        clean = _predict(f)
        flipped = torch.zeros(len(x), dtype=torch.bool, device=device)
        flips = np.zeros((len(radii), len(x)), dtype=bool)
        rows_per_batch = max(1, BATCH_PAIRS // restarts)
        for k, r in enumerate(radii):
            todo = torch.nonzero(~flipped).reshape(-1)
            for start in range(0, len(todo), rows_per_batch):
                rows = todo[start : start + rows_per_batch]
                found = _attack_batch(model, x[rows], clean[rows], float(r), restarts, steps, gen)
                flipped[rows[found]] = True
            flips[k] = flipped.cpu().numpy()
    finally:
        model.train(was_training)
    return clean.cpu().numpy(), flips


def _attack_batch(
    model: nn.Module,
    x: torch.Tensor,
    clean: torch.Tensor,
    r: float,
    restarts: int,
    steps: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """Which rows of ``x`` (m, d), predicted ``clean`` (codes), the attack flips within radius ``r``: a bool
    tensor (m,)."""
    m, d = x.shape
    found = torch.zeros(m, dtype=torch.bool, device=x.device)
    # restart 0: the full normalised-gradient step from the clean point; the rest: uniform in the ball
    g0 = _margin_gradient(model, x, clean)[1]
    direction = torch.randn(m * (restarts - 1), d, generator=gen, dtype=x.dtype, device=x.device)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    u = torch.rand(m * (restarts - 1), 1, generator=gen, dtype=x.dtype, device=x.device)
    delta = torch.cat([-r * _unit(g0), r * u.pow(1.0 / d) * direction])
    row = torch.arange(m, device=x.device).repeat(restarts)  # pair j attacks row j mod m
    start = x.repeat(restarts, 1)
    alphas = r * FIRST_STEP * (LAST_STEP / FIRST_STEP) ** (torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1))
    for t in range(steps + 1):
        f, grad = _margin_gradient(model, start + delta, clean[row], with_grad=t < steps)
        hit = (_predict(f) != clean[row]) & _finite_rows(f)  # a NaN logit is no witness
        if hit.any():
            found[row[hit]] = True
            keep = ~found[row]
            if not keep.any():
                break
            row, start, delta = row[keep], start[keep], delta[keep]
            grad = None if grad is None else grad[keep]
        if t == steps:
            break
        delta = _project(delta.sub_(_unit(grad).mul_(float(alphas[t]))), r)
    return found


def _margin(f: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The margin of each row's clean prediction k: s·f with s = +1 (k = 1) or -1 (k = 0) for a binary logit,
    f_k - max_{j≠k} f_j for C >= 3 logits; the prediction changes only where it is <= 0."""
    if f.ndim == 1:
        return (clean.to(f.dtype) * 2 - 1) * f
    own = f.gather(1, clean[:, None])[:, 0]
    others = f.scatter(1, clean[:, None], float("-inf")).amax(dim=1)
    return own - others


def _margin_gradient(
    model: nn.Module, z: torch.Tensor, clean: torch.Tensor, *, with_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The logits f(z) (detached) and, if asked, the gradient of the margin (:func:`_margin`) of the clean
    predictions ``clean`` with respect to each row of z."""
    if not with_grad:
        with torch.no_grad():
            return _logits(model, z), None
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        f = _logits(model, z)
        (grad,) = torch.autograd.grad(_margin(f, clean).sum(), z)
    return f.detach(), grad


def _unit(v: torch.Tensor) -> torch.Tensor:
    """Each row of ``v`` divided by its norm; zero rows, and non-finite entries, become zero."""
    v = torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    return v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)


def _project(delta: torch.Tensor, r: float) -> torch.Tensor:
    """δ·min(1, r/‖δ‖) per row."""
    norm = delta.norm(dim=1, keepdim=True).clamp_min(torch.finfo(delta.dtype).tiny)
    return delta.mul_(torch.clamp(r / norm, max=1.0))


# ----------------------------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------------------------
def _tabulate(
    radii: np.ndarray,
    names: list[Hashable],
    codes: np.ndarray,
    labels: np.ndarray,
    clean: np.ndarray,
    flips: np.ndarray,
    method: str,
) -> pd.DataFrame:
    """The result frame from clean predictions (n,) and flips (radii, n)."""
    k = len(names)
    pooled = np.full(len(codes), k, dtype=np.intp)  # an extra code for the pooled row
    all_codes = np.concatenate([codes, pooled]) if k else pooled
    n_groups = np.bincount(all_codes, minlength=k + 1)
    correct = clean == labels

    def rate(mask: np.ndarray) -> np.ndarray:
        counts = np.bincount(all_codes, weights=np.tile(mask, 2 if k else 1).astype(np.float64), minlength=k + 1)
        return counts / np.maximum(n_groups, 1)

    clean_accuracy = rate(correct)
    records = []
    for i, r in enumerate(radii):
        flip_rate, robust = rate(flips[i]), rate(correct & ~flips[i])
        for j, name in enumerate([*names, ALL_GROUP]):
            if n_groups[j] == 0:
                continue
            records.append(
                (
                    float(r),
                    name,
                    int(n_groups[j]),
                    flip_rate[j],
                    robust[j],
                    clean_accuracy[j],
                    method,
                    "exact" if method == "exact" else "lower",
                )
            )
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))
