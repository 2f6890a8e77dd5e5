"""`fastfair reproduce --protocol reference`: the authors' rows printed beside the published ones, its files
written as one set with its report, one-line errors for options that do not apply, and the corrected default
untouched.

The published numbers are those the authors' code prints when run as published (see
``tests/test_reference_protocol.py``); the real quick run, which trains four cells, is the slow test.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fastfair.cli import reproduce as cli_reproduce
from fastfair.errors import FastfairError
from fastfair.experiments import paper_protocol
from fastfair.reference import ablation as ref_ablation
from fastfair.reference import reproduce as ref_reproduce
from fastfair.reference.protocol import ReferenceCell
from fastfair.vocabulary import GAP_KEYS, SPLITS
from helpers import run_cli

# ----------------------------------------------------------------------------------------------------------
# A tiny stand-in engine: every cell returns made-up metrics at once (seed 42's reference cells: the published
# numbers), so that the wiring of the full run can be tested in well under a second.
# ----------------------------------------------------------------------------------------------------------


#: What the authors' code prints (taken before any test patches the module's table).
PRINTED = dict(ref_reproduce.PUBLISHED)


#: What a reference run with its report writes.
REPORTED_RUN_FILES = ["manifest.json", "reference.md", "report.html", "report.md", "results.csv"]


def fake_cell(cell: ReferenceCell | None = None, /, **fields: Any) -> dict[str, Any]:
    cell = replace(cell, **fields) if cell is not None else ReferenceCell(**fields)
    cell.validate()
    rng = np.random.default_rng([cell.seed, len(cell.solver), int(1000 * cell.radius)])
    # the init switch raises every accuracy by about 0.04 (a large, systematic change); nothing else moves much
    shift = (0.04 + 0.002 * np.random.default_rng([cell.seed, 7]).standard_normal()) * (cell.init == "ours")
    out: dict[str, Any] = {**cell.describe(), "seconds": 0.0, "inner_seconds": 0.0}
    for split in SPLITS:
        out[f"{split}_accuracy"] = 0.7 + 0.02 * rng.standard_normal()
        for gap in GAP_KEYS:
            out[f"{split}_{gap}"] = abs(0.1 + 0.03 * rng.standard_normal())
    published = PRINTED.get((cell.dataset, cell.solver, round(cell.radius, 10), cell.epochs))
    if published and cell.seed == 42 and cell.draw == cell.splits == cell.records == cell.label == "reference":
        for split in SPLITS:
            out[f"{split}_accuracy"] = published[split] / 100
        out["train_independence"] = published.get("train_independence", 0.05)
    for split in SPLITS:
        out[f"{split}_accuracy"] += shift
    return out


@pytest.fixture
def fake_engine(monkeypatch):
    monkeypatch.setattr(ref_reproduce, "run_reference_cell", fake_cell)
    monkeypatch.setattr(ref_ablation, "run_reference_cell", fake_cell)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, "reproduce", "--protocol", "reference", "--no-progress", *argv)


# ----------------------------------------------------------------------------------------------------------
# The published rows
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_reference_run_prints_the_published_rows(capsys, tmp_path):
    """The real quick run: the four headline cells give exactly what the authors' code prints."""
    out_dir = tmp_path / "ref"
    code, out, err = run(capsys, "--quick", "--out", str(out_dir))
    assert code == 0, err
    lines = out.splitlines()
    expected = [
        ("unfair2d", "none", "79.50", "79.3333", "78.0000", "0.152", "79.5 / 79.3333 / 78"),
        ("unfair2d", "trs-paper", "73.50", "75.0000", "73.0000", "0.025", "73.5 / 75 / 73"),
        ("adult", "none", "81.04", "81.5337", "81.2408", "", "81.04 / 81.5337 / 81.2408"),
        ("adult", "trs-paper", "78.29", "78.0629", "78.3784", "", "78.29 / 78.0629 / 78.3784"),
    ]
    for dataset, solver, train, val, test, gap, published in expected:
        row = next(line for line in lines if line.split()[:2] == [dataset, solver])
        assert row.split()[4:7] == [train, val, test] and published in row and row.rstrip().endswith("yes")
        assert not gap or row.split()[7] == gap
    results = pd.read_csv(out_dir / "results.csv")
    assert (results["protocol"] == "reference").all() and results["matches"].all()
    assert sorted(p.name for p in out_dir.iterdir()) == REPORTED_RUN_FILES
    assert (
        "| unfair2d | trs-paper | 0.18 | 10 | 42 | 73.50 / 75.0000 / 73.0000 |" in (out_dir / "report.md").read_text()
    )


