"""The manifest of a results directory: versions, commit, machine, threads and data checksums."""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from fastfair import cli
from fastfair.compare.protocol import compare_plan
from fastfair.compare.run import run_compare
from fastfair.datasets import _bundled
from fastfair.experiments import DataSpec
from fastfair.experiments import manifest as mf
from fastfair.reference import reproduce as ref_reproduce
from helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
LOANS = ROOT / "examples" / "loans.csv"
PACKAGE = ROOT / "src" / "fastfair"
TOP_KEYS = {"format", "created", "versions", "python", "git_commit", "threads", "machine", "data"}
TINY = ("--solvers", "none", "--epochs", "1", "--batch-size", "50", "--no-progress")


@pytest.fixture(autouse=True)
def _register(monkeypatch):
    for name in ("sweep", "reproduce", "compare"):
        monkeypatch.setitem(cli.SUBCOMMANDS, name, name)


def original_sha256(name: str) -> str:
    """sha256 of a bundled original file, computed here from the package's .gz file."""
    stored = _bundled.PACKAGE_DATA_DIR / _bundled.file_record(name)["stored_as"]
    return hashlib.sha256(gzip.decompress(stored.read_bytes())).hexdigest()


def read_manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------------------
# the manifest itself
# ------------------------------------------------------------------------------------------------------------


def test_keys_types_and_versions_equal_the_installed_ones():
    m = mf.run_manifest(["unfair2d"])
    assert set(m) == TOP_KEYS
    json.dumps(m, allow_nan=False)  # JSON-able as it is
    for name in ("fastfair", "torch", "numpy", "pandas", "scikit-learn", "fairlearn"):
        assert m["versions"][name] == importlib.metadata.version(name)
    assert m["python"]["version"] == platform.python_version()
    assert isinstance(m["threads"]["torch_threads"], int) and m["threads"]["torch_threads"] >= 1
    assert isinstance(m["threads"]["torch_interop_threads"], int)
    assert m["machine"]["cpu_count"] == os.cpu_count()
    assert isinstance(m["machine"]["platform"], str) and m["machine"]["cuda_devices"] == []
    assert m["git_commit"] is None or (isinstance(m["git_commit"], str) and len(m["git_commit"]) == 40)
    assert m["data"] == []  # Unfair2D is generated: no file


def test_bundled_checksums_equal_sha256_of_the_original_files():
    m = mf.run_manifest(["adult", "lsat", "adult"])
    got = {(e["dataset"], e["file"]): e["sha256"] for e in m["data"]}
    assert list(got) == [("adult", "adult.data"), ("adult", "adult.test"), ("lsat", "law.csv")]
    for (_, name), sha in got.items():
        assert sha == original_sha256(name)


def test_a_corrupted_bundled_file_is_refused_not_recorded(tmp_path, monkeypatch):
    shutil.copy(_bundled.PACKAGE_DATA_DIR / "law.csv.gz", tmp_path / "law.csv.gz")
    with gzip.open(tmp_path / "law.csv.gz", "ab") as fh:
        fh.write(b"1,2,3\n")
    monkeypatch.setenv(_bundled.ENV_VAR, str(tmp_path))
    with pytest.raises(mf.FastfairError, match="checksum mismatch"):
        mf.run_manifest(["lsat"])


def test_a_user_file_checksum_is_sha256_of_its_bytes(tmp_path):
    spec = DataSpec(label="loans", csv=str(LOANS), csv_sha256="recorded", target="approved", sensitive="region")
    expected = hashlib.sha256(LOANS.read_bytes()).hexdigest()
    m = mf.run_manifest([spec, LOANS])
    assert m["data"] == [{"source": "csv", "dataset": "loans", "file": str(LOANS), "sha256": expected}]
    gone = replace(spec, csv=str(tmp_path / "moved.csv"))
    (entry,) = mf.run_manifest([gone])["data"]
    assert entry["sha256"] == "recorded" and entry["missing"] is True


def test_an_unknown_bundled_dataset_is_a_one_line_error():
    with pytest.raises(mf.FastfairError, match="unknown bundled dataset 'mnist'"):
        mf.run_manifest(["mnist"])


def test_the_commit_is_that_of_the_source_tree():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("the sources are not a git checkout here")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE, capture_output=True, text=True, check=True)
    assert mf.git_commit(PACKAGE) == head.stdout.strip()


