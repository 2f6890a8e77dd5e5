"""`fastfair evaluate`: a saved model audited on a split or a CSV -- the same numbers as `fastfair train`, bootstrap
intervals held to a per-resample oracle, one-line errors, and --out as one set."""

from __future__ import annotations

import json
from pathlib import Path

import fairlearn.metrics
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fastfair.metrics import FOUR_FIFTHS_KEY, SUMMARY_STATISTICS
from helpers import LOANS, LOANS_ARGS, cli_output, one_line_error, run_cli

#: Every entry of a summary: the statistics (ours and Fairlearn's names) and the four-fifths flag.
SUMMARY_KEYS = (*SUMMARY_STATISTICS, FOUR_FIFTHS_KEY)


@pytest.fixture(scope="module")
def loans_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("loans") / "run"
    code, _, err = cli_output(
        "train", *LOANS_ARGS, "--solver", "trs", "--radius", "0.1", "--epochs", "5", "--batch-size", "16",
        "--out", str(out),
    )
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def unfair2d_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("u2d") / "run"
    code, _, err = cli_output("train", "--dataset", "unfair2d", "--epochs", "2", "--batch-size", "5", "--out", str(out))
    assert code == 0, err
    return out


def _evaluate_json(capsys, *argv: str) -> dict:
    code, out, err = run_cli(capsys, "evaluate", *argv, "--json", "--bootstrap", "200")
    assert code == 0, err
    return json.loads(out)


# ----------------------------------------------------------------------------------------------------------
# The same numbers as the training run
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["test", "val", "train"])
def test_csv_split_gives_the_metrics_of_the_training_run(loans_run, capsys, split):
    report = _evaluate_json(capsys, "--model", str(loans_run / "model.pt"), "--data", str(LOANS), "--split", split)
    trained = json.loads((loans_run / "metrics.json").read_text())[split]
    assert report["summary"] == {k: trained[k] for k in SUMMARY_KEYS}
    assert report["groups"] == trained["groups"]
    assert report["rows"] == sum(g["n"] for g in trained["groups"])


def test_bundled_split_gives_the_metrics_of_the_training_run(unfair2d_run, capsys):
    trained = json.loads((unfair2d_run / "metrics.json").read_text())
    report = _evaluate_json(capsys, "--model", str(unfair2d_run / "model.pt"), "--dataset", "unfair2d")
    assert report["split"] == "test" and report["summary"] == {k: trained["test"][k] for k in SUMMARY_KEYS}
    model = str(unfair2d_run / "model.pt")
    report = _evaluate_json(capsys, "--model", model, "--dataset", "unfair2d", "--split", "val")
    assert report["summary"] == {k: trained["val"][k] for k in SUMMARY_KEYS}
    assert [g["n"] for g in report["groups"]] == [g["n"] for g in trained["val"]["groups"]]


def test_all_rows_of_a_csv_against_an_independent_oracle(loans_run, capsys):
    """Oracle: the labels of the file and the written predictions, through sklearn and pandas."""
    report = _evaluate_json(capsys, "--model", str(loans_run / "model.pt"), "--data", str(LOANS))
    frame = pd.read_csv(LOANS)
    preds = pd.read_csv(loans_run / "predictions.csv").set_index("row").sort_index()
    y = (frame["approved"] == "yes").to_numpy()
    yhat = (preds["prediction"] == "yes").to_numpy()
    assert report["rows"] == 500 and report["split"] is None
    assert report["summary"]["accuracy"] == pytest.approx(np.mean(y == yhat), abs=1e-15)
    assert report["summary"]["auc"] == pytest.approx(roc_auc_score(y, preds["probability"]), abs=1e-12)
    selection = pd.Series(yhat).groupby(frame["region"]).mean()
    assert report["summary"]["independence"] == pytest.approx(selection.max() - selection.min(), abs=1e-12)
    assert {g["group"]: g["n"] for g in report["groups"]} == frame["region"].value_counts().to_dict()


