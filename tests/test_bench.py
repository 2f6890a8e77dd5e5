"""`fastfair bench` and fastfair.bench: behaviour (record keys, objectives, pure logic), never timings."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fastfair import cli
from fastfair.bench import (
    RECORD_KEYS,
    InnerBenchPlan,
    SolverSpec,
    compare_solvers,
    make_case,
    pgd_ladder,
    pgd_matched,
    timing,
)
from fastfair.bench import inner as inner_module
from fastfair.bench.end_to_end import E2ESetting, EndToEndPlan, render_end_to_end, run_end_to_end
from fastfair.bench.inner import estimated_case_bytes, relative_gap
from fastfair.bench.inner_tables import render_inner
from fastfair.bench.scaling import ScalingPlan, predicted_seconds, render_scaling, run_scaling, scaling_figure
from fastfair.bench.timing import interleaved, repeat_counts, round_robin_order
from fastfair.errors import FastfairError
from fastfair.training import TrainConfig
from helpers import run_cli

TINY_SOLVERS = [
    SolverSpec("trs", {"certify": False}),
    SolverSpec("trs", {}, "certified"),
    *[s for s in pgd_ladder(quick=True) if s.options["steps"] <= 5],
    SolverSpec("pgd-paper", {"max_iter": 50}, "max_iter=50"),
    SolverSpec("random", {"seed": 0}),
]


@pytest.fixture(scope="module")
def tiny_records():
    out = []
    for model in ("affine", "mlp"):
        case = make_case(model, 3, 64, pretrain_epochs=1, seed=1)
        out += compare_solvers(case, 0.1, TINY_SOLVERS, repeats=1)
    return out


def test_records_have_pinned_keys_and_one_row_per_solver(tiny_records):
    for model in ("affine", "mlp"):
        rows = [r for r in tiny_records if r["model"] == model]
        assert len(rows) == len(TINY_SOLVERS) + 1  # + pgd-matched
        assert [r["solver"] for r in rows][-1] == "pgd-matched"
        for r in rows:
            assert set(RECORD_KEYS) <= set(r), r
            assert (r["n"], r["d"]) == (64, 3)
            if r["solver"] != "pgd-matched":
                assert r["seconds"] > 0 and math.isfinite(r["objective"])
                assert r["objective"] >= r["clean_objective"] - 1e-12 or r["solver"] == "random"
    json.dumps(tiny_records)  # JSON-able as is


def test_trs_objective_is_best_for_the_affine_model(tiny_records):
    rows = [r for r in tiny_records if r["model"] == "affine" and r["solver"] != "pgd-matched"]
    trs = next(r for r in rows if r["solver"] == "trs" and r["setting"] is None)
    assert trs["path"] == "affine-closed-form"
    for r in rows:
        assert trs["objective"] >= r["objective"] - 1e-7 * abs(trs["objective"]), r
    assert trs["trs_is_best"] is True


def test_pgd_matched_row_is_consistent(tiny_records):
    for model in ("affine", "mlp"):
        rows = [r for r in tiny_records if r["model"] == model]
        trs = next(r for r in rows if r["solver"] == "trs" and r["setting"] is None)
        matched = rows[-1]
        expected = pgd_matched(rows[:-1], trs["objective"])
        if expected is None:
            assert matched["seconds"] is None and matched["note"] == "none matched"
        else:
            assert matched["setting"] == expected["setting"] and matched["seconds"] == expected["seconds"]
    # one exact step of length r along w is the affine maximiser: some PGD setting always matches there
    affine = [r for r in tiny_records if r["model"] == "affine"]
    assert affine[-1]["setting"] is not None


def test_pgd_matched_pure_logic():
    recs = [
        {"solver": "pgd", "setting": "a", "seconds": 1.0, "objective": 0.9},  # too low
        {"solver": "pgd", "setting": "b", "seconds": 3.0, "objective": 1.0 - 5e-7},  # within 1e-6
        {"solver": "pgd", "setting": "c", "seconds": 2.0, "objective": 1.0 - 2e-6},  # just outside
        {"solver": "pgd", "setting": "d", "seconds": 5.0, "objective": 1.1},  # above TRS: matches
        {"solver": "pgd-paper", "setting": None, "seconds": 0.1, "objective": 1.0},  # not tuned PGD
        {"solver": "trs", "setting": None, "seconds": 0.5, "objective": 1.0},
        {"solver": "pgd", "setting": "e", "seconds": float("nan"), "objective": 1.0},  # not timed
    ]
    assert pgd_matched(recs, 1.0)["setting"] == "b"
    assert pgd_matched(recs, 1.0, rtol=1e-5)["setting"] == "c"
    assert pgd_matched(recs, 1.2) is None
    assert pgd_matched([], 1.0) is None
    # relative to |TRS| for a negative objective too
    assert pgd_matched([{"solver": "pgd", "seconds": 1.0, "objective": -1.0 - 5e-7}], -1.0)["seconds"] == 1.0
    assert relative_gap(1.1, 1.0) == pytest.approx(0.1)
    assert relative_gap(0.0, 0.0) == 0.0


def test_same_weights_and_batch_for_every_solver():
    case = make_case("mlp", 4, 32, pretrain_epochs=1, seed=3)
    before = [p.detach().clone() for p in case.model.parameters()]
    x0 = case.x.clone()
    compare_solvers(case, 0.2, [SolverSpec("trs"), SolverSpec("pgd", {"steps": 2}, "steps=2")], repeats=1)
    assert all(torch.equal(a, b) for a, b in zip(before, case.model.parameters(), strict=True))
    assert torch.equal(case.x, x0)
    again = make_case("mlp", 4, 32, pretrain_epochs=1, seed=3)  # deterministic case construction
    assert torch.equal(again.x, case.x) and torch.equal(again.y, case.y)
    assert all(
        torch.equal(a, b) for a, b in zip(again.model.parameters(), case.model.parameters(), strict=True)
    )


def test_compare_solvers_needs_trs_reference():
    case = make_case("affine", 2, 8, pretrain_epochs=0)
    with pytest.raises(FastfairError, match="trs"):
        compare_solvers(case, 0.1, [SolverSpec("random")], repeats=1)


def test_render_inner_mentions_matched_and_verdict(tiny_records):
    text = render_inner(tiny_records)
    assert "pgd-matched" in text and "TRS attains the best objective" in text and "Summary" in text
    assert render_inner(tiny_records, markdown=True).count("| model |") == 1


@pytest.mark.parametrize(
    "plan, field",
    [
        (lambda: InnerBenchPlan(models=("affine", "cnn")), {"model": "cnn"}),
        (lambda: InnerBenchPlan(dtype="float16"), {"dtype": "float16"}),
        (lambda: ScalingPlan(dtype="bfloat16"), {"dtype": "bfloat16"}),
        (lambda: EndToEndPlan(solvers=("none", "fgsm")), {"solver": "fgsm"}),
        (lambda: EndToEndPlan(models=("cnn",)), {"model": "cnn"}),
        (lambda: EndToEndPlan(dtype="float16"), {"dtype": "float16"}),
    ],
    ids=["inner-model", "inner-dtype", "scaling-dtype", "end-to-end-solver", "end-to-end-model", "end-to-end-dtype"],
)
def test_bench_plans_refuse_a_setting_as_train_config_does(plan, field):
    """Oracle: TrainConfig.validate's message for the same setting, before anything is built or timed."""
    with pytest.raises(FastfairError) as expected:
        TrainConfig(**field).validate()
    with pytest.raises(FastfairError) as refused:
        plan().validate()
    assert str(refused.value) == str(expected.value)


