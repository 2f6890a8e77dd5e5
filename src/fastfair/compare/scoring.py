r"""How every method of the comparison is scored: metrics of the *expected* confusion matrix.

Fairlearn's mitigations are randomised classifiers: ``ExponentiatedGradient`` predicts with a predictor drawn
from a mixture, ``ThresholdOptimizer`` interpolates between two thresholds per group. Their ``predict`` draws
fresh random numbers on every call, so its metrics are noisy. Both expose, through their documented
``_pmf_predict``, the probability :math:`p_i = P(\hat Y_i = 1 \mid x_i)` with which they predict 1. Every
method here is scored from these probabilities, the same rule for all:

.. math::

    \mathrm{TP}_s = \sum_{i \in s} y_i\, p_i,\quad \mathrm{FP}_s = \sum_{i \in s} (1 - y_i)\, p_i,\quad
    \mathrm{FN}_s = \sum_{i \in s} y_i\, (1 - p_i),\quad \mathrm{TN}_s = \sum_{i \in s} (1 - y_i)(1 - p_i),

the expected confusion cells of group :math:`s` over the classifier's randomisation. Accuracy, the selection
rate, TPR and FPR are linear in :math:`p`, so these are exactly their expected values; PPV and FOR are the
ratios of expected counts (:math:`\mathrm{TP}_s / (\mathrm{TP}_s + \mathrm{FP}_s)`). Each gap is, as in
:func:`fastfair.metrics.fairness_gaps`, the largest minus the smallest group rate. A deterministic classifier
(ours: :math:`p_i = \mathbb 1[f(x_i) > 0]`) gets exactly its ordinary metrics, so the rule changes nothing for
it. A rate whose expected conditioning count is zero in some group is undefined and its gap is NaN with a
:class:`fastfair.metrics.FairnessWarning`, as in :mod:`fastfair.metrics`.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import roc_auc_score

from ..errors import require
from ..metrics import FairnessWarning
from ..vocabulary import GAP_RATES

#: Rounding a probability may carry (a mixture's weights add up to 1 only to a few ulps); beyond it is an error.
PMF_SLACK = 1e-9
#: How the scoring rule is named in results and reports.
SCORING_RULE = "expected confusion matrix over the classifier's randomisation (Fairlearn's _pmf_predict)"


def expected_rates(y: np.ndarray, p: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group rates of the expected confusion matrix: ``{rate: (k,) array}`` over the sorted groups of
    ``s`` (``selection_rate``, ``tpr``, ``fpr``, ``ppv``, ``for``), NaN where the expected denominator is 0."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    require(y.shape == p.shape == np.shape(s) and y.ndim == 1, "y, p and s must be 1-D arrays of one length")
    # a mixture's probabilities are sums of weights that add up to 1 only up to rounding: clip that rounding
    require(
        bool(np.all((p >= -PMF_SLACK) & (p <= 1 + PMF_SLACK))), "predicted probabilities must lie in [0, 1]"
    )
    p = np.clip(p, 0.0, 1.0)
    _, codes = np.unique(np.asarray(s), return_inverse=True)
    k = int(codes.max()) + 1 if len(codes) else 0
    tp = np.bincount(codes, weights=y * p, minlength=k)
    fp = np.bincount(codes, weights=(1 - y) * p, minlength=k)
    fn = np.bincount(codes, weights=y * (1 - p), minlength=k)
    tn = np.bincount(codes, weights=(1 - y) * (1 - p), minlength=k)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        out = np.full(k, np.nan)
        ok = den > 0
        out[ok] = num[ok] / den[ok]
        return out

    return {
        "selection_rate": ratio(tp + fp, tp + fp + fn + tn),
        "tpr": ratio(tp, tp + fn),
        "fpr": ratio(fp, fp + tn),
        "ppv": ratio(tp, tp + fp),
        "for": ratio(fn, fn + tn),
    }


def expected_summary(y: np.ndarray, p: np.ndarray, s: np.ndarray, scores: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, AUC and the five gaps of the expected confusion matrix (see the module docstring).

    ``scores`` rank the rows for the AUC (default ``p``); AUC is NaN when ``y`` holds one class.
    """
    y = np.asarray(y, dtype=np.float64)
    rates = expected_rates(y, p, s)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    out = {"accuracy": float(np.mean(y * p + (1 - y) * (1 - p))) if len(y) else float("nan")}
    scores = p if scores is None else np.asarray(scores, dtype=np.float64)
    out["auc"] = float(roc_auc_score(y, scores)) if len(np.unique(y)) == 2 else float("nan")
    for gap, rate in GAP_RATES.items():
        values = rates[rate]
        if np.isnan(values).any():
            warnings.warn(
                f"{rate} is undefined in some group (no expected cases), so the {gap} gap is NaN",
                FairnessWarning,
                stacklevel=2,
            )
            out[gap] = float("nan")
        else:
            out[gap] = float(values.max() - values.min())
    return out
