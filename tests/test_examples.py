"""The examples run and produce what they promise: the Adult grid search (quick setting) and the loans CSV."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from fastfair import metrics
from fastfair.estimator import RobustFairClassifier
from helpers import run_cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered while it executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def adult_example() -> ModuleType:
    return _load_example("adult_grid_search")


@pytest.fixture(scope="module")
def quick_run(adult_example, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("adult_example")
    return out, adult_example.main(out, quick=True, verbose=False)


# ----------------------------------------------------------------------------------------------------------
# examples/adult_grid_search.py
# ----------------------------------------------------------------------------------------------------------
def test_adult_example_writes_a_valid_png_and_csvs(quick_run):
    out, result = quick_run
    paths = result["paths"]
    assert set(paths) == {"cv_results", "tradeoff", "plot"}
    for path in paths.values():
        assert path.parent == out and path.is_file() and path.stat().st_size > 0
    png = paths["plot"]
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert image.std() > 0.01  # not a blank canvas

    table = pd.read_csv(paths["tradeoff"])
    pd.testing.assert_frame_equal(table, result["table"], check_dtype=False)
    cv = pd.read_csv(paths["cv_results"])
    assert len(cv) == len(table) and "mean_test_score" in cv.columns


def test_adult_example_grid_search_is_sensible(adult_example, quick_run):
    _, result = quick_run
    grid, table = result["grid"], result["table"]
    quick = adult_example.QUICK
    expected = {("none", 0.0)} | {(s, r) for s in quick.solvers for r in quick.radii}
    assert set(zip(table["solver"], table["radius"], strict=True)) == expected
    assert len(grid.cv_results_["params"]) == len(expected)
    assert grid.n_splits_ == quick.cv
    # accuracy is meaningful: well above chance and at least the trivial "always <=50K" rate minus a margin
    base_rate = 1 - result["adult"].y_test.mean()
    assert table["cv_accuracy"].max() > 0.75 and table["test_accuracy"].max() > base_rate
    assert table["cv_rank"].min() == 1
    best = table.loc[table["cv_rank"] == 1].iloc[0]
    assert grid.best_params_["clf__solver"] == best["solver"]
    assert grid.best_score_ == pytest.approx(best["cv_accuracy"])
    for column in ("demographic_parity_difference", "equalized_odds_difference"):
        assert table[column].between(0, 1).all(), column
    # the pipeline scales inside the folds: the data it was given is the raw, unscaled Adult
    assert result["adult"].X_train["age"].mean() > 30
    assert grid.best_estimator_.named_steps["clf"].feature_names_in_.tolist() == list(
        result["adult"].X_train.columns
    )


def test_adult_example_metricframes_match_fairlearn_and_fastfair(quick_run):
    _, result = quick_run
    adult, frames = result["adult"], result["metric_frames"]
    assert set(frames) == set(zip(result["table"]["solver"], result["table"]["radius"], strict=True))
    mf = frames[("none", 0.0)]
    assert isinstance(mf, MetricFrame)
    assert list(mf.by_group.columns) == ["accuracy", "selection_rate", "tpr", "fpr"]
    assert list(mf.by_group.index) == sorted(adult.group_names) == ["Female", "Male"]
    # recompute the baseline's predictions independently and check each reported number
    grid = result["grid"]
    from sklearn.base import clone

    model = clone(grid.estimator).set_params(clf__solver="none").fit(adult.X_train, adult.y_train)
    y_pred = model.predict(adult.X_test)
    row = result["table"].query("solver == 'none'").iloc[0]
    assert row["test_accuracy"] == pytest.approx(float(np.mean(y_pred == adult.y_test)))
    dpd = demographic_parity_difference(adult.y_test, y_pred, sensitive_features=adult.s_test)
    eod = equalized_odds_difference(adult.y_test, y_pred, sensitive_features=adult.s_test)
    assert row["demographic_parity_difference"] == pytest.approx(dpd, abs=1e-12)
    assert row["equalized_odds_difference"] == pytest.approx(eod, abs=1e-12)
    gaps = metrics.fairness_gaps(adult.y_test, y_pred, adult.s_test)
    assert row["demographic_parity_difference"] == pytest.approx(gaps["independence"], abs=1e-12)
    assert row["equalized_odds_difference"] == pytest.approx(
        max(gaps["separation_tpr"], gaps["separation_fpr"]), abs=1e-12
    )
    for group in ("Female", "Male"):
        assert row[f"selection_rate[{group}]"] == pytest.approx(y_pred[adult.s_test == group].mean())


def test_adult_example_command_line(adult_example):
    args = adult_example.build_parser().parse_args(
        ["--quick", "--out", "somewhere", "--sensitive", "race_all"]
    )
    assert args.quick and args.out == "somewhere" and args.sensitive == "race_all" and args.seed == 0
    assert adult_example.build_parser().parse_args([]).out == str(adult_example.DEFAULT_OUT)
    with pytest.raises(SystemExit):
        adult_example.build_parser().parse_args(["--sensitive", "age"])


def test_adult_example_multi_group(adult_example, tmp_path):
    # all five race groups, on a tiny grid: every group gets a MetricFrame row and a selection-rate column
    tiny = adult_example.Setting(
        radii=(0.1,), solvers=("trs",), epochs=1, cv=2, train_rows=1500, test_rows=1500
    )
    result = adult_example.main(tmp_path, sensitive="race_all", setting=tiny, verbose=False)
    groups = ["Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White"]
    assert list(result["metric_frames"][("trs", 0.1)].by_group.index) == groups
    assert all(f"selection_rate[{g}]" in result["table"].columns for g in groups)
    assert result["paths"]["plot"].read_bytes()[:8] == PNG_SIGNATURE


# ----------------------------------------------------------------------------------------------------------
# examples/loans.csv and its generator
# ----------------------------------------------------------------------------------------------------------
def test_loans_csv_is_reproduced_by_its_generator(tmp_path, capsys):
    generator = _load_example("make_loans_csv")
    regenerated = generator.main(["--out", str(tmp_path / "loans.csv")])
    assert regenerated.read_bytes() == (EXAMPLES / "loans.csv").read_bytes()
    assert "500 rows" in capsys.readouterr().out


def test_loans_csv_shape_and_columns():
    frame = pd.read_csv(EXAMPLES / "loans.csv")
    assert 300 <= len(frame) <= 600
    assert set(frame["approved"]) == {"yes", "no"}
    assert frame["region"].nunique() >= 3
    numeric = frame.select_dtypes("number").columns.tolist()
    text = [c for c in frame.columns if c not in numeric]
    assert {"age", "income", "loan_amount", "credit_score"} <= set(numeric)
    assert {"employment", "purpose", "region", "approved"} <= set(text)
    assert not frame.isna().any().any()
    rates = frame.groupby("region")["approved"].apply(lambda a: (a == "yes").mean())
    assert 0.3 < (frame["approved"] == "yes").mean() < 0.8
    assert rates.max() - rates.min() > 0.1  # a visible gap between regions, for the walk-through


def test_readme_walkthrough_cli_on_loans_csv(capsys):
    code, out, err = run_cli(
        capsys,
        "train",
        "--data",
        str(EXAMPLES / "loans.csv"),
        "--target",
        "approved",
        "--sensitive",
        "region",
        "--solver",
        "trs",
        "--radius",
        "0.1",
        "--epochs",
        "5",
        "--batch-size",
        "16",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["groups"] == ["east", "north", "south", "west"]
    assert report["n_features"] == 5 + 4 + 4  # numeric columns + one-hot employment + one-hot purpose
    assert report["test"]["accuracy"] > 0.7
    for key in ("independence", "separation_tpr", "separation_fpr", "sufficiency_ppv", "sufficiency_for"):
        assert key in report["test"]


def test_readme_walkthrough_estimator_on_loans_csv():
    frame = pd.read_csv(EXAMPLES / "loans.csv")
    X, y, region = frame.drop(columns=["approved", "region"]), frame["approved"], frame["region"]
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income", "loan_amount", "credit_score", "years_employed"]),
            ("cat", OneHotEncoder(), ["employment", "purpose"]),
        ]
    )
    pipe = Pipeline([("prep", pre), ("clf", RobustFairClassifier(radius=0.1, epochs=10))])
    pipe.fit(X, y, clf__sensitive_features=region)
    clf = pipe.named_steps["clf"]
    assert clf.classes_.tolist() == ["no", "yes"]
    assert pipe.score(X, y) > 0.8
    assert list(clf.group_metrics_.index) == ["east", "north", "south", "west"]
    mf = MetricFrame(
        metrics={"approval_rate": lambda t, p: float(np.mean(p == "yes"))},
        y_true=y,
        y_pred=pipe.predict(X),
        sensitive_features=region,
    )
    assert clf.fairness_["independence"] == pytest.approx(mf.difference()["approval_rate"], abs=1e-12)


def test_readme_python_blocks_run():
    """Every ```python block of the README runs as written (the quick tour must not rot)."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
