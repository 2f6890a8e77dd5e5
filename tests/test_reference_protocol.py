"""The reference protocol: the authors' draws, records, initialisation and rows reproduced, and the ablation.

Every expected number below was printed by the authors' code (github elizabethnewman/fast-n-fair, commit
91f6713, torch 2.13.0 CPU) run as published: ``ex_unfair_2d.py`` (seed 42, 10 epochs, batch 5), ``ex_adult.py``
(seed 42, batch 100), and its ``generate_unfair_data`` after ``torch.manual_seed(42)``.
"""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from fastfair.datasets import load
from fastfair.datasets._bundled import data_dir
from fastfair.errors import FastfairError
from fastfair.experiments import paper_protocol
from fastfair.inner import make_inner
from fastfair.models import build_model
from fastfair.reference import (
    ReferenceCell,
    ablation_runs,
    ablation_table,
    draw_unfair2d,
    holm,
    our_init,
    reference_adult,
    reference_init,
    reference_loss,
    reference_unfair2d,
    run_reference_cell,
    seed_spread_figure,
    seed_spread_summary,
)
from fastfair.reference.protocol import cell_solver

# ----------------------------------------------------------------------------------------------------------
# Unfair2D: the seed-42 draw
# ----------------------------------------------------------------------------------------------------------


def test_unfair2d_seed42_training_draw():
    data = reference_unfair2d(42)
    X, y, s = data.train
    assert X.dtype == np.float32 and X.shape == (200, 2) and data.val[0].shape == (300, 2)
    np.testing.assert_allclose(
        X[:3], [[0.162977, 0.988455], [0.511781, 0.357626], [0.706792, 0.396706]], rtol=0, atol=5e-7
    )
    assert y[:3].tolist() == [1, 0, 1] and s[:3].tolist() == [1, 1, 1]
    assert int(y.sum()) == 101 and int(s.sum()) == 99
    assert abs(float(X.astype(np.float64).sum()) - 200.43649) < 5e-5  # float32 sum 200.436493, float64 200.436505


def test_unfair2d_seed42_test_draw_follows_the_training_draw():
    X, y, s = reference_unfair2d(42).test
    assert X.shape == (100, 2)
    np.testing.assert_allclose(X[:2], [[0.034041, 0.623704], [0.715692, 0.424126]], rtol=0, atol=5e-7)
    assert y[:2].tolist() == [0, 1] and s[:2].tolist() == [0, 0]
    assert abs(float(X.astype(np.float64).sum()) - 104.31061) < 5e-5


def test_unfair2d_draw_recipe_by_hand():
    """Class by side of x₁ + x₂ = 1 before the shift, half of each class in s = 1, the shift ±0.1·(1, 1)."""
    g = torch.Generator().manual_seed(7)
    X, y, s = draw_unfair2d(40, g)
    shift = np.where((s.numpy() == 0) & (y.numpy() == 1), -0.1, 0.0) + np.where(
        (s.numpy() == 1) & (y.numpy() == 0), 0.1, 0.0
    )
    raw = X.numpy().astype(np.float64) - shift[:, None]
    assert ((raw.sum(1) < 1) == (y.numpy() == 0)).all()
    assert ((raw >= -1e-6) & (raw < 1 + 1e-6)).all()
    for label in (0, 1):
        assert int(s[y == label].sum()) == 20


def test_unfair2d_switches_change_only_their_part():
    ref, sizes, ours = (reference_unfair2d(3, **kw) for kw in ({}, {"splits": "ours"}, {"draw": "ours"}))
    assert len(sizes.train[0]) == 400 and len(sizes.val[0]) == 100
    np.testing.assert_array_equal(
        np.concatenate([ref.train[0], ref.val[0]]), sizes.train[0].tolist() + sizes.val[0].tolist()
    )
    np.testing.assert_array_equal(ref.test[0], sizes.test[0])
    assert len(ours.train[0]) == 200 and not np.array_equal(ours.train[0], ref.train[0])


# ----------------------------------------------------------------------------------------------------------
# Model, initialisation, loss, batch order
# ----------------------------------------------------------------------------------------------------------


