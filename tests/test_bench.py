"""`fastfair bench` and fastfair.bench: behaviour (record keys, objectives, pure logic), never timings."""

from __future__ import annotations

import json
import math
import time

import numpy as np
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
from fastfair.bench.deep import _RSSSampler, krylov_peak_rss
from fastfair.bench.end_to_end import E2ESetting, EndToEndPlan, render_end_to_end, run_end_to_end
from fastfair.bench.inner import (
    DEEP_MODELS,
    BenchModel,
    auto_comparison,
    bench_model,
    estimated_case_bytes,
    relative_gap,
    run_inner_bench,
)
from fastfair.bench.inner_tables import render_inner
from fastfair.bench.scaling import ScalingPlan, predicted_seconds, render_scaling, run_scaling, scaling_figure
from fastfair.bench.timing import interleaved, repeat_counts, round_robin_order
from fastfair.datasets import load
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


# ----------------------------------------------------------------------------------------------------------
# deeper models
# ----------------------------------------------------------------------------------------------------------
def test_bench_model_names():
    assert bench_model("mlp-128-64-relu") == BenchModel("mlp-128-64-relu", "mlp", (128, 64), "relu")
    assert bench_model("mlp-128-64-relu").deep and not bench_model("mlp-32").deep
    assert bench_model("mlp-32") == BenchModel("mlp-32", "mlp", 32, "tanh")
    assert bench_model("mlp", hidden=7) == BenchModel("mlp", "mlp", 7, "tanh")
    assert bench_model("mlp-softplus") == BenchModel("mlp-softplus", "mlp", 16, "softplus")
    assert bench_model("affine") == BenchModel("affine", "affine") and not bench_model("affine").deep
    assert [bench_model(m).deep for m in DEEP_MODELS] == [True, True]
    for name, words in (
        ("mlp-64-0-tanh", "model 'mlp-64-0-tanh': hidden must be a positive integer"),
        ("mlp-64-swish", "model 'mlp-64-swish': unknown activation 'swish'"),
        ("mlp-a-tanh", "model 'mlp-a-tanh': expected mlp-W1-...-Wk-ACT with integer widths"),
        ("mlp-a-b", "model 'mlp-a-b': unknown activation 'b'"),
        ("affine-3", "model 'affine-3': the affine model takes no widths"),
        ("mlp-" + "-".join(["4"] * 9), "got 9 widths"),
    ):
        with pytest.raises(FastfairError) as exc:
            bench_model(name)
        assert str(exc.value).startswith(f"model {name!r}: ") and words in str(exc.value), exc.value
    # an unknown family gets the training setting's own message
    with pytest.raises(FastfairError) as expected:
        TrainConfig(model="cnn-3").validate()
    with pytest.raises(FastfairError) as refused:
        bench_model("cnn")
    assert str(refused.value) == str(expected.value).replace("cnn-3", "cnn")


def test_plan_cases_take_each_models_defaults_unless_given():
    cases = [(spec.name, d, dtype, radii) for spec, d, dtype, radii in InnerBenchPlan().cases()]
    assert cases == [
        ("affine", 5, "float64", (0.1,)),
        ("affine", 100, "float64", (0.1,)),
        ("mlp", 5, "float64", (0.1,)),
        ("mlp", 100, "float64", (0.1,)),
        ("mlp-128-64-tanh", 100, "float32", (0.5,)),
        ("mlp-128-64-tanh", 784, "float32", (0.5,)),
        ("mlp-128-64-relu", 100, "float32", (0.5,)),
        ("mlp-128-64-relu", 784, "float32", (0.5,)),
    ]
    given = InnerBenchPlan(models=("mlp", "mlp-8-4-tanh"), dims=(3,), radii=(0.2,), dtype="float64").cases()
    assert [(spec.name, d, dtype, radii) for spec, d, dtype, radii in given] == [
        ("mlp", 3, "float64", (0.2,)),
        ("mlp-8-4-tanh", 3, "float64", (0.2,)),
    ]
    plan = InnerBenchPlan.quick_plan()
    assert plan.measures_dense(bench_model("mlp-128-64-tanh")) and not plan.measures_dense(bench_model("mlp"))
    assert not plan.measures_dense(bench_model("mlp-128-64-relu"))  # the dense path compares smooth models
    assert not InnerBenchPlan(dense_rows=0).measures_dense(bench_model("mlp-128-64-tanh"))
    with pytest.raises(FastfairError, match="dense rows"):
        InnerBenchPlan(dense_rows=-1).validate()
    with pytest.raises(FastfairError, match="hidden must be"):
        InnerBenchPlan(models=("mlp-0-tanh",)).validate()


