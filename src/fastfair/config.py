"""The settings of one training run (:class:`TrainConfig`) and the one check of each setting (:func:`check_setting`).

Every place that takes training settings from a user -- :meth:`TrainConfig.validate` (the library and
``fastfair train``), the sweep grid parser (:mod:`fastfair.experiments.grid_config`), the estimator
(:class:`fastfair.estimator.RobustFairClassifier`) and the benchmarks -- checks a setting by calling
:func:`check_setting`, so that a value is accepted or refused, with the same message, wherever it is given.

The module is torch-free at import time, so that parsing a grid file does not load torch. Only
:meth:`TrainConfig.validate` reaches into the torch layers, for what only they can tell: whether a device
exists (:func:`resolve_device`) and whether the solver takes the given options (:func:`fastfair.inner.make_inner`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FastfairError, require
from .vocabulary import ACTIVATIONS, DTYPES, FAIRNESS_PENALTIES, MODELS, SOLVERS

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Seeds go to ``torch.Generator.manual_seed`` (which takes at most 2**64 - 1), to numpy's ``default_rng`` and
#: into int64 columns of results tables: 0 <= seed < 2**63. Batch and training-set sizes share the int64 bound.
INT64_LIMIT = 2**63
#: More passes than this is no training run anyone means (and keeps the per-epoch history bounded).
MAX_EPOCHS = 1_000_000
#: Widest hidden layer accepted: the MLP's weights and its factored input Hessian grow with the width.
MAX_HIDDEN = 65_536
#: Most hidden layers accepted: deeper fully connected networks are not what a tabular classifier needs, and
#: every layer adds a backward pass to each Hessian-vector product of the inner solver.
MAX_LAYERS = 8

#: How each setting is called in messages, unless the caller names it (a config file names it by its key).
SETTING_LABELS: dict[str, str] = {
    "model": "model",
    "hidden": "hidden",
    "activation": "activation",
    "solver": "solver",
    "radius": "radius",
    "clean_weight": "clean weight",
    "epochs": "epochs",
    "batch_size": "batch size",
    "lr": "learning rate",
    "seed": "seed",
    "dtype": "dtype",
    "train_size": "train size",
    "fairness_penalty": "fairness penalty",
    "fairness_weight": "fairness weight",
}

#: Settings that name one of a fixed set of choices.
_CHOICES: dict[str, tuple[str, ...]] = {
    "model": MODELS,
    "activation": ACTIVATIONS,
    "solver": SOLVERS,
    "dtype": DTYPES,
}
#: Integer settings: their smallest value and the bound they must stay below.
_INTEGERS: dict[str, tuple[int, int]] = {
    "epochs": (1, MAX_EPOCHS + 1),
    "batch_size": (1, INT64_LIMIT),
    "train_size": (1, INT64_LIMIT),
    "seed": (0, INT64_LIMIT),
}
#: Scale settings, bounded by :func:`scale_range` of the run's dtype.
_SCALES = ("radius", "lr")


def scale_range(dtype: str) -> tuple[float, float]:
    """The range [lo, hi] of positive scales (radius, learning rate) that ``dtype`` computes with safely.

    lo = 2^⌊e_min/2⌋ and hi = 2^⌊(e_max - 1)/2⌋, with e_min and e_max the exponents of the smallest normal and
    the overflow threshold of the dtype (numpy's ``finfo.minexp`` and ``finfo.maxexp``): for every r in
    [lo, hi], r² is a finite normal number (lo² is the smallest normal, hi² ≤ max/2), so r, r², r·‖w‖ and
    ‖g‖/r neither overflow nor vanish for weights and gradients of ordinary size. float32: [2⁻⁶³, 2⁶³]
    ≈ [1.1e-19, 9.2e18]; float64: [2⁻⁵¹¹, 2⁵¹¹] ≈ [1.5e-154, 6.7e153].
    """
    info = np.finfo(np.dtype(dtype))
    return 2.0 ** (info.minexp // 2), 2.0 ** ((info.maxexp - 1) // 2)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_hidden(value: Any, label: str = "hidden") -> int | tuple[int, ...]:
    """Check hidden-layer widths and return them in canonical form: an ``int`` for one hidden layer, a tuple
    of ≥ 2 ``int`` for several (first layer first).

    ``value`` is one width (an integer, not a bool) or a non-empty list / tuple / 1-D array of at most
    :data:`MAX_LAYERS` widths, each with 1 ≤ width ≤ :data:`MAX_HIDDEN`. A list of one width is that width:
    ``[16]`` and ``16`` are the same network, and so the same setting (the same sweep cell). A refused value
    raises :class:`FastfairError` with one line that starts with ``label``.
    """
    rule = f"a positive integer (at most {MAX_HIDDEN}) or a list of 1 to {MAX_LAYERS} of them, one per hidden layer"
    if _is_integer(value):
        require(1 <= value <= MAX_HIDDEN, f"{label} must be {rule}, got {value!r}")
        return int(value)
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    require(isinstance(value, (list, tuple)), f"{label} must be {rule}, got {value!r}")
    widths = list(value)
    require(1 <= len(widths) <= MAX_LAYERS, f"{label} must be {rule}, got {len(widths)} widths: {widths!r}")
    for i, width in enumerate(widths, start=1):
        require(
            _is_integer(width) and 1 <= width <= MAX_HIDDEN,
            f"{label} must be {rule}, got {widths!r} (layer {i}: {width!r})",
        )
    return int(widths[0]) if len(widths) == 1 else tuple(int(w) for w in widths)


def hidden_widths(hidden: int | tuple[int, ...]) -> tuple[int, ...]:
    """The widths of canonical ``hidden`` (:func:`check_hidden`) as a tuple: ``16 -> (16,)``. Pure."""
    return (hidden,) if isinstance(hidden, int) else tuple(hidden)


def check_setting(key: str, value: Any, *, dtype: str = "float32", name: str | None = None) -> Any:
    """Check one training setting and return it normalised (numpy scalars become Python ``int`` / ``float``).

    ``key`` is a field of :class:`TrainConfig` (not ``device`` or ``solver_options``, which need torch to check).
    The rules:

    * ``model``, ``activation``, ``solver``, ``dtype``: one of the names in :mod:`fastfair.vocabulary`;
    * ``hidden``: one width or a list of widths, one per hidden layer (:func:`check_hidden`: 1 to
      ``MAX_LAYERS`` widths, each 1 ≤ width ≤ ``MAX_HIDDEN``); returned canonical (an ``int`` for one layer,
      a tuple for several);
    * ``epochs``, ``batch_size``, ``train_size``: integers (not bools) with 1 ≤ value, epochs ≤
      ``MAX_EPOCHS``, sizes < 2**63; ``train_size`` may also be ``None`` (all rows);
    * ``seed``: an integer with 0 ≤ seed < 2**63;
    * ``radius``, ``lr``: real numbers in :func:`scale_range` of ``dtype`` (NaN and ±inf fail), so that the run
      can neither overflow nor underflow on them;
    * ``clean_weight``: a real number w with 0 ≤ w ≤ 1;
    * ``fairness_penalty``: ``None`` (no penalty) or one of :data:`FAIRNESS_PENALTIES`;
    * ``fairness_weight``: a finite real number λ ≥ 0 (how the two go together: :func:`check_fairness`).

    A refused value raises :class:`FastfairError` with one line that starts with ``name`` (default: the
    setting's label, e.g. "learning rate"); for a name setting, ``name`` (when given) prefixes the message
    "unknown dtype 'x'; choose one of ...". The sweep grid passes the key's place in the config file as ``name``.
    """
    label = name or SETTING_LABELS[key]
    if key in _CHOICES:
        choices = _CHOICES[key]
        where = f"{name}: " if name else ""
        require(
            isinstance(value, str) and value in choices,
            f"{where}unknown {key} {value!r}; choose one of {', '.join(choices)}",
        )
        return value
    if key == "hidden":
        return check_hidden(value, label)
    if key in _INTEGERS:
        if key == "train_size" and value is None:
            return None
        low, high = _INTEGERS[key]
        top = "2**63 - 1" if high == INT64_LIMIT else str(high - 1)
        kind = "positive integer" if low == 1 else "non-negative integer"
        also = " or None (all rows)" if key == "train_size" else ""
        require(
            _is_integer(value) and low <= value < high,
            f"{label} must be a {kind} (at most {top}){also}, got {value!r}",
        )
        return int(value)
    if key in _SCALES:
        lo, hi = scale_range(dtype)
        require(
            _is_real(value) and lo <= value <= hi,
            f"{label} must be a positive number in [2**{math.log2(lo):.0f}, 2**{math.log2(hi):.0f}] (about {lo:.1e} "
            f"to {hi:.1e}, the scales that {dtype} computes with safely), got {value!r}",
        )
        return float(value)
    if key == "clean_weight":
        require(_is_real(value) and 0 <= value <= 1, f"{label} must be a number in [0, 1], got {value!r}")
        return float(value)
    if key == "fairness_penalty":
        where = f"{name}: " if name else ""
        require(
            value is None or (isinstance(value, str) and value in FAIRNESS_PENALTIES),
            f"{where}unknown fairness penalty {value!r}; choose one of {', '.join(FAIRNESS_PENALTIES)} (or none)",
        )
        return value
    if key == "fairness_weight":
        require(
            _is_real(value) and math.isfinite(value) and value >= 0,
            f"{label} must be a finite number >= 0, got {value!r}",
        )
        return float(value)
    raise KeyError(f"{key!r} is not a training setting")


def check_fairness(penalty: Any, weight: Any, *, names: tuple[str, str] | None = None) -> tuple[str | None, float]:
    """Check a fairness penalty and its weight λ together; return them normalised.

    Each goes through :func:`check_setting` on its own, then the pair: a weight λ > 0 with no penalty is
    refused (a weight of nothing is a mistake, most likely a forgotten ``--fairness-penalty``); a penalty with
    λ = 0 is accepted: the run trains exactly as without a penalty -- the unpenalised end of a λ curve -- and
    still records the penalty's value per epoch. ``names`` (penalty, weight) label the two in messages (the
    command line passes its option names, a grid file its keys).
    """
    penalty_name, weight_name = names or (None, None)
    penalty = check_setting("fairness_penalty", penalty, name=penalty_name)
    weight = check_setting("fairness_weight", weight, name=weight_name)
    require(
        penalty is not None or weight == 0,
        f"{weight_name or SETTING_LABELS['fairness_weight']} {weight:g} needs a fairness penalty "
        f"({' or '.join(FAIRNESS_PENALTIES)}) to weigh; none was given",
    )
    return penalty, weight


@dataclass
class TrainConfig:
    """Everything that defines one training run. Same config and data ⇒ same numbers."""

    model: str = "affine"
    #: hidden-layer widths of the MLP: an int (one hidden layer) or a tuple of ints (several, first layer first)
    hidden: int | tuple[int, ...] = 16
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
    #: ``None``, ``"dp"`` or ``"eo"``: the fairness penalty added to the loss, λ·penalty
    #: (:func:`fastfair.losses.fairness_penalty`); it needs the training rows' groups
    fairness_penalty: str | None = None
    #: λ ≥ 0, the weight of the fairness penalty (λ > 0 needs a penalty; a penalty with λ = 0 is only recorded)
    fairness_weight: float = 0.0

    def validate(self) -> TrainConfig:
        """Check every field, raising :class:`FastfairError` with a one-line message on the first bad one.

        The numbers and names go through :func:`check_setting` (the rules are listed there), the dtype before
        the radius and the learning rate, which it bounds. ``device`` must name a device this machine has
        (:func:`resolve_device`); ``solver_options`` must be a mapping of option names that the solver takes,
        with valid values (:func:`fastfair.inner.make_inner`), and a ``seed`` option obeys the rule of
        ``seed``. ``fairness_penalty`` and ``fairness_weight`` are checked as a pair (:func:`check_fairness`).
        On success, numbers are normalised to Python ``int`` / ``float`` (e.g. numpy scalars) and
        ``solver_options`` to a ``dict``, and ``self`` is returned.
        """
        for key in ("model", "activation", "solver", "dtype", "hidden"):
            setattr(self, key, check_setting(key, getattr(self, key)))
        for key in ("radius", "clean_weight", "epochs", "batch_size", "lr", "seed", "train_size"):
            setattr(self, key, check_setting(key, getattr(self, key), dtype=self.dtype))
        self.fairness_penalty, self.fairness_weight = check_fairness(self.fairness_penalty, self.fairness_weight)
        # devices and solvers live in the torch layer: imported here, so that importing this module (to parse a
        # grid file, say) does not load torch
        import torch

        from .inner import make_inner

        if isinstance(self.device, torch.device):
            self.device = str(self.device)
        require(isinstance(self.device, str), f"device must be a string such as 'cpu', got {self.device!r}")
        resolve_device(self.device)
        require(
            isinstance(self.solver_options, Mapping),
            f"solver options must be a mapping of option name to value, got {type(self.solver_options).__name__}",
        )
        self.solver_options = dict(self.solver_options)
        for key in self.solver_options:
            require(isinstance(key, str), f"solver option names must be strings, got {key!r}")
        if self.solver_options.get("seed") is not None:
            check_setting("seed", self.solver_options["seed"], name="solver option seed")
        make_inner(self.solver, **self.solver_options)  # validates solver options
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-friendly)."""
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """Parse a device string, with a clear error when CUDA is asked for but absent."""
    import torch  # here, not at the top: see the module docstring

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise FastfairError(f"unknown device {name!r}; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FastfairError(f"device {name!r} requested but CUDA is not available on this machine")
    require(device.type in ("cpu", "cuda"), f"unsupported device {name!r}; use 'cpu' or 'cuda'")
    return device
