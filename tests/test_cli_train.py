"""`fastfair train`: pinned JSON keys, tables, --out (one complete set, --force), warnings, closed pipes, and bad
input (one line, exit 2, nothing written)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastfair.cli import main
from fastfair.datasets import load
from helpers import run_cli

PINNED_METRICS = ("accuracy", "independence", "separation_tpr", "separation_fpr", "sufficiency_ppv", "sufficiency_for")


@pytest.mark.parametrize(
    "dataset, extra",
    [
        ("unfair2d", ["--batch-size", "5"]),
        ("adult", ["--batch-size", "100", "--train-size", "10000"]),
        ("lsat", ["--batch-size", "100"]),
    ],
)
def test_train_json_pinned_keys_and_accuracy(capsys, dataset, extra):
    code, out, err = run_cli(capsys, "train", "--dataset", dataset, "--epochs", "1", "--json", *extra)
    assert code == 0, err
    report = json.loads(out)
    assert report["dataset"] == dataset
    assert isinstance(report["n_train"], int) and report["n_train"] > 0
    for split in ("train", "test"):
        for key in PINNED_METRICS:
            assert key in report[split], (split, key)
    assert report["test"]["accuracy"] > 0.5
    assert report["timing"]["epoch_seconds"] > 0
    assert report["timing"]["inner_seconds"] == 0


def test_train_robust_json_reports_inner_time(capsys):
    code, out, _ = run_cli(
        capsys, "train", "--dataset", "unfair2d", "--solver", "trs", "--radius", "0.1", "--epochs", "1", "--json"
    )
    assert code == 0
    report = json.loads(out)
    assert report["config"]["solver"] == "trs"
    assert 0 < report["timing"]["inner_seconds"] < report["timing"]["epoch_seconds"]
    inner = report["inner"]  # diagnostics of the solver on the trained model, with the TRS certificate
    assert inner["path"] == "affine-closed-form" and inner["rows"] == 400 and inner["iterations"] == 1
    assert inner["perturbed_loss"] > inner["clean_loss"]  # the exact maximiser increases the loss
    assert inner["certified_fraction"] == 1.0 and inner["max_kkt_violation"] < 1e-3


@pytest.mark.parametrize("solver", ["pgd", "pgd-paper", "random"])
def test_train_reports_every_solvers_diagnostics(capsys, solver):
    code, out, err = run_cli(
        capsys, "train", "--dataset", "unfair2d", "--solver", solver, "--radius", "0.1", "--epochs", "1",
        "--no-progress",
    )
    assert code == 0, err
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"inner solver {solver} at r=0.1 on 400 training rows") and "->" in line


def test_several_hidden_layers_from_the_command_line(capsys):
    """The spelling ``--model mlp --hidden 64 32 --solver trs`` on Adult with every feature (one-hot): a network
    of two hidden layers, trained robustly, whose inner solver reports its path under ``inner``."""
    code, out, err = run_cli(
        capsys, "train", "--dataset", "adult", "--data-option", "features=all", "--model", "mlp", "--hidden", "64",
        "32", "--solver", "trs", "--train-size", "200", "--epochs", "1", "--batch-size", "100", "--json",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["config"]["hidden"] == [64, 32]
    assert report["n_features"] == load("adult", features="all").n_features > load("adult").n_features
    assert report["inner"]["path"] == "krylov" and report["inner"]["rows"] == 200
    assert report["inner"]["perturbed_loss"] > report["inner"]["clean_loss"]


@pytest.mark.parametrize(
    "widths, words",
    [(["64", "x"], "argument --hidden: invalid int value: 'x'"), ([], "argument --hidden: expected at least one")],
)
def test_hidden_widths_that_are_not_integers_are_usage_errors(capsys, widths, words):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "unfair2d", "--model", "mlp", "--hidden", *widths])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastfair: error: {words}") and err.count("\n") == 1, err

#: GOOD_CSV with a target that takes one value only
ONE_LABEL_CSV = "a,b,t,g\n" + "".join(f"{i % 7},{(i * 3) % 5},1,{'x' if i % 3 else 'y'}\n" for i in range(60))


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--fairness-penalty", "sp"], "argument --fairness-penalty: invalid choice: 'sp'"),
        (["--fairness-penalty", "dp", "--fairness-weight", "x"], "argument --fairness-weight: invalid float value"),
    ],
)
def test_unknown_fairness_penalty_or_weight_are_usage_errors(capsys, argv, words):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "unfair2d", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastfair: error: {words}") and err.count("\n") == 1, err


def test_one_hidden_width_keeps_the_json_of_one_hidden_layer(capsys):
    code, out, err = run_cli(
        capsys, "train", "--dataset", "unfair2d", "--model", "mlp", "--hidden", "5", "--epochs", "1", "--json"
    )
    assert code == 0, err
    hidden = json.loads(out)["config"]["hidden"]
    assert hidden == 5 and type(hidden) is int


def test_unwritable_out_is_a_one_line_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_cli(capsys, "train", "--dataset", "unfair2d", "--epochs", "1", "--out", str(blocker / "sub"))
    assert code == 2 and out == ""
    assert err.strip().startswith("fastfair: error: --out") and len(err.strip().splitlines()) == 1


def test_warnings_are_one_line(capsys):
    """A fairness warning on the command line is one line that names the group, not a source excerpt."""
    code, _, err = run_cli(
        capsys, "train", "--dataset", "unfair2d", "--epochs", "1", "--lr", "1e-6", "--no-progress", "--json"
    )
    assert code == 0 and "sufficiency_ppv is NaN" in err  # this nearly untrained model predicts one class
    for line in err.strip().splitlines():
        assert line.startswith("fastfair: warning: "), err
    assert all("group 0" not in line and "group 1" not in line for line in err.splitlines())


def test_train_text_tables_and_out_dir(capsys, tmp_path):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(
        capsys, "train", "--dataset", "unfair2d", "--epochs", "2", "--out", str(out_dir), "--no-progress"
    )
    assert code == 0, err
    assert "accuracy and fairness gaps" in out and "per-group rates, test" in out
    assert sorted(p.name for p in out_dir.iterdir()) == RUN_FILES
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert len(metrics["history"]) == 2


def test_train_multigroup_adult_race_shows_all_groups(capsys):
    code, out, err = run_cli(
        capsys, "train", "--dataset", "adult", "--sensitive", "race_all", "--epochs", "1", "--batch-size", "256",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert len(report["groups"]) == 5
    assert len(report["test"]["groups"]) == 5


def _csv(tmp_path, text: str, name: str = "d.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD_CSV = "a,b,t,g\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 2},{'x' if i % 3 else 'y'}\n" for i in range(60))


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--dataset", "mnist"], "unknown dataset"),
        (["--data", "{tmp}/missing.csv", "--target", "t", "--sensitive", "g"], "not found"),
        (["--data", "{good}", "--target", "nope", "--sensitive", "g"], "nope"),
        (["--data", "{onelabel}", "--target", "t", "--sensitive", "g"], "1 distinct value"),
        (["--data", "{nan}", "--target", "t", "--sensitive", "g"], "NaN"),
        (["--data", "{onegroup}", "--target", "t", "--sensitive", "g"], "group"),
        (["--data", "{empty}", "--target", "t", "--sensitive", "g"], "empty"),
        (["--dataset", "unfair2d", "--epochs", "0"], "epochs"),
        (["--dataset", "unfair2d", "--batch-size", "0"], "batch size"),
        (["--dataset", "unfair2d", "--lr", "-1"], "learning rate"),
        (["--dataset", "unfair2d", "--solver", "trs", "--radius", "0"], "radius"),
        (["--dataset", "unfair2d", "--data-option", "oops"], "KEY=VALUE"),
        (["--dataset", "unfair2d", "--data-option", "colour=red"], "colour"),
        (["--dataset", "unfair2d", "--model", "mlp", "--hidden", "64", "0"], "hidden must be"),
        (["--dataset", "unfair2d", "--model", "mlp", "--hidden", "64", "-3"], "(layer 2: -3)"),
        (["--dataset", "unfair2d", "--model", "mlp", "--hidden", *["8"] * 9], "got 9 widths"),
        (
            ["--dataset", "unfair2d", "--fairness-penalty", "dp", "--fairness-weight", "-1"],
            "--fairness-weight must be a finite number >= 0, got -1.0",
        ),
        (["--dataset", "unfair2d", "--fairness-penalty", "dp", "--fairness-weight", "nan"], "--fairness-weight"),
        (["--dataset", "unfair2d", "--fairness-penalty", "dp", "--fairness-weight", "inf"], "--fairness-weight"),
        (["--dataset", "unfair2d", "--fairness-weight", "2"], "--fairness-weight 2 needs a fairness penalty"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(capsys, tmp_path, argv, words):
    files = {
        "tmp": str(tmp_path),
        "good": _csv(tmp_path, GOOD_CSV, "good.csv"),
        "nan": _csv(tmp_path, GOOD_CSV.replace("\n3,", "\n,", 1), "nan.csv"),
        "onegroup": _csv(tmp_path, GOOD_CSV.replace(",y\n", ",x\n"), "one.csv"),
        "onelabel": _csv(tmp_path, ONE_LABEL_CSV, "onelabel.csv"),
        "empty": _csv(tmp_path, "", "empty.csv"),
    }
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "train", *[a.format(**files) for a in argv], "--out", str(out_dir))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastfair: error: "), err
    assert words.lower() in lines[0].lower()
    assert not out_dir.exists()


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    out_dir = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "fastfair", "train", "--dataset", "nope", "--out", str(out_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("fastfair: error:") and len(proc.stderr.strip().splitlines()) == 1
    assert not out_dir.exists()


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in (
        "--dataset", "--data", "--solver", "--radius", "--train-size", "--dtype", "--json", "--out",
        "--fairness-penalty", "--fairness-weight",
    ):  # fmt: skip
        assert opt in out


def test_corrupted_bundled_data_is_a_one_line_error(capsys, tmp_path, monkeypatch):
    """A bundled file whose sha256 does not match its recorded checksum is refused, not silently used."""
    import gzip
    import shutil

    from fastfair.datasets import _bundled

    data = tmp_path / "data"
    shutil.copytree(_bundled.DATA_DIR, data)
    text = gzip.decompress((data / "law.csv.gz").read_bytes())
    (data / "law.csv.gz").write_bytes(gzip.compress(text.replace(b",", b";", 1)))  # valid gzip, wrong content
    monkeypatch.setenv("FASTFAIR_DATA_DIR", str(data))
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "train", "--dataset", "lsat", "--out", str(out_dir))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastfair: error: ") and "sha256" in lines[0].lower(), err
    assert not out_dir.exists()


def test_malformed_csv_is_a_one_line_error(capsys, tmp_path):
    bad = _csv(tmp_path, 'a,b,t,g\n1,2,0,x\n"3,4,1,y\n5,6,0\n', "bad.csv")
    out_dir = tmp_path / "out"
    code, out, err = run_cli(
        capsys, "train", "--data", bad, "--target", "t", "--sensitive", "g", "--out", str(out_dir)
    )
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastfair: error: "), err
    assert not out_dir.exists()


# ----------------------------------------------------------------------------------------------------------
# Robust runs on part of the data, extreme numbers, and trustworthiness warnings
# ----------------------------------------------------------------------------------------------------------
def test_robust_run_on_first_rows_diagnoses_those_rows(capsys, tmp_path):
    """Oracle: the diagnostics' clean loss is the float64 logistic loss of the saved model on the first 100
    training rows."""
    import numpy as np
    import torch

    from fastfair.datasets import load

    out_dir = tmp_path / "run"
    code, out, err = run_cli(
        capsys, "train", "--dataset", "unfair2d", "--train-size", "100", "--solver", "trs", "--epochs", "1",
        "--batch-size", "5", "--json", "--out", str(out_dir),
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["n_train"] == 100 and report["inner"]["rows"] == 100
    state = torch.load(out_dir / "model.pt", weights_only=False)["state_dict"]
    w, b = state["linear.weight"].double().numpy().ravel(), float(state["linear.bias"])
    train = load("unfair2d").train
    z = train.X[:100] @ w + b
    expected = np.mean(np.logaddexp(0, z) - train.y[:100] * z)
    assert report["inner"]["clean_loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--solver", "trs", "--radius", "1e39"], "radius"),
        (["--solver", "trs", "--radius", "1e30"], "radius"),
        (["--solver", "trs", "--radius", "1e-320"], "radius"),
        (["--seed", "18446744073709551616"], "seed"),
        (["--lr", "1e39"], "learning rate"),
        (["--hidden", "1000000000000000000000", "--model", "mlp"], "hidden"),
    ],
)
def test_extreme_numbers_are_one_line_errors_before_training(capsys, tmp_path, argv, words):
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "train", "--dataset", "unfair2d", *argv, "--out", str(out_dir))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastfair: error: ") and words in lines[0], err
    assert not out_dir.exists()


def test_a_solver_that_lowers_the_loss_warns_and_says_so_in_the_json(capsys):
    """At r = 1e8 the TRS maximiser of the MLP's quadratic model lands where the saturated network's loss is
    lower than at the data: a one-line warning, recorded in the JSON."""
    code, out, err = run_cli(
        capsys, "train", "--dataset", "unfair2d", "--model", "mlp", "--hidden", "4", "--solver", "trs",
        "--radius", "1e8", "--epochs", "1", "--batch-size", "50", "--json",
    )
    assert code == 0, err
    inner = json.loads(out)["inner"]
    assert inner["perturbed_loss"] < inner["clean_loss"]
    assert len(inner["warnings"]) == 1 and "lowered the mean loss" in inner["warnings"][0]
    assert f"fastfair: warning: {inner['warnings'][0]}" in err.splitlines()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--out", ""], "--out must name a directory, got an empty string"),
        (["--out", "."], "--out '.' holds the current directory, which cannot be replaced; name a new directory"),
        (["--force"], "--force goes with --out DIR"),
    ],
)
def test_out_that_is_empty_or_the_current_directory_is_refused(capsys, tmp_path, monkeypatch, argv, message):
    """Nothing lands in (or replaces) the current directory."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "train", "--dataset", "unfair2d", "--epochs", "1", *argv)
    assert code == 2 and out == ""
    assert err.strip() == f"fastfair: error: {message}"
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------------------
# --out writes one complete set; an earlier run is only replaced with --force, and never lost on an error
# ----------------------------------------------------------------------------------------------------------
RUN_FILES = ["groups.csv", "history.csv", "metrics.json", "model.pt", "predictions.csv"]