def test_deep_case_memory_estimate():
    one = estimated_case_bytes("mlp-128-64-tanh", 1000, 784, dtype="float32")
    assert estimated_case_bytes("mlp-128-64-tanh", 2000, 784, dtype="float32") == 2 * one
    assert one >= 2 * 8 * 1000 * 784 + 4 * 1000 * 784 * 32  # the draws, and the Krylov basis of 32 vectors
    with_dense = estimated_case_bytes("mlp-128-64-tanh", 1000, 784, dtype="float32", dense_rows=64)
    assert with_dense - one == 4 * 4 * 64 * 784 * 784  # four (64, 784, 784) float32 tensors
    plan = InnerBenchPlan.full(n=4096, dense_rows=64)
    assert plan.estimated_bytes()[1] == "mlp-128-64-tanh, n=4096, d=784"


def test_auto_comparison_pure_logic():
    trs = {"solver": "trs", "setting": None, "seconds": 1.0, "objective": 1.0}
    fast = {"solver": "pgd", "setting": "fast", "seconds": 0.5, "objective": 0.9}
    slow = {"solver": "pgd", "setting": "slow", "seconds": 2.0, "objective": 1.0}
    auto_trs = {"solver": "auto", "choice": "trs", "seconds": 1.0, "objective": 1.0}
    got = auto_comparison(auto_trs, [trs, fast, slow])  # the alternative: the cheapest PGD that matches TRS
    assert got["alternative"] == "pgd[slow]" and got["verdict"] == "yes"
    assert (got["alternative_seconds"], got["alternative_objective"]) == (2.0, 1.0)
    cheap = {**slow, "seconds": 0.8, "setting": "cheap"}
    assert auto_comparison(auto_trs, [trs, fast, cheap])["verdict"] == "trade-off"  # as good, slower
    better = {**slow, "seconds": 0.8, "objective": 1.1, "setting": "better"}
    got = auto_comparison(auto_trs, [trs, fast, better])
    assert got["verdict"] == "dominated" and not got["objective_at_least"] and not got["time_at_most"]
    # nothing matched: the best PGD is the alternative, and TRS attains more
    got = auto_comparison(auto_trs, [trs, fast])
    assert got["alternative"] == "pgd[fast]" and got["objective_at_least"] and got["verdict"] == "trade-off"
    # a pgd choice is compared with the trust-region step
    auto_pgd = {"solver": "auto", "choice": "pgd", "seconds": 0.7, "objective": 1.2}
    got = auto_comparison(auto_pgd, [trs, fast, slow])
    assert got["alternative"] == "trs" and got["verdict"] == "yes"
    assert auto_comparison({**auto_pgd, "seconds": 3.0}, [trs])["verdict"] == "trade-off"
    assert auto_comparison(auto_pgd, [fast])["verdict"] == "no alternative measured"