def test_a_directory_outside_any_checkout_has_no_commit(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    assert mf.git_commit(tmp_path) is None


def test_no_git_on_the_path_is_no_commit_and_no_failure(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no git executable anywhere
    assert mf.git_commit() is None
    assert mf.run_manifest(["unfair2d"])["git_commit"] is None


@pytest.mark.parametrize(
    "error", [subprocess.TimeoutExpired(["git"], 5.0), PermissionError("denied"), FileNotFoundError("git")]
)
def test_a_git_that_hangs_or_cannot_start_is_no_commit(monkeypatch, error):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(mf.subprocess, "run", broken)
    assert mf.run_manifest()["git_commit"] is None


def test_a_cuda_device_that_is_absent_is_recorded_not_fatal():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (entry,) = mf.machine_info(["cpu", "cuda:0"])["cuda_devices"]
    assert entry["device"] == "cuda:0" and entry["name"] is None


# ------------------------------------------------------------------------------------------------------------
# every results directory carries one
# ------------------------------------------------------------------------------------------------------------


def test_a_sweep_writes_it_and_a_rerun_refreshes_it(capsys, tmp_path):
    out = tmp_path / "sweep"
    argv = ("sweep", "--dataset", "unfair2d", *TINY, "--out", str(out))
    assert run_cli(capsys, *argv)[0] == 0
    m = read_manifest(out)
    assert set(m) == TOP_KEYS | {"run"} and m["data"] == []
    assert m["run"]["command"] == "sweep" and m["run"]["cells"] == 1 and m["run"]["to_run"] == 1
    assert m["versions"]["torch"] == importlib.metadata.version("torch")
    (out / "manifest.json").write_text("stale")
    assert run_cli(capsys, *argv)[0] == 0  # resume: nothing to run, the manifest is written again
    again = read_manifest(out)
    assert again["run"]["to_run"] == 0 and again["versions"] == m["versions"]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_csv_sweep_records_the_checksum_of_the_file(capsys, tmp_path):
    out = tmp_path / "loans"
    argv = ("sweep", "--data", str(LOANS), "--target", "approved", "--sensitive", "region", "--positive", "yes")
    assert run_cli(capsys, *argv, *TINY, "--out", str(out))[0] == 0
    (entry,) = read_manifest(out)["data"]
    assert entry["source"] == "csv" and Path(entry["file"]).resolve() == LOANS.resolve()
    assert entry["sha256"] == hashlib.sha256(LOANS.read_bytes()).hexdigest()


def test_bad_input_writes_no_manifest(capsys, tmp_path):
    out = tmp_path / "bad"
    code, _, err = run_cli(capsys, "sweep", "--dataset", "unfair2d", "--radii", "0", "--solvers", "trs",
                           "--out", str(out))  # fmt: skip
    assert code == 2 and err.startswith("fastfair: error:")
    assert not (out / "manifest.json").exists()


def test_a_comparison_writes_it(tmp_path):
    plan = compare_plan(DataSpec(label="unfair2d", name="unfair2d"), quick=True, seeds=1)
    knobs = replace(plan.knobs, methods=("none",), epochs=1, batch_size=50, robustness_radii=(0.1,))
    run_compare([replace(plan, knobs=knobs)], tmp_path, progress=False, report=False)
    m = read_manifest(tmp_path)
    assert m["run"]["command"] == "compare" and m["versions"]["fairlearn"] == importlib.metadata.version("fairlearn")


def test_a_reference_run_writes_it_in_its_set(tmp_path, monkeypatch):
    monkeypatch.setattr(ref_reproduce, "reference_section", lambda *args: "# reference\n")
    rows = pd.DataFrame({"protocol": ["reference"] * 3, "dataset": ["unfair2d", "adult", "adult"]})
    outputs = ref_reproduce.ReferenceOutputs(rows=rows, quick=True)
    written = ref_reproduce.write_reference_files(outputs, tmp_path)
    assert written["manifest_json"] == tmp_path / "manifest.json"
    m = read_manifest(tmp_path)
    assert [(e["dataset"], e["file"]) for e in m["data"]] == [("adult", "adult.data"), ("adult", "adult.test")]
    assert [e["sha256"] for e in m["data"]] == [original_sha256("adult.data"), original_sha256("adult.test")]
    assert ref_reproduce.is_reference_run(tmp_path)  # a later reference run may still replace this set