def _earlier_run(tmp_path):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "metrics.json").write_text('{"earlier": true}')
    (out_dir / "notes.txt").write_text("mine")
    return out_dir


def test_non_empty_out_is_refused_without_force(capsys, tmp_path):
    out_dir = _earlier_run(tmp_path)
    code, out, err = run_cli(capsys, "train", "--dataset", "unfair2d", "--epochs", "1", "--out", str(out_dir))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "exists and is not empty" in lines[0] and "--force" in lines[0], err
    assert sorted(p.name for p in out_dir.iterdir()) == ["metrics.json", "notes.txt"]


def test_force_replaces_the_whole_set(capsys, tmp_path):
    out_dir = _earlier_run(tmp_path)
    code, out, err = run_cli(
        capsys, "train", "--dataset", "unfair2d", "--epochs", "1", "--out", str(out_dir), "--force", "--json"
    )
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == RUN_FILES  # no old file mixed in
    assert json.loads((out_dir / "metrics.json").read_text())["dataset"] == "unfair2d"
    assert json.loads(out)["dataset"] == "unfair2d"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize("json_flag", [["--json"], []])
def test_failed_write_keeps_the_earlier_run_and_prints_no_result(capsys, tmp_path, monkeypatch, json_flag):
    """A full disk half-way through the set: exit 2, one line naming --out, nothing on stdout, the earlier run
    untouched and no temporary directory left behind."""
    from fastfair.cli import train as train_cli

    written = []

    def full_disk(path, obj):
        written.append(path.name)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train_cli, "atomic_write_json", full_disk)
    out_dir = _earlier_run(tmp_path)
    code, out, err = run_cli(
        capsys, "train", "--dataset", "unfair2d", "--epochs", "1", "--out", str(out_dir), "--force", *json_flag
    )
    assert written == ["metrics.json"]  # the other files of the set were written before it
    assert code == 2 and out == ""
    assert err.strip() == f"fastfair: error: No space left on device: {out_dir}"
    assert sorted(p.name for p in out_dir.iterdir()) == ["metrics.json", "notes.txt"]
    assert (out_dir / "metrics.json").read_text() == '{"earlier": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_help_documents_force(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--force" in out and "non-empty" in out


