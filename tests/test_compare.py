"""`fastfair compare`: the scoring rule, the dominance rule, selection on validation, cells that run and resume,
Fairlearn's mitigations with our estimator, the ThresholdOptimizer mark, and the command's one-line errors."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfair import cli, metrics
from fastfair.compare import analysis
from fastfair.compare.cell import CompareCell, run_compare_cell
from fastfair.compare.methods import METHODS
from fastfair.compare.protocol import compare_plan
from fastfair.compare.run import run_compare
from fastfair.compare.scoring import expected_rates, expected_summary
from fastfair.experiments import DataSpec
from fastfair.vocabulary import GAP_KEYS
from helpers import run_cli

UNFAIR2D = DataSpec(label="unfair2d", name="unfair2d")


@pytest.fixture(autouse=True)
def _register(monkeypatch):
    monkeypatch.setitem(cli.SUBCOMMANDS, "compare", "compare")


def tiny_plan(methods: tuple[str, ...], seeds: int = 1, **knobs):
    """Unfair2D, 2 epochs of batch 50: a plan whose cells take a fraction of a second each."""
    plan = compare_plan(UNFAIR2D, quick=True, seeds=seeds)
    settings = {"methods": methods, "epochs": 2, "batch_size": 50, "radii": (0.05, 0.18), "eg_max_iter": 3,
                "robustness_radii": (0.1, 0.2)}  # fmt: skip
    settings.update(knobs)
    return replace(plan, knobs=replace(plan.knobs, **settings))


# ------------------------------------------------------------------------------------------------------------
# scoring: the expected confusion matrix
# ------------------------------------------------------------------------------------------------------------
def test_expected_metrics_of_a_deterministic_classifier_are_its_ordinary_metrics():
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 200), rng.choice(["a", "b", "c"], 200)
    y_pred = rng.integers(0, 2, 200)
    got = expected_summary(y, y_pred.astype(float), s)
    want = metrics.fairness_gaps(y, y_pred, s)
    for gap in GAP_KEYS:
        assert got[gap] == pytest.approx(want[gap], abs=1e-12)
    assert got["accuracy"] == pytest.approx(np.mean(y == y_pred), abs=1e-15)


def test_expected_linear_rates_are_the_mean_over_every_draw_of_the_randomised_classifier():
    # enumerate all 2^n outcomes of independent draws ŷ_i ~ Bernoulli(p_i): the selection rate, TPR and FPR of
    # each group (fixed denominators) and the accuracy average to the expected-confusion values exactly
    y = np.array([1, 0, 1, 0, 1, 0, 0, 1])
    s = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.9, 0.2, 0.5, 0.0, 0.3, 0.7, 1.0, 0.6])
    rates = expected_rates(y, p, s)
    acc, sel, tpr, fpr = 0.0, np.zeros(2), np.zeros(2), np.zeros(2)
    for outcome in itertools.product((0, 1), repeat=len(y)):
        yh = np.array(outcome)
        weight = np.prod(np.where(yh == 1, p, 1 - p))
        acc += weight * np.mean(yh == y)
        for g in (0, 1):
            m = s == g
            sel[g] += weight * yh[m].mean()
            tpr[g] += weight * yh[m & (y == 1)].mean()
            fpr[g] += weight * yh[m & (y == 0)].mean()
    assert expected_summary(y, p, s)["accuracy"] == pytest.approx(acc, abs=1e-12)
    np.testing.assert_allclose(rates["selection_rate"], sel, atol=1e-12)
    np.testing.assert_allclose(rates["tpr"], tpr, atol=1e-12)
    np.testing.assert_allclose(rates["fpr"], fpr, atol=1e-12)
    # PPV is the ratio of expected counts: group 0 has E[TP] = 0.9 + 0.5, E[FP] = 0.2
    assert rates["ppv"][0] == pytest.approx(1.4 / 1.6, abs=1e-12)


def test_an_undefined_rate_is_a_nan_gap_with_a_warning_not_a_number():
    y, s = np.array([1, 0, 1, 0]), np.array([0, 0, 1, 1])
    with pytest.warns(metrics.FairnessWarning, match="ppv"):
        out = expected_summary(y, np.array([1.0, 0.0, 0.0, 0.0]), s)
    assert np.isnan(out["sufficiency_ppv"]) and out["independence"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------------------
# the dominance rule, on hand-made curves
# ------------------------------------------------------------------------------------------------------------
def curve(*points, ci=(0.0, 0.0)):
    return pd.DataFrame(
        [{"accuracy": a, "gap": g, "accuracy_ci": ci[0], "gap_ci": ci[1]} for a, g in points]
    )


def test_non_dominated_points_by_hand():
    acc = np.array([0.9, 0.8, 0.85, 0.7, np.nan])
    gap = np.array([0.3, 0.1, 0.2, 0.2, 0.0])
    # (0.7, 0.2) is beaten by (0.85, 0.2); the NaN point is never on the front
    assert analysis.non_dominated(acc, gap).tolist() == [True, True, True, False, False]


def test_a_curve_that_is_better_everywhere_dominates():
    a = curve((0.90, 0.10), (0.85, 0.05))
    b = curve((0.88, 0.12), (0.80, 0.06))
    assert analysis.relation(a, b) == "dominates"
    assert analysis.relation(b, a) == "dominated"


def test_curves_that_trade_off_cross():
    a = curve((0.90, 0.20))  # accurate but unfair
    b = curve((0.80, 0.05))  # fair but inaccurate
    assert analysis.relation(a, b) == "cross" == analysis.relation(b, a)


def test_differences_inside_the_confidence_intervals_are_indistinguishable():
    a = curve((0.90, 0.10), ci=(0.02, 0.02))
    b = curve((0.89, 0.11), ci=(0.02, 0.02))
    assert analysis.relation(a, b) == "indistinguishable"
    # the same means with no noise: a dominates
    assert analysis.relation(curve((0.90, 0.10)), curve((0.89, 0.11))) == "dominates"


def test_one_point_of_a_that_b_cannot_match_beyond_the_noise_makes_a_dominate():
    # b matches a's first point within the CIs, but nothing of b comes near a's second point
    a = curve((0.90, 0.10), (0.88, 0.02), ci=(0.005, 0.005))
    b = curve((0.90, 0.105), ci=(0.005, 0.005))
    assert analysis.relation(a, b) == "dominates"


def test_a_curve_without_a_defined_gap_is_not_compared():
    assert analysis.relation(curve((0.9, np.nan)), curve((0.8, 0.1))) == "n/a"


# ------------------------------------------------------------------------------------------------------------
# selection on validation
# ------------------------------------------------------------------------------------------------------------
def fake_results(rng: np.random.Generator, test_shift: np.ndarray | None = None) -> pd.DataFrame:
    """Results of three methods with knobs, two seeds, val and test rows; test numbers optionally replaced."""
    rows = []
    i = 0
    for method_name, knobs in (("none", [None]), ("robust", [0.1, 0.2, 0.3]), ("eg-dp", [0.01, 0.05])):
        for knob in knobs:
            for seed in (0, 1):
                for split in ("val", "test"):
                    row = {"dataset": "d", "method": method_name, "knob": knob, "seed": seed, "split": split}
                    for metric in ("accuracy", *GAP_KEYS):
                        row[metric] = rng.uniform(0.5, 0.9) if metric == "accuracy" else rng.uniform(0, 0.3)
                        if split == "test" and test_shift is not None:
                            row[metric] = float(test_shift[i % len(test_shift)])
                            i += 1
                    rows.append(row)
    return pd.DataFrame(rows)


def chosen(results: pd.DataFrame, gap: str) -> list[tuple[str, float | None]]:
    sel = analysis.select_on_validation(analysis.points(results), gap)
    return [(m, None if np.isnan(k) else k) for m, k in zip(sel["method"], sel["knob"], strict=True)]


@settings(max_examples=8, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40), st.sampled_from(GAP_KEYS))
def test_changing_the_test_numbers_cannot_change_the_selection(test_values, gap):
    base = fake_results(np.random.default_rng(1))
    other = fake_results(np.random.default_rng(1), test_shift=np.array(test_values))
    assert base[base["split"] == "val"].equals(other[other["split"] == "val"])
    assert chosen(base, gap) == chosen(other, gap)
    assert analysis.selected_model(analysis.points(base), "d", "robust") == analysis.selected_model(
        analysis.points(other), "d", "robust"
    )


def test_the_selection_follows_validation_and_reports_test():
    rows = []
    # robust on validation: r=0.1 (0.9, 0.2) and r=0.3 (0.8, 0.05) are non-dominated, r=0.2 (0.8, 0.1) is not
    table = ((0.1, (0.9, 0.2), (0.5, 0.5)), (0.2, (0.8, 0.1), (0.99, 0.0)), (0.3, (0.8, 0.05), (0.7, 0.3)))
    for knob, val, test in table:
        for split, (acc, gap) in (("val", val), ("test", test)):
            rows.append({"dataset": "d", "method": "robust", "knob": knob, "seed": 0, "split": split,
                         "accuracy": acc, **dict.fromkeys(GAP_KEYS, gap)})  # fmt: skip
    sel = analysis.select_on_validation(analysis.points(pd.DataFrame(rows)), "independence")
    assert sel["knob"].tolist() == [0.1, 0.3]  # r=0.2's splendid test numbers are not looked at
    assert sel["accuracy"].tolist() == [0.5, 0.7] and sel["gap"].tolist() == [0.5, 0.3]


# ------------------------------------------------------------------------------------------------------------
# cells: ids, running, resuming, the ThresholdOptimizer mark
# ------------------------------------------------------------------------------------------------------------
def test_a_cell_id_names_method_knob_and_seed_and_depends_on_every_setting():
    cell = CompareCell(data=UNFAIR2D, method="eg-dp", knob=0.02, seed=3)
    assert cell.cell_id.startswith("eg-dp-eps0.02-seed3-")
    assert CompareCell(data=UNFAIR2D, method="none", knob=None, seed=0).cell_id.startswith("none-seed0-")
    assert replace(cell, epochs=11).cell_id != cell.cell_id
    assert replace(cell, knob=0.05).cell_id != cell.cell_id
    assert json.loads(json.dumps(cell.spec()))["fairlearn"]  # Fairlearn's version is part of its spec


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A two-seed comparison of three methods, run once for the tests below (cells, resume, robustness)."""
    plan = tiny_plan(("none", "robust", "to-dp"), seeds=2)
    out = tmp_path_factory.mktemp("compare")
    first = run_compare([plan], out, progress=False, report=False)
    return plan, out, first