def test_fairlearn_names_and_intersectional_groups_of_a_csv_against_fairlearn(loans_run, capsys):
    """Oracle: fairlearn.metrics on the file's labels and the written predictions, with the two sensitive columns
    as Fairlearn's sensitive features (a DataFrame); pandas for the group sizes."""
    report = _evaluate_json(capsys, "--model", str(loans_run / "model.pt"), "--data", str(LOANS),
                            "--sensitive", "region", "purpose")
    frame = pd.read_csv(LOANS)
    preds = pd.read_csv(loans_run / "predictions.csv").set_index("row").sort_index()
    y = (frame["approved"] == "yes").to_numpy().astype(int)
    yhat = (preds["prediction"] == "yes").to_numpy().astype(int)
    sf = frame[["region", "purpose"]]
    assert (pd.Series(y).groupby([sf["region"], sf["purpose"]]).nunique() == 2).all()  # TPR, FPR defined
    summary = report["summary"]
    for name in ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference",
                 "equalized_odds_ratio"):
        assert summary[name] == pytest.approx(getattr(fairlearn.metrics, name)(y, yhat, sensitive_features=sf),
                                              abs=1e-12), name
    assert summary["four_fifths_violated"] is bool(summary["demographic_parity_ratio"] < 0.8)
    sizes = sf.groupby(["region", "purpose"]).size()
    assert [(g["group"], g["n"]) for g in report["groups"]] == [(f"{a}|{b}", n) for (a, b), n in sizes.items()]
    for name in ("demographic_parity_ratio", "equalized_odds_difference"):  # an interval for each of them too
        assert report["ci"][name]["low"] <= report["ci"][name]["high"]


