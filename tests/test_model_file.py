"""The model file: a saved model scores new rows exactly as its training rows were scored; `fastfair predict`;
loading never runs code from the file; every defect of the file or of the data is a one-line error."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fastfair.datasets import load, load_csv
from fastfair.datasets.user_csv import encode_features, read_csv_frame
from fastfair.errors import FastfairError
from fastfair.estimator import RobustFairClassifier
from fastfair.model_file import FORMAT_VERSION, load_model
from helpers import LOANS, LOANS_ARGS, cli_output, one_line_error, run_cli


@pytest.fixture(scope="module")
def loans_run(tmp_path_factory) -> Path:
    """`fastfair train --out` on examples/loans.csv (a robust MLP, so that nothing is special to the affine
    model)."""
    out = tmp_path_factory.mktemp("loans") / "run"
    code, _, err = cli_output(
        "train", *LOANS_ARGS, "--model", "mlp", "--hidden", "8", "--solver", "trs", "--radius", "0.1",
        "--epochs", "3", "--batch-size", "16", "--out", str(out), "--no-progress",
    )
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def unfair2d_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("u2d") / "run"
    code, _, err = cli_output("train", "--dataset", "unfair2d", "--epochs", "2", "--batch-size", "5", "--out", str(out))
    assert code == 0, err
    return out


# ----------------------------------------------------------------------------------------------------------
# The round trip: train --out, then predict on the same CSV
# ----------------------------------------------------------------------------------------------------------
def test_train_writes_predictions_for_every_evaluated_row(loans_run):
    predictions = pd.read_csv(loans_run / "predictions.csv")
    assert list(predictions.columns) == ["split", "row", "probability", "prediction"]
    report = json.loads((loans_run / "metrics.json").read_text())
    sizes = predictions.groupby("split").size()
    assert {s: int(sizes[s]) for s in ("train", "val", "test")} == {
        s: sum(g["n"] for g in report[s]["groups"]) for s in ("train", "val", "test")
    }
    assert sorted(predictions["row"]) == list(range(500))  # every data row of the file once
    assert set(predictions["prediction"]) <= {"yes", "no"}
    assert ((predictions["probability"] > 0.5) == (predictions["prediction"] == "yes")).all()
    # oracle: the test split's accuracy recomputed from the file's labels and the written predictions
    truth = pd.read_csv(LOANS)["approved"].to_numpy()
    test = predictions[predictions["split"] == "test"]
    accuracy = np.mean(truth[test["row"].to_numpy()] == test["prediction"].to_numpy())
    assert accuracy == report["test"]["accuracy"]


def test_predict_on_the_training_csv_gives_identical_predictions(loans_run, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    code, stdout, err = run_cli(capsys, "predict", "--model", str(loans_run / "model.pt"), "--data", str(LOANS),
                                "--out", str(out))
    assert code == 0, err
    assert "wrote 500 predictions" in stdout
    preds = pd.read_csv(out)
    assert list(preds.columns) == ["row", "prediction", "probability"]
    assert preds["row"].tolist() == list(range(500))
    seen = pd.read_csv(loans_run / "predictions.csv").set_index("row").loc[preds["row"]]
    np.testing.assert_array_equal(preds["prediction"].to_numpy(), seen["prediction"].to_numpy())
    np.testing.assert_array_equal(preds["probability"].to_numpy(), seen["probability"].to_numpy())  # bit for bit


def test_predict_keeps_the_input_order_of_shuffled_rows_without_the_target(loans_run, tmp_path, capsys):
    frame = pd.read_csv(LOANS)
    order = np.random.default_rng(1).permutation(len(frame))
    shuffled = frame.iloc[order].drop(columns=["approved"])
    shuffled = shuffled[list(reversed(shuffled.columns))]  # columns in another order too
    path = tmp_path / "shuffled.csv"
    shuffled.to_csv(path, index=False)
    out = tmp_path / "preds.csv"
    code, _, err = run_cli(capsys, "predict", "--model", str(loans_run / "model.pt"), "--data", str(path),
                           "--out", str(out))
    assert code == 0, err
    preds = pd.read_csv(out)
    assert preds["row"].tolist() == list(range(len(frame)))
    seen = pd.read_csv(loans_run / "predictions.csv").set_index("row")
    np.testing.assert_array_equal(preds["prediction"].to_numpy(), seen.loc[order, "prediction"].to_numpy())
    # rows in another order are batched differently: a float32 network agrees to its rounding, not bit for bit
    np.testing.assert_allclose(preds["probability"].to_numpy(), seen.loc[order, "probability"].to_numpy(), rtol=1e-5)


def test_encoding_reproduces_the_training_features_bit_for_bit():
    """Oracle: load_csv's own features (unstandardised and standardised), indexed by the recorded rows."""
    raw = load_csv(LOANS, target="approved", sensitive="region", standardize=False, seed=5)
    data = load_csv(LOANS, target="approved", sensitive="region", seed=5)
    frame = read_csv_frame(LOANS)
    X = encode_features(frame, data.info["encoding"], source="loans.csv")
    for split in ("train", "val", "test"):
        rows = data.info["row_index"][split]
        np.testing.assert_array_equal(X[rows], raw.split(split).X)
    assert list(data.feature_names)[-4:] == ["purpose=business", "purpose=car", "purpose=education", "purpose=home"]
    assert sorted(np.concatenate([data.info["row_index"][s] for s in ("train", "val", "test")])) == list(range(500))


