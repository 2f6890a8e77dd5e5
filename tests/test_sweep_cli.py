"""`fastfair sweep` / `reproduce`: bad input, resume without recompute, SIGKILL mid-way, --jobs 2 = serial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fastfair import cli
from fastfair.experiments import read_results
from helpers import run_cli

TIMING = ("epoch_seconds", "inner_seconds")
# 2 epochs of unfair2d: 1 + 2 x 2 = 5 small cells
GRID = [
    "--dataset",
    "unfair2d",
    "--solvers",
    "none",
    "trs",
    "random",
    "--radii",
    "0.1,0.18",
    "--epochs",
    "2",
    "--batch-size",
    "10",
    "--no-progress",
]
# the CLI with the experiment subcommands registered, for subprocesses
LAUNCH = (
    "import sys; from fastfair import cli; cli.SUBCOMMANDS.update(sweep='sweep', reproduce='reproduce'); "
    "sys.exit(cli.main(sys.argv[1:]))"
)


@pytest.fixture(autouse=True)
def _register(monkeypatch):
    monkeypatch.setitem(cli.SUBCOMMANDS, "sweep", "sweep")
    monkeypatch.setitem(cli.SUBCOMMANDS, "reproduce", "reproduce")


def metrics(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=list(TIMING)).reset_index(drop=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "mnist", "--radii", "0.1"], "unknown dataset 'mnist'"),
        (["--dataset", "unfair2d", "--radii", "0", "--solvers", "trs"], "radius must be positive"),
        (["--dataset", "unfair2d", "--radii", "0.2:0.1:0.1"], "needs finite start <= stop"),
        (["--dataset", "unfair2d", "--solvers", "fgsm", "--radii", "0.1"], "unknown solver 'fgsm'"),
        (["--dataset", "unfair2d", "--solvers", "trs"], "radii are required"),
        (["--dataset", "unfair2d", "--radii", "0.1", "--epochs", "0"], "epochs must be a positive integer"),
        (
            ["--dataset", "unfair2d", "--radii", "0.1", "--data-option", "balanced=true"],
            "unknown key 'balanced'",
        ),
        (["--dataset", "lsat", "--radii", "0.1", "--data-option", "balanced=maybe"], "balanced"),
        (["--dataset", "unfair2d", "--radii", "0.1", "--jobs", "0"], "--jobs must be a positive integer"),
        (["--dataset", "unfair2d", "--radii", "0.1", "--jobs", "2", "--scheduler", "tcp://x:1"], "not both"),
        (["--radii", "0.1"], "give --config FILE"),
        (["--config", "missing.yaml"], "config file 'missing.yaml' not found"),
        (["--dataset", "unfair2d", "--radii", "0.1", "--solver-option", "pgd-steps=3"], "SOLVER.KEY=VALUE"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "sweep", *args, "--out", str(out_dir))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastfair: error: "), err
    assert message in lines[0]
    assert not out_dir.exists()


def test_bad_config_file_exit_2(capsys, tmp_path):
    config = tmp_path / "grid.yaml"
    config.write_text("datasets: [unfair2d]\nsolvers: [none]\nepochz: 3\n")
    code, _, err = run_cli(capsys, "sweep", "--config", str(config), "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1
    assert "grid.yaml: top level: unknown key 'epochz' (did you mean 'epochs'?)" in err
    assert not (tmp_path / "out").exists()


def test_the_printed_overview_is_the_mean_over_seeds_of_the_test_rows():
    """Oracle: means computed by hand from a two-seed results table."""
    from fastfair.cli._grid_run import means_over_seeds

    gaps = ["independence", "separation_tpr", "separation_fpr", "sufficiency_ppv", "sufficiency_for"]
    rows = []
    for solver, radius in (("trs", 0.1), ("none", 0.0)):
        for seed in (0, 1):
            for split in ("train", "test"):
                base = 0.5 + 0.1 * seed + (0.2 if split == "train" else 0.0) + (0.05 if solver == "trs" else 0.0)
                rows.append(
                    {"dataset": "d", "model": "affine", "solver": solver, "radius": radius, "seed": seed,
                     "split": split, "accuracy": base, **{g: base / (k + 2) for k, g in enumerate(gaps)}}
                )
    table = means_over_seeds(pd.DataFrame(rows))
    assert list(table.columns) == ["seeds", "accuracy", *gaps]
    assert [key[2] for key in table.index] == ["trs", "none"]  # the order of the results
    assert list(table["seeds"]) == [2, 2]
    np.testing.assert_allclose(table["accuracy"], [0.6, 0.55])  # (0.55 + 0.65) / 2 and (0.5 + 0.6) / 2
    np.testing.assert_allclose(table["sufficiency_for"], [0.6 / 6, 0.55 / 6])


def test_sweep_rerun_reuses_cells_without_recompute(capsys, tmp_path, monkeypatch):
    out_dir = tmp_path / "sweep"
    code, out, err = run_cli(capsys, "sweep", *GRID, "--out", str(out_dir), "--json")
    assert code == 0, err
    first = json.loads(out)
    assert (first["cells"], first["ran"], first["reused"], first["rows"]) == (5, 5, 0, 15)
    results = read_results(out_dir)
    assert len(results) == 15 and set(results["solver"]) == {"none", "trs", "random"}
    cell_files = sorted((out_dir / "cells").glob("*.json"))
    assert len(cell_files) == 5
    mtimes = {p: p.stat().st_mtime_ns for p in cell_files}
    csv_before = (out_dir / "results.csv").read_bytes()

    # a re-run must not train anything: make training explode if it is called
    import fastfair.training

    def boom(*a, **k):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(fastfair.training, "train", boom)
    code, out, err = run_cli(capsys, "sweep", *GRID, "--out", str(out_dir), "--json")
    assert code == 0, err
    again = json.loads(out)
    assert (again["ran"], again["reused"]) == (0, 5)
    assert {p: p.stat().st_mtime_ns for p in cell_files} == mtimes
    assert (out_dir / "results.csv").read_bytes() == csv_before

    # a bigger grid in the same directory runs only the new cells; results.csv follows the grid order
    monkeypatch.undo()
    monkeypatch.setitem(cli.SUBCOMMANDS, "sweep", "sweep")
    code, out, err = run_cli(capsys, "sweep", *GRID, "--seeds", "0", "1", "--out", str(out_dir), "--json")
    assert code == 0, err
    grown = json.loads(out)
    assert (grown["cells"], grown["ran"], grown["reused"]) == (10, 5, 5)
    bigger = read_results(out_dir)
    assert list(bigger["seed"][:6]) == [0, 0, 0, 1, 1, 1]  # none seed 0 (3 splits), none seed 1, ...
    assert metrics(bigger[bigger["seed"] == 0]).equals(metrics(results))


def test_text_output_and_dry_run(capsys, tmp_path):
    code, out, err = run_cli(capsys, "sweep", *GRID, "--out", str(tmp_path / "dry"), "--dry-run")
    assert code == 0, err
    assert "5 cells; nothing run" in out and not (tmp_path / "dry").exists()
    code, out, err = run_cli(
        capsys,
        "sweep",
        *GRID[:-1],
        "--radii",
        "0.1",
        "--solvers",
        "none",
        "--out",
        str(tmp_path / "t"),
        "--no-progress",
    )
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("sweep: 1 cells (1 run, 0 reused)") and "results.csv" in last


def test_jobs_2_equals_serial(capsys, tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert run_cli(capsys, "sweep", *GRID, "--out", str(serial))[0] == 0
    code, out, err = run_cli(capsys, "sweep", *GRID, "--out", str(parallel), "--jobs", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["executor"] == "with 2 local processes"
    a, b = read_results(serial), read_results(parallel)
    pd.testing.assert_frame_equal(metrics(a), metrics(b))
    # the worker processes really ran the cells
    pids = {json.loads(p.read_text())["pid"] for p in (parallel / "cells").glob("*.json")}
    assert os.getpid() not in pids


def _sweep_until_first_cell(args: list[str], out_dir: Path, **popen: Any) -> subprocess.Popen:
    """Start ``fastfair sweep ARGS --out OUT_DIR`` in a child process; return it once its first cell is stored."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "sweep", *args, "--out", str(out_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **popen,
    )
    deadline = time.monotonic() + 120
    try:
        while not list((out_dir / "cells").glob("*.json")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no cell finished in time"
            time.sleep(0.01)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def test_sigkill_mid_sweep_then_rerun_loses_and_duplicates_nothing(capsys, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    grid = [
        *GRID,
        "--solvers",
        "none",
        "trs",
        "pgd",
        "random",
        "--seeds",
        "0",
        "1",
    ]  # 2 x (1 + 3 x 2) = 14 cells
    proc = _sweep_until_first_cell(grid, killed)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = list((killed / "cells").glob("*.json"))
    assert 1 <= len(finished) < 14, "the sweep was not interrupted mid-way"
    for path in finished:  # every stored cell is complete
        assert len(json.loads(path.read_text())["rows"]) == 3
    partial = killed / "results.csv"
    if partial.exists():  # whatever was flushed is whole cells only
        rows = pd.read_csv(partial)
        assert (rows.groupby("cell_id").size() == 3).all()

    code, out, err = run_cli(capsys, "sweep", *grid, "--out", str(killed), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["reused"] == len(finished) and summary["ran"] == 14 - len(finished)
    assert run_cli(capsys, "sweep", *grid, "--out", str(reference))[0] == 0
    a, b = read_results(reference), read_results(killed)
    assert len(b) == 42 and not b.duplicated(["cell_id", "split"]).any()
    pd.testing.assert_frame_equal(metrics(a), metrics(b))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True


def test_sigkill_of_a_jobs_sweep_leaves_no_worker_running(tmp_path):
    """The workers notice their sweep is gone and exit, instead of computing queued cells nobody will store."""
    out_dir = tmp_path / "killed"
    grid = [*GRID, "--solvers", "none", "trs", "pgd-paper", "--radii", "0.1:0.2:0.05", "--seeds", "0", "1"]
    proc = _sweep_until_first_cell([*grid, "--jobs", "2"], out_dir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    workers = {json.loads(p.read_text())["pid"] for p in (out_dir / "cells").glob("*.json")}
    assert workers and proc.pid not in workers
    deadline = time.monotonic() + 15
    while any(_process_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its killed sweep"
        time.sleep(0.1)


def test_ctrl_c_with_worker_processes_keeps_finished_cells(tmp_path):
    out_dir = tmp_path / "interrupted"
    grid = [*GRID, "--solvers", "none", "trs", "pgd-paper", "--radii", "0.1:0.2:0.05", "--seeds", "0", "1"]
    proc = _sweep_until_first_cell(
        [*grid, "--jobs", "2"],
        out_dir,
        start_new_session=True,  # its own process group, like a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the parent and its workers
    _, err_bytes = proc.communicate(timeout=60)
    err = err_bytes.decode()
    assert proc.returncode == 130, err
    assert "interrupted; finished cells are kept" in err
    assert "Traceback" not in err, err
    finished = {p.stem for p in (out_dir / "cells").glob("*.json")}
    assert 1 <= len(finished) < 14, (len(finished), err)
    rows = pd.read_csv(out_dir / "results.csv")
    assert set(rows["cell_id"]) == finished, (sorted(set(rows["cell_id"])), sorted(finished), err)
    assert (rows.groupby("cell_id").size() == 3).all()
    time.sleep(0.5)
    assert _live_processes_in_group(proc.pid) == [], "worker processes were left behind"


def _live_processes_in_group(pgid: int) -> list[int]:
    """Pids of the non-zombie processes of a process group (Linux /proc; empty elsewhere)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            live.append(int(stat.parent.name))
    return live


def test_scheduler_without_dask_installed(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    code, _, err = run_cli(
        capsys, "sweep", *GRID, "--solvers", "none", "--out", str(tmp_path / "o"), "--scheduler", "tcp://x:1"
    )
    assert code == 2
    assert err.strip() == (
        "fastfair: error: --scheduler needs dask.distributed, which is not installed; "
        "install it with: pip install 'fastfair[dask]'"
    )


def test_config_file_with_per_dataset_settings(capsys, tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text(
        'solvers = ["none", "trs"]\nradii = [0.1]\nepochs = 1\n'
        '[[datasets]]\nname = "unfair2d"\nbatch_size = 20\n'
        '[[datasets]]\nname = "lsat"\nbalanced = true\nbatch_size = 200\ntrain_size = 400\n'
    )
    code, out, err = run_cli(
        capsys, "sweep", "--config", str(config), "--out", str(tmp_path / "o"), "--json", "--seeds", "3"
    )
    assert code == 0, err
    assert json.loads(out)["ran"] == 4
    results = read_results(tmp_path / "o")
    assert list(results["dataset"].unique()) == ["unfair2d", "lsat"]
    assert set(results["seed"]) == {3}
    lsat = results[results["dataset"] == "lsat"]
    assert set(lsat["batch_size"]) == {200} and set(lsat["train_size"]) == {400}
    assert set(lsat.loc[lsat["split"] == "train", "n"]) == {400}
    grid = json.loads((tmp_path / "o" / "grid.json").read_text())
    assert grid["datasets"][1]["data"]["options"] == {"balanced": True}


def test_a_config_file_with_several_hidden_layers(capsys, tmp_path):
    """``hidden: [6, 4]`` in a grid file trains a network of two hidden layers per cell; the results table names
    the widths, and a re-run reuses the cells."""
    config = tmp_path / "deep.yaml"
    config.write_text(
        "datasets: [unfair2d]\nmodels: [mlp]\nhidden: [6, 4]\nsolvers: [none, auto, trs]\nradii: [0.1]\n"
        "epochs: 1\nbatch_size: 50\n"
    )
    out_dir = tmp_path / "o"
    code, out, err = run_cli(capsys, "sweep", "--config", str(config), "--out", str(out_dir), "--json")
    assert code == 0, err
    assert json.loads(out)["ran"] == 3
    results = read_results(out_dir)
    assert set(results["hidden"]) == {"[6, 4]"} and list(results["solver"].unique()) == ["none", "auto", "trs"]
    record = json.loads(next((out_dir / "cells").glob("*.json")).read_text())
    assert record["spec"]["hidden"] == [6, 4]
    shapes = [np.shape(value) for key, value in record["model_state"].items() if key.endswith("weight")]
    assert shapes == [(6, 2), (4, 6), (1, 4)]  # the state in registration order: first layer first
    code, out, err = run_cli(capsys, "sweep", "--config", str(config), "--out", str(out_dir), "--json")
    assert code == 0 and json.loads(out)["reused"] == 3, err


def test_reproduce_writes_results_and_report(capsys, tmp_path, monkeypatch):
    """The reproduce pipeline on a miniature protocol (the real --quick run is the slow test below)."""
    from fastfair.experiments import paper_protocol as paper

    report = pytest.importorskip("fastfair.report", reason="the report builder has not landed yet")
    assert hasattr(report, "build_report")
    tiny = (
        paper.DatasetProtocol("unfair2d", (0.18,), batch_size=20, epochs=1),
        paper.DatasetProtocol("adult", (0.1,), batch_size=100, epochs=1, train_size=300),
        paper.DatasetProtocol("lsat", (0.1,), batch_size=50, epochs=1, train_size=300),
    )
    monkeypatch.setattr(paper, "QUICK", tiny)
    out_dir = tmp_path / "demo"
    code, out, err = run_cli(
        capsys, "reproduce", "--quick", "--out", str(out_dir), "--jobs", "1", "--no-progress"
    )
    assert code == 0, err
    results = read_results(out_dir)
    assert set(results["dataset"]) == {"unfair2d", "adult", "lsat"}
    assert len(results) == 3 * 5 * 3  # 3 datasets x (none + 4 robust solvers at one radius) x 3 splits
    assert (out_dir / "report.md").is_file() and (out_dir / "report.html").is_file()
    assert len(list(out_dir.rglob("*.png"))) >= 3
    assert "report.html" in out.strip().splitlines()[-1]
    # a re-run with nothing new reuses the cells and the report (same inputs -> same report, not rebuilt)
    stamp = (out_dir / "report.md").stat().st_mtime_ns
    assert run_cli(capsys, "reproduce", "--quick", "--out", str(out_dir), "--jobs", "1", "--no-progress")[0] == 0
    assert (out_dir / "report.md").stat().st_mtime_ns == stamp
    # a missing report file forces a rebuild
    (out_dir / "report.html").unlink()
    assert run_cli(capsys, "reproduce", "--quick", "--out", str(out_dir), "--jobs", "1", "--no-progress")[0] == 0
    assert (out_dir / "report.html").is_file()


@pytest.mark.slow
def test_reproduce_quick_under_two_minutes_and_rerun_reuses(tmp_path):
    out_dir = tmp_path / "demo"
    cmd = [sys.executable, "-c", LAUNCH, "reproduce", "--quick", "--out", str(out_dir)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    first = time.perf_counter() - t0
    before = read_results(out_dir)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    second = time.perf_counter() - t0
    assert first <= 120, first
    assert second <= 0.2 * first, (first, second)
    pd.testing.assert_frame_equal(before, read_results(out_dir))
    assert (Path(out_dir) / "report.html").is_file()


def test_sweep_report_on_a_multigroup_csv(capsys, tmp_path):
    """--report on any sweep: tables and figures, no claims section; a re-run reuses the report."""
    loans = Path(__file__).resolve().parents[1] / "examples" / "loans.csv"
    out_dir = tmp_path / "loans"
    argv = (
        "sweep", "--data", str(loans), "--target", "approved", "--sensitive", "region", "--positive", "yes",
        "--solvers", "none", "trs", "--radii", "0.1", "--epochs", "1", "--out", str(out_dir), "--no-progress",
        "--report",
    )
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    text = (out_dir / "report.md").read_text()
    assert text.startswith("# fastfair: sweep report") and "Claims" not in text
    assert "## Timing\n" in text and "Table 1" not in text and "the paper" not in text, text
    assert "Table 1" not in (out_dir / "report.html").read_text()
    assert len(list((out_dir / "figures").glob("*.png"))) >= 2
    stamp = (out_dir / "report.html").stat().st_mtime_ns
    assert run_cli(capsys, *argv)[0] == 0
    assert (out_dir / "report.html").stat().st_mtime_ns == stamp


# ------------------------------------------------------------------------------------- reliability


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sigterm_mid_sweep_flushes_results_and_exits_143_quietly(tmp_path, jobs):
    """SIGTERM is handled like Ctrl-C: workers stopped, results.csv written from the finished cells, one line."""
    out_dir = tmp_path / "terminated"
    grid = [*GRID, "--solvers", "none", "trs", "pgd-paper", "--radii", "0.1:0.2:0.05", "--seeds", "0", "1"]
    proc = _sweep_until_first_cell([*grid, "--jobs", jobs], out_dir, start_new_session=True)
    os.kill(proc.pid, signal.SIGTERM)  # the sweep only, as `kill PID` or a job scheduler does
    _, err_bytes = proc.communicate(timeout=60)
    err = err_bytes.decode()
    assert proc.returncode == 128 + signal.SIGTERM, err
    lines = [line for line in err.splitlines() if not line.startswith("sweep: 14 cells (0 stored, 14 to run")]
    assert lines == [
        f"fastfair: terminated; finished cells are kept in {out_dir}/cells and {out_dir}/results.csv - "
        "run the same command again to resume"
    ], err
    finished = {p.stem for p in (out_dir / "cells").glob("*.json")}
    assert 1 <= len(finished) < 14, (len(finished), err)
    rows = pd.read_csv(out_dir / "results.csv")
    assert set(rows["cell_id"]) == finished and (rows.groupby("cell_id").size() == 3).all()
    time.sleep(0.5)
    assert _live_processes_in_group(proc.pid) == [], "worker processes were left behind"


def test_a_cell_failing_on_its_input_stops_the_sweep_with_one_error_line(capsys, tmp_path, monkeypatch):
    """A FastfairError inside a cell would recur on every re-run: stop at once, exit 2, no 'retry' advice."""
    from fastfair.errors import FastfairError
    from fastfair.experiments import sweep as sweep_module

    calls = []

    def deterministic(cell):
        calls.append(cell.describe())
        raise FastfairError("group 'c' has 2 rows and is missing from the test split")

    monkeypatch.setattr(sweep_module, "run_cell", deterministic)
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "sweep", *GRID, "--out", str(out_dir))
    assert code == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("sweep: 5 cells")]
    assert lines == [
        f"fastfair: error: cell {calls[0]}: group 'c' has 2 rows and is missing from the test split "
        f"(the sweep stopped; 0 finished cells kept in {out_dir})"
    ]
    assert len(calls) == 1 and "re-run" not in err and out == ""


def test_unexpected_cell_failures_still_suggest_a_rerun(capsys, tmp_path, monkeypatch):
    from fastfair.experiments import sweep as sweep_module

    monkeypatch.setattr(sweep_module, "run_cell", lambda cell: 1 / 0)
    code, _, err = run_cli(capsys, "sweep", *GRID, "--out", str(tmp_path / "out"))
    assert code == 1
    assert err.count("failed: ") == 5 and "ZeroDivisionError" in err
    assert "re-run the command to retry the failed cells" in err


def test_a_large_grid_needs_allow_large_and_is_refused_without_expanding_it(capsys, tmp_path, monkeypatch):
    from fastfair.cli import _grid_run
    from fastfair.experiments.grid import DatasetPlan

    def boom(*args, **kwargs):
        raise AssertionError("the grid was expanded or validated cell by cell")

    with monkeypatch.context() as patch:
        patch.setattr(DatasetPlan, "cells", boom)
        patch.setattr(DatasetPlan, "probes", boom)
        args = ["--dataset", "unfair2d", "--solvers", "trs", "--radii", "0.001:1:0.001", "--seeds", "0:20"]
        code, out, err = run_cli(capsys, "sweep", *args, "--dry-run", "--out", str(tmp_path / "big"))
    assert code == 2 and out == ""
    assert err == (
        "fastfair: error: the grid has 20,000 cells, more than 10,000; pass --allow-large to run it anyway, "
        "or use fewer radii / seeds\n"
    )
    monkeypatch.setattr(_grid_run, "LARGE_GRID", 4)
    code, _, err = run_cli(capsys, "sweep", *GRID, "--dry-run", "--out", str(tmp_path / "dry"))
    assert code == 2 and "the grid has 5 cells, more than 4" in err
    code, out, err = run_cli(capsys, "sweep", *GRID, "--dry-run", "--allow-large", "--out", str(tmp_path / "dry"))
    assert code == 0 and "5 cells; nothing run" in out
    code, _, err = run_cli(capsys, "reproduce", "--allow-large", "--out", str(tmp_path / "r"), "--jobs", "0")
    assert code == 2 and "--jobs must be a positive integer" in err  # got past the size check
    code, _, err = run_cli(capsys, "reproduce", "--seeds", "1", "--out", str(tmp_path / "r"))
    # one seed: 3 none cells + 5 robust solvers x 28 radii (affine), 3 x (none + trs, trs-paper x 2 radii) (mlp)
    assert code == 2 and f"the grid has {3 + 5 * 28 + 3 * (1 + 2 * 2)} cells, more than 4" in err
    assert not (tmp_path / "dry").exists() and not (tmp_path / "r").exists()


def test_the_sweep_announces_its_cell_count(capsys, tmp_path):
    args = [*GRID, "--solvers", "none", "--out", str(tmp_path / "o")]
    code, _, err = run_cli(capsys, "sweep", *args)
    assert code == 0 and err == "sweep: 1 cell (0 stored, 1 to run in this process)\n"
    code, _, err = run_cli(capsys, "sweep", *args)
    assert code == 0 and err == "sweep: 1 cell (1 stored, 0 to run)\n"
    code, out, err = run_cli(capsys, "sweep", *args, "--json")
    assert code == 0 and err == "" and json.loads(out)["reused"] == 1


def test_unwritable_store_paths_and_unreadable_configs_are_named(capsys, tmp_path):
    (tmp_path / "out" / "results.csv").mkdir(parents=True)
    code, _, err = run_cli(capsys, "sweep", *GRID, "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1, err
    assert f"'{tmp_path / 'out' / 'results.csv'}' is a directory" in err and ".tmp" not in err
    assert not (tmp_path / "out" / "cells").exists()
    code, _, err = run_cli(capsys, "sweep", "--config", str(tmp_path), "--out", str(tmp_path / "o2"))
    assert code == 2 and err == f"fastfair: error: config file '{tmp_path}' is a directory\n"
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    code, _, err = run_cli(capsys, "sweep", "--config", str(loop), "--out", str(tmp_path / "o2"))
    assert code == 2 and err == f"fastfair: error: config file '{loop}' is a symlink loop\n"


# Values that pass the grid's own parsers but that TrainConfig refuses (seeds torch cannot take, radii the
# float32 dtype cannot represent, an empty --out): refused up front, as one line, with nothing written.
@pytest.mark.parametrize(
    "args, word",
    [
        (["--radii", "0.1", "--seeds", "0", str(2**64)], "seed"),
        (["--radii", "0.1", "1e39"], "radi"),
    ],
)
def test_values_train_config_refuses_are_refused_before_any_cell_runs(capsys, tmp_path, args, word):
    out_dir = tmp_path / "out"
    code, _, err = run_cli(
        capsys, "sweep", "--dataset", "unfair2d", "--solvers", "trs", *args, "--out", str(out_dir)
    )
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastfair: error: options: datasets[0] (trs): "), err
    assert word in lines[0].lower()
    assert not out_dir.exists()


def test_empty_out_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "sweep", *GRID, "--out", "")
    assert code == 2 and err.startswith("fastfair: error: ") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_hidden_widths_on_the_command_line_are_the_config_files_cells(capsys, tmp_path):
    """``sweep --hidden 6 4`` plans exactly the cells of ``hidden: [6, 4]`` in a grid file, ``--hidden 16`` those
    of the one-layer default, and a bad width is one line."""

    def cell_ids(*args: str) -> list[str]:
        code, out, err = run_cli(capsys, "sweep", *args, "--out", str(tmp_path / "dry"), "--dry-run", "--json")
        assert code == 0, err
        return [c["cell_id"] for c in json.loads(out)["grid"]]

    base = ("--dataset", "unfair2d", "--model", "mlp", "--solvers", "none", "trs", "--radii", "0.1")
    config = tmp_path / "deep.yaml"
    config.write_text("datasets: [unfair2d]\nmodels: [mlp]\nhidden: [6, 4]\nsolvers: [none, trs]\nradii: [0.1]\n")
    deep = cell_ids(*base, "--hidden", "6", "4")
    assert deep == cell_ids("--config", str(config))
    assert cell_ids(*base, "--hidden", "16") == cell_ids(*base) != deep
    code, _, err = run_cli(capsys, "sweep", *base, "--hidden", "6", "0", "--out", str(tmp_path / "bad"))
    assert code == 2 and err.count("\n") == 1 and "hidden" in err
