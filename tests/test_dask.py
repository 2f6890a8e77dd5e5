"""A sweep on a real dask.distributed cluster (scheduler + 2 worker processes, loopback) = a local run."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from fastfair import cli
from fastfair.errors import FastfairError
from fastfair.experiments import DaskExecutor, grid_from_dict, read_results, run_sweep
from helpers import run_cli

distributed = pytest.importorskip("distributed", reason="dask[distributed] is an optional extra")

TIMING = ["epoch_seconds", "inner_seconds"]
GRID = {
    "datasets": ["unfair2d"],
    "solvers": ["none", "trs", "random"],
    "radii": [0.1, 0.18],
    "seeds": [0, 1],
    "epochs": 2,
    "batch_size": 10,
}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    ) as c:
        yield c


def test_dask_sweep_equals_local_sweep(cluster, tmp_path):
    grid = grid_from_dict(GRID)
    run_sweep(grid, tmp_path / "local", progress=False)
    remote = run_sweep(grid, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
    assert remote.ran == len(grid.cells()) == 10 and not remote.failed
    assert remote.where.startswith(f"on the Dask cluster at {cluster.scheduler_address}")
    a = read_results(tmp_path / "local").drop(columns=TIMING)
    b = read_results(tmp_path / "dask").drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b)
    # the cells really ran in the Dask worker processes
    pids = {json.loads(p.read_text())["pid"] for p in (tmp_path / "dask" / "cells").glob("*.json")}
    worker_pids = (
        set(cluster.scheduler_info["workers"][w]["pid"] for w in cluster.scheduler_info["workers"])
        if all("pid" in v for v in cluster.scheduler_info["workers"].values())
        else pids
    )
    assert os.getpid() not in pids and pids <= worker_pids
    # resume through the cluster: nothing to recompute
    again = run_sweep(grid, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
    assert (again.ran, again.reused) == (0, 10)


def test_cli_scheduler_option(cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(cli.SUBCOMMANDS, "sweep", "sweep")
    out_dir = tmp_path / "cli"
    code, out, err = run_cli(
        capsys,
        "sweep",
        "--dataset",
        "unfair2d",
        "--solvers",
        "none",
        "trs",
        "--radii",
        "0.1",
        "--epochs",
        "1",
        "--batch-size",
        "20",
        "--out",
        str(out_dir),
        "--scheduler",
        cluster.scheduler_address,
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["ran"] == 2
    assert len(read_results(out_dir)) == 6


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    executor = DaskExecutor("tcp://127.0.0.1:9", timeout=1.0)
    with pytest.raises(FastfairError, match="cannot connect to the Dask scheduler"):
        list(executor.run(lambda x: x, [1]))
    executor.close()


@pytest.mark.parametrize("address", ["garbage", "tcp//host:8786", "host"])
def test_malformed_scheduler_address_is_refused_at_once(address):
    with pytest.raises(FastfairError, match="is not a scheduler address"):
        DaskExecutor(address)


def test_compare_cells_on_dask_equal_a_local_run(cluster, tmp_path):
    from dataclasses import replace

    from fastfair.compare import compare_plan, run_compare
    from fastfair.experiments import DataSpec

    plan = compare_plan(DataSpec(label="unfair2d", name="unfair2d"), quick=True, seeds=1)
    plan = replace(plan, knobs=replace(plan.knobs, methods=("none", "to-dp"), epochs=2, robustness_radii=(0.1,)))
    local = run_compare([plan], tmp_path / "local", progress=False, report=False)
    remote = run_compare(
        [plan], tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False, report=False
    )
    assert remote.summary.ran == 2 and remote.summary.where.startswith("on the Dask cluster")
    pids = {json.loads(p.read_text())["pid"] for p in (tmp_path / "dask" / "cells").glob("*.json")}
    assert os.getpid() not in pids
    columns = ["fit_seconds"]
    pd.testing.assert_frame_equal(
        local.summary.results.drop(columns=columns), remote.summary.results.drop(columns=columns)
    )
