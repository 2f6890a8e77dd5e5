r"""The scikit-learn face of fastfair: :class:`RobustFairClassifier`.

A thin, validating wrapper around :func:`fastfair.training.train_arrays`. Everything numerical happens in
the library (models, inner maximisers, the Adam outer loop); this module only checks user input the
scikit-learn way, maps the sorted class labels to codes 0, ..., C-1 (two labels to {0, 1}), and turns logits into
the ``predict`` / ``predict_proba`` / ``decision_function`` contract, so the estimator drops into ``Pipeline``,
``GridSearchCV``, ``cross_val_score`` and Fairlearn's ``MetricFrame`` with no glue.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import Tags
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from . import metrics
from .config import TrainConfig, check_hidden
from .errors import FastfairError
from .models import build_model
from .training import check_sample_weight, predict_logits, predicted_labels, probabilities, train_arrays
from .vocabulary import GAP_KEYS

__all__ = ["EXPECTED_FAILED_CHECKS", "RobustFairClassifier"]

_FLOAT_DTYPES = [np.float64, np.float32]

#: scikit-learn estimator checks that cannot hold for the estimator's defaults, each with its reason: pass it as
#: ``check_estimator(..., expected_failed_checks=EXPECTED_FAILED_CHECKS)`` (or to ``parametrize_with_checks``).
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_sample_weight_equivalence_on_dense_data": (
        "integer sample weights equal row repetition only up to rounding, and only when one mini-batch holds every "
        "row: with the default batch_size=32 a repeated row is visited once per copy, in different batches, and "
        "even in one batch the float32 sums of the weighted and the repeated fit round differently (their "
        "predicted probabilities differ by about one float32 ulp, above the check's rtol of 1e-7); with "
        "dtype='float64' and one full batch the check passes"
    ),
}


def initial_model(config: TrainConfig, n_features: int, n_classes: int = 2) -> nn.Module:
    """The network the estimator starts from: :func:`fastfair.models.build_model` for ``config`` (one logit for
    ``n_classes`` = 2, ``n_classes`` logits for C >= 3), except that the affine model starts at W = 0, b = 0.

    Logistic regression is convex (and so is its robust loss, ℓ(y·(wᵀx + b) - r‖w‖) up to the label sign), so
    the starting point does not change the optimum -- but from zero every Adam step moves w along the data's
    gradient instead of fighting a random initial direction, which is what makes a few epochs on a small data
    set already useful (scikit-learn's ``LogisticRegression`` starts at zero too). Softmax regression is convex
    too, and from W = 0 its rows separate by the classes' gradients alone. The MLP keeps its seeded random
    initialisation, which it needs to break the symmetry between hidden units.
    """
    classes = {} if n_classes == 2 else {"n_classes": n_classes}
    model = build_model(
        config.model, n_features, hidden=config.hidden, activation=config.activation, seed=config.seed, **classes
    )
    if config.model == "affine":
        with torch.no_grad():
            for param in model.parameters():
                param.zero_()
    return model


class RobustFairClassifier(ClassifierMixin, BaseEstimator):
    r"""Binary or multiclass classifier trained to be robust to bounded input perturbations, with fairness
    reporting.

    Training solves the robust (adversarial) empirical-risk problem

    .. math::

        \min_\theta \; \frac1n \sum_{i=1}^n \max_{\lVert\delta_i\rVert_2 \le r}
        \ell\bigl(f_\theta(x_i + \delta_i),\, y_i\bigr),
        \qquad \ell(z, y) = \log(1 + e^{z}) - y z,

    for two classes (one logit :math:`z`), and for :math:`C \ge 3` classes (logits :math:`z \in \mathbb R^C`,
    labels coded :math:`0, \dots, C-1` in ``classes_`` order) the softmax cross-entropy
    :math:`\ell(z, y) = \log \sum_k e^{z_k} - z_y`; ``predict_proba`` is then the softmax of the logits and
    ``predict`` their argmax (ties to the first class). The rest of this description is for the binary case;
    each part carries over with the multiclass loss (the fairness gaps of ``fairness_`` are then the worst
    class's one-vs-rest gaps),

    where :math:`f_\theta` is a logistic-regression (``model="affine"``) or fully connected (``model="mlp"``,
    one or more hidden layers of widths ``hidden``) logit and :math:`r` is ``radius``. On every mini-batch the
    inner maximisation is solved per sample by ``solver`` -- ``"trs"`` maximises the exact second-order Taylor
    model of the loss over the ball (a trust-region subproblem; for the affine model this is the exact worst
    case :math:`\delta^* = r\,\mathrm{sign}(\sigma(f) - y)\,w/\lVert w\rVert`), ``"pgd"`` / ``"pgd-paper"``
    run projected gradient ascent, ``"random"`` draws a random perturbation, ``"none"`` trains on clean data,
    and ``"auto"`` (the default) picks per model: ``"trs"`` for smooth models (affine, or an MLP with a twice
    differentiable activation) and ``"pgd"`` for piecewise-linear ones (``relu``, ``leaky_relu``), whose input
    Hessian through the logistic loss is the rank-one :math:`\ell''\,\nabla f\,\nabla f^\top`, so that the
    trust-region step is a single normalised gradient step of length :math:`r` and PGD's further steps can only
    add to it -- and one Adam step is taken on the loss at the perturbed points, optionally mixed with the clean loss as
    :math:`(1-w)\,\ell(x+\delta^*) + w\,\ell(x)` with :math:`w` = ``clean_weight``. With ``sample_weight``
    every batch mean is the weighted mean :math:`\sum_i s_i \ell_i / \sum_i s_i`. With ``fairness_penalty``
    (``"dp"`` or ``"eo"``) the objective gains :math:`\lambda\,P` with :math:`\lambda` = ``fairness_weight``
    and :math:`P` the gap between the groups of ``sensitive_features`` of the batch's clean predicted
    probabilities :math:`\sigma(f_\theta(x))` (``"dp"``: :math:`\max_a \bar p_a - \min_a \bar p_a` over the
    groups' weighted mean probabilities; ``"eo"``: the larger of that gap among the positives and among the
    negatives; see :func:`fastfair.losses.fairness_penalty`). ``classes_[1]`` is the
    positive class: ``decision_function`` returns :math:`f_\theta(x)` and ``predict_proba[:, 1]`` is
    :math:`\sigma(f_\theta(x))`. Training the decision boundary to keep a margin of :math:`r` around every
    training point is what tends to shrink the between-group gaps reported in ``fairness_``.

    Parameters
    ----------
    solver : {"auto", "trs", "trs-paper", "pgd", "pgd-paper", "random", "none"}, default="auto"
        Inner maximiser (``"none"`` = ordinary, non-robust training; ``"auto"``: ``"trs"`` for smooth models,
        ``"pgd"`` for piecewise-linear ones, see above; ``"trs-paper"`` / ``"pgd-paper"``: the reference code's
        solvers, for reproductions).
    radius : float, default=0.1
        L2 radius :math:`r` of the perturbation ball, in the units of the (scaled) features: put a
        ``StandardScaler`` in front of the estimator. Must lie in the range where :math:`r^2` stays a finite
        normal number of ``dtype`` (:func:`fastfair.config.scale_range`: about [1e-19, 9e18] for float32).
    model : {"affine", "mlp"}, default="affine"
        Logistic regression, or a fully connected network with the hidden layers ``hidden``.
    hidden : int or tuple of int, default=16
        Widths of the MLP's hidden layers, first layer first: an int is one hidden layer (``16``), a tuple
        one layer per entry (``(64, 32)``: :math:`f(x) = v^\top\phi(W_2\,\phi(W_1 x + b_1) + b_2) + c`);
        1 to 8 layers, each 1 to 65536 wide (ignored for ``"affine"``).
    activation : {"tanh", "sigmoid", "softplus", "gelu", "relu", "leaky_relu"}, default="tanh"
        Activation of every hidden layer of the MLP (ignored for ``"affine"``).
    clean_weight : float in [0, 1], default=0.0
        Weight :math:`w` of the clean loss in the training objective.
    epochs : int, default=10
        Passes over the training data.
    batch_size : int, default=32
        Mini-batch size.
    lr : float, default=1e-2
        Adam learning rate (in the same range as ``radius``).
    seed : int, default=0
        Seeds the initial weights and the shuffling: the same seed, data and device give the same model.
        0 ≤ seed < 2**63.
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the torch model.
    solver_options : dict or None, default=None
        Extra keyword options for the inner solver (e.g. PGD step counts); see :mod:`fastfair.inner`.
    fairness_penalty : {"dp", "eo"} or None, default=None
        Fairness penalty added to the training loss; ``fit`` then needs ``sensitive_features``.
    fairness_weight : float, default=0.0
        Its weight :math:`\lambda \ge 0` (finite). :math:`\lambda > 0` needs a ``fairness_penalty``; a penalty with
        :math:`\lambda = 0` trains as without one and records its value in ``history_``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The sorted class labels; with two, ``classes_[1]`` is the positive class.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names seen in ``fit`` (only when ``X`` had string column names, e.g. a DataFrame).
    model_ : torch.nn.Module
        The trained network, mapping a float tensor (n, d) to logits (n,) (binary) or (n, C) (C >= 3 classes).
    config_ : fastfair.config.TrainConfig
        The validated training configuration that produced ``model_``.
    history_ : list of dict
        One record per epoch: ``train_loss``, ``train_accuracy``, ``epoch_seconds``, ``inner_seconds`` (loss and
        accuracy weighted by ``sample_weight``), and ``train_penalty`` when a ``fairness_penalty`` is set.
    fairness_ : dict or None
        Absolute between-group gaps (max minus min over groups) of the training predictions --
        ``independence``, ``separation_tpr``, ``separation_fpr``, ``sufficiency_ppv``, ``sufficiency_for`` --
        when ``sensitive_features`` was passed to ``fit`` (see :func:`fastfair.metrics.fairness_gaps`);
        else None. With C >= 3 classes each is the worst class's one-vs-rest gap (the largest over classes,
        :func:`fastfair.metrics.classification_summary`).
    group_metrics_ : pandas.DataFrame or None
        Per-group table on the training data (:func:`fastfair.metrics.group_table`), or None.
    class_fairness_ : pandas.DataFrame or None
        With C >= 3 classes and ``sensitive_features``: the per-class one-vs-rest gaps on the training data
        (:func:`fastfair.metrics.per_class_table`); else None.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from fastfair.estimator import RobustFairClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = np.where(X[:, 0] + X[:, 1] > 0, "approved", "denied")
    >>> group = rng.choice(["a", "b", "c"], size=200)
    >>> clf = make_pipeline(StandardScaler(), RobustFairClassifier(solver="trs", radius=0.1, epochs=5))
    >>> clf = clf.fit(X, y, robustfairclassifier__sensitive_features=group)
    >>> clf.classes_.tolist()
    ['approved', 'denied']
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> bool(clf.score(X, y) > 0.9)
    True
    >>> sorted(clf[-1].fairness_)  # gaps on the training data, max minus min over the three groups
    ['independence', 'separation_fpr', 'separation_tpr', 'sufficiency_for', 'sufficiency_ppv']
    """

    def __init__(
        self,
        solver: str = "auto",
        radius: float = 0.1,
        model: str = "affine",
        hidden: int | tuple[int, ...] = 16,
        activation: str = "tanh",
        clean_weight: float = 0.0,
        epochs: int = 10,
        batch_size: int = 32,
        lr: float = 1e-2,
        seed: int = 0,
        device: str = "cpu",
        dtype: str = "float32",
        solver_options: Mapping[str, Any] | None = None,
        fairness_penalty: str | None = None,
        fairness_weight: float = 0.0,
    ) -> None:
        self.solver = solver
        self.radius = radius
        self.model = model
        self.hidden = hidden
        self.activation = activation
        self.clean_weight = clean_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.device = device
        self.dtype = dtype
        self.solver_options = solver_options
        self.fairness_penalty = fairness_penalty
        self.fairness_weight = fairness_weight

    # ------------------------------------------------------------------------------------------------------
    # scikit-learn plumbing
    # ------------------------------------------------------------------------------------------------------
    def __sklearn_tags__(self) -> Tags:
        """Binary and multiclass, dense, NaN-free, deterministic (scikit-learn's estimator tags)."""
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True  # C >= 3 classes: softmax outputs
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False  # same seed, data and device => same model
        return tags

    @classmethod
    def from_model_file(cls, path: str | os.PathLike[str]) -> RobustFairClassifier:
        """A fitted estimator holding the network saved by ``fastfair train --out`` (``model.pt``).

        The file is read as data only (tensors and a JSON header, :func:`fastfair.model_file.load_model`), never
        executed. The hyperparameters are the recorded training configuration (on the CPU); ``model_`` is the
        saved network, ``config_`` its configuration, ``history_`` its training history, ``classes_`` the label
        values in code order (binary: ``classes_[1]`` is the positive class; the names when the negative class is
        "every other value"; multiclass: the C label values). It takes the network's input, the **standardised
        encoded features** (what :meth:`fastfair.model_file.SavedModel.features` returns for a data frame), and
        its ``decision_function``, ``predict_proba`` and ``predict`` equal the saved model's on them. ``fit``
        retrains from scratch.
        """
        from .model_file import load_model

        saved = load_model(path)
        recorded = saved.training
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        params = {k: v for k, v in recorded.items() if k in accepted}
        params["device"] = "cpu"
        if "hidden" in params:
            params["hidden"] = check_hidden(params["hidden"])
        if "solver_options" in params and not params["solver_options"]:
            params["solver_options"] = None
        estimator = cls(**params)
        fields = set(inspect.signature(TrainConfig).parameters)
        config = TrainConfig(**{k: v for k, v in recorded.items() if k in fields})
        config.device = "cpu"
        config.hidden = check_hidden(config.hidden)
        values = saved.label_values
        estimator.classes_ = np.asarray(saved.label_names if values[0] is None else values)
        estimator.n_features_in_ = len(saved.mean)
        estimator.model_ = saved.model
        estimator.config_ = config
        estimator.history_ = list(saved.header.get("history", []))
        estimator.fairness_ = None
        estimator.group_metrics_ = None
        estimator.class_fairness_ = None
        return estimator

    def _train_config(self) -> TrainConfig:
        """The hyperparameters as a validated :class:`TrainConfig`: :meth:`TrainConfig.validate` checks every
        one of them by the rules of :func:`fastfair.config.check_setting` (the command line and the sweep grid
        use the same), raising :class:`~fastfair.errors.FastfairError` (a ``ValueError``) on a bad one."""
        return TrainConfig(
            model=self.model,
            hidden=self.hidden,
            activation=self.activation,
            solver=self.solver,
            radius=self.radius,
            clean_weight=self.clean_weight,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed,
            device=self.device,
            dtype=self.dtype,
            train_size=None,
            solver_options={} if self.solver_options is None else self.solver_options,
            fairness_penalty=self.fairness_penalty,
            fairness_weight=self.fairness_weight,
        ).validate()

    @staticmethod
    def _writable(X: np.ndarray) -> np.ndarray:
        # torch cannot share memory with a read-only buffer (e.g. a memmap) and would warn; copy instead.
        return X if X.flags.writeable else X.copy()

    # ------------------------------------------------------------------------------------------------------
    # fit / predict
    # ------------------------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, sample_weight: Any = None, sensitive_features: Any = None) -> RobustFairClassifier:
        r"""Train the robust classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric features (numpy array or pandas DataFrame); sparse input, NaN and inf are rejected.
        y : array-like of shape (n_samples,)
            Two or more distinct labels of any sortable type (ints, strings, bools). With two, the larger one
            after sorting (``classes_[1]``) is the positive class; with C >= 3 the model has C outputs and is
            trained with the softmax cross-entropy.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative finite weight of each sample, not all zero: every mini-batch mean of the loss (and the
            group rates of the fairness penalty) is weighted, :math:`\sum_i s_i \ell_i / \sum_i s_i` over the
            batch. A zero weight is the same fit as removing the sample. Weights are not repetitions: a
            mini-batch learner visits a repeated row once per copy, in different batches, so integer weights
            equal repetition exactly only with one batch holding all rows (and up to rounding).
        sensitive_features : array-like of shape (n_samples,) or (n_samples, m), default=None
            Group membership of each sample (any sortable labels). Required when ``fairness_penalty`` is set
            (its groups); otherwise not used for training. When given, ``fairness_`` and ``group_metrics_``
            report the between-group gaps of the fitted model's training predictions. Inside a ``Pipeline``
            pass it as ``<step>__sensitive_features``, or with metadata routing enabled request it via
            ``set_fit_request(sensitive_features=True)``.

        Returns
        -------
        self
        """
        config = self._train_config()
        X, y = validate_data(self, X, y, dtype=_FLOAT_DTYPES, accept_sparse=False, y_numeric=False)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of 2 classes, but the data contains only one class: "
                f"{classes[0]!r}"
            )
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type not in ("binary", "multiclass"):
            raise ValueError(
                f"Only binary and multiclass classification are supported. The type of the target is {y_type}."
            )
        sensitive = None
        if sensitive_features is not None:
            sensitive = self._check_sensitive(sensitive_features, len(y))
        elif config.fairness_penalty is not None:
            raise FastfairError(
                f"fairness_penalty={config.fairness_penalty!r} needs sensitive_features (one group label per sample)"
            )
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, len(y))

        n_classes = len(classes)
        codes = np.searchsorted(classes, y).astype(np.int64)  # 0..C-1 in classes_ order (binary: y == classes[1])
        multiclass = {} if n_classes == 2 else {"n_classes": n_classes}
        result = train_arrays(
            self._writable(X),
            codes,
            config,
            model=initial_model(config, X.shape[1], n_classes),
            sample_weight=sample_weight,
            groups=sensitive if config.fairness_penalty is not None else None,
            **multiclass,
        )
        self.classes_ = classes
        self.model_ = result.model
        self.config_ = config
        self.history_ = result.history

        self.fairness_: dict[str, float] | None = None
        self.group_metrics_: pd.DataFrame | None = None
        self.class_fairness_: pd.DataFrame | None = None
        if sensitive is not None:
            logits = self._logits(X)
            y_pred = predicted_labels(logits)
            if n_classes == 2:
                self.group_metrics_ = metrics.group_table(codes, y_pred, sensitive, scores=expit(logits))
            else:
                self.group_metrics_ = metrics.group_table(codes, y_pred, sensitive, n_classes=n_classes)
            if len(self.group_metrics_) >= 2:
                if n_classes == 2:
                    self.fairness_ = metrics.fairness_gaps(codes, y_pred, sensitive)
                else:
                    summary = metrics.classification_summary(codes, y_pred, sensitive, n_classes=n_classes)
                    self.fairness_ = {k: float(summary[k]) for k in GAP_KEYS}
                    self.class_fairness_ = metrics.per_class_table(codes, y_pred, sensitive, n_classes)
            else:
                warnings.warn(
                    "sensitive_features holds a single group, so no fairness gaps were computed "
                    "(fairness_ is None)",
                    UserWarning,
                    stacklevel=2,
                )
        return self

    @staticmethod
    def _check_sensitive(sensitive_features: Any, n: int) -> np.ndarray:
        """One group label per sample. Several columns (a DataFrame or an (n, m) array) define intersectional
        groups, one per combination that occurs, labelled ``"a|b"`` (:func:`fastfair.metrics.intersectional_labels`)."""
        if isinstance(sensitive_features, pd.DataFrame) and sensitive_features.shape[1] == 1:
            sensitive_features = sensitive_features.iloc[:, 0]
        s = sensitive_features if isinstance(sensitive_features, pd.DataFrame) else np.asarray(sensitive_features)
        if s.ndim == 2 and s.shape[1] == 1:
            s = s[:, 0]
        if s.ndim == 2 and s.shape[0] == n and s.shape[1] > 1:
            if pd.isna(np.asarray(s, dtype=object)).any():
                raise FastfairError("sensitive_features contains missing values (NaN/None)")
            return metrics.intersectional_labels(s)
        if s.ndim != 1 or len(s) != n:
            raise FastfairError(
                f"sensitive_features must hold one label per sample: expected shape ({n},) (or ({n}, m) for m "
                f"sensitive columns), got {s.shape}"
            )
        if pd.isna(s).any():
            raise FastfairError("sensitive_features contains missing values (NaN/None)")
        return s

    def _logits(self, X: np.ndarray) -> np.ndarray:
        return predict_logits(self.model_, self._writable(X), self.config_)

    def decision_function(self, X: Any) -> np.ndarray:
        """Logit :math:`f_\\theta(x)` of the positive class ``classes_[1]``, shape (n_samples,); with C >= 3
        classes the C logits, shape (n_samples, C), columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_FLOAT_DTYPES, accept_sparse=False, reset=False)
        return self._logits(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order: (σ(-f), σ(f)) for
        two classes, the softmax of the logits (in float64, rows summing to 1) for C >= 3."""
        logits = self.decision_function(X)
        if logits.ndim == 2:
            return probabilities(logits)
        return np.column_stack([expit(-logits), expit(logits)])

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (values of ``classes_``): ``classes_[1]`` where the logit is positive; with C >= 3
        classes the argmax of the logits (the first class on ties)."""
        codes = predicted_labels(self.decision_function(X))  # checks fitted-ness before classes_ is touched
        return self.classes_[codes]

