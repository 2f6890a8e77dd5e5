"""The sweep planner's packs: grouping, results equal to a cell-by-cell sweep, resume, timing and --no-pack."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fastfair.experiments import grid_from_dict, run_sweep
from fastfair.experiments.packs import MIN_SPLIT, plan_packs
from fastfair.vocabulary import GAP_KEYS
from helpers import run_cli

TINY = {"datasets": ["unfair2d"], "epochs": 2, "batch_size": 20, "train_size": 200}


def _grid(**extra):
    return grid_from_dict({**TINY, "solvers": ["none", "trs", "random"], "radii": [0.1, 0.2], "seeds": [0, 1], **extra})


def test_the_planner_groups_by_shared_settings_and_leaves_unpackable_cells_alone():
    grid = grid_from_dict(
        {**TINY, "models": ["affine", "mlp"], "solvers": ["none", "trs"], "radii": [0.1, 0.2], "seeds": [0, 1, 2]}
    )
    cells = grid.cells()
    packs = plan_packs(cells)
    assert sorted(c.cell_id for p in packs for c in p.cells) == sorted(c.cell_id for c in cells)
    for pack in packs:
        first = pack.cells[0]
        assert {(c.model, c.solver, c.epochs, c.batch_size, c.lr) for c in pack.cells} == {
            (first.model, first.solver, first.epochs, first.batch_size, first.lr)
        }
    alone = [p.cells[0] for p in packs if p.size == 1]
    assert {(c.model, c.solver) for c in alone} == {("mlp", "trs")}  # no packed form: one at a time
    sizes = sorted(p.size for p in packs if p.size > 1)
    assert sizes == [3, 3, 6]  # affine none (3 seeds), mlp none (3 seeds), affine trs (2 radii x 3 seeds)
    assert max(p.size for p in plan_packs(cells, max_size=4)) <= 4


def test_the_planner_splits_packs_for_idle_workers_but_not_below_the_minimum():
    cells = grid_from_dict({**TINY, "solvers": ["trs"], "radii": [0.1, 0.2], "seeds": list(range(8))}).cells()
    assert [p.size for p in plan_packs(cells, jobs=1)] == [16]
    assert sorted(p.size for p in plan_packs(cells, jobs=4)) == [4, 4, 4, 4]
    assert min(p.size for p in plan_packs(cells, jobs=16)) >= MIN_SPLIT


def test_a_packed_sweep_stores_the_same_results_as_a_cell_by_cell_sweep(tmp_path):
    grid = _grid()
    packed = run_sweep(grid, tmp_path / "packed", progress=False)
    alone = run_sweep(grid, tmp_path / "alone", progress=False, pack=False)
    assert packed.ok and alone.ok and packed.ran == alone.ran == len(grid.cells())
    a = pd.read_csv(tmp_path / "packed" / "results.csv")
    b = pd.read_csv(tmp_path / "alone" / "results.csv")
    assert list(a.columns) == list(b.columns)
    assert a["cell_id"].tolist() == b["cell_id"].tolist() and a["split"].tolist() == b["split"].tolist()
    for column in ("accuracy", "auc", *GAP_KEYS):
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-6, err_msg=column)
    # the stored weights agree too (float32: within 1e-5)
    for cell in grid.cells():
        wa = json.loads((tmp_path / "packed" / "cells" / f"{cell.cell_id}.json").read_text())["model_state"]
        wb = json.loads((tmp_path / "alone" / "cells" / f"{cell.cell_id}.json").read_text())["model_state"]
        for key in wb:
            np.testing.assert_allclose(np.asarray(wa[key]), np.asarray(wb[key]), atol=1e-5)


def test_a_packed_cell_records_its_pack_and_amortised_timing(tmp_path):
    grid = _grid()
    run_sweep(grid, tmp_path / "out", progress=False)
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "cells").glob("*.json")]
    packed = [r for r in records if "pack" in r]
    assert packed, "the grid's cells were packed"
    for record in packed:
        pack = record["pack"]
        assert pack["size"] >= 2 and pack["id"].startswith("pack-")
        for row in record["rows"]:
            assert row["epoch_seconds"] == pytest.approx(pack["epoch_seconds"] / pack["size"])
            assert row["inner_seconds"] == pytest.approx(pack["inner_seconds"] / pack["size"])
    sizes = {r["pack"]["id"]: r["pack"]["size"] for r in packed}
    counts = pd.Series([r["pack"]["id"] for r in packed]).value_counts()
    assert all(counts[k] == v for k, v in sizes.items())  # every member of a pack is stored


def test_a_resumed_packed_sweep_runs_only_the_missing_cells_of_a_pack(tmp_path):
    grid = _grid()
    out = tmp_path / "out"
    run_sweep(grid, out, progress=False)
    files = sorted((out / "cells").glob("*.json"))
    kept = {p.name: p.read_text() for p in files}
    lost = files[:3]
    for path in lost:
        path.unlink()
        del kept[path.name]
    summary = run_sweep(grid, out, progress=False)
    assert (summary.ran, summary.reused) == (3, len(files) - 3)
    assert all((out / "cells" / name).read_text() == text for name, text in kept.items())  # finished: not redone
    assert sorted(p.name for p in (out / "cells").glob("*.json")) == sorted(p.name for p in files)


def test_no_pack_runs_cell_by_cell_from_the_command_line(capsys, tmp_path):
    args = ["--dataset", "unfair2d", "--solvers", "none", "trs", "--radii", "0.1,0.2", "--seeds", "0:2"]
    args += ["--epochs", "1", "--batch-size", "20", "--train-size", "100", "--no-progress"]
    code, _, err = run_cli(capsys, "sweep", *args, "--out", str(tmp_path / "a"), "--no-pack", "--jobs", "1")
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in (tmp_path / "a" / "cells").glob("*.json")]
    assert len(records) == 6 and not any("pack" in r for r in records)
    code, _, err = run_cli(capsys, "sweep", *args, "--out", str(tmp_path / "b"), "--jobs", "1")
    assert code == 0, err
    assert any("pack" in json.loads(p.read_text()) for p in (tmp_path / "b" / "cells").glob("*.json"))


def test_the_timing_runs_are_the_first_seeds_cells_at_the_claim_radii():
    from fastfair.experiments.paper_protocol import TIMING_RADII, paper_grid, timing_cells

    grid, _ = paper_grid(seeds=3, pgd_paper_seeds=1)
    cells = grid.cells()
    timing = timing_cells(cells)
    by_id = {c.cell_id for c in cells}
    assert all(c.seed == 0 and c.cell_id in by_id for c in timing)  # the protocol's own cells, all epochs
    groups = {(c.dataset, c.model, c.solver) for c in cells}
    assert {(c.dataset, c.model, c.solver) for c in timing} == groups  # every solver is timed
    for dataset, radii in TIMING_RADII.items():
        got = {c.radius for c in timing if (c.dataset, c.model, c.solver) == (dataset, "affine", "pgd-paper")}
        assert got == set(radii)
    assert len(timing) < len(cells) / 5


def test_cells_named_alone_are_not_packed():
    cells = grid_from_dict({**TINY, "solvers": ["trs"], "radii": [0.1, 0.2], "seeds": [0, 1]}).cells()
    packs = plan_packs(cells, alone={cells[0].cell_id})
    assert sorted(p.size for p in packs) == [1, 3]
    assert next(p for p in packs if p.size == 1).cells[0] == cells[0]


@pytest.mark.slow
def test_reproduce_draws_table_1_from_dedicated_unpacked_timing_runs(capsys, tmp_path, monkeypatch):
    from fastfair import cli
    from fastfair.experiments import paper_protocol as paper
    from fastfair.experiments import read_results
    from fastfair.report import timing_table

    monkeypatch.setitem(cli.SUBCOMMANDS, "reproduce", "reproduce")
    tiny = (
        paper.DatasetProtocol("unfair2d", (0.1, 0.2), batch_size=20, epochs=2),
        paper.DatasetProtocol("lsat", (0.1,), batch_size=50, epochs=2, train_size=300),
    )
    monkeypatch.setattr(paper, "QUICK", tiny)
    out = tmp_path / "demo"
    argv = ("reproduce", "--quick", "--seeds", "2", "--jobs", "1", "--no-progress")
    code, _, err = run_cli(capsys, *argv, "--out", str(out))
    assert code == 0, err
    timing = read_results(out / "timing")
    assert set(timing["solver"]) == set(read_results(out)["solver"])
    records = [json.loads(p.read_text()) for p in (out / "timing" / "cells").glob("*.json")]
    assert records and not any("pack" in r for r in records)  # one model at a time
    for record in records:  # trained once, in the sweep, alone: the same record in both stores
        assert json.loads((out / "cells" / f"{record['cell_id']}.json").read_text()) == record
    assert any("pack" in json.loads(p.read_text()) for p in (out / "cells").glob("*.json"))
    table = pd.read_csv(out / "timing.csv")
    want = timing_table(timing)
    np.testing.assert_allclose(table["trs"].to_numpy(float), want["trs"].to_numpy(float))
    assert "dedicated timing runs" in (out / "report.md").read_text()
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path / "alone"), "--no-pack")
    assert code == 0, err
    assert not (tmp_path / "alone" / "timing").exists()
    assert "--no-pack: every cell trained alone" in (tmp_path / "alone" / "report.md").read_text()


def test_multiclass_cells_are_not_packed_and_a_pack_of_one_is_named_by_its_cell():
    cells = grid_from_dict(
        {"datasets": ["colored_digits"], "epochs": 1, "solvers": ["none", "trs"], "radii": [0.5], "seeds": [0, 1]}
    ).cells()
    packs = plan_packs(cells)
    assert [p.size for p in packs] == [1] * len(cells)  # packs train binary labels only
    assert [p.cell_id for p in packs] == [c.cell_id for c in cells]


def test_a_part_that_fails_runs_its_cells_alone_and_an_unexpected_error_spares_the_others(tmp_path, monkeypatch):
    from fastfair.experiments import packs

    cells = _grid(solvers=["trs"], radii=[0.1], seeds=[0, 1, 2]).cells()
    pack = packs.CellPack(tuple(cells))
    real_run_cell = packs.run_cell

    def broken_part(*args, **kwargs):
        raise RuntimeError("the packed run broke")

    def flaky_cell(cell):
        if cell.seed == 1:
            raise RuntimeError("worker trouble")
        return real_run_cell(cell)

    monkeypatch.setattr(packs, "_run_part", broken_part)
    monkeypatch.setattr(packs, "run_cell", flaky_cell)
    out = packs.run_pack(pack)
    assert [r["cell_id"] for r in out["records"]] == [cells[0].cell_id, cells[2].cell_id]
    assert out["failure"] is None
    assert [e["cell_id"] for e in out["errors"]] == [cells[1].cell_id]
    assert "RuntimeError: worker trouble" in out["errors"][0]["error"]


def test_no_pack_trains_again_alone_the_cells_a_packed_run_stored(tmp_path):
    grid = _grid()
    out = tmp_path / "out"
    run_sweep(grid, out, progress=False)
    stored = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    packed = sum(1 for r in stored if "pack" in r)
    assert packed > 0
    summary = run_sweep(grid, out, progress=False, pack=False)
    assert (summary.ran, summary.reused) == (packed, len(stored) - packed)
    assert not any("pack" in json.loads(p.read_text()) for p in (out / "cells").glob("*.json"))


def test_a_packed_sweep_report_says_its_times_are_amortised(capsys, tmp_path):
    args = ["--dataset", "unfair2d", "--solvers", "none", "trs", "--radii", "0.1,0.2", "--seeds", "0:2"]
    args += ["--epochs", "1", "--batch-size", "20", "--train-size", "100", "--no-progress", "--jobs", "1"]
    code, _, err = run_cli(capsys, "sweep", *args, "--out", str(tmp_path / "p"), "--report")
    assert code == 0, err
    assert "trained together in packs" in (tmp_path / "p" / "report.md").read_text()
    code, _, err = run_cli(capsys, "sweep", *args, "--out", str(tmp_path / "u"), "--report", "--no-pack")
    assert code == 0, err
    assert "trained together in packs" not in (tmp_path / "u" / "report.md").read_text()