# ----------------------------------------------------------------------------------------------------------
# A closed pipe is not an error
# ----------------------------------------------------------------------------------------------------------
def test_closed_stdout_pipe_is_silent(capsys, monkeypatch):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            raise OSError("no file descriptor")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = main(["train", "--dataset", "unfair2d", "--epochs", "1", "--json"])
    assert code == 141
    assert capsys.readouterr().err == ""


@pytest.mark.slow  # a fresh interpreter imports torch and trains: several seconds
def test_closed_pipe_in_a_real_process_exits_141_without_a_word():
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastfair", "train", "--dataset", "unfair2d", "--epochs", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    proc.stdout.close()  # the reader goes away before anything is written (like `| head -c 0`)
    err = proc.stderr.read()
    proc.wait()
    assert proc.returncode == 141 and err == ""


def test_train_size_that_leaves_out_a_group_reports_the_groups_it_has(capsys):
    """The first 50 Adult rows hold 3 of the 5 race groups: the run finishes and its training table names exactly
    the groups present, with their counts (independently counted from the loaded data)."""
    from fastfair import datasets

    data = datasets.load("adult", sensitive="race_all", seed=0)
    head = data.train.head(50)
    names, counts = np.unique(np.asarray(head.group_names, dtype=object)[head.s], return_counts=True)
    assert len(names) < len(data.group_names)  # the premise: some group is missing from these rows
    code, out, err = run_cli(
        capsys, "train", "--dataset", "adult", "--sensitive", "race_all", "--train-size", "50", "--epochs", "1",
        "--batch-size", "50", "--json",
    )
    assert code == 0, err
    groups = {g["group"]: g["n"] for g in json.loads(out)["train"]["groups"]}
    assert groups == dict(zip(names.tolist(), counts.tolist(), strict=True))