@pytest.mark.slow
def test_a_real_reference_cell_is_printed_beside_its_published_row(capsys, tmp_path, monkeypatch):
    """The CLI on one real cell (Unfair2D non-robust, seed 42, a few seconds): the reference prints 79.5 / 79.3333
    / 78.0 and an independence gap of 68/99 - 54/101 = 0.152."""
    monkeypatch.setattr(ref_reproduce, "QUICK_CELLS", (ReferenceCell("unfair2d"),))
    out_dir = tmp_path / "ref"
    code, out, err = run(capsys, "--quick", "--out", str(out_dir))
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.split()[:2] == ["unfair2d", "none"])
    assert row.split()[4:8] == ["79.50", "79.3333", "78.0000", "0.152"]
    assert "79.5 / 79.3333 / 78" in row and row.split()[-2:] == ["0.152", "yes"]
    assert f"reference section: {out_dir / 'reference.md'}" in out
    results = pd.read_csv(out_dir / "results.csv")
    assert (
        list(results["protocol"]) == ["reference"]
        and abs(results.loc[0, "train_independence"] - (68 / 99 - 54 / 101)) < 1e-12
    )


def test_a_mismatch_is_printed_as_such(capsys, tmp_path, monkeypatch, fake_engine):
    wrong = dict(ref_reproduce.PUBLISHED)
    wrong[("adult", "none", 0.0, 10)] = {"train": 81.05, "val": 81.5337, "test": 81.2408}
    monkeypatch.setattr(ref_reproduce, "PUBLISHED", wrong)
    code, out, err = run(capsys, "--quick", "--out", str(tmp_path / "ref"))
    assert code == 0, err
    rows = {tuple(line.split()[:2]): line for line in out.splitlines() if line.split()[:1] in (["unfair2d"], ["adult"])}
    assert rows[("adult", "none")].rstrip().endswith("NO")
    assert all(rows[k].rstrip().endswith("yes") for k in rows if k != ("adult", "none"))
    report = (tmp_path / "ref" / "report.md").read_text()
    assert "3 of 4 rows reproduce" in report and "Not reproduced: adult none (10 epochs)" in report


# ----------------------------------------------------------------------------------------------------------
# The full run's files and report
# ----------------------------------------------------------------------------------------------------------


def test_full_run_writes_the_spread_the_ablation_and_the_report(capsys, tmp_path, fake_engine):
    out_dir = tmp_path / "ref"
    code, _, err = run(capsys, "--seeds", "3", "--out", str(out_dir))
    assert code == 0, err
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted(ref_reproduce.RUN_FILES)
    results = pd.read_csv(out_dir / "results.csv")
    assert len(results) == len(ref_reproduce.FULL_CELLS) and (results["protocol"] == "reference").all()
    spread = pd.read_csv(out_dir / "seed_spread.csv")
    assert sorted(spread["seed"]) == [0, 1, 2, 42]
    runs = pd.read_csv(out_dir / "ablation_runs.csv")
    # 6 seeds x (reference + unfair2d's 4 switches, and reference + adult's 5 switches)
    assert len(runs) == 6 * (5 + 6) and sorted(runs["seed"].unique()) == [0, 1, 2, 3, 4, 42]
    table = pd.read_csv(out_dir / "ablation.csv")
    assert set(table["dataset"]) == {"unfair2d", "adult"}
    # the change is the mean over seeds of the paired difference, recomputed here from the runs behind it
    for dataset in ("unfair2d", "adult"):
        r = runs[runs["dataset"] == dataset]
        ref = r[r["switch"] == "reference"].set_index("seed")["test_accuracy"]
        init = r[r["switch"] == "init"].set_index("seed")["test_accuracy"]
        row = table[(table["dataset"] == dataset) & (table["switch"] == "init") & (table["metric"] == "test_accuracy")]
        assert row["change"].item() == pytest.approx((init - ref).mean(), abs=1e-12)
        assert row["change"].item() == pytest.approx(0.04, abs=0.005) and row["p_holm"].item() <= 0.05
    report = (out_dir / "report.md").read_text()
    assert "![seed_spread.png](seed_spread.png)" in report and "Holm" in report
    assert "| unfair2d | init | test_accuracy (pp) | 6 | +4." in report and "| significant |" in report
    assert "LSAT cannot be reproduced exactly offline" in report
    html = (out_dir / "report.html").read_text()
    assert '<img src="seed_spread.png"' in html and "<table" in html and "LSAT" in html