def test_cells_run_resume_and_mark_the_threshold_optimizer(tiny_run):
    plan, out, first = tiny_run
    assert first.summary.ok and first.summary.ran == len(plan.cells()) == 8
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 8 * 3 and set(results["split"]) == {"train", "val", "test"}
    assert set(results["cell_id"]) == {c.cell_id for c in plan.cells()}
    marked = results.groupby("method")["uses_sensitive_at_prediction"].first().to_dict()
    assert marked == {"none": False, "robust": False, "to-dp": True}
    assert (results["fairlearn_version"].astype(str) != "").all()
    again = run_compare([plan], out, progress=False, report=False)
    assert again.summary.ran == 0 and again.summary.reused == 8
    pd.testing.assert_frame_equal(
        first.summary.results.drop(columns=["fit_seconds"]), again.summary.results.drop(columns=["fit_seconds"])
    )


def test_the_report_marks_the_threshold_optimizer_and_states_a_conclusion(tiny_run, tmp_path):
    from fastfair.compare.report import write_report

    first = tiny_run[2]
    written = write_report(first.summary.results, first.robustness, tmp_path, settings={"unfair2d": "tiny"})
    report = written["report_md"].read_text()
    assert "ThresholdOpt DP [uses s at prediction]" in report and "### Conclusion" in report
    assert report.count("Dominance on this gap") == len(GAP_KEYS)
    for key in ("fig_tradeoff_unfair2d", "fig_robustness_unfair2d"):
        assert written[key].stat().st_size > 0