def test_positive_class_is_reported_in_text_and_json(capsys, tmp_path):
    """``approved`` takes the values no/yes: sorted, 'yes' is positive unless --positive says otherwise."""
    csv = os.path.join(os.path.dirname(__file__), "..", "examples", "loans.csv")
    base = ["train", "--data", csv, "--target", "approved", "--sensitive", "region", "--epochs", "1"]
    code, out, err = run_cli(capsys, *base, "--json")
    assert code == 0, err
    assert json.loads(out)["labels"] == {"negative": "no", "positive": "yes"}
    code, out, err = run_cli(capsys, *base, "--positive", "no", "--json")
    assert code == 0, err
    assert json.loads(out)["labels"]["positive"] == "no"
    code, out, err = run_cli(capsys, *base)
    assert code == 0, err
    assert "positive class 'yes'" in out


def test_fairness_penalty_with_robust_training_is_recorded_in_json_and_history(capsys, tmp_path):
    argv = ["train", "--dataset", "unfair2d", "--solver", "trs", "--radius", "0.1", "--epochs", "2",
            "--batch-size", "100", "--fairness-penalty", "eo", "--fairness-weight", "0.5"]  # fmt: skip
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["config"]["fairness_penalty"] == "eo" and report["config"]["fairness_weight"] == 0.5
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path / "run"))
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["fairness_penalty"] == "eo"
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    assert "train_penalty" in header and "val_penalty" in header and len(history) == 3
    for line in history[1:]:
        value = float(line.split(",")[header.index("train_penalty")])
        assert 0 <= value <= 1