def test_reference_init_and_first_batch_of_seed42():
    """After re-seeding with 42, the reference's layer holds K = (0.7645385, 0.8300079), b = -0.2342725, and its
    first epoch's first batch is rows 14, 69, 67, 36, 72."""
    g = torch.Generator().manual_seed(42)
    m = reference_init(2, g)
    assert m.K.shape == (2, 1)
    assert m.K.detach().flatten().tolist() == [0.7645385265350342, 0.8300079107284546]
    assert m.b.detach().tolist() == [-0.23427248001098633]
    assert torch.randperm(200, generator=g)[:5].tolist() == [14, 69, 67, 36, 72]


def test_reference_init_bound_is_one_whatever_d():
    """fan-in read as 1: the kaiming bound √3·√(1/3)/√1 = 1 for K (d, 1) and for b."""
    K = torch.cat([reference_init(50, torch.Generator().manual_seed(i)).K.detach().flatten() for i in range(20)])
    assert float(K.abs().max()) <= 1.0 and float(K.abs().max()) > 0.99
    ours = our_init(50, seed=3)
    linear = build_model("affine", 50, seed=3).linear
    assert torch.equal(ours.K.detach().T, linear.weight.detach()) and float(ours.K.detach().abs().max()) <= 50**-0.5


def test_reference_loss_is_the_mean_logistic_loss():
    z = torch.tensor([-200.0, -3.0, 0.0, 2.5, 30.0], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    expected = np.mean(np.logaddexp(0, z.numpy()) - y.numpy() * z.numpy())
    assert abs(float(reference_loss(z, y)) - expected) < 1e-12
    # all logits far below zero: the reference's shift overflows; ours stays finite and exact
    z = torch.full((3,), -120.0)
    assert torch.isfinite(reference_loss(z, torch.zeros(3, dtype=torch.int64)))


# Reference PGD (ProjectedGradientDescentv3(max_iter=5000, per_sample=True), step 0.1, r = 0.18) on the first
# batch of the seed-42 Unfair2D run, at the seed-42 initial weights (float32):
REFERENCE_FIRST_BATCH_PGD = [
    [0.19864052534103394, 0.7238022685050964],
    [0.6781173944473267, 0.01594918966293335],
    [0.6336236000061035, 0.5833929777145386],
    [0.26007458567619324, 0.8803747892379761],
    [0.7046247124671936, 0.1954214870929718],
]


def test_batch_shared_pgd_on_the_reference_first_batch():
    data = reference_unfair2d(42)
    g = torch.Generator().manual_seed(42)
    m = reference_init(2, g)
    idx = torch.randperm(200, generator=g)[:5]
    x = torch.from_numpy(data.train[0])[idx]
    y = torch.from_numpy(data.train[1])[idx].float()
    res = make_inner("pgd-paper", batch_shared=True).perturb(m, x, y, 0.18)
    torch.testing.assert_close(res.x_adv, torch.tensor(REFERENCE_FIRST_BATCH_PGD), rtol=0, atol=2e-6)


# ----------------------------------------------------------------------------------------------------------
# The reference's rows
# ----------------------------------------------------------------------------------------------------------


def test_unfair2d_nonrobust_row():
    """Reference: train / val / test 79.5 / 79.3333 / 78.0; train selection rates 0.5347 (s=0), 0.6869 (s=1)."""
    r = run_reference_cell(dataset="unfair2d")
    assert (r["train_accuracy"], r["test_accuracy"]) == (0.795, 0.78)
    assert abs(r["val_accuracy"] - 238 / 300) < 1e-12
    assert abs(r["train_independence"] - (68 / 99 - 54 / 101)) < 1e-12  # 0.152215


@pytest.mark.slow
def test_unfair2d_pgd_row():
    """Reference PGD, r = 0.18: 73.5 / 75.0 / 73.0; train selection rates 0.2376 (s=0), 0.2626 (s=1)."""
    r = run_reference_cell(dataset="unfair2d", solver="pgd-paper", radius=0.18)
    assert (r["train_accuracy"], r["val_accuracy"], r["test_accuracy"]) == (0.735, 0.75, 0.73)
    assert abs(r["train_independence"] - (26 / 99 - 24 / 101)) < 1e-12  # 0.025003


@pytest.mark.slow
def test_unfair2d_trs_row():
    """Reference TRS, r = 0.18: the same 73.5 / 75.0 / 73.0 and independence gap 0.025 as its PGD."""
    r = run_reference_cell(dataset="unfair2d", solver="trs-paper", radius=0.18)
    assert (r["train_accuracy"], r["val_accuracy"], r["test_accuracy"]) == (0.735, 0.75, 0.73)
    assert abs(r["train_independence"] - (26 / 99 - 24 / 101)) < 1e-12


def test_trs_paper_on_the_reference_first_batch():
    """For the affine model the reference's TRS step on its first batch lands where its PGD does (on the sphere
    along ±w, the exact maximiser at this radius)."""
    data = reference_unfair2d(42)
    g = torch.Generator().manual_seed(42)
    m = reference_init(2, g)
    idx = torch.randperm(200, generator=g)[:5]
    x = torch.from_numpy(data.train[0])[idx]
    y = torch.from_numpy(data.train[1])[idx].float()
    res = cell_solver("trs-paper").perturb(m, x, y, 0.18)
    torch.testing.assert_close(res.x_adv, torch.tensor(REFERENCE_FIRST_BATCH_PGD), rtol=0, atol=2e-6)


def test_adult_trs_row():
    """Reference TRS r = 0.1, 1 epoch: 78.29 / 78.0629 / 78.3784."""
    r = run_reference_cell(dataset="adult", solver="trs-paper", radius=0.1, epochs=1)
    assert r["train_accuracy"] == 0.7829
    assert round(100 * r["val_accuracy"], 4) == 78.0629 and round(100 * r["test_accuracy"], 4) == 78.3784


def test_adult_reference_records_and_labels():
    """Independent reading of the bundled files: pandas with its default header (the first record becomes the
    header) for adult.data, header=1 for adult.test, standardised in float64 with the unbiased std."""
    with gzip.open(data_dir() / "adult.data.gz", "rt") as fh:
        raw = pd.read_csv(fh, sep=",")
    with gzip.open(data_dir() / "adult.test.gz", "rt") as fh:
        raw_test = pd.read_csv(fh, sep=",", header=1)
    assert (len(raw), len(raw_test)) == (32_560, 16_280)
    cols = [0, 4, 10, 11, 12]
    A = raw.iloc[:, cols].to_numpy(np.float64)
    mean, std = A.mean(0), A.std(0, ddof=1)
    data = reference_adult()
    X, y, s = data.train
    assert (len(y), len(data.val[1]), len(data.test[1])) == (10_000, 22_560, 16_280)
    np.testing.assert_allclose(X, (A[:10_000] - mean) / std, rtol=0, atol=1e-5)
    np.testing.assert_allclose(data.test[0], (raw_test.iloc[:, cols].to_numpy(np.float64) - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(y, (raw.iloc[:10_000, 14].str.strip() == "<=50K").to_numpy())
    np.testing.assert_array_equal(s, (raw.iloc[:10_000, 9].str.strip() == "Male").to_numpy())
    np.testing.assert_array_equal(data.test[1], (raw_test.iloc[:, 14].str.strip() == "<=50K.").to_numpy())


def test_adult_switches():
    ours_label = reference_adult(label="ours")
    np.testing.assert_array_equal(ours_label.train[1], 1 - reference_adult().train[1])
    ours_records = reference_adult(records="ours")
    assert ours_records.info["rows"] == (30_162, 15_060)  # every record, the rows with '?' dropped
    split = reference_adult(splits="ours", seed=1)
    ref = reference_adult()
    y_all, s_all = np.concatenate([ref.train[1], ref.val[1]]), np.concatenate([ref.train[2], ref.val[2]])
    cells = np.unique(2 * s_all + y_all, return_counts=True)[1]
    assert len(split.train[1]) == 10_000 and len(split.val[1]) == sum(round(0.2 * c) for c in cells)
    assert abs(float(np.mean(split.train[1])) - float(np.mean(split.val[1]))) < 0.01


def test_adult_nonrobust_row():
    """Reference, 10 epochs: train / val / test 81.04 / 81.5337 / 81.2408."""
    r = run_reference_cell(dataset="adult")
    assert r["train_accuracy"] == 0.8104
    assert round(100 * r["val_accuracy"], 4) == 81.5337 and round(100 * r["test_accuracy"], 4) == 81.2408


@pytest.mark.slow
def test_adult_pgd_row():
    """Reference PGD r = 0.2, 1 epoch: 77.08 / 76.5780 / 77.1806 (several minutes)."""
    r = run_reference_cell(dataset="adult", solver="pgd-paper", radius=0.2, epochs=1)
    assert r["train_accuracy"] == 0.7708
    assert round(100 * r["val_accuracy"], 4) == 76.578 and round(100 * r["test_accuracy"], 4) == 77.1806


# ----------------------------------------------------------------------------------------------------------
# Ablation and seed spread
# ----------------------------------------------------------------------------------------------------------


def test_ablation_table_is_a_paired_t_summary():
    runs = ablation_runs("unfair2d", seeds=[42, 1, 2], epochs=1, switches=("init", "splits"))
    assert len(runs) == 9 and set(runs["switch"]) == {"reference", "init", "splits"}
    table = ablation_table(runs, metrics=("train_accuracy", "test_accuracy"))
    assert len(table) == 4
    for _, row in table.iterrows():
        ref = runs[runs["switch"] == "reference"].set_index("seed")[row["metric"]]
        sw = runs[runs["switch"] == row["switch"]].set_index("seed")[row["metric"]].loc[ref.index]
        d = (sw - ref).to_numpy()
        assert abs(row["change"] - d.mean()) < 1e-12
        assert abs(row["change_at_42"] - (sw.loc[42] - ref.loc[42])) < 1e-12
        assert row["p_holm"] >= row["p_value"]
        if d.std() > 0:
            lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
            assert abs(row["ci_low"] - lo) < 1e-9 and abs(row["ci_high"] - hi) < 1e-9
            assert abs(row["p_value"] - stats.ttest_rel(sw, ref).pvalue) < 1e-9
        else:
            assert row["ci_low"] == row["ci_high"] == row["change"]
            assert row["p_value"] == (1.0 if d.mean() == 0 else 0.25)  # sign test, 3 changes of one sign


def test_holm_by_hand():
    """m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> 4·0.01, max(0.04, 3·0.02), max(0.06, 2·0.03), max(0.06, 0.5)."""
    got = holm([0.03, 0.5, float("nan"), 0.01, 0.02])
    np.testing.assert_allclose(got[[0, 1, 3, 4]], [0.06, 0.5, 0.04, 0.06], rtol=1e-12)
    assert np.isnan(got[2])
    assert holm([0.4, 0.9]).tolist() == [0.8, 0.9]


def test_seed_spread_summary_by_hand():
    frame = pd.DataFrame({"seed": [0, 1, 2, 3, 42], "test_accuracy": [0.5, 0.7, 0.6, 0.8, 0.7]})
    row = seed_spread_summary(frame, metrics=("test_accuracy",)).iloc[0]
    assert row["seeds"] == 4 and abs(row["mean"] - 0.65) < 1e-12 and row["min"] == 0.5 and row["max"] == 0.8
    assert row["value_at_42"] == 0.7 and row["share_below"] == 0.625  # 0.5, 0.6 below; 0.7 tied (half)
    with pytest.raises(FastfairError, match="two seeds"):
        seed_spread_summary(frame.iloc[[0, 4]], metrics=("test_accuracy",))


def test_seed_spread_figure(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"seed": [*range(6), 42], "test_accuracy": rng.uniform(0.5, 0.8, 7), "train_x": 0.1})
    path = seed_spread_figure(frame, tmp_path / "spread.png", metrics=("test_accuracy", "train_x"))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FastfairError, match="lacks columns"):
        seed_spread_figure(frame, tmp_path / "no.png", metrics=("val_accuracy",))
    assert not (tmp_path / "no.png").exists()


# ----------------------------------------------------------------------------------------------------------
# Bad input, and the corrected protocol's defaults untouched
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"dataset": "mnist"}, "unknown dataset"),
        ({"dataset": "unfair2d", "solver": "magic", "radius": 0.1}, "unknown solver"),
        ({"dataset": "unfair2d", "solver": "trs", "radius": 0.0}, "needs a radius"),
        ({"dataset": "unfair2d", "radius": float("nan")}, "radius"),
        ({"dataset": "unfair2d", "epochs": 0}, "epochs"),
        ({"dataset": "adult", "label": "flipped"}, "label must be"),
    ],
)
def test_bad_cells_are_one_line_errors(fields, match):
    with pytest.raises(FastfairError, match=match):
        run_reference_cell(**fields)