def test_the_selected_models_robustness_is_the_exact_affine_flip_rate(tiny_run):
    plan, out, _ = tiny_run
    results = pd.read_csv(out / "results.csv")
    table = pd.read_csv(out / "robustness.csv")
    selected = results[results["selected"]]
    # one model per method and seed is selected; ThresholdOptimizer is selected but has no model to attack
    assert selected.groupby("method")["seed"].nunique().to_dict() == {"none": 2, "robust": 2, "to-dp": 2}
    assert set(table["method"]) == {"none", "robust"} and set(table["radius"]) == {0.1, 0.2}
    from fastfair.datasets import load

    cells = {c.cell_id: c for c in plan.cells()}
    for cell_id in selected.loc[selected["method"] == "robust", "cell_id"].unique():
        state = json.loads((out / "cells" / f"{cell_id}.json").read_text())["models"][0]["state"]
        w, b = np.asarray(state["linear.weight"]).ravel(), float(np.asarray(state["linear.bias"]).ravel()[0])
        test = load("unfair2d", seed=cells[cell_id].seed).test
        flips = np.abs(test.X @ w + b) / np.linalg.norm(w) <= 0.1  # the worst perturbation of radius 0.1 flips
        row = results[(results["cell_id"] == cell_id) & (results["split"] == "test")].iloc[0]
        assert row["robustness_radius"] == 0.1 and row["flip_rate"] == pytest.approx(flips.mean(), abs=1e-12)
        rates = [flips[test.s == g].mean() for g in (0, 1)]
        assert row["flip_rate_gap"] == pytest.approx(max(rates) - min(rates), abs=1e-12)


