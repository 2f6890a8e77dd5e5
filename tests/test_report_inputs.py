"""The decision-boundary models of the report, rebuilt from a real results store (no training in the report)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from fastfair.experiments import Cell, DataSpec, ResultsStore, results_frame, run_cell
from fastfair.experiments.cell import load_dataset
from fastfair.experiments.report_inputs import RADIUS, BoundaryInputs, unfair2d_boundaries
from fastfair.report import PAPER, build_report, build_report_cached

UNFAIR2D = DataSpec(label="unfair2d", name="unfair2d")


def _cell(solver: str, radius: float, seed: int, model: str = "affine") -> Cell:
    return Cell(data=UNFAIR2D, model=model, solver=solver, radius=radius, seed=seed, epochs=1, batch_size=50, lr=0.01)


#: Seed 0 lacks the TRS cell at the figure's radius (it has r = 0.1), seed 1 has both; an MLP pair of seed 0 is
#: there too. The figure must use the affine pair of seed 1.
CELLS = (
    _cell("none", 0.0, 0),
    _cell("trs", 0.1, 0),
    _cell("none", 0.0, 1),
    _cell("trs", RADIUS, 1),
    _cell("none", 0.0, 0, model="mlp"),
    _cell("trs", RADIUS, 0, model="mlp"),
)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    store = ResultsStore(root)
    for cell in CELLS:
        store.save(run_cell(cell))
    store.write_results(CELLS, store.finished(CELLS))
    return root


@pytest.fixture()
def store(store_dir, tmp_path):
    """A copy of the store that a test may damage."""
    copy = tmp_path / "store"
    shutil.copytree(store_dir, copy)
    return copy


def _results(root):
    store = ResultsStore(root)
    return results_frame(CELLS, store.finished(CELLS))


def _affine(results):
    """The affine cells only: a smaller report to draw."""
    return results[results["model"] == "affine"]


def _train_accuracy(results, cell: Cell) -> float:
    rows = results[(results["cell_id"] == cell.cell_id) & (results["split"] == "train")]
    return float(rows["accuracy"].iloc[0])


def test_the_figure_radius_is_the_papers():
    assert RADIUS == PAPER["unfair2d"]["radius"]


def test_rebuilt_models_compute_the_stored_models_logits(store_dir):
    from fastfair.training import train

    results = _results(store_dir)
    inputs = unfair2d_boundaries(store_dir, results)
    assert isinstance(inputs, BoundaryInputs), inputs
    baseline, robust = CELLS[2], CELLS[3]
    assert [m.cell_id for m in inputs.models] == [baseline.cell_id, robust.cell_id]
    assert [m.solver for m in inputs.models] == ["none", "trs"]
    assert (inputs.model, inputs.seed, inputs.epochs, inputs.batch_size, inputs.lr) == ("affine", 1, 1, 50, 0.01)
    assert inputs.radius == RADIUS and inputs.X.shape == (400, 2) and inputs.group_names == ("A", "B")
    data = load_dataset(UNFAIR2D, 1)
    np.testing.assert_array_equal(inputs.X, data.train.X)
    np.testing.assert_array_equal(inputs.y, data.train.y)
    grid = np.random.default_rng(0).uniform(-0.2, 1.2, size=(500, 2))
    for cell, model in zip((baseline, robust), inputs.models, strict=True):
        # oracle 1: the same training run again gives the very same logits (float32, bit for bit)
        trained = train(data, cell.train_config())
        np.testing.assert_array_equal(model.decision_function(grid), trained.decision_function(grid))
        # oracle 2: the stored weights in float64, by hand: f(x) = w·x + b
        state = json.loads(ResultsStore(store_dir).cell_path(cell.cell_id).read_text())["model_state"]
        w, b = np.asarray(state["linear.weight"]).ravel(), float(state["linear.bias"][0])
        np.testing.assert_allclose(model.decision_function(grid), grid @ w + b, rtol=1e-5, atol=1e-6)
        # the train accuracy the report states is the one the sweep stored
        predicted = (model.decision_function(inputs.X) > 0).astype(np.int64)
        assert np.mean(predicted == inputs.y) == _train_accuracy(results, cell)


def test_report_from_the_store_states_the_stored_train_accuracies(store_dir, tmp_path):
    results = _affine(_results(store_dir))
    written = build_report(results, tmp_path, quick=True, boundaries=unfair2d_boundaries(store_dir, results))
    assert "fig_unfair2d_boundaries" in written
    md = written["report_md"].read_text()
    non_robust = 100 * _train_accuracy(results, CELLS[2])
    trs = 100 * _train_accuracy(results, CELLS[3])
    assert f"non-robust: train accuracy {non_robust:.1f}%; TRS, r=0.18: train accuracy {trs:.1f}%." in md
    assert "(affine model, seed 1, 1 epochs, batch size 50, lr 0.01, TRS radius 0.18)" in md


def test_the_same_store_gives_the_same_fingerprint_and_other_weights_another(store):
    results = _results(store)
    first = unfair2d_boundaries(store, results)
    assert unfair2d_boundaries(store, results).fingerprint() == first.fingerprint()
    path = ResultsStore(store).cell_path(CELLS[3].cell_id)
    record = json.loads(path.read_text())
    record["model_state"]["linear.bias"] = [record["model_state"]["linear.bias"][0] + 0.25]
    path.write_text(json.dumps(record))
    changed = unfair2d_boundaries(store, results)
    assert changed.fingerprint() != first.fingerprint()
    grid = np.array([[0.3, 0.4], [0.9, 0.1]])
    shift = changed.models[1].decision_function(grid) - first.models[1].decision_function(grid)
    np.testing.assert_allclose(shift, 0.25, rtol=1e-6)


def test_cached_report_is_rebuilt_when_a_stored_model_changes(store):
    results = _affine(_results(store))
    first = build_report_cached(results, store, quick=True, boundaries=unfair2d_boundaries(store, results))
    stamp = first["fig_unfair2d_boundaries"].stat().st_mtime_ns
    again = build_report_cached(results, store, quick=True, boundaries=unfair2d_boundaries(store, results))
    assert again == first and first["fig_unfair2d_boundaries"].stat().st_mtime_ns == stamp
    path = ResultsStore(store).cell_path(CELLS[2].cell_id)
    record = json.loads(path.read_text())
    record["model_state"]["linear.weight"] = [[1.0, 1.0]]
    path.write_text(json.dumps(record))
    build_report_cached(results, store, quick=True, boundaries=unfair2d_boundaries(store, results))
    assert first["fig_unfair2d_boundaries"].stat().st_mtime_ns != stamp


def _drop(results, cells):
    return results[~results["cell_id"].isin([c.cell_id for c in cells])]


def test_missing_cells_give_a_reason_not_a_model(store):
    results = _results(store)
    unfair2d_free = results.assign(dataset="toy")
    assert unfair2d_boundaries(store, unfair2d_free) == "unfair2d is not in these results"
    no_trs = _drop(results, [CELLS[3], CELLS[5]])
    assert unfair2d_boundaries(store, no_trs) == "no unfair2d cell with solver trs at r=0.18 in these results"
    no_baseline = _drop(results, [CELLS[0], CELLS[2], CELLS[4]])
    assert unfair2d_boundaries(store, no_baseline) == "no non-robust unfair2d cell (solver none) in these results"
    unpaired = _drop(results, [CELLS[2], CELLS[4]])  # none of seed 0, trs at 0.18 of seed 1 only
    assert unfair2d_boundaries(store, unpaired).startswith("no non-robust and trs (r=0.18) unfair2d cells")
    # the MLP pair is used when there is no affine one
    mlp_only = results[results["model"] == "mlp"]
    inputs = unfair2d_boundaries(store, mlp_only)
    assert isinstance(inputs, BoundaryInputs) and inputs.model == "mlp" and inputs.seed == 0


def test_a_damaged_store_gives_a_reason_not_a_traceback(store):
    results = _results(store)
    cells = ResultsStore(store)
    trs_path = cells.cell_path(CELLS[3].cell_id)
    record = json.loads(trs_path.read_text())

    trs_path.write_text(json.dumps({**record, "model_state": {}}))
    assert unfair2d_boundaries(store, results) == f"the cell file {str(trs_path)!r} holds no model weights"

    spec = {k: v for k, v in record["spec"].items() if k != "dtype"}
    trs_path.write_text(json.dumps({**record, "spec": spec}))
    expected = f"the cell file {str(trs_path)!r} does not say how cell {CELLS[3].cell_id} was trained"
    assert unfair2d_boundaries(store, results) == expected

    weights = {**record["model_state"], "linear.weight": [[1.0, 2.0, 3.0]]}
    trs_path.write_text(json.dumps({**record, "model_state": weights}))
    reason = unfair2d_boundaries(store, results)
    assert reason.startswith(f"the stored weights of cell {CELLS[3].cell_id} do not fit its affine model: ")
    assert "\n" not in reason

    trs_path.write_text(json.dumps({**record, "model_state": {**record["model_state"], "linear.bias": [None]}}))
    assert unfair2d_boundaries(store, results).startswith("the stored weights of cell")

    trs_path.write_text("{ half a file")
    assert unfair2d_boundaries(store, results) == f"the cell file {str(trs_path)!r} is missing or unreadable"
    trs_path.unlink()
    assert unfair2d_boundaries(store, results) == f"the cell file {str(trs_path)!r} is missing or unreadable"

    results = _affine(results)
    written = build_report(results, store / "report", quick=True, boundaries=unfair2d_boundaries(store, results))
    assert "fig_unfair2d_boundaries" not in written
    md = written["report_md"].read_text()
    assert f"Unfair2D decision-boundary figure skipped: the cell file {str(trs_path)!r} is missing" in md


# ---------------------------------------------------------------------------------------------------- trs-paper


#: The reference TRS's defect measured on an Unfair2D MLP: the non-robust model and the trs-paper model of seed 0.
#: A large learning rate makes the non-robust model steep enough (after 2 epochs) that the Newton step of about a
#: tenth of its rows fits in the ball at r = 0.1.
DEFECT_RADIUS = 0.1
DEFECT_CELLS = tuple(
    Cell(data=UNFAIR2D, model="mlp", solver=solver, radius=radius, seed=0, epochs=2, batch_size=50, lr=0.2)
    for solver, radius in (("none", 0.0), ("trs", DEFECT_RADIUS), ("trs-paper", DEFECT_RADIUS))
)


@pytest.fixture(scope="module")
def defect_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("defect-store")
    store = ResultsStore(root)
    for cell in DEFECT_CELLS:
        store.save(run_cell(cell))
    store.write_results(DEFECT_CELLS, store.finished(DEFECT_CELLS))
    return root


def _defect_results(root):
    return results_frame(DEFECT_CELLS, ResultsStore(root).finished(DEFECT_CELLS))


def _newton_oracle(model, X, y, r):
    """Per row, in float64 with autograd: does the Newton step -(∇²ℓ)⁻¹∇ℓ fit in the ball, and does it lower ℓ?"""
    from torch.func import grad, hessian, vmap

    from fastfair.losses import logistic_loss

    model = model.double()

    def loss(x, t):
        return logistic_loss(model(x.unsqueeze(0)).reshape(1), t.reshape(1))[0]

    g = vmap(grad(loss))(X, y)
    H = vmap(hessian(loss))(X, y)
    p = -torch.linalg.solve(H, g.unsqueeze(-1)).squeeze(-1)
    fits = torch.linalg.vector_norm(p, dim=1) <= r
    with torch.no_grad():
        lowers = logistic_loss(model(X + p).reshape(-1), y) < logistic_loss(model(X).reshape(-1), y)
    return fits, fits & lowers


def test_defect_measurements_count_the_reference_branches(defect_store):
    from fastfair.experiments.report_inputs import DEFECT_COLUMNS, _read_record, _rebuild_module, defect_measurements

    results = _defect_results(defect_store)
    m = defect_measurements(defect_store, results)
    assert list(m.columns) == list(DEFECT_COLUMNS)
    assert sorted(m["weights"]) == ["none", "trs-paper"]
    shares = m[["interior_newton", "boundary", "degenerate", "no_bracket"]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0)
    data = load_dataset(UNFAIR2D, 0)
    assert (m["rows"] == len(data.train.y)).all() and (m["radius"] == DEFECT_RADIUS).all()
    X = torch.tensor(np.asarray(data.train.X), dtype=torch.float64)
    y = torch.tensor(np.asarray(data.train.y), dtype=torch.float64)
    for weights, cell in (("none", DEFECT_CELLS[0]), ("trs-paper", DEFECT_CELLS[2])):
        model, _ = _rebuild_module(_read_record(ResultsStore(defect_store), cell.cell_id), 2)
        fits, lowers = _newton_oracle(model, X, y, DEFECT_RADIUS)
        row = m[m["weights"] == weights].iloc[0]
        n = len(y)
        # float32 in the measurement, float64 in the oracle: a row on the edge of the ball may fall either way
        assert abs(row["interior_newton"] * n - int(fits.sum())) <= 2
        if weights == "none":  # the steep non-robust model: the defect bites, and the reference code would fail
            assert row["interior_newton"] > 0.05 and row["lowered"] > 0.05 and row["no_bracket"] > 0.05
        assert abs(row["lowered"] * n - int(lowers.sum())) <= 2


def test_defect_measurements_without_a_trs_paper_cell_give_a_reason(defect_store):
    from fastfair.experiments.report_inputs import defect_measurements

    results = _defect_results(defect_store)
    assert defect_measurements(defect_store, results[results["solver"] != "trs-paper"]) == (
        "no trs-paper cell in these results"
    )


def test_defect_measurements_of_a_damaged_store_give_a_reason(defect_store, tmp_path):
    from fastfair.experiments.report_inputs import defect_measurements

    copy = tmp_path / "store"
    shutil.copytree(defect_store, copy)
    results = _defect_results(copy)
    for cell in (DEFECT_CELLS[0], DEFECT_CELLS[2]):
        path = ResultsStore(copy).cell_path(cell.cell_id)
        path.write_text(json.dumps({**json.loads(path.read_text()), "model_state": {}}))
    reason = defect_measurements(copy, results)
    assert isinstance(reason, str) and reason.startswith("no trs-paper model could be measured: the cell file")
    assert reason.endswith("holds no model weights")


def test_report_with_the_defect_section_from_the_store(defect_store, tmp_path):
    from fastfair.experiments.report_inputs import defect_measurements

    results = _defect_results(defect_store)
    measured = defect_measurements(defect_store, results)
    written = build_report(results, tmp_path, quick=True, defect=measured)
    md = written["report_md"].read_text()
    assert "## The reference TRS's defect, measured" in md
    assert "### Branches of the reference step on the stored models" in md
    assert written["defect_branches_csv"].is_file() and written["defect_csv"].is_file()
    first = build_report_cached(results, tmp_path / "c", quick=True, defect=measured)
    stamp = first["report_md"].stat().st_mtime_ns
    changed = measured.assign(lowered=measured["lowered"] + 0.01)
    build_report_cached(results, tmp_path / "c", quick=True, defect=changed)
    assert first["report_md"].stat().st_mtime_ns != stamp  # other measurements: rebuilt
