"""The report: tables (numbers checked by hand / against scipy), claim verdicts, and the written report."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fastfair.errors import FastfairError
from fastfair.report import (
    build_report,
    compare,
    evaluate_claims,
    mean_ci,
    run_configuration,
    summarize,
    t_half_width,
    timing_table,
)
from fastfair.report.claims import CONFIRMED, CONTRADICTED, GAP_TOLERANCE, NOT_CONFIRMED
from fastfair.report.tables import markdown_table
from fastfair.vocabulary import GAP_KEYS as GAPS

SPLITS = ("train", "val", "test")


def make_results(
    spec: dict,
    *,
    datasets=("toy",),
    seeds=(0, 1, 2),
    radii=(0.1, 0.2),
    solvers=("none", "trs", "pgd-paper", "pgd", "random"),
    epochs=1,
    batch_size=50,
) -> pd.DataFrame:
    """A results store whose values come from ``spec(dataset, solver, radius, seed, split) -> dict``."""
    rows = []
    for dataset in datasets:
        for solver in solvers:
            for radius in (0.0,) if solver == "none" else radii:
                for seed in seeds:
                    cell = f"{dataset}-{solver}-{radius:g}-{seed}"
                    for split in SPLITS:
                        row = {
                            "cell_id": cell,
                            "dataset": dataset,
                            "model": "affine",
                            "solver": solver,
                            "radius": radius,
                            "seed": seed,
                            "split": split,
                            "accuracy": 0.8,
                            "auc": 0.85,
                            **dict.fromkeys(GAPS, 0.1),
                            "epoch_seconds": 1.0,
                            "inner_seconds": 0.5,
                            "epochs": epochs,
                            "batch_size": batch_size,
                            "lr": 0.01,
                            "train_size": np.nan,
                            "n": 400,
                        }
                        row.update(spec(dataset, solver, radius, seed, split))
                        rows.append(row)
    return pd.DataFrame(rows)


def _noise(seed: int, k: int = 0) -> float:
    """Deterministic small per-seed wobble in [-0.004, 0.004]."""
    return 0.004 * np.sin(1.7 * seed + 0.9 * k + 0.3)


# ---------------------------------------------------------------------------------------------------- tables


def test_mean_ci_matches_scipy_t_interval():
    v = np.array([0.12, 0.15, 0.11, 0.19, 0.14])
    n, mean, half = mean_ci(v)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert n == 5 and mean == pytest.approx(v.mean())
    assert half == pytest.approx((hi - lo) / 2, rel=1e-12)
    assert np.isnan(mean_ci([0.3])[2]) and mean_ci([0.3])[1] == 0.3
    assert mean_ci([0.1, np.nan, 0.3])[0] == 2  # NaN (undefined gap) is left out
    assert np.isnan(t_half_width(0.1, 1))


def test_summarize_means_and_ci_by_hand():
    values = {0: 0.10, 1: 0.16, 2: 0.13}

    def spec(dataset, solver, radius, seed, split):
        out = {"independence": values[seed] + (radius if split == "test" else 0.0)}
        if solver == "pgd" and seed == 1:
            out["separation_tpr"] = np.nan  # an undefined gap in one seed
        return out

    s = summarize(make_results(spec)).set_index(["solver", "radius", "split", "metric"])
    row = s.loc[("trs", 0.1, "train", "independence")]
    v = np.array(list(values.values()))
    assert row["n_seeds"] == 3
    assert row["mean"] == pytest.approx(0.13)
    assert row["std"] == pytest.approx(np.std(v, ddof=1))
    assert row["ci_half_width"] == pytest.approx(stats.t.ppf(0.975, 2) * np.std(v, ddof=1) / np.sqrt(3))
    assert row["ci_low"] == pytest.approx(0.13 - row["ci_half_width"])
    assert s.loc[("trs", 0.2, "test", "independence"), "mean"] == pytest.approx(0.33)
    nan_row = s.loc[("pgd", 0.2, "train", "separation_tpr")]
    assert nan_row["n_seeds"] == 2 and nan_row["mean"] == pytest.approx(0.1)
    assert set(s.index.get_level_values("metric")) >= {"accuracy", "auc", *GAPS, "epoch_seconds"}


def test_summarize_single_seed_has_no_interval():
    s = summarize(make_results(lambda *a: {}, seeds=(7,)))
    assert (s["n_seeds"] == 1).all()
    assert s["ci_half_width"].isna().all() and s["std"].isna().all()


def test_timing_table_means_and_ratios_by_hand():
    times = {"none": [1, 1, 1], "trs": [1.0, 2.0, 3.0], "pgd-paper": [4.0, 6.0, 8.0], "pgd": [3.0, 3.0, 3.0]}

    def spec(dataset, solver, radius, seed, split):
        base = times.get(solver, [1.5, 1.5, 1.5])[seed]
        return {"epoch_seconds": base * (2 if radius == 0.2 else 1)}

    t = timing_table(make_results(spec)).set_index("radius")
    assert list(t.columns[:3]) == ["dataset", "model", "none"]
    assert t.loc[0.1, "trs"] == pytest.approx(2.0) and t.loc[0.1, "pgd-paper"] == pytest.approx(6.0)
    assert t.loc[0.1, "pgd-paper/trs"] == pytest.approx(3.0)
    assert t.loc[0.1, "pgd/trs"] == pytest.approx(1.5)
    assert t.loc[0.2, "trs"] == pytest.approx(4.0) and t.loc[0.2, "pgd-paper/trs"] == pytest.approx(3.0)
    assert t.loc[0.1, "none"] == pytest.approx(1.0)  # the non-robust epoch, on every row
    assert (t["seeds"] == "3").all()


def test_timing_table_counts_each_cell_once_and_reports_unequal_seeds():
    df = make_results(lambda d, solver, r, seed, split: {"epoch_seconds": 2.0 + seed})
    df = df[~((df["solver"] == "pgd-paper") & (df["seed"] > 0))]  # pgd-paper with 1 seed only
    t = timing_table(df).set_index("radius")
    assert t.loc[0.1, "trs"] == pytest.approx(3.0)  # (2 + 3 + 4) / 3, not weighted by the 3 split rows
    assert t.loc[0.1, "pgd-paper"] == pytest.approx(2.0)
    assert "pgd-paper:1" in t.loc[0.1, "seeds"] and "trs:3" in t.loc[0.1, "seeds"]


def test_timing_table_without_pgd_paper_has_no_ratio_column():
    t = timing_table(make_results(lambda *a: {}, solvers=("none", "trs", "random")))
    assert "pgd-paper/trs" not in t.columns and "pgd/trs" not in t.columns
    assert {"trs", "random"} <= set(t.columns)


def test_markdown_table_formats_and_escapes():
    df = pd.DataFrame({"a": [1.23456, np.nan], "b": ["x|y", "z"], "r": [2.5, 3.0]})
    md = markdown_table(df, formats={"r": ".2f"}).splitlines()
    assert md[0] == "| a | b | r |" and md[1] == "|---|---|---|"
    assert md[2] == "| 1.235 | x\\|y | 2.50 |"
    assert md[3] == "| – | z | 3.00 |"


def test_run_configuration_is_derived_from_results():
    cfg = run_configuration(make_results(lambda *a: {}, radii=(0.1, 0.14, 0.18), epochs=3, batch_size=5))
    row = cfg.iloc[0]
    assert row["dataset"] == "toy" and row["seeds"] == "0, 1, 2" and row["epochs"] == "3"
    assert row["radii"].startswith("0.1–0.18 step 0.04")
    assert row["solvers"] == "none, trs, pgd-paper, pgd, random"


def test_bad_results_fail_clearly():
    with pytest.raises(FastfairError, match="lacks column"):
        summarize(pd.DataFrame({"dataset": ["a"]}))
    with pytest.raises(FastfairError, match="empty"):
        summarize(make_results(lambda *a: {}).iloc[0:0])


# ---------------------------------------------------------------------------------------------------- claims


def test_compare_paired_welch_and_single_seed():
    a = pd.Series([0.10, 0.12, 0.11], index=[0, 1, 2])
    b = pd.Series([0.20, 0.25, 0.19], index=[0, 1, 2])
    c = compare(a, b)
    d = (a - b).to_numpy()
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert c.method.startswith("paired") and c.diff == pytest.approx(d.mean())
    assert c.noise == pytest.approx((hi - lo) / 2) and c.direction == -1
    # no common seeds: Welch
    w = compare(a, pd.Series([0.20, 0.25, 0.19], index=[5, 6, 7]))
    _, p = stats.ttest_ind(a, [0.20, 0.25, 0.19], equal_var=False)
    assert w.method.startswith("Welch") and w.direction == -1 and p < 0.05
    # within noise
    assert compare(a, a + pd.Series([0.01, -0.01, 0.0], index=[0, 1, 2])).direction == 0
    # one seed: fixed tolerance
    one = compare(pd.Series([0.10]), pd.Series([0.10 + 1.5 * GAP_TOLERANCE]))
    assert one.method == "1 seed, no CI" and one.direction == -1
    assert compare(pd.Series([0.10]), pd.Series([0.10 + 0.5 * GAP_TOLERANCE])).direction == 0


UNFAIR2D_RADII = tuple(np.round(np.arange(0.10, 0.2001, 0.01), 2))


def _unfair2d(trs_gap, *, seeds=(0, 1, 2, 3, 4), radii=UNFAIR2D_RADII, accuracy_drop=0.05, **kw):
    """Unfair2D store: baseline gaps 0.15, TRS gaps ``trs_gap(radius)``, other solvers at the baseline."""

    def spec(dataset, solver, radius, seed, split):
        out = {g: 0.15 + _noise(seed, k) for k, g in enumerate(GAPS)}
        out["accuracy"] = 0.8 + _noise(seed, 9)
        if solver == "trs":
            out.update({g: trs_gap(radius) + _noise(seed, k + 3) for k, g in enumerate(GAPS)})
            out["accuracy"] -= accuracy_drop
        out["epoch_seconds"] = {"trs": 1.0, "pgd-paper": 1.0 + 20 * radius, "pgd": 1.5}.get(solver, 0.5)
        out["epoch_seconds"] *= 1 + 0.01 * seed
        return out

    return make_results(spec, datasets=("unfair2d",), seeds=seeds, radii=radii, **kw)


def _claims(df) -> pd.DataFrame:
    return evaluate_claims(df)


def _verdicts(claims: pd.DataFrame, startswith: str, dataset: str | None = None) -> list[str]:
    m = claims["claim"].str.startswith(startswith)
    if dataset:
        m &= claims["dataset"] == dataset
    return claims.loc[m, "verdict"].tolist()


def test_claims_confirmed_when_trs_reduces_gaps_and_crossover_in_range():
    # TRS is worse than the baseline below r=0.14 and better from r=0.15 on
    claims = _claims(_unfair2d(lambda r: 0.15 + 0.5 * (0.145 - r) if r < 0.145 else 0.05))
    assert _verdicts(claims, "TRS at r=0.18 reduces") == [CONFIRMED] * 5
    assert _verdicts(claims, "TRS at r=0.18 lowers accuracy") == [CONFIRMED, CONFIRMED]
    assert _verdicts(claims, "Robust (TRS) starts to beat") == [CONFIRMED]
    row = claims[claims["claim"] == "TRS at r=0.18 reduces Independence"].iloc[0]
    assert row["paper"] == "0.152 → 0.025"
    assert "paired t, 5 seeds" in row["ours"] and "→ 0.05" in row["ours"]
    # timing: pgd-paper is slower than TRS, and more so at r=0.2
    assert _verdicts(claims, "TRS epoch is faster than PGD", "unfair2d") == [CONFIRMED, CONFIRMED]
    assert _verdicts(claims, "PGD/TRS ratio grows", "unfair2d") == [CONFIRMED]
    ratio_row = claims[claims["claim"] == "TRS epoch is faster than PGD at r=0.10"].iloc[0]
    assert "pgd-paper/trs = 3.00" in ratio_row["ours"] and ratio_row["paper"] == "PGD/TRS = 1.38"
    # random sits on the baseline
    assert _verdicts(claims, "Random perturbation", "unfair2d") == [CONFIRMED]


def test_claims_contradicted_when_trs_increases_gaps():
    claims = _claims(_unfair2d(lambda r: 0.25, accuracy_drop=-0.05))
    assert _verdicts(claims, "TRS at r=0.18 reduces") == [CONTRADICTED] * 5
    assert _verdicts(claims, "TRS at r=0.18 lowers accuracy") == [CONTRADICTED] * 2
    assert _verdicts(claims, "Robust (TRS) starts to beat") == [CONTRADICTED]  # never beats


def test_crossover_contradicted_when_trs_beats_from_the_smallest_radius():
    claims = _claims(_unfair2d(lambda r: 0.05))
    assert _verdicts(claims, "Robust (TRS) starts to beat") == [CONTRADICTED]


def test_claims_within_noise_are_not_confirmed():
    claims = _claims(_unfair2d(lambda r: 0.15, accuracy_drop=0.0))
    assert _verdicts(claims, "TRS at r=0.18 reduces") == [NOT_CONFIRMED] * 5


def test_claims_not_tested_when_the_run_lacks_radius_solver_or_dataset():
    df = _unfair2d(lambda r: 0.05, radii=(0.10, 0.14), solvers=("none", "trs", "random"))
    claims = _claims(df)
    assert all(v == "not tested (radius 0.18 not in this run)" for v in _verdicts(claims, "TRS at r=0.18"))
    assert _verdicts(claims, "Robust (TRS) starts to beat") == ["not tested (radii do not bracket 0.14–0.17)"]
    timing = _verdicts(claims, "TRS epoch is faster than PGD", "unfair2d")
    assert timing and all(v == "not tested (solver pgd-paper not in this run)" for v in timing)
    assert set(_verdicts(claims, "Robust training", "adult")) == {
        "not tested (dataset adult not in this run)"
    }
    assert set(_verdicts(claims, "Random", "lsat")) == {"not tested (dataset lsat not in this run)"}
    # every claim gets a row, and nothing from the paper shows up as ours
    assert (claims.loc[claims["verdict"].str.startswith("not tested"), "ours"].isin(["–"])).sum() >= 5


def _count_store(dataset: str, improving: tuple[str, ...], seeds=(0, 1, 2)) -> pd.DataFrame:
    def spec(ds, solver, radius, seed, split):
        out = {g: 0.15 + _noise(seed, k) for k, g in enumerate(GAPS)}
        if solver == "trs":
            out.update({g: 0.08 + _noise(seed, 5) for g in improving})
        return out

    return make_results(spec, datasets=(dataset,), seeds=seeds, radii=(0.10, 0.15, 0.20))


def test_adult_and_lsat_gap_counts():
    two = _claims(_count_store("adult", ("independence", "separation_fpr")))
    assert _verdicts(two, "Robust training improves", "adult") == [CONFIRMED]
    assert "2 of 5 improve" in two.loc[two["dataset"] == "adult", "ours"].iloc[0]
    none = _claims(_count_store("adult", ()))
    assert _verdicts(none, "Robust training improves", "adult") == [CONTRADICTED]
    for improving, verdict in (((), CONFIRMED), (GAPS[:3], CONTRADICTED), (GAPS[:1], NOT_CONFIRMED)):
        claims = _claims(_count_store("lsat", improving))
        assert _verdicts(claims, "Robust training brings", "lsat") == [verdict], improving


def test_timing_claim_contradicted_when_trs_is_slower():
    def spec(ds, solver, radius, seed, split):
        return {"epoch_seconds": {"trs": 5.0, "pgd-paper": 1.0}.get(solver, 1.0) * (1 + 0.01 * seed)}

    claims = _claims(make_results(spec, datasets=("adult",), radii=(0.10, 0.20)))
    assert _verdicts(claims, "TRS epoch is faster than PGD", "adult") == [CONTRADICTED, CONTRADICTED]
    assert _verdicts(claims, "PGD/TRS ratio grows", "adult") == [NOT_CONFIRMED]


def test_random_far_from_baseline_is_contradicted():
    def spec(ds, solver, radius, seed, split):
        out = {g: 0.15 + _noise(seed, k) for k, g in enumerate(GAPS)}
        if solver == "random":
            out = {g: 0.30 + _noise(seed, k + 1) for k, g in enumerate(GAPS)}
        return out

    claims = _claims(make_results(spec, datasets=("lsat",)))
    assert _verdicts(claims, "Random perturbation", "lsat") == [CONTRADICTED]


# ---------------------------------------------------------------------------------------------- build_report


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def _check_report_folder(out: Path, written: dict[str, Path]) -> list[Path]:
    for p in written.values():
        assert p.exists() and p.is_relative_to(out)
    assert not list(out.rglob("*.tmp")), "atomic writes leave no temporary files"
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    pngs = sorted(out.glob("figures/*.png"))
    for p in pngs:
        _assert_png(p)
    img_src = re.findall(r'<img src="([^"]+)"', html)
    md_src = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(img_src) == len(pngs) == len(md_src)
    for src in img_src + md_src:
        assert not src.startswith(("/", "http")) and (out / src).is_file()
    assert "http://" not in html and "https://" not in html  # self-contained, nothing fetched
    for section in ("Claims", "Timing (the paper's Table 1)", "Run configuration", "Differences from the paper"):
        assert section in md and section in html
    # the pointer to the trade-off comparison, as text and as the command's code
    assert "Robust training against the fairness toolbox" in md and "`fastfair compare --dataset NAME" in md
    assert "Robust training against the fairness toolbox" in html and "<code>fastfair compare --dataset" in html
    return pngs


def test_build_report_writes_tables_figures_and_documents(tmp_path):
    df = _unfair2d(lambda r: 0.15 - 0.5 * (r - 0.14), seeds=(0, 1, 2), radii=(0.10, 0.14, 0.18, 0.20))
    toy = make_results(lambda *a: {}, datasets=("toy",), seeds=(0, 1, 2))
    df = pd.concat([df, toy], ignore_index=True)
    written = build_report(df, tmp_path, notes=["note: a synthetic store"])
    pngs = _check_report_folder(tmp_path, written)
    # 2 datasets x (gaps on train + gaps on test + accuracy)
    assert len(pngs) == 6
    assert {"report_md", "report_html", "summary_csv", "timing_csv", "claims_csv"} <= set(written)
    md = (tmp_path / "report.md").read_text()
    assert "note: a synthetic store" in md and "PF" in md and "Kusner" in md
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert {"dataset", "solver", "radius", "split", "metric", "mean", "ci_half_width"} <= set(summary.columns)
    timing = pd.read_csv(tmp_path / "timing.csv")
    assert "pgd-paper/trs" in timing.columns and set(timing["dataset"]) == {"unfair2d", "toy"}
    claims = pd.read_csv(tmp_path / "claims.csv")
    ours = claims.loc[claims["claim"] == "TRS at r=0.18 reduces Independence", "ours"].iloc[0]
    trs = df[(df.solver == "trs") & (df.radius == 0.18) & (df.split == "train") & (df.dataset == "unfair2d")]
    assert f"→ {trs['independence'].mean():.3f}" in ours  # computed from the store, not copied
    # rebuilding over an existing report replaces it
    again = build_report(toy, tmp_path, quick=True)
    assert "Quick mode" in again["report_md"].read_text()


def test_build_report_single_seed_without_unfair2d(tmp_path):
    df = make_results(lambda *a: {}, datasets=("adult",), seeds=(3,), solvers=("none", "trs"))
    written = build_report(df, tmp_path, quick=True)
    pngs = _check_report_folder(tmp_path, written)
    assert len(pngs) == 2  # gaps on train (quick) + accuracy
    md = written["report_md"].read_text()
    assert "decision-boundary figure skipped: unfair2d is not in these results" in md
    assert "single seed" in md


#: Eight training points with hand-checked predictions: f(x) = x1 + x2 - 1 gets 6 of 8 right (75.0%), a model that
#: predicts class 0 everywhere gets the 4 points of class 0 right (50.0%).
BOUNDARY_X = np.array(
    [[0.1, 0.1], [0.9, 0.9], [0.2, 0.9], [0.9, 0.2], [0.4, 0.4], [0.6, 0.7], [0.3, 0.6], [0.7, 0.1]]
)
BOUNDARY_Y = np.array([0, 1, 1, 0, 0, 1, 0, 1])
BOUNDARY_S = np.array([0, 1, 0, 1, 0, 1, 0, 1])


def _boundary_inputs(states=("state-none", "state-trs"), X=BOUNDARY_X):
    from fastfair.experiments.report_inputs import BoundaryInputs, StoredModel

    def diagonal(points):
        return points[:, 0] + points[:, 1] - 1.0

    def everything_negative(points):
        return points[:, 0] + points[:, 1] - 100.0

    models = (
        StoredModel("cell-none", "none", states[0], diagonal),
        StoredModel("cell-trs", "trs", states[1], everything_negative),
    )
    return BoundaryInputs(
        dataset="unfair2d",
        X=X,
        y=BOUNDARY_Y,
        s=BOUNDARY_S,
        group_names=("A", "B"),
        model="affine",
        seed=0,
        epochs=2,
        batch_size=20,
        lr=0.01,
        radius=0.18,
        models=models,
    )


def _unfair2d_at_boundary_radius():
    return _unfair2d(lambda r: 0.1, seeds=(0,), radii=(0.18,), solvers=("none", "trs"), epochs=2, batch_size=20)


def test_build_report_draws_the_boundaries_from_the_stored_models_it_is_given(tmp_path):
    written = build_report(_unfair2d_at_boundary_radius(), tmp_path, quick=True, boundaries=_boundary_inputs())
    assert "fig_unfair2d_boundaries" in written
    _assert_png(written["fig_unfair2d_boundaries"])
    pngs = _check_report_folder(tmp_path, written)
    assert len(pngs) == 3
    md = written["report_md"].read_text()
    assert "unfair2d decision boundaries (affine model, seed 0, 2 epochs, batch size 20" in md
    assert (
        "(affine model, seed 0, 2 epochs, batch size 20, lr 0.01, TRS radius 0.18); "
        "non-robust: train accuracy 75.0%; TRS, r=0.18: train accuracy 50.0%." in md
    )
    assert "skipped" not in md


def test_build_report_trains_nothing_and_says_why_a_boundary_figure_is_missing(tmp_path, monkeypatch):
    import fastfair.training as training

    def refuse(*args, **kwargs):
        raise AssertionError("the report must not train a model")

    monkeypatch.setattr(training, "train", refuse)
    monkeypatch.setattr(training, "train_arrays", refuse)
    df = _unfair2d_at_boundary_radius()
    written = build_report(df, tmp_path / "none", quick=True)
    assert "fig_unfair2d_boundaries" not in written
    md = written["report_md"].read_text()
    assert "Unfair2D decision-boundary figure skipped: no stored models were given to the report." in md
    reason = "the cell file 'x/cells/0.json' is missing or unreadable"
    written = build_report(df, tmp_path / "reason", quick=True, boundaries=reason)
    assert "fig_unfair2d_boundaries" not in written
    assert f"Unfair2D decision-boundary figure skipped: {reason}." in written["report_md"].read_text()


def test_report_package_imports_nothing_that_trains_or_loads_data():
    import ast

    import fastfair.report

    banned = ("fastfair.training", "fastfair.inner", "fastfair.datasets", "torch")
    root = Path(fastfair.report.__file__).parent
    found = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                package = ["fastfair.report", "fastfair"][node.level - 1] if node.level else ""
                module = ".".join(p for p in (package, node.module or "") if p)
                names = [module] + [f"{module}.{alias.name}" for alias in node.names]
            else:
                continue
            found += [f"{path.name}: {n}" for n in names if n.startswith(banned)]
    assert not found, found


def test_cached_report_follows_the_stored_boundary_models(tmp_path):
    from fastfair.report import build_report_cached

    df = _unfair2d_at_boundary_radius()
    first = build_report_cached(df, tmp_path, quick=True, boundaries=_boundary_inputs())
    assert "fig_unfair2d_boundaries" in first
    stamp = first["report_md"].stat().st_mtime_ns
    # the same stored models (new function objects): reused
    assert build_report_cached(df, tmp_path, quick=True, boundaries=_boundary_inputs()) == first
    assert first["report_md"].stat().st_mtime_ns == stamp
    # other weights of the TRS model: rebuilt
    build_report_cached(df, tmp_path, quick=True, boundaries=_boundary_inputs(states=("state-none", "retrained")))
    assert first["report_md"].stat().st_mtime_ns != stamp
    stamp = first["report_md"].stat().st_mtime_ns
    # other training points: rebuilt
    build_report_cached(
        df,
        tmp_path,
        quick=True,
        boundaries=_boundary_inputs(states=("state-none", "retrained"), X=BOUNDARY_X[::-1].copy()),
    )
    assert first["report_md"].stat().st_mtime_ns != stamp


def test_cached_report_is_reused_only_for_the_same_inputs_and_report_code(tmp_path, monkeypatch):
    import fastfair.report.cache as cache

    df = make_results(lambda *a: {}, datasets=("toy",), seeds=(0, 1))
    first = cache.build_report_cached(df, tmp_path, paper=False)
    stamp = first["report_md"].stat().st_mtime_ns
    assert cache.build_report_cached(df.sample(frac=1.0, random_state=0), tmp_path, paper=False) == first
    assert first["report_md"].stat().st_mtime_ns == stamp  # rows in another order: reused
    monkeypatch.setattr(cache, "renderer_digest", lambda: "other report code")
    cache.build_report_cached(df, tmp_path, paper=False)
    assert first["report_md"].stat().st_mtime_ns != stamp  # rebuilt


# ---------------------------------------------------------------------------------------------- trs-paper


def _with_paper_trs(seeds=(0, 1, 2)):
    """trs-paper equals trs at r = 0.1 and differs at r = 0.2 (accuracy 0.75 instead of 0.8, independence 0.13
    instead of 0.1 on every split), and its epochs take 3 s against trs's 1 s."""

    def spec(dataset, solver, radius, seed, split):
        if solver != "trs-paper":
            return {}
        out = {"epoch_seconds": 3.0}
        if radius == 0.2:
            out.update(accuracy=0.75, independence=0.13)
        return out

    return make_results(spec, seeds=seeds, solvers=("none", "trs", "trs-paper", "pgd"))