def test_holm_covers_every_claim_of_both_datasets(fake_engine):
    """The adjusted p-values are those of Holm's step-down procedure run over the whole table: a claim is
    rejected at level α by the procedure (reject p₍ᵢ₎ while p₍ᵢ₎ ≤ α/(m - i + 1)) exactly when p_holm ≤ α."""
    outputs = ref_reproduce.run_reference_protocol(quick=False, spread_seeds=2, ablation_seeds=6)
    table = outputs.ablation
    p = table["p_value"].to_numpy(float)
    assert np.isfinite(p).all() and set(table["dataset"]) == {"unfair2d", "adult"}
    m = len(p)
    assert (table["p_holm"] <= 0.05).any() and (table["p_holm"] > 0.05).any()
    for alpha in sorted(a for a in {*p, *(p * m), 0.05, 0.5} if a < 1):
        rejected = np.zeros(m, bool)
        for i, idx in enumerate(np.argsort(p, kind="stable")):
            if p[idx] > alpha / (m - i):
                break
            rejected[idx] = True
        np.testing.assert_array_equal(rejected, table["p_holm"].to_numpy(float) <= alpha * (1 + 1e-12))


# ----------------------------------------------------------------------------------------------------------
# All or nothing
# ----------------------------------------------------------------------------------------------------------


def test_an_interrupted_run_writes_nothing_and_keeps_an_earlier_run(capsys, tmp_path, monkeypatch, fake_engine):
    out_dir = tmp_path / "ref"
    assert run(capsys, "--quick", "--out", str(out_dir))[0] == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    calls = []

    def interrupted(cell=None, /, **fields):
        calls.append(cell)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return fake_cell(cell, **fields)

    monkeypatch.setattr(ref_reproduce, "run_reference_cell", interrupted)
    code, _, err = run(capsys, "--quick", "--out", str(out_dir))
    assert code == 130 and err.splitlines()[-1] == (
        "fastfair: interrupted; a reference run writes its files only once every cell has finished: "
        "the earlier reference run there is intact"
    )
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ref"]  # no temporary directory left beside it
    calls.clear()
    fresh = tmp_path / "fresh"
    code, _, err = run(capsys, "--quick", "--out", str(fresh))
    assert code == 130 and "nothing was written there" in err and not fresh.exists()


def test_a_rerun_replaces_an_earlier_reference_run(capsys, tmp_path, fake_engine):
    out_dir = tmp_path / "ref"
    assert run(capsys, "--seeds", "2", "--out", str(out_dir))[0] == 0
    assert (out_dir / "ablation.csv").is_file()
    assert ref_reproduce.is_reference_run(out_dir)
    assert run(capsys, "--quick", "--out", str(out_dir))[0] == 0  # the quick set replaces the full one
    assert sorted(p.name for p in out_dir.iterdir()) == REPORTED_RUN_FILES


def test_the_library_writer_writes_one_set(tmp_path, fake_engine):
    written = ref_reproduce.write_reference_outputs(tmp_path / "ref", quick=True)
    assert sorted(written) == ["manifest_json", "reference_md", "results_csv"]
    assert all(path.parent == tmp_path / "ref" and path.is_file() for path in written.values())
    assert [p.name for p in tmp_path.iterdir()] == ["ref"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FastfairError, match="not a reference-protocol run"):
        ref_reproduce.write_reference_outputs(tmp_path / "other", quick=True)
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]


def test_no_report_writes_the_reference_files_only(capsys, tmp_path, fake_engine):
    code, out, err = run(capsys, "--quick", "--no-report", "--out", str(tmp_path / "ref"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == ["manifest.json", "reference.md", "results.csv"]
    assert "report:" not in out


def test_json_summary(capsys, tmp_path, fake_engine):
    code, out, err = run(capsys, "--quick", "--json", "--out", str(tmp_path / "ref"))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["protocol"] == "reference" and doc["quick"] is True
    assert [(r["dataset"], r["solver"], r["matches"]) for r in doc["rows"]] == [
        ("unfair2d", "none", True),
        ("unfair2d", "trs-paper", True),
        ("adult", "none", True),
        ("adult", "trs-paper", True),
    ]
    assert Path(doc["files"]["report_md"]).is_file()


# ----------------------------------------------------------------------------------------------------------
# Options that do not apply: one line, exit 2, nothing written
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--jobs", "2"], "--jobs does not apply to --protocol reference"),
        (["--scheduler", "tcp://host:8786"], "--scheduler does not apply to --protocol reference"),
        (["--pgd-paper-seeds", "1"], "--pgd-paper-seeds does not apply to --protocol reference"),
        (["--allow-large"], "--allow-large does not apply to --protocol reference"),
        (["--quick", "--seeds", "5"], "--seeds does not apply to --protocol reference --quick"),
        (["--seeds", "1"], "--seeds must be at least 2"),
    ],
)
def test_options_that_do_not_apply_are_one_line_errors(capsys, tmp_path, fake_engine, argv, message):
    out_dir = tmp_path / "ref"
    code, out, err = run(capsys, *argv, "--out", str(out_dir))
    assert code == 2 and out == "" and err.startswith(f"fastfair: error: {message}") and len(err.splitlines()) == 1
    assert not out_dir.exists()