def test_interleaving_and_repeat_logic():
    assert round_robin_order(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert round_robin_order(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert round_robin_order(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert repeat_counts({"fast": 0.01, "slow": 1.0, "huge": 10.0}, 5, budget_s=2.0) == {
        "fast": 5,
        "slow": 2,
        "huge": 0,
    }
    calls = []
    timings = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2)
    assert calls == ["a", "b", "a", "b", "b", "a"]  # warm-ups, then A B, then B A
    assert all(t.repeats == 2 and not t.warmup_counted for t in timings.values())
    slow = interleaved({"x": lambda: 1}, repeats=3, budget_s=1e-12)
    assert slow["x"].warmup_counted and slow["x"].repeats == 1
    assert interleaved({"x": lambda: 7}, repeats=1, timer=lambda value, wall: value)["x"].seconds == [7.0]


def test_scaling_records_skips_and_figure():
    plan = ScalingPlan(
        n_values=(20, 40),
        n_sweep_d=4,
        d_values=(2, 64),
        d_sweep_n=10,
        repeats=1,
        memory_budget_gb=5e-4,
        point_budget_s=5.0,
    )
    records = run_scaling(plan)
    assert {r["sweep"] for r in records} == {"n", "d"}
    measured = [r for r in records if r["seconds"] is not None]
    skipped = [r for r in records if r["skipped"]]
    assert (
        measured and skipped
    )  # the small memory budget skips the dense (n·d²) methods at d=64, with a reason
    assert all(r["d"] == 64 for r in skipped)
    assert all("memory" in r["skipped"] for r in skipped)
    assert all(r["method"].endswith(("generic", "analytic", "torch.func")) for r in skipped)
    assert any(r["path"] == "affine-closed-form" for r in measured)
    assert predicted_seconds((10, 2, 1.0), 20, 4, 3.0) == pytest.approx(16.0)
    assert predicted_seconds(None, 20, 4, 3.0) is None
    assert "skip" in render_scaling(records)
    png = scaling_figure(records, title="test")
    assert png.startswith(b"\x89PNG")


def test_end_to_end_ratios_on_unfair2d():
    plan = EndToEndPlan(
        settings=(E2ESetting("unfair2d", 50, 100),), models=("affine",), solvers=("none", "trs"), repeats=1
    )
    records = run_end_to_end(plan)
    assert [r["solver"] for r in records] == ["none", "trs"]
    none, trs = records
    assert none["ratio_to_none"] == 1.0 and trs["ratio_to_none"] > 0
    assert trs["inner_seconds"] > 0 and none["inner_seconds"] == 0
    assert "÷ non-robust" in render_end_to_end(records)


def _bench_cli(monkeypatch, capsys, *argv):
    monkeypatch.setitem(cli.SUBCOMMANDS, "bench", "bench")
    return run_cli(capsys, "bench", *argv)


def test_cli_json_parses(monkeypatch, capsys, tmp_path):
    code, out, err = _bench_cli(
        monkeypatch,
        capsys,
        "--quick",
        "--json",
        "--models",
        "affine",
        "--dims",
        "3",
        "--n",
        "32",
        "--repeats",
        "1",
        "--pretrain-epochs",
        "0",
        "--no-progress",
        "--out",
        str(tmp_path / "res"),
    )
    assert code == 0, err
    records = json.loads(out)
    assert isinstance(records, list) and records
    assert all(set(RECORD_KEYS) <= set(r) for r in records)
    assert {r["solver"] for r in records} >= {"trs", "pgd", "pgd-paper", "random", "pgd-matched"}
    assert {p.name for p in (tmp_path / "res").iterdir()} == {"inner.json", "inner.md", "inner.csv"}


def test_cli_text_table_and_bad_input(monkeypatch, capsys):
    code, out, err = _bench_cli(
        monkeypatch,
        capsys,
        "--quick",
        "--models",
        "affine",
        "--dims",
        "2",
        "--n",
        "16",
        "--repeats",
        "1",
        "--pretrain-epochs",
        "0",
        "--no-progress",
    )
    assert code == 0, err
    assert "× TRS" in out and "pgd-matched" in out and "machine:" in out
    code, out, err = _bench_cli(monkeypatch, capsys, "--n", "0", "--no-progress")
    assert code == 2 and err.startswith("fastfair: error:") and "Traceback" not in err
    code, out, err = _bench_cli(monkeypatch, capsys, "--end-to-end", "--solvers", "none", "--no-progress")
    assert code == 2 and "none" in err


def test_cli_refuses_a_plan_that_cannot_fit_in_memory(monkeypatch, capsys):
    # a float64 batch of 1e8 x 1000 alone is 800 GB: refused from the estimate, before anything is allocated
    code, out, err = _bench_cli(monkeypatch, capsys, "--n", "100000000", "--dims", "1000", "--models", "affine")
    assert code == 2 and out == ""
    assert err.startswith("fastfair: error: the benchmark needs about ") and err.count("\n") == 1, err
    assert "(affine, n=100000000, d=1000)" in err and "use a smaller --n or --dims" in err
    # the estimate is compared with what the machine has available
    monkeypatch.setattr(timing, "available_memory_bytes", lambda: 2**20)
    code, _, err = _bench_cli(monkeypatch, capsys, "--quick", "--n", "4096", "--dims", "100", "--no-progress")
    assert code == 2 and "more than the 0.0 GiB available" in err


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried"),
    ],
)
def test_cli_out_of_memory_is_one_line(monkeypatch, capsys, error):
    def run(*args, **kwargs):
        raise error

    monkeypatch.setattr(inner_module, "run_inner_bench", run)
    code, _, err = _bench_cli(monkeypatch, capsys, "--quick", "--dims", "2", "--n", "8", "--no-progress")
    assert code == 2
    assert err == "fastfair: error: the benchmark ran out of memory; use a smaller --n or --dims (or --quick)\n"


def test_cli_other_runtime_errors_are_not_called_out_of_memory(monkeypatch, capsys):
    def run(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(inner_module, "run_inner_bench", run)
    with pytest.raises(RuntimeError, match="a bug"):
        _bench_cli(monkeypatch, capsys, "--quick", "--dims", "2", "--n", "8", "--no-progress")


def test_case_memory_estimate_covers_the_batch_and_scales_with_n():
    for model in ("affine", "mlp"):
        one = estimated_case_bytes(model, 1000, 50, dtype="float64")
        assert estimated_case_bytes(model, 2000, 50, dtype="float64") == 2 * one
        assert one >= 3 * 8 * 1000 * 50  # the float64 draw, the batch and its tensor copy
    plan = InnerBenchPlan.full(models=("affine", "mlp"), dims=(5, 100), n=4096)
    assert plan.estimated_bytes() == (estimated_case_bytes("mlp", 4096, 100), "mlp, n=4096, d=100")
