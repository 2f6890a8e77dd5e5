"""RobustFairClassifier with C >= 3 classes: scikit-learn's checks, the output contract, fairness, model files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import check_estimator

from fastfair import metrics
from fastfair.estimator import EXPECTED_FAILED_CHECKS, RobustFairClassifier
from fastfair.vocabulary import GAP_KEYS
from helpers import cli_output

pytestmark = pytest.mark.usefixtures("single_threaded_linear_algebra")


def blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, y = make_blobs(n_samples=n, centers=[(-2, 0), (2, 0), (0, 2.5)], cluster_std=1.0, random_state=seed)
    labels = np.array(["ant", "bee", "cat"])[y]
    group = np.random.default_rng(seed).choice(["f", "m"], size=n)
    return X, labels, group


def test_check_estimator_runs_the_multiclass_checks_and_passes(monkeypatch):
    """With the multiclass tag, scikit-learn's suite trains and scores on three-class targets
    (check_classifiers_train's 0.83 accuracy bar, check_classifiers_classes with string labels, ...)."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    results = check_estimator(RobustFairClassifier(epochs=2), expected_failed_checks=EXPECTED_FAILED_CHECKS)
    statuses = {r["check_name"]: r["status"] for r in results}
    assert {name: status for name, status in statuses.items() if status != "passed"} == {
        name: "xfail" for name in EXPECTED_FAILED_CHECKS
    }
    assert RobustFairClassifier().__sklearn_tags__().classifier_tags.multi_class is True
    for must_run in ("check_classifiers_train", "check_classifiers_classes", "check_classifiers_one_label",
                     "check_supervised_y_2d", "check_decision_proba_consistency", "check_estimators_pickle"):
        assert statuses.get(must_run) == "passed", must_run
    assert "check_classifier_not_supporting_multiclass" not in statuses


def test_outputs_follow_the_multiclass_contract():
    X, y, _ = blobs()
    clf = RobustFairClassifier(solver="trs", radius=0.1, epochs=15, dtype="float64").fit(X, y)
    assert clf.classes_.tolist() == ["ant", "bee", "cat"]
    logits = clf.decision_function(X)
    proba = clf.predict_proba(X)
    assert logits.shape == proba.shape == (len(X), 3)
    # oracle: the softmax by hand, in float64
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(proba, e / e.sum(axis=1, keepdims=True), rtol=1e-12, atol=0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (clf.predict(X) == clf.classes_[logits.argmax(axis=1)]).all()
    # oracle: sklearn's multinomial logistic regression on the same (easy) blobs
    reference = LogisticRegression().fit(X, y).score(X, y)
    assert clf.score(X, y) >= reference - 0.05


def test_binary_targets_are_unchanged():
    X, y, _ = blobs()
    keep = y != "cat"
    clf = RobustFairClassifier(epochs=3).fit(X[keep], y[keep])
    assert clf.decision_function(X).shape == (len(X),) and clf.predict_proba(X).shape == (len(X), 2)
    assert clf.model_(__import__("torch").zeros(2, 2)).shape == (2,)


def test_fairness_is_the_worst_class_of_the_one_vs_rest_gaps():
    """Oracle: the binary gaps (fastfair.metrics.fairness_gaps) of each class against the rest, maximised."""
    X, y, s = blobs(300, seed=3)
    clf = RobustFairClassifier(solver="none", epochs=5).fit(X, y, sensitive_features=s)
    pred = clf.predict(X)
    for key in GAP_KEYS:
        worst = max(metrics.fairness_gaps(y == c, pred == c, s)[key] for c in clf.classes_)
        assert clf.fairness_[key] == pytest.approx(worst, abs=1e-12)
    assert list(clf.class_fairness_.index) == [0, 1, 2]
    assert clf.group_metrics_ is not None and len(clf.group_metrics_) == 2


def test_pickle_and_model_file_give_the_same_predictions(tmp_path):
    X, y, _ = blobs()
    clf = RobustFairClassifier(model="mlp", hidden=8, solver="pgd", radius=0.1, epochs=2).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    # a model file of a multiclass CSV run: the estimator built from it scores as the saved model does
    from fastfair.model_file import load_model

    path = tmp_path / "blobs.csv"
    import pandas as pd

    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "g": np.where(X[:, 0] > 0, "p", "q"), "y": y}).to_csv(path, index=False)
    code, _, err = cli_output("train", "--data", str(path), "--target", "y", "--sensitive", "g", "--epochs", "2",
                              "--out", str(tmp_path / "run"), "--no-progress")
    assert code == 0, err
    est = RobustFairClassifier.from_model_file(tmp_path / "run" / "model.pt")
    saved = load_model(tmp_path / "run" / "model.pt")
    Z = saved.features(pd.read_csv(path))
    assert est.classes_.tolist() == ["ant", "bee", "cat"]
    np.testing.assert_array_equal(est.predict_proba(Z), saved.predict_proba(Z))
    np.testing.assert_array_equal(est.predict(Z), np.asarray(saved.label_names)[saved.predict_codes(Z)])