def test_an_out_dir_holding_other_files_is_refused(capsys, tmp_path, fake_engine):
    out_dir = tmp_path / "corrected"
    (out_dir / "cells").mkdir(parents=True)
    (out_dir / "results.csv").write_text("cell_id,split\n")
    code, _, err = run(capsys, "--quick", "--out", str(out_dir))
    assert code == 2 and "holds files that are not a reference-protocol run" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in out_dir.iterdir()) == ["cells", "results.csv"]
    assert (out_dir / "results.csv").read_text() == "cell_id,split\n"
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "--quick", "--out", str(tmp_path / "file"))
    assert code == 2 and "is not a directory" in err


def test_an_unknown_protocol_is_a_one_line_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "reproduce", "--protocol", "paper", "--out", str(tmp_path / "x"))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "invalid choice: 'paper'" in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------------------------------------
# The corrected protocol stays the default
# ----------------------------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


@pytest.mark.parametrize("quick", [True, False])
def test_the_corrected_protocol_is_the_default_and_unchanged(capsys, tmp_path, monkeypatch, quick):
    grids = []

    def capture(grid, args, **kwargs):
        grids.append(grid)
        raise _Stop

    monkeypatch.setattr(cli_reproduce, "execute", capture)
    flags = ["--quick"] * quick
    for argv in ([], ["--protocol", "corrected"]):
        with pytest.raises(_Stop):
            run_cli(capsys, "reproduce", *flags, *argv, "--out", str(tmp_path / "c"))
    expected, _ = paper_protocol.paper_grid(quick=quick)
    ids = [[c.cell_id for c in g.cells()] for g in grids]
    assert ids[0] == ids[1] == [c.cell_id for c in expected.cells()]


def test_help_describes_both_protocols(capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "reproduce", "--help")
    text = capsys.readouterr().out
    assert "--protocol {corrected,reference}" in text
    assert "--protocol corrected (default)" in text and "--protocol reference: the authors' exact setup" in text
    assert "protocol reference:" in text and "cannot be resumed" in text and "LSAT is not part of it" in text


def test_the_cli_runs_the_engine_defaults():
    assert cli_reproduce.REFERENCE_SPREAD_SEEDS == ref_reproduce.SPREAD_SEEDS >= 20
    assert cli_reproduce.REFERENCE_ABLATION_SEEDS == ref_reproduce.ABLATION_SEEDS


def test_conclusions_in_plain_words():
    """Hand-made tables: one significant change, one switch that changes nothing, seeds at chance level."""
    from fastfair.report.reference import conclusions

    rows = pd.DataFrame(
        {"dataset": ["adult"], "solver": ["none"], "radius": [0.0], "epochs": [10], "seed": [42], "matches": [True]}
    )
    ablation = pd.DataFrame(
        {
            "dataset": ["adult"] * 3,
            "switch": ["records", "solver", "solver"],
            "metric": ["test_sufficiency_ppv", "test_accuracy", "train_accuracy"],
            "change": [0.007, 0.0, 0.0],
            "ci_low": [0.005, 0.0, 0.0],
            "ci_high": [0.008, 0.0, 0.0],
            "p_value": [8e-5, 1.0, 1.0],
            "p_holm": [2.4e-4, 1.0, 1.0],
        }
    )
    spread = pd.DataFrame({"seed": [0, 1, 2, 42], "test_accuracy": [0.5, 0.51, 0.8, 0.73]})
    summary = pd.DataFrame(
        {
            "metric": ["test_accuracy"],
            "seeds": [3],
            "mean": [0.603],
            "ci_low": [0.2],
            "ci_high": [1.0],
            "min": [0.5],
            "max": [0.8],
            "value_at_42": [0.73],
            "share_below": [2 / 3],
        }
    )
    text = " ".join(conclusions(rows, summary, ablation, spread))
    assert "1 of 1 rows reproduce" in text and "not from the implementation" in text
    assert "1 change is significant, from adult `records` (test Sufficiency (PPV))" in text
    assert "Identical results on every seed (every metric unchanged): adult `solver`" in text
    assert "2 of 3 other seeds end at chance level" in text and "Seed 42 is a typical draw" in text
    assert "LSAT cannot be reproduced exactly offline" in text