def test_ablation_interval_needs_two_seeds():
    with pytest.raises(FastfairError, match="at least two seeds"):
        ablation_table(ablation_runs("unfair2d", seeds=[42], epochs=1, switches=("init",)))


def test_solver_names_resolve():
    assert cell_solver("none") is None
    assert cell_solver("pgd-paper").options()["batch_shared"] is True
    assert cell_solver("pgd-paper-per-sample").options()["batch_shared"] is False
    ReferenceCell(dataset="unfair2d").validate()


def test_corrected_protocol_defaults_unchanged():
    assert [(p.name, p.batch_size, p.train_size) for p in paper_protocol.FULL] == [
        ("unfair2d", 5, None),
        ("adult", 100, 10_000),
        ("lsat", 5, None),
    ]
    data = load("unfair2d", seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (400, 100, 100)
    assert load("adult").info["label"] == "y = 1 if income >50K"
    assert make_inner("pgd-paper").options()["batch_shared"] is False


def test_reference_rows_compare_with_the_published_numbers(monkeypatch, tmp_path):
    from fastfair.reference import reproduce

    rows = reproduce.reference_rows([ReferenceCell("unfair2d")])
    assert rows.loc[0, "protocol"] == "reference" and bool(rows.loc[0, "matches"])
    assert rows.loc[0, "published_test"] == 78.0
    wrong = dict(reproduce.PUBLISHED)
    wrong[("unfair2d", "none", 0.0, 10)] = {"train": 79.4, "val": 79.3333, "test": 78.0}
    monkeypatch.setattr(reproduce, "PUBLISHED", wrong)
    assert not bool(reproduce.reference_rows([ReferenceCell("unfair2d")]).loc[0, "matches"])
    other_seed = reproduce.reference_rows([ReferenceCell("unfair2d", seed=1)])
    assert "matches" not in other_seed  # the published numbers are seed 42's
    spread = pd.DataFrame(
        {
            "metric": ["test_accuracy"],
            "seeds": [20],
            "mean": [0.55],
            "ci_low": [0.5],
            "ci_high": [0.6],
            "min": [0.5],
            "max": [0.8],
            "value_at_42": [0.73],
            "share_below": [0.95],
        }
    )
    ablation = pd.DataFrame(
        {
            "dataset": ["adult", "adult"],
            "switch": ["records", "init"],
            "metric": ["test_accuracy"] * 2,
            "change": [-0.006, 0.001],
            "ci_low": [-0.007, -0.001],
            "ci_high": [-0.005, 0.003],
            "p_value": [1e-6, 0.4],
            "p_holm": [2e-6, 0.4],
        }
    )
    text = reproduce.reference_section(rows, spread, ablation)
    assert "| unfair2d | none | 0 | 10 | 79.50 | 79.3333 | 78.0000 | 0.152 | 79.5 / 79.3333 / 78 | yes |" in text
    assert "above 95% of the other seeds" in text and "adult records changes test_accuracy by -0.006" in text
    assert "init" not in text.split("Ablation")[1] and "LSAT cannot be reproduced" in text