@pytest.fixture(scope="module")
def deep_records():
    plan = InnerBenchPlan.quick_plan(
        models=("mlp-6-4-tanh", "mlp-6-4-relu"), dims=(40,), n=32, deep_n=None, repeats=1, dense_rows=4, memory=False
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add synchronisation (and stall on a busy machine)
    try:
        return run_inner_bench(plan)
    finally:
        torch.set_num_threads(threads)


def test_deep_model_records_have_the_pinned_keys(deep_records):
    json.dumps(deep_records)
    assert all(set(RECORD_KEYS) <= set(r) for r in deep_records)
    for model, choice in (("mlp-6-4-tanh", "trs"), ("mlp-6-4-relu", "pgd")):
        rows = {r["solver"] + (f"[{r['setting']}]" if r.get("setting") else ""): r for r in deep_records
                if r["model"] == model}  # fmt: skip
        trs = rows["trs"]
        assert trs["path"] == "krylov" and trs["hidden"] == (6, 4) and trs["dtype"] == "float32"
        assert trs["radius"] == 0.5 and trs["seconds"] > 0 and trs["objective"] > trs["clean_objective"]
        assert "pgd-paper" not in {r["solver"] for r in rows.values()}
        matched = next(r for r in rows.values() if r["solver"] == "pgd-matched")
        expected = pgd_matched([r for r in deep_records if r["model"] == model], trs["objective"])
        assert matched["setting"] == (expected["setting"] if expected else None)
        auto = rows["auto"]
        assert auto["choice"] == choice and auto["reason"] and auto["verdict"] in ("yes", "trade-off", "dominated")
        alternative = "trs" if choice == "pgd" else f"pgd[{(expected or {}).get('setting')}]"
        if expected is not None or choice == "pgd":
            assert auto["alternative"] == alternative
        # auto runs its choice: the objective of the solver it chose (the default PGD is 10 steps of 0.25 r)
        same = rows["trs"] if choice == "trs" else rows["pgd[steps=10,rel_step=0.25]"]
        assert auto["objective"] == pytest.approx(same["objective"], rel=1e-6)
    dense = [r for r in deep_records if r["solver"] == "trs-dense"]
    assert [r["model"] for r in dense] == ["mlp-6-4-tanh"]  # smooth models only
    (dense,) = dense
    assert (dense["n"], dense["case_n"], dense["d"]) == (4, 32, 40) and dense["krylov_path"] == "krylov"
    assert dense["path"] != "krylov" and dense["per_row_speedup"] > 0
    # both paths maximise the same quadratic model exactly: the same objective on the same rows
    assert abs(dense["objective_rel_gap"]) < 1e-5
    text = render_inner(deep_records)
    assert "auto -> trs" in text and "auto -> pgd" in text and "dense path" in text and "per row" in text


def test_rss_sampler_sees_an_allocation():
    """Oracle: a block that allocates and touches 64 MiB (and frees it) grows the resident set by about that."""
    with _RSSSampler() as sampler:
        block = np.ones(64 * 2**20 // 8)
        time.sleep(0.05)  # let the sampling thread see it
        del block
    assert sampler.base_mb > 0 and 56 <= sampler.growth_mb <= 200, sampler.growth_mb


@pytest.mark.slow  # a fresh Python process imports torch and rebuilds the case
def test_krylov_peak_rss_in_a_fresh_process_solves_the_same_case(deep_records):
    """Oracle: the lean TRS row of the same case, measured in this process (the child rebuilds the case)."""
    args = {"model": "mlp-6-4-tanh", "d": 40, "n": 32, "dtype": "float32", "pretrain_epochs": 1}
    rec = krylov_peak_rss(args, 0.5, threads=1)
    trs = next(r for r in deep_records if r["model"] == "mlp-6-4-tanh" and r["solver"] == "trs" and not r["setting"])
    assert rec["solver"] == "trs-memory" and rec["path"] == "krylov" and (rec["n"], rec["d"]) == (32, 40)
    assert rec["objective"] == pytest.approx(trs["objective"], rel=1e-6)
    assert rec["rss_growth_mb"] >= 0 and rec["rss_before_mb"] > 0 and rec["seconds"] > 0
    with pytest.raises(FastfairError, match="memory measurement's process failed"):
        krylov_peak_rss({**args, "model": "cnn"}, 0.5)


def test_cli_quick_json_has_the_deep_models_at_d_784(monkeypatch, capsys):
    code, out, err = _bench_cli(
        monkeypatch, capsys, "--quick", "--json", "--models", *DEEP_MODELS, "--dims", "784", "--n", "8",
        "--repeats", "1", "--pretrain-epochs", "0", "--dense-rows", "0", "--no-memory", "--threads", "1",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    records = json.loads(out)
    for model in DEEP_MODELS:
        at_784 = [r for r in records if r["model"] == model and r["d"] == 784]
        trs = next(r for r in at_784 if r["solver"] == "trs" and r["setting"] is None)
        assert trs["path"] == "krylov" and trs["seconds"] > 0 and math.isfinite(trs["objective"])
        assert trs["hidden"] == [128, 64] and trs["activation"] == model.rsplit("-", 1)[1]
        matched = next(r for r in at_784 if r["solver"] == "pgd-matched")
        assert {"seconds", "objective", "setting"} <= set(matched)
        assert any(r["solver"] == "auto" for r in at_784)
    assert {r["d"] for r in records} == {784}


def test_cli_refuses_a_bad_model_name(monkeypatch, capsys):
    code, out, err = _bench_cli(monkeypatch, capsys, "--models", "mlp-64-x", "--no-progress")
    assert code == 2 and out == "" and err.startswith("fastfair: error: model 'mlp-64-x'") and err.count("\n") == 1


def test_end_to_end_with_a_deeper_model_and_dataset_options():
    plan = EndToEndPlan(
        settings=(E2ESetting("adult", 100, 200, options=(("features", "all"),), models=("mlp-8-4-tanh",)),),
        solvers=("none", "trs"),
        repeats=1,
    )
    records = run_end_to_end(plan)
    assert [(r["model"], r["solver"]) for r in records] == [("mlp-8-4-tanh", "none"), ("mlp-8-4-tanh", "trs")]
    trs = records[1]
    assert trs["hidden"] == (8, 4) and trs["data_options"] == {"features": "all"} and trs["n"] == 200
    assert trs["d"] == load("adult", features="all").n_features and trs["ratio_to_none"] > 0
    text = render_end_to_end(records)
    assert "adult[features=all]" in text and "≤ 3×" in text
    default = EndToEndPlan()
    deep = [s for s in default.settings if s.options]
    assert [(s.dataset, s.batch_size, s.train_size, s.options, s.models) for s in deep] == [
        ("adult", 100, 10_000, (("features", "all"),), ("mlp-64-32-tanh",))
    ]
    assert default.models_of(deep[0]) == ("mlp-64-32-tanh",)
    assert EndToEndPlan(models=("affine",)).models_of(deep[0]) == ("affine",)