def test_saved_model_features_equal_the_split_features(loans_run):
    saved = load_model(loans_run / "model.pt")
    data = saved.training_dataset(LOANS)
    X = saved.features(read_csv_frame(LOANS))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(X[data.info["row_index"][split]], data.split(split).X)


def test_header_records_the_pipeline(loans_run):
    saved = load_model(loans_run / "model.pt")
    h = saved.header
    assert h["format_version"] == FORMAT_VERSION and h["torch_version"] == torch.__version__
    assert h["model"] == {"family": "mlp", "n_features": 13, "hidden": [8], "activation": "tanh", "n_outputs": 1,
                          "dtype": "float32"}
    assert saved.columns == ["age", "income", "loan_amount", "credit_score", "years_employed", "employment", "purpose"]
    assert h["features"]["encoding"][5] == {
        "column": "employment",
        "kind": "one_hot",
        "categories": ["contract", "salaried", "self-employed", "unemployed"],
        "unseen": "error",
    }
    assert h["target"] == {"column": "approved", "values": ["no", "yes"], "names": ["no", "yes"], "positive": 1}
    assert h["sensitive"] == {"column": "region", "columns": ["region"], "groups": ["east", "north", "south", "west"]}
    assert h["dataset"]["sha256"] == __import__("hashlib").sha256(LOANS.read_bytes()).hexdigest()
    assert h["training"]["solver"] == "trs" and h["training"]["radius"] == 0.1 and len(h["history"]) == 3
    # standardisation: the training split's mean of the first column, by numpy in float64
    data = saved.training_dataset(LOANS)
    raw_age = read_csv_frame(LOANS)["age"].to_numpy(dtype=float)[data.info["row_index"]["train"]]
    assert saved.mean[0] == pytest.approx(raw_age.mean(), rel=1e-15)


def test_one_vs_rest_and_boolean_targets_keep_their_label_values(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({"x": rng.normal(size=n), "g": rng.choice(["a", "b"], n), "grade": rng.integers(1, 4, n),
                          "ok": rng.random(n) < 0.5})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    for target, positive, values, names in (("grade", "2", [None, 2], ["not 2", "2"]),
                                            ("ok", None, [False, True], ["False", "True"])):
        out = tmp_path / f"run-{target}"
        argv = ["train", "--data", str(path), "--target", target, "--sensitive", "g", "--features", "x",
                "--epochs", "1", "--out", str(out)]
        code, _, err = cli_output(*argv, *(["--positive", positive] if positive else []))
        assert code == 0, err
        saved = load_model(out / "model.pt")
        assert saved.label_values == values and saved.label_names == names
        y = saved.labels(frame[target], column=target)
        expected = frame[target] == 2 if target == "grade" else frame[target]
        np.testing.assert_array_equal(y, expected.to_numpy().astype(int))


# ----------------------------------------------------------------------------------------------------------
# Bad data: one line naming what is wrong, nothing written
# ----------------------------------------------------------------------------------------------------------
def _edited(tmp_path: Path, edit) -> Path:
    frame = pd.read_csv(LOANS)
    frame = edit(frame)
    path = tmp_path / "new.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f.drop(columns=["credit_score"]), "column(s) not found in new.csv: 'credit_score'; the model needs"),
        (lambda f: f.assign(employment=f["employment"].replace("contract", "freelance")),
         "feature column 'employment' of new.csv has"),
        (lambda f: f.assign(income=f["income"].astype(object).where(f.index != 3, "unknown")),
         "feature column 'income' of new.csv holds text, e.g. 'unknown' in data row 4; the model was trained on"),
        (lambda f: f.assign(age=f["age"].where(f.index != 7)),
         "feature column 'age' of new.csv has 1 missing (NaN or empty) value(s), first in data row 8"),
        (lambda f: f.assign(age=f["age"] > 40), "feature column 'age' of new.csv holds True/False values"),
    ],
    ids=["missing-column", "unseen-category", "text-in-numbers", "missing-value", "bool-in-numbers"],
)
def test_bad_data_is_a_one_line_error_and_nothing_is_written(loans_run, tmp_path, capsys, edit, message):
    path = _edited(tmp_path, edit)
    out = tmp_path / "preds.csv"
    code, stdout, err = run_cli(capsys, "predict", "--model", str(loans_run / "model.pt"), "--data", str(path),
                                "--out", str(out))
    line = one_line_error(code, stdout, err)
    assert message in line
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["new.csv"]