def test_defect_outcome_table_by_hand():
    from fastfair.report.defect import outcome_table
    from fastfair.report.tables import normalise

    t = outcome_table(normalise(_with_paper_trs())).set_index("radius")
    assert t.loc[0.1, "same model"] == "3/3" and t.loc[0.2, "same model"] == "0/3"
    assert t.loc[0.2, "Δ accuracy (pp)"] == pytest.approx(-5.0)
    assert t.loc[0.2, "largest Δ gap"] == pytest.approx(0.03) and t.loc[0.2, "in gap"] == "Independence"
    assert t.loc[0.1, "largest Δ gap"] == 0 and t.loc[0.1, "in gap"] == "–"
    assert t.loc[0.1, "trs-paper/trs"] == pytest.approx(3.0)
    timing = timing_table(_with_paper_trs()).set_index("radius")
    assert timing.loc[0.2, "trs-paper/trs"] == pytest.approx(3.0)


def test_defect_conclusions_in_plain_words():
    from fastfair.report.defect import conclusions
    from fastfair.report.tables import normalise

    measured = pd.DataFrame(
        [
            ["toy", "affine", 0.1, 0, "trs-paper", 100, 0.0, 1.0, 0.0, 0.0, 0.0, 0.5, 0.6, 0.6],
            ["toy", "affine", 0.1, 0, "none", 100, 0.2, 0.7, 0.0, 0.1, 0.2, 0.3, 0.25, 0.5],
        ],
        columns=[
            "dataset", "model", "radius", "seed", "weights", "rows", "interior_newton", "boundary", "degenerate",
            "no_bracket", "lowered", "clean_loss", "paper_loss", "trs_loss",
        ],
    )  # fmt: skip
    text = conclusions(normalise(_with_paper_trs()), measured)
    assert text[0] == (
        "toy (affine): trs-paper trained a different model from trs in 3 of 6 runs (r = 0.1, 0.2): test accuracy "
        "-2.5 pp on average (from -5.0 to +0.0 pp), largest change of a test gap 0.030 (Independence). On its "
        "trained models the reference step was the interior Newton step on 0.0% of the measured rows and lowered "
        "the loss on 0.0%. Its epochs took 3.0x those of trs."
    )
    assert "lowers the loss of 20.0% of the rows (mean loss 0.250 against 0.500 for the exact step)" in text[1]
    assert "would stop training with an error on 10.0% of the rows" in text[1]
    same = make_results(lambda *a: {}, seeds=(0,), solvers=("none", "trs", "trs-paper"))
    assert conclusions(normalise(same), None)[0].startswith(
        "toy (affine): trs-paper trained the same model as trs in all 2 runs (r = 0.1, 0.2)"
    )