def test_a_robust_cell_is_the_estimator_trained_at_its_radius():
    cell = CompareCell(data=UNFAIR2D, method="robust", knob=0.18, seed=0, epochs=2, batch_size=50)
    record = run_compare_cell(cell)
    from fastfair.datasets import load
    from fastfair.estimator import RobustFairClassifier

    data = load("unfair2d", seed=0)
    est = RobustFairClassifier(solver="trs", radius=0.18, epochs=2, batch_size=50, seed=0).fit(
        data.train.X, data.train.y
    )
    test = next(r for r in record["rows"] if r["split"] == "test")
    want = metrics.fairness_gaps(data.test.y, est.predict(data.test.X), data.test.s)
    assert test["accuracy"] == pytest.approx(est.score(data.test.X, data.test.y), abs=1e-12)
    for gap in GAP_KEYS:
        assert test[gap] == pytest.approx(want[gap], abs=1e-12, nan_ok=True)


def test_every_method_says_whether_it_needs_the_sensitive_attribute_to_predict():
    assert {n for n, m in METHODS.items() if m.uses_sensitive_at_prediction} == {"to-dp", "to-eo"}
    assert all("[uses s at prediction]" in METHODS[n].display() for n in ("to-dp", "to-eo"))


# ------------------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "mnist"], "unknown dataset 'mnist'"),
        ([], "give --dataset NAME or --data CSV"),
        (["--dataset", "unfair2d", "--seeds", "0"], "--seeds must be a positive integer"),
        (["--dataset", "unfair2d", "--jobs", "2", "--scheduler", "tcp://h:1"], "not both"),
        (["--dataset", "unfair2d", "--target", "y"], "go with --data"),
        (["--data", "x.csv", "--target", "y"], "--data needs --target and --sensitive"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, args, message):
    code, _, err = run_cli(capsys, "compare", *args, "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("fastfair: error: ") and message in err
    assert not (tmp_path / "o" / "results.csv").exists()


def test_a_multiclass_target_is_one_line(capsys, tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "s": rng.integers(0, 2, 60), "y": np.arange(60) % 3})
    frame.to_csv(tmp_path / "three.csv", index=False)
    code, _, err = run_cli(
        capsys, "compare", "--data", str(tmp_path / "three.csv"), "--target", "y", "--sensitive", "s",
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "binary target" in err and "3 distinct values" in err
    assert not (tmp_path / "o").exists()


def test_a_mixture_probability_off_by_rounding_is_clipped_and_a_real_excess_refused():
    y, s = np.array([1, 0, 1, 0]), np.array([0, 0, 1, 1])
    out = expected_summary(y, np.array([1 + 2e-16, 0.0, 1.0, -1e-17]), s)
    assert out["accuracy"] == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_summary(y, np.array([1.1, 0.0, 1.0, 0.0]), s)


# ------------------------------------------------------------------------------------------------------------
# Fairlearn's mitigations with our estimator as the base learner
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_exponentiated_gradient_runs_our_estimator_and_is_scored_as_its_mixture():
    from sklearn.dummy import DummyClassifier

    from fastfair.compare.cell import fit_method
    from fastfair.datasets import load
    from fastfair.estimator import RobustFairClassifier

    data = load("unfair2d", seed=0)
    X, y, s = data.train.X, data.train.y, data.train.s
    cell = CompareCell(data=UNFAIR2D, method="eg-dp", knob=0.02, seed=0, epochs=10, batch_size=40, eg_max_iter=4)
    fitted = fit_method(cell, X, y, s)
    assert fitted.models and abs(sum(m["weight"] for m in fitted.models) - 1) < 1e-9
    # the mixture, rebuilt from Fairlearn's public fitted attributes (weights_, predictors_), predicts 1 with the
    # probability the scoring uses
    from fairlearn.reductions import DemographicParity, ExponentiatedGradient

    eg = ExponentiatedGradient(cell.estimator(), DemographicParity(difference_bound=0.02), eps=0.02, max_iter=4)
    eg.fit(X, y, sensitive_features=s)
    assert all(isinstance(h, (RobustFairClassifier, DummyClassifier)) for h in eg.predictors_)
    mixture = sum(w * h.predict(X) for w, h in zip(eg.weights_, eg.predictors_, strict=True))
    np.testing.assert_allclose(fitted.pmf(X, s), mixture, atol=1e-9)
    # and it is fairer on its training data than the unmitigated model (independence, as constrained)
    base = cell.estimator().fit(X, y)
    before = metrics.fairness_gaps(y, base.predict(X), s)["independence"]
    after = expected_summary(y, fitted.pmf(X, s), s)["independence"]
    assert after < before


def test_fairlearn_cells_record_fairlearn_and_the_penalty_cell_its_weight():
    import fairlearn

    record = run_compare_cell(
        CompareCell(data=UNFAIR2D, method="eg-eo", knob=0.05, seed=1, epochs=2, batch_size=50, eg_max_iter=3)
    )
    assert {r["fairlearn_version"] for r in record["rows"]} == {fairlearn.__version__}
    assert record["spec"]["fairlearn"] == fairlearn.__version__
    record = run_compare_cell(CompareCell(data=UNFAIR2D, method="penalty-eo", knob=2.0, seed=0, epochs=2,
                                          batch_size=50))  # fmt: skip
    row = record["rows"][0]
    assert (row["fairness_penalty"], row["fairness_weight"], row["solver"]) == ("eo", 2.0, "none")


def test_the_conclusion_calls_a_fairness_bought_by_predicting_the_majority_class_what_it_is():
    def point(method, knob, acc, gap):
        return {"dataset": "d", "method": method, "knob": knob, "accuracy": acc, "accuracy_ci": 0.0, "gap": gap,
                "gap_ci": 0.0}  # fmt: skip

    selected = pd.DataFrame(
        [point("none", np.nan, 0.80, 0.10), point("robust", 0.5, 0.754, 0.0), point("eg-dp", 0.01, 0.79, 0.02)]
    )
    table = analysis.dominance_table(selected)
    verdicts = [analysis.gap_verdict(table, "d", "independence")]
    text = analysis.conclusion("d", verdicts, {"independence": selected}, majority=0.754)
    assert "no better than always predicting the majority class (0.754)" in text
    assert "majority class" not in analysis.conclusion("d", verdicts, {"independence": selected}, majority=0.6)