def test_unseen_category_names_the_value_and_the_known_ones(loans_run):
    saved = load_model(loans_run / "model.pt")
    frame = pd.read_csv(LOANS)
    frame.loc[10, "purpose"] = "holiday"
    with pytest.raises(FastfairError) as info:
        saved.features(frame, source="new.csv")
    assert str(info.value) == (
        "feature column 'purpose' of new.csv has 1 value(s) not seen in training, e.g. 'holiday' in data row 11; "
        "known values: 'business', 'car', 'education', 'home'"
    )


def test_predict_refuses_an_existing_output_and_a_directory(loans_run, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    out.write_text("mine")
    argv = ["predict", "--model", str(loans_run / "model.pt"), "--data", str(LOANS), "--out"]
    assert "exists; pass --force" in one_line_error(*run_cli(capsys, *argv, str(out)))
    assert out.read_text() == "mine"
    assert "is a directory" in one_line_error(*run_cli(capsys, *argv, str(tmp_path)))
    code, _, err = run_cli(capsys, *argv, str(out), "--force")
    assert code == 0, err and len(pd.read_csv(out)) == 500


# ----------------------------------------------------------------------------------------------------------
# The file itself: never executed, versioned, checked
# ----------------------------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this object would create a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_crafted_pickle_is_refused_and_never_runs(tmp_path, capsys, writer):
    marker = tmp_path / "code-ran"
    model = tmp_path / "model.pt"
    if writer == "pickle":
        model.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        torch.save({"format": "fastfair-model", "format_version": 1, "state_dict": _Payload(marker)}, model)
    # the payload is live: an unrestricted unpickler would run it
    assert not marker.exists()
    with pytest.raises(FastfairError) as info:
        load_model(model)
    assert str(info.value).startswith(f"refused to load {model}: it holds Python objects")
    assert "\n" not in str(info.value)
    code, out, err = run_cli(capsys, "predict", "--model", str(model), "--data", str(LOANS), "--out",
                             str(tmp_path / "p.csv"))
    assert "refused to load" in one_line_error(code, out, err)
    assert not marker.exists() and not (tmp_path / "p.csv").exists()
    # control: the same bytes through plain pickle do run the code, so the refusal above is what stopped it
    if writer == "pickle":
        pickle.loads(model.read_bytes())
        assert marker.exists()


def _payload(run: Path) -> dict:
    return torch.load(run / "model.pt", weights_only=True)


def test_a_newer_format_version_is_refused(loans_run, tmp_path):
    payload = _payload(loans_run)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(FastfairError, match=rf"format version {FORMAT_VERSION + 1}, newer than this fastfair .* "
                                            rf"\(up to {FORMAT_VERSION}\); upgrade fastfair"):
        load_model(tmp_path / "model.pt")


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda p: p.pop("format"), "is not a fastfair model file (no 'fastfair-model' header)"),
        (lambda p: p.update(format_version="1"), "has an invalid format version '1'"),
        (lambda p: p.update(header="{not json"), "has no readable JSON header"),
        (lambda p: p["state_dict"].pop("out.bias"), "its parameters (hidden.bias, hidden.weight, out.weight) are not"),
        (lambda p: p["state_dict"].update({"out.weight": torch.zeros(1, 3)}),
         "parameter 'out.weight' has shape (1, 3) and dtype torch.float32, expected (1, 8)"),
        (lambda p: p.update(mean=torch.zeros(3, dtype=torch.float64)),
         "'mean' must be a float64 tensor of shape (13,)"),
        (lambda p: p.update(header=p["header"].replace('"n_outputs": 1', '"n_outputs": 3')),
         "is a model with 3 outputs; this fastfair scores binary models (1 output) only"),
    ],
    ids=["no-format", "version-text", "header", "missing-parameter", "wrong-shape", "mean", "outputs"],
)
def test_a_malformed_model_file_is_aone_line_error(loans_run, tmp_path, tamper, message):
    payload = _payload(loans_run)
    tamper(payload)
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(FastfairError) as info:
        load_model(tmp_path / "model.pt")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"age,income\n1,2\n", b"PK\x03\x04 not really a zip"])