def test_report_has_the_defect_section_only_where_trs_paper_ran(tmp_path):
    written = build_report(_with_paper_trs(seeds=(0,)), tmp_path / "with", quick=True)
    md = written["report_md"].read_text()
    html = written["report_html"].read_text()
    assert "## The reference TRS's defect, measured" in md and "The reference TRS&#x27;s defect, measured" in html
    assert "_Branches not measured: no stored models were given to the report._" in md
    outcome = pd.read_csv(written["defect_csv"])
    assert list(outcome["same model"]) == ["1/1", "0/1"]
    assert "defect_branches_csv" not in written
    without = build_report(make_results(lambda *a: {}, seeds=(0,)), tmp_path / "without", quick=True)
    assert "defect, measured" not in without["report_md"].read_text() and "defect_csv" not in without


# ------------------------------------------------------------------------------------ seed sets in one figure


def _seeded(dataset, solver, radius, seed, split):
    """Values that differ by seed (and by solver), so that a mean over other seeds shows."""
    k = {"none": 0, "trs": 1, "pgd-paper": 2, "pgd": 3, "random": 4}[solver]
    return {"accuracy": 0.8 - 0.01 * seed - 0.1 * radius + 0.001 * k, "independence": 0.2 + 0.02 * seed + 0.003 * k}