def test_text_output_and_out_directory(loans_run, capsys, tmp_path):
    out = tmp_path / "audit"
    code, stdout, err = run_cli(capsys, "evaluate", "--model", str(loans_run / "model.pt"), "--data", str(LOANS),
                                "--split", "test", "--bootstrap", "100", "--out", str(out))
    assert code == 0, err
    assert "bootstrap 95% CIs (100 resamples within groups, seed 0)" in stdout and "per-group rates" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.json", "evaluation.png", "groups.csv", "summary.csv"]
    assert (out / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    saved = json.loads((out / "evaluation.json").read_text())
    assert summary.loc["accuracy", "value"] == saved["summary"]["accuracy"]
    ratio = saved["summary"]["demographic_parity_ratio"]
    assert summary.loc["demographic_parity_ratio", "value"] == ratio
    verdict = "VIOLATED" if ratio < 0.8 else "met"
    assert f"four-fifths rule {verdict}: demographic_parity_ratio {ratio:.3f}" in stdout
    assert summary.loc["independence", "ci_low"] == saved["ci"]["independence"]["low"]
    # an existing set is refused without --force, and left as it was
    again = run_cli(capsys, "evaluate", "--model", str(loans_run / "model.pt"), "--data", str(LOANS), "--out", str(out))
    assert "exists and is not empty; pass --force" in one_line_error(*again)


# ----------------------------------------------------------------------------------------------------------
# One-line errors
# ----------------------------------------------------------------------------------------------------------
def test_bad_requests_are_one_line_errors(loans_run, unfair2d_run, capsys, tmp_path):
    model = str(loans_run / "model.pt")
    frame = pd.read_csv(LOANS)
    other = tmp_path / "other.csv"
    frame.iloc[:200].to_csv(other, index=False)
    no_target = tmp_path / "no_target.csv"
    frame.drop(columns=["approved"]).to_csv(no_target, index=False)
    odd = tmp_path / "odd.csv"
    frame.assign(approved=frame["approved"].replace("yes", "maybe")).to_csv(odd, index=False)
    cases = [
        (["--model", str(unfair2d_run / "model.pt"), "--dataset", "lsat"], "the model was trained on 'unfair2d', not"),
        (["--model", model, "--dataset", "unfair2d"], "the model was trained on 'csv:loans.csv', not 'unfair2d'"),
        (["--model", str(unfair2d_run / "model.pt"), "--data", str(LOANS), "--split", "test"],
         "not on a CSV file; for its splits use --dataset unfair2d"),
        (["--model", str(loans_run)], "not a model file: " + str(loans_run) + " is a directory; did you mean"),
        (["--model", model, "--data", str(other), "--split", "test"], "other.csv is not the file the model was"),
        (["--model", model, "--data", str(no_target)], "label column 'approved' not found in no_target.csv"),
        (["--model", model, "--data", str(odd)], "has value 'maybe' (data row 1), which is not one of the model's"),
        (["--model", model, "--data", str(LOANS), "--sensitive", "income"], "more than the 50 groups allowed"),
        (["--model", model], "give --dataset NAME or --data CSV"),
        (["--model", model, "--data", str(LOANS), "--radii", "-1"], "--radii must be positive finite numbers"),
        (["--model", model, "--data", str(LOANS), "--bootstrap", "0"], "--bootstrap must be an integer from 1"),
        (["--model", str(tmp_path / "absent.pt"), "--data", str(LOANS)], "model file not found"),
    ]
    for argv, message in cases:
        assert message in one_line_error(*run_cli(capsys, "evaluate", *argv)), argv


# ----------------------------------------------------------------------------------------------------------
# Robustness per group
# ----------------------------------------------------------------------------------------------------------
def test_robustness_per_group_of_the_affine_model_against_its_distances(loans_run, capsys, tmp_path):
    """Oracle: a point flips at r when its float64 distance |f(x)|/‖w‖ to the boundary is at most r (strictly
    below r for a point predicted 0, which the boundary itself predicts)."""
    out = tmp_path / "audit"
    report = _evaluate_json(capsys, "--model", str(loans_run / "model.pt"), "--data", str(LOANS), "--split", "test",
                            "--radii", "0.2", "0.05", "--out", str(out))
    from fastfair.model_file import load_model

    saved = load_model(loans_run / "model.pt")
    test = saved.split("test", csv=LOANS)
    state = saved.model.state_dict()
    w, b = state["linear.weight"].double().numpy().ravel(), float(state["linear.bias"])
    f = test.X @ w + b
    distance = np.abs(f) / np.linalg.norm(w)
    names = np.asarray(test.group_names)[test.s]
    rows = pd.DataFrame(report["robustness"])
    assert rows["radius"].tolist() == [0.05] * 5 + [0.2] * 5
    assert (rows["method"] == "exact").all()
    for r in (0.05, 0.2):
        flips = np.where(f > 0, distance <= r, distance < r)
        correct = (f > 0) == (test.y == 1)
        for group in [*test.group_names, "all"]:
            mask = np.ones(len(f), bool) if group == "all" else names == group
            row = rows[(rows["radius"] == r) & (rows["group"] == group)].iloc[0]
            assert row["n"] == mask.sum()
            assert row["flip_rate"] == pytest.approx(flips[mask].mean(), abs=1e-12)
            assert row["robust_accuracy"] == pytest.approx((correct & ~flips)[mask].mean(), abs=1e-12)
    assert {"robustness.csv", "robustness.png"} <= {p.name for p in out.iterdir()}
    assert pd.read_csv(out / "robustness.csv")["flip_rate"].tolist() == rows["flip_rate"].tolist()


def test_robustness_of_a_network_is_the_attack_of_group_robustness(capsys, tmp_path):
    from fastfair.model_file import load_model
    from fastfair.robustness import group_robustness

    run = tmp_path / "run"
    code, _, err = cli_output("train", "--dataset", "unfair2d", "--model", "mlp", "--hidden", "4", "--epochs", "1",
                        "--batch-size", "25", "--out", str(run))
    assert code == 0, err
    report = _evaluate_json(capsys, "--model", str(run / "model.pt"), "--dataset", "unfair2d", "--radii", "0.1",
                            "--seed", "3")
    saved = load_model(run / "model.pt")
    test = saved.split("test")
    expected = group_robustness(saved.model, test.X, test.y, np.asarray(test.group_names)[test.s], [0.1], seed=3)
    assert pd.DataFrame(report["robustness"]).to_dict(orient="list") == expected.to_dict(orient="list")
    assert set(expected["method"]) == {"attack"}


def test_train_shows_fairlearn_names_and_the_four_fifths_verdict_of_its_json(unfair2d_run):
    from fastfair.cli.train import fairlearn_table

    report = json.loads((unfair2d_run / "metrics.json").read_text())
    table = fairlearn_table({s: report[s] for s in ("train", "val", "test")}).splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
    for name in ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference"):
        assert rows[name] == [f"{report[s][name]:.3f}" for s in ("train", "val", "test")]
    verdicts = ["VIOLATED" if report[s]["demographic_parity_ratio"] < 0.8 else "met" for s in ("train", "val", "test")]
    assert rows["four-fifths"] == ["rule", *verdicts]
    assert [report[s]["four_fifths_violated"] for s in ("train", "val", "test")] == [v == "VIOLATED" for v in verdicts]
