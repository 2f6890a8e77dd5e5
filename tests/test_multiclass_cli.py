"""Multiclass targets at the command line: train --out, predict, evaluate, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from fastfair.model_file import load_model
from helpers import cli_output, one_line_error, run_cli

CLASSES = ["high", "low", "mid"]  # sorted: the codes 0, 1, 2


def write_csv(path: Path, n: int = 360, seed: int = 0) -> Path:
    """Three classes (text labels) from two numeric features and a category, two regions as groups."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    region = rng.choice(["north", "south"], size=n, p=[0.6, 0.4])
    score = x1 + 0.5 * (colour == "red") - 0.3 * (region == "south") + 0.3 * rng.normal(size=n)
    label = np.where(score > 0.6, "high", np.where(score < -0.6, "low", "mid"))
    frame = pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "region": region, "grade": label})
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def grades(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("grades") / "grades.csv")


@pytest.fixture(scope="module")
def grades_run(grades) -> Path:
    """`fastfair train --out` on the three-class CSV (softmax regression, robust with the trust-region solver)."""
    out = grades.parent / "run"
    code, _, err = cli_output(
        "train", "--data", str(grades), "--target", "grade", "--sensitive", "region", "--solver", "trs",
        "--radius", "0.05", "--epochs", "4", "--batch-size", "16", "--out", str(out), "--no-progress",
    )
    assert code == 0, err
    return out


def _evaluate_json(capsys, *argv: str) -> dict:
    code, out, err = run_cli(capsys, "evaluate", *argv, "--json", "--bootstrap", "50")
    assert code == 0, err
    return json.loads(out)