def _capture_figures(monkeypatch) -> dict[str, object]:
    """Patch the report's PNG writer to keep every figure drawn, keyed by its suptitle."""
    from fastfair.report import figure_output

    figures: dict[str, object] = {}
    real = figure_output.png_bytes

    def keep(fig, dpi):
        figures[fig._suptitle.get_text()] = fig
        return real(fig, dpi)

    monkeypatch.setattr(figure_output, "png_bytes", keep)
    return figures


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def _line(fig, label: str):
    """The (x, y) data of the first curve labelled ``label`` in the figure's first panel."""
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == label]
    return np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)


def test_figures_compare_solvers_on_their_common_seeds(tmp_path, monkeypatch):
    full = make_results(_seeded, seeds=(0, 1, 2, 3, 4), radii=(0.1, 0.2), solvers=("none", "trs", "pgd-paper"))
    df = full[(full["solver"] != "pgd-paper") | (full["seed"] == 0)].reset_index(drop=True)
    figures = _capture_figures(monkeypatch)
    written = build_report(df, tmp_path, paper=False, gap_splits=("train",))
    # the gap figure: every curve is the seed-0 value (hand oracle), not the mean over seeds 0-4
    (gaps,) = [f for t, f in figures.items() if "fairness gaps" in t]
    assert _legend(gaps) == ["non-robust (seed 0)", "TRS (seed 0)", "PGD (paper config) (seed 0)"]
    for solver, label in (("trs", "TRS (seed 0)"), ("pgd-paper", "PGD (paper config) (seed 0)")):
        x, y = _line(gaps, label)  # first panel: independence on train
        want = [_seeded("toy", solver, r, 0, "train")["independence"] for r in (0.1, 0.2)]
        np.testing.assert_allclose(x, [0.1, 0.2])
        np.testing.assert_allclose(y, want, rtol=0, atol=1e-12)
    baseline = next(ln for ln in gaps.axes[0].get_lines() if ln.get_label() == "non-robust (seed 0)")
    np.testing.assert_allclose(baseline.get_ydata(), _seeded("toy", "none", 0.0, 0, "train")["independence"])
    assert "1 seed)" in gaps._suptitle.get_text()
    (accuracy,) = [f for t, f in figures.items() if "accuracy vs radius" in t]
    assert "TRS (seed 0)" in _legend(accuracy)
    _, y = _line(accuracy, "TRS (seed 0)")
    np.testing.assert_allclose(y, [100 * _seeded("toy", "trs", r, 0, "train")["accuracy"] for r in (0.1, 0.2)])
    # captions, the report's note and the key numbers say so
    md = written["report_md"].read_text()
    note = "Compared on the common seeds: 0 (seeds per solver: none: 0-4; trs: 0-4; pgd-paper: 0)."
    assert md.count(note) == 3  # the note, and the captions of the gap and the accuracy figure
    assert "toy (affine): the solvers ran on different seeds." in md and "summary.csv keeps every seed" in md
    assert "toy (affine) at r=0.2, compared on the common seed 0" in md
    assert note in written["report_html"].read_text()
    # summary.csv still describes every seed each solver ran
    summary = pd.read_csv(written["summary_csv"])
    trs = summary[(summary.solver == "trs") & (summary.metric == "independence") & (summary.split == "train")]
    assert set(trs["n_seeds"]) == {5}


