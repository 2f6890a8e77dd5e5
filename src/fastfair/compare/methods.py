"""The methods of the comparison, each with its knob, and the protocol that turns them into cells.

A method is a way of getting a (fairer) classifier of one model family; its *knob* is the one number that
trades accuracy for fairness (a radius, a constraint bound, a penalty weight), and sweeping it gives the
method's curve. Every method is trained with :class:`fastfair.estimator.RobustFairClassifier` and the same
settings (model, epochs, batch size, learning rate, seed), so that only the method differs:

=====================  ==========  ==================================================================
method                 knob        what it is
=====================  ==========  ==================================================================
``none``               --          ordinary training (the unmitigated model)
``robust``             r           robust training, the inner maximisation by ``trs`` (or ``auto``)
``eg-dp``, ``eg-eo``   eps         Fairlearn ``ExponentiatedGradient`` with ``DemographicParity`` /
                                   ``EqualizedOdds(difference_bound=eps)`` (and ``eps=eps``), our
                                   estimator (``solver="none"``) as the base learner
``to-dp``, ``to-eo``   --          Fairlearn ``ThresholdOptimizer`` (``demographic_parity`` /
                                   ``equalized_odds``) on the unmitigated model; **uses the sensitive
                                   attribute at prediction time**
``penalty-dp/eo``      lambda      ordinary training plus λ times the DP / EO gap of the predicted
                                   probabilities
``robust-penalty-dp``  lambda      robust training at a fixed radius plus the penalty
=====================  ==========  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FastfairError


@dataclass(frozen=True)
class Method:
    """One method of the comparison (see the module docstring)."""

    name: str
    label: str
    knob: str | None  #: the knob's name (``r``, ``eps``, ``lambda``), None for a method without one
    uses_sensitive_at_prediction: bool = False
    standard: bool = False  #: one of the fairness toolbox's standard mitigations (Fairlearn's)
    robust: bool = False  #: trains against worst-case perturbations

    def display(self) -> str:
        """The label used in every table and figure; marks a method that needs ``s`` at prediction time."""
        return f"{self.label} [uses s at prediction]" if self.uses_sensitive_at_prediction else self.label


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("none", "unmitigated", None),
        Method("robust", "robust training", "r", robust=True),
        Method("eg-dp", "ExpGrad DP", "eps", standard=True),
        Method("eg-eo", "ExpGrad EO", "eps", standard=True),
        Method("to-dp", "ThresholdOpt DP", None, uses_sensitive_at_prediction=True, standard=True),
        Method("to-eo", "ThresholdOpt EO", None, uses_sensitive_at_prediction=True, standard=True),
        Method("penalty-dp", "DP penalty", "lambda"),
        Method("penalty-eo", "EO penalty", "lambda"),
        Method("robust-penalty-dp", "robust + DP penalty", "lambda", robust=True),
        Method("robust-penalty-eo", "robust + EO penalty", "lambda", robust=True),
    )
}
#: The robust-training method whose curve the verdict compares with the standard mitigations.
ROBUST = "robust"
#: The unmitigated model, every curve's reference point.
UNMITIGATED = "none"


def method(name: str) -> Method:
    """The :class:`Method` called ``name``; :class:`FastfairError` naming the choices otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise FastfairError(f"unknown method {name!r}; choose from {', '.join(METHODS)}") from None


def penalty_of(name: str) -> str | None:
    """The fairness penalty (``"dp"`` or ``"eo"``) a method trains with, or None."""
    if name.startswith("penalty-") or name.startswith("robust-penalty-"):
        return name.rsplit("-", 1)[1]
    return None


def knob_text(name: str, knob: float | None) -> str:
    """A method's knob as short text for ids and labels: ``r=0.1``, ``eps=0.02``, ``lambda=3``; '' if none."""
    m = method(name)
    return "" if m.knob is None or knob is None else f"{m.knob}={knob:g}"