def test_without_a_fairness_penalty_the_json_says_so(capsys):
    code, out, err = run_cli(capsys, "train", "--dataset", "unfair2d", "--epochs", "1", "--json")
    assert code == 0, err
    config = json.loads(out)["config"]
    assert config["fairness_penalty"] is None and config["fairness_weight"] == 0.0


def test_fairness_options_without_defaults_read_as_not_given():
    """For a command whose options override a config file only where given: unset options are None, and a
    config built from them has the library's defaults."""
    import argparse

    from fastfair.cli.common import add_fairness_arguments, add_training_arguments, config_from_args

    sweep_like = argparse.ArgumentParser()
    add_fairness_arguments(sweep_like, defaults=False)
    args = sweep_like.parse_args([])
    assert args.fairness_penalty is None and args.fairness_weight is None
    assert sweep_like.parse_args(["--fairness-weight", "0.5"]).fairness_weight == 0.5

    train_like = argparse.ArgumentParser()
    add_training_arguments(train_like)
    config = config_from_args(train_like.parse_args(["--fairness-penalty", "dp"]))
    assert config.fairness_penalty == "dp" and config.fairness_weight == 0.0
    args = train_like.parse_args([])
    args.fairness_weight = None  # as a sweep-like parser leaves it
    assert config_from_args(args).fairness_weight == 0.0