def test_figures_with_the_same_seeds_for_every_solver_are_unchanged(tmp_path, monkeypatch):
    from fastfair.report.figures import DEFAULT_DPI, gap_figure, png_bytes

    df = make_results(_seeded, seeds=(0, 1, 2), radii=(0.1, 0.2), solvers=("none", "trs", "pgd-paper"))
    figures = _capture_figures(monkeypatch)
    written = build_report(df, tmp_path, paper=False, gap_splits=("train",))
    (gaps,) = [f for t, f in figures.items() if "fairness gaps" in t]
    assert _legend(gaps) == ["non-robust", "TRS", "PGD (paper config)"]
    _, y = _line(gaps, "TRS")
    want = [np.mean([_seeded("toy", "trs", r, s, "train")["independence"] for s in (0, 1, 2)]) for r in (0.1, 0.2)]
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-12)
    # the written figure is the one drawn from the full summary, byte for byte
    direct = png_bytes(gap_figure(summarize(df), "toy", "affine", "train"), DEFAULT_DPI)
    assert (tmp_path / "figures" / "gaps_toy_train.png").read_bytes() == direct
    md = written["report_md"].read_text()
    assert "common seed" not in md and "seeds per solver" not in md and "different seeds" not in md


def test_compare_single_seed_against_several_uses_the_common_seed():
    trs = pd.Series([0.10, 0.30, 0.50, 0.70, 0.90], index=[0, 1, 2, 3, 4])
    # seed 0 alone against seeds 0-4: the difference is taken on seed 0 (0.10 - 0.10), not against the mean (0.50)
    c = compare(pd.Series([0.10], index=[0]), trs)
    assert c.method == "1 seed, no CI" and c.diff == pytest.approx(0.0) and c.direction == 0
    assert (c.mean_a, c.mean_b) == pytest.approx((0.10, 0.10))
    c = compare(trs, pd.Series([0.10 - 1.5 * GAP_TOLERANCE], index=[0]))
    assert c.diff == pytest.approx(1.5 * GAP_TOLERANCE) and c.direction == 1
    # no common seed: the difference of the means, as before
    c = compare(pd.Series([0.10], index=[7]), trs)
    assert c.diff == pytest.approx(0.10 - 0.50) and c.direction == -1


def test_solvers_without_a_common_seed_keep_their_own_seeds_and_say_so(tmp_path):
    full = make_results(_seeded, seeds=(0, 1, 2), radii=(0.1,), solvers=("none", "trs", "pgd-paper"))
    df = full[(full["solver"] != "pgd-paper") | (full["seed"] == 0)].copy()
    df.loc[df["solver"] == "pgd-paper", "seed"] = 7
    md = build_report(df, tmp_path, paper=False, gap_splits=("train",))["report_md"].read_text()
    assert "The solvers share no seed (seeds per solver: none: 0-2; trs: 0-2; pgd-paper: 7)" in md
    assert "common seed" not in md