# ----------------------------------------------------------------------------------------------------------
# train --out
# ----------------------------------------------------------------------------------------------------------
def test_train_writes_per_class_probabilities_and_tables(grades, grades_run):
    predictions = pd.read_csv(grades_run / "predictions.csv")
    probability = [f"probability[{c}]" for c in CLASSES]
    assert list(predictions.columns) == ["split", "row", *probability, "prediction"]
    assert sorted(predictions["row"]) == list(range(360))
    np.testing.assert_allclose(predictions[probability].sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # the prediction is the most probable class
    assert (np.asarray(CLASSES)[predictions[probability].to_numpy().argmax(axis=1)] == predictions["prediction"]).all()
    report = json.loads((grades_run / "metrics.json").read_text())
    assert report["labels"] == {"classes": CLASSES} and report["n_classes"] == 3
    truth = pd.read_csv(grades)["grade"].to_numpy()
    test = predictions[predictions["split"] == "test"]
    rows = test["row"].to_numpy()
    # oracles: sklearn's accuracy and macro one-vs-rest AUC from the file's labels and the written probabilities
    assert report["test"]["accuracy"] == pytest.approx(accuracy_score(truth[rows], test["prediction"]), abs=1e-12)
    auc = roc_auc_score(truth[rows], test[probability].to_numpy(), multi_class="ovr", average="macro", labels=CLASSES)
    assert report["test"]["auc"] == pytest.approx(auc, abs=1e-9)
    # the per-class table: one row per class, each gap the one-vs-rest gap, the headline gap the worst class's
    table = report["test"]["classes"]
    assert [r["class"] for r in table] == [0, 1, 2] and [r["name"] for r in table] == CLASSES
    sel = test.assign(region=pd.read_csv(grades)["region"].to_numpy()[rows])
    for r in table:
        rates = (sel["prediction"] == r["name"]).groupby(sel["region"]).mean()
        assert r["independence"] == pytest.approx(rates.max() - rates.min(), abs=1e-12)
    assert report["test"]["independence"] == pytest.approx(max(r["independence"] for r in table), abs=1e-12)
    classes = pd.read_csv(grades_run / "classes.csv")
    assert set(classes["split"]) == {"train", "val", "test"} and len(classes) == 9


def test_train_text_output_shows_the_classes_and_the_per_class_table(grades, capsys):
    code, out, err = run_cli(
        capsys, "train", "--data", str(grades), "--target", "grade", "--sensitive", "region", "--epochs", "1",
        "--solver", "none", "--no-progress",
    )
    assert code == 0, err
    assert "3 classes 'high', 'low', 'mid'" in out
    assert "per-class gaps (one-vs-rest, max - min over groups), test:" in out
    assert "0 'high'" in out and "2 'mid'" in out


# ----------------------------------------------------------------------------------------------------------
# The round trip: predict and evaluate give what train wrote
# ----------------------------------------------------------------------------------------------------------
def test_predict_on_the_training_csv_equals_predictions_csv(grades, grades_run, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    code, stdout, err = run_cli(
        capsys, "predict", "--model", str(grades_run / "model.pt"), "--data", str(grades), "--out", str(out)
    )
    assert code == 0, err
    assert "wrote 360 predictions" in stdout and "per class:" in stdout
    preds = pd.read_csv(out)
    probability = [f"probability[{c}]" for c in CLASSES]
    assert list(preds.columns) == ["row", "prediction", *probability]
    assert preds["row"].tolist() == list(range(360))
    seen = pd.read_csv(grades_run / "predictions.csv").set_index("row").loc[preds["row"]]
    np.testing.assert_array_equal(preds["prediction"].to_numpy(), seen["prediction"].to_numpy())
    np.testing.assert_array_equal(preds[probability].to_numpy(), seen[probability].to_numpy())  # bit for bit


@pytest.mark.parametrize("split", ["test", "train"])
def test_evaluate_a_split_gives_the_metrics_of_the_training_run(grades, grades_run, capsys, split):
    report = _evaluate_json(capsys, "--model", str(grades_run / "model.pt"), "--data", str(grades), "--split", split)
    trained = json.loads((grades_run / "metrics.json").read_text())[split]
    assert report["summary"] == {k: trained[k] for k in report["summary"]}
    assert report["summary"]["n_classes"] == 3 and set(report["summary"]["worst_class"]) >= {"independence"}
    assert report["groups"] == trained["groups"]
    assert report["classes"] == trained["classes"]
    assert report["labels"] == {"classes": CLASSES}
    for stat in ("accuracy", "independence"):
        ci = report["ci"][stat]
        assert ci["defined"] > 0 and ci["low"] <= ci["high"]


def test_evaluate_all_rows_with_robustness_and_out(grades, grades_run, capsys, tmp_path):
    """All rows of the file: accuracy from the labels (sklearn); robustness of softmax regression is exact."""
    out = tmp_path / "audit"
    report = _evaluate_json(
        capsys, "--model", str(grades_run / "model.pt"), "--data", str(grades), "--radii", "0.05", "0.5",
        "--out", str(out),
    )
    preds = pd.read_csv(grades_run / "predictions.csv").sort_values("row")
    truth = pd.read_csv(grades)["grade"].to_numpy()
    assert report["summary"]["accuracy"] == pytest.approx(accuracy_score(truth, preds["prediction"]), abs=1e-12)
    robust = pd.DataFrame(report["robustness"])
    assert set(robust["method"]) == {"exact"}
    pooled = robust[robust["group"] == "all"].sort_values("radius")
    assert pooled["clean_accuracy"].tolist() == pytest.approx([report["summary"]["accuracy"]] * 2)
    assert pooled["flip_rate"].iloc[0] <= pooled["flip_rate"].iloc[1]
    assert (out / "classes.csv").is_file() and (out / "robustness.csv").is_file()


def test_evaluate_text_output_names_the_classes(grades, grades_run, capsys):
    code, out, err = run_cli(
        capsys, "evaluate", "--model", str(grades_run / "model.pt"), "--data", str(grades), "--split", "test",
        "--bootstrap", "20",
    )
    assert code == 0, err
    assert "3 classes 'high', 'low', 'mid'" in out and "macro one-vs-rest AUC" in out
    assert "per-class gaps (one-vs-rest" in out and "selection_rate[0]" in out


# ----------------------------------------------------------------------------------------------------------
# One-line errors
# ----------------------------------------------------------------------------------------------------------
def test_unseen_class_or_category_is_a_one_line_error(grades, grades_run, tmp_path):
    frame = pd.read_csv(grades)
    model = str(grades_run / "model.pt")
    unseen_class = frame.copy()
    unseen_class.loc[7, "grade"] = "top"
    path = tmp_path / "new_class.csv"
    unseen_class.to_csv(path, index=False)
    line = one_line_error(*cli_output("evaluate", "--model", model, "--data", str(path)))
    assert "value 'top' (data row 8), which is not one of the model's 3 classes ('high', 'low', 'mid')" in line
    unseen_category = frame.copy()
    unseen_category.loc[3, "colour"] = "purple"
    path = tmp_path / "new_colour.csv"
    unseen_category.to_csv(path, index=False)
    out = tmp_path / "preds.csv"
    line = one_line_error(*cli_output("predict", "--model", model, "--data", str(path), "--out", str(out)))
    assert "'purple'" in line and "colour" in line
    assert not out.exists()


def test_positive_with_three_values_is_one_class_against_the_rest(grades, capsys):
    """--positive keeps the binary one-vs-rest run: one logit, two labels, no per-class table."""
    code, out, err = run_cli(
        capsys, "train", "--data", str(grades), "--target", "grade", "--sensitive", "region", "--positive", "high",
        "--epochs", "1", "--solver", "none", "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["labels"]["positive"] == "high" and "n_classes" not in report
    assert "classes" not in report["test"] and "worst_class" not in report["test"]


def test_compare_refuses_a_multiclass_target(grades, tmp_path):
    out = tmp_path / "cmp"
    line = one_line_error(
        *cli_output(
            "compare", "--data", str(grades), "--target", "grade", "--sensitive", "region", "--out", str(out),
            "--quick", "--no-progress",
        )
    )
    assert "binary" in line


def test_a_multiclass_header_must_have_a_label_per_output(grades_run, tmp_path):
    import torch

    from fastfair.errors import FastfairError

    payload = torch.load(grades_run / "model.pt", weights_only=True)
    header = json.loads(payload["header"])
    header["target"]["values"] = header["target"]["values"][:2]
    header["target"]["names"] = header["target"]["names"][:2]
    payload["header"] = json.dumps(header)
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(FastfairError, match=r"is a model with 3 outputs.*but its header has 2") as err:
        load_model(tmp_path / "model.pt")
    assert "\n" not in str(err.value)
    saved = load_model(grades_run / "model.pt")
    assert saved.n_classes == 3 and saved.header["model"]["n_outputs"] == 3
    assert saved.header["target"]["positive"] is None and saved.label_names == CLASSES


def test_colored_digits_train_then_evaluate_the_test_split(tmp_path, capsys):
    """The bundled multiclass benchmark: the model file rebuilds its split, and evaluate gives train's numbers."""
    out = tmp_path / "digits"
    code, _, err = cli_output(
        "train", "--dataset", "colored_digits", "--solver", "trs", "--radius", "0.5", "--epochs", "2",
        "--out", str(out), "--no-progress",
    )
    assert code == 0, err
    trained = json.loads((out / "metrics.json").read_text())
    assert trained["n_classes"] == 3 and trained["labels"] == {"classes": ["1", "8", "9"]}
    predictions = pd.read_csv(out / "predictions.csv")
    assert [c for c in predictions.columns if c.startswith("probability")] == [
        "probability[1]", "probability[8]", "probability[9]"
    ]
    report = _evaluate_json(capsys, "--model", str(out / "model.pt"), "--dataset", "colored_digits", "--radii", "0.5")
    assert report["split"] == "test"
    assert report["summary"] == {k: trained["test"][k] for k in report["summary"]}
    assert report["classes"] == trained["test"]["classes"]
    assert {r["method"] for r in report["robustness"]} == {"exact"}


def test_integer_classes_round_trip_and_an_unseen_one_is_refused(tmp_path, capsys):
    """Integer label values 3, 5, 7: the model file keeps them in code order, evaluate reads them back (sklearn's
    accuracy as the oracle), and a 9 is a one-line error."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=150)
    frame = pd.DataFrame({"x": x, "z": rng.normal(size=150), "g": rng.choice(["a", "b"], size=150),
                          "t": np.where(x > 0.5, 7, np.where(x < -0.5, 3, 5))})
    path = tmp_path / "ints.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "run"
    code, _, err = cli_output("train", "--data", str(path), "--target", "t", "--sensitive", "g", "--epochs", "3",
                              "--out", str(out), "--no-progress")
    assert code == 0, err
    saved = load_model(out / "model.pt")
    assert saved.label_names == ["3", "5", "7"] and saved.n_classes == 3
    np.testing.assert_array_equal(saved.labels(frame["t"], column="t"), np.searchsorted([3, 5, 7], frame["t"]))
    report = _evaluate_json(capsys, "--model", str(out / "model.pt"), "--data", str(path))
    predicted = pd.read_csv(out / "predictions.csv").sort_values("row")["prediction"].to_numpy()
    assert report["summary"]["accuracy"] == pytest.approx(accuracy_score(frame["t"], predicted), abs=1e-12)
    frame.loc[4, "t"] = 9
    frame.to_csv(tmp_path / "nine.csv", index=False)
    nine = str(tmp_path / "nine.csv")
    line = one_line_error(*cli_output("evaluate", "--model", str(out / "model.pt"), "--data", nine))
    assert "value '9' (data row 5), which is not one of the model's 3 classes ('3', '5', '7')" in line


def test_colored_digits_sweep_report_says_gaps_are_worst_class(capsys, tmp_path):
    from fastfair.datasets.colored_digits import DIGITS_SHA256

    out = tmp_path / "sweep"
    code, _, err = run_cli(
        capsys, "sweep", "--dataset", "colored_digits", "--solvers", "none", "trs", "--radii", "0.5",
        "--seeds", "0", "--epochs", "1", "--out", str(out), "--report",
    )
    assert code == 0, err
    results = pd.read_csv(out / "results.csv")
    assert set(results["solver"]) == {"none", "trs"} and results["independence"].notna().all()
    report = (out / "report.md").read_text()
    assert "colored_digits has 3 classes (1, 8, 9): each fairness gap is the worst class's" in report
    data = json.loads((out / "manifest.json").read_text())["data"]
    assert [entry["sha256"] for entry in data] == [DIGITS_SHA256]