def test_a_file_that_is_not_a_model_is_aone_line_error(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(FastfairError) as info:
        load_model(path)
    assert str(info.value).startswith(f"{path} is not a fastfair model file") and "\n" not in str(info.value)
    with pytest.raises(FastfairError, match="model file not found"):
        load_model(tmp_path / "absent.pt")


def test_a_model_file_from_before_the_format_is_refused_with_a_hint(tmp_path):
    """The earlier model.pt held numpy arrays, which only an unrestricted unpickler reads."""
    torch.save({"state_dict": {}, "config": {}, "mean": np.zeros(2), "scale": np.ones(2)}, tmp_path / "model.pt")
    with pytest.raises(FastfairError, match=r"refused to load .*numpy.*retrain it"):
        load_model(tmp_path / "model.pt")


# ----------------------------------------------------------------------------------------------------------
# Bundled datasets and the estimator
# ----------------------------------------------------------------------------------------------------------
def test_bundled_dataset_rows_score_as_in_training(unfair2d_run, tmp_path):
    saved = load_model(unfair2d_run / "model.pt")
    assert saved.columns == ["x1", "x2"] and saved.header["dataset"]["options"]["n_per_class"] == 250
    test = load("unfair2d").test
    path = tmp_path / "rows.csv"
    pd.DataFrame(test.X, columns=["x1", "x2"]).to_csv(path, index=False)
    X = saved.features(read_csv_frame(path))
    np.testing.assert_array_equal(X, test.X)
    seen = pd.read_csv(unfair2d_run / "predictions.csv")
    seen = seen[seen["split"] == "test"]
    table = saved.predictions(read_csv_frame(path))
    np.testing.assert_array_equal(table["prediction"].to_numpy().astype(int), seen["prediction"].to_numpy())


@pytest.mark.slow
def test_adult_all_features_score_from_a_csv_of_raw_rows(tmp_path):
    """Adult with one-hot features: raw test rows written as a CSV give the standardised test features."""
    from fastfair.datasets._bundled import data_dir
    from fastfair.datasets.adult import _adult_frames

    out = tmp_path / "run"
    code, _, err = cli_output("train", "--dataset", "adult", "--data-option", "features=all", "--epochs", "1",
                        "--batch-size", "512", "--out", str(out))
    assert code == 0, err
    saved = load_model(out / "model.pt")
    data = load("adult", features="all")
    _, test = _adult_frames(str(data_dir()))
    test = test.loc[test.notna().all(axis=1)]
    path = tmp_path / "adult.csv"
    test.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # categories absent from the training rows: all-zero, as there
        X = saved.features(read_csv_frame(path))
    np.testing.assert_array_equal(X, data.test.X)


def test_estimator_from_model_file_predicts_as_the_saved_model(loans_run):
    saved = load_model(loans_run / "model.pt")
    X = saved.features(read_csv_frame(LOANS))
    est = RobustFairClassifier.from_model_file(loans_run / "model.pt")
    assert est.classes_.tolist() == ["no", "yes"] and est.n_features_in_ == 13
    assert est.get_params()["model"] == "mlp" and est.get_params()["hidden"] == 8
    assert est.get_params()["solver"] == "trs" and len(est.history_) == 3
    np.testing.assert_array_equal(est.decision_function(X), saved.decision_function(X))
    np.testing.assert_array_equal(est.predict(X), saved.predictions(read_csv_frame(LOANS))["prediction"].to_numpy())
    proba = est.predict_proba(X)
    np.testing.assert_array_equal(proba[:, 1], saved.predict_proba(X))
    # oracle: the network by hand in float64 from its saved parameters
    state = saved.model.state_dict()
    W, b = state["hidden.weight"].double().numpy(), state["hidden.bias"].double().numpy()
    v, c = state["out.weight"].double().numpy().ravel(), float(state["out.bias"])
    np.testing.assert_allclose(est.decision_function(X), np.tanh(X @ W.T + b) @ v + c, rtol=1e-5, atol=1e-5)


def test_model_file_is_written_atomically_and_loads_on_any_working_directory(loans_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "copy.pt"
    target.write_bytes((loans_run / "model.pt").read_bytes())
    assert load_model(os.path.relpath(target)).feature_names[0] == "age"


# ----------------------------------------------------------------------------------------------------------
# Two sensitive columns: intersectional groups through train, predict and evaluate
# ----------------------------------------------------------------------------------------------------------
def test_round_trip_with_two_sensitive_columns(tmp_path, capsys):
    """train --sensitive region purpose --out, then predict gives the training run's predictions and evaluate its
    metrics; oracle for the groups: pandas' groupby over the two columns."""
    run = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", "--data", str(LOANS), "--target", "approved", "--sensitive", "region", "purpose",
        "--positive", "yes", "--epochs", "2", "--batch-size", "16", "--out", str(run), "--json",
    )
    assert code == 0, err
    trained = json.loads((run / "metrics.json").read_text())
    frame = pd.read_csv(LOANS)
    expected_groups = [f"{a}|{b}" for a, b in frame.groupby(["region", "purpose"]).size().index]
    assert trained["groups"] == expected_groups and len(expected_groups) == 16
    saved = load_model(run / "model.pt")
    assert saved.sensitive_columns == ["region", "purpose"] and saved.sensitive_column is None
    assert saved.group_names == expected_groups
    assert "purpose" not in saved.columns and "region" not in saved.columns
    # predict: identical predictions, bit for bit
    out = tmp_path / "preds.csv"
    code, _, err = run_cli(capsys, "predict", "--model", str(run / "model.pt"), "--data", str(LOANS), "--out", str(out))
    assert code == 0, err
    preds = pd.read_csv(out)
    seen = pd.read_csv(run / "predictions.csv").set_index("row").loc[preds["row"]]
    np.testing.assert_array_equal(preds["probability"].to_numpy(), seen["probability"].to_numpy())
    # evaluate on the test split: the training run's numbers; on all rows: the groups are the combinations
    code, stdout, err = run_cli(capsys, "evaluate", "--model", str(run / "model.pt"), "--data", str(LOANS),
                                "--split", "test", "--bootstrap", "50", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["summary"] == {k: trained["test"][k] for k in report["summary"]}
    assert "demographic_parity_ratio" in report["summary"]
    code, stdout, err = run_cli(capsys, "evaluate", "--model", str(run / "model.pt"), "--data", str(LOANS),
                                "--bootstrap", "50", "--json")
    assert code == 0, err
    sizes = frame.groupby(["region", "purpose"]).size()
    assert [(g["group"], g["n"]) for g in json.loads(stdout)["groups"]] == [
        (f"{a}|{b}", n) for (a, b), n in sizes.items()
    ]
    # a CSV without one of the two group columns: a one-line error naming it
    path = tmp_path / "no_purpose.csv"
    frame.drop(columns=["purpose"]).to_csv(path, index=False)
    line = one_line_error(*run_cli(capsys, "evaluate", "--model", str(run / "model.pt"), "--data", str(path)))
    assert "group column 'purpose' not found in no_purpose.csv" in line


def test_a_header_with_one_sensitive_column_entry_still_names_its_column(loans_run, tmp_path):
    """A model file whose header has only sensitive.column (as written before several columns were possible)."""
    payload = torch.load(loans_run / "model.pt", weights_only=True)
    header = json.loads(payload["header"])
    header["sensitive"] = {"column": "region", "groups": header["sensitive"]["groups"]}
    payload["header"] = json.dumps(header)
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    saved = load_model(path)
    assert saved.sensitive_columns == ["region"] and saved.sensitive_column == "region"
    header["sensitive"]["columns"] = "region"
    payload["header"] = json.dumps(header)
    torch.save(payload, path)
    with pytest.raises(FastfairError, match=r"header entry 'sensitive.columns' is malformed"):
        load_model(path)
