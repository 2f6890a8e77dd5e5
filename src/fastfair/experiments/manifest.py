"""The manifest of a results directory: what produced it, on what, from which data.

Every results directory (``sweep``, ``reproduce``, ``compare``, ``reproduce --protocol reference``) carries a
``manifest.json`` written by :func:`write_manifest`; a re-run into the same directory refreshes it. It records

* ``versions``: the installed versions of fastfair, torch, numpy, pandas, scikit-learn and Fairlearn
  (:func:`importlib.metadata.version`; ``None`` for a package that is not installed) and of Python;
* ``git_commit``: ``git rev-parse HEAD`` of the fastfair source tree when it is a git checkout in which the
  package's files are tracked, else ``None`` (git missing, slow or failing never fails a run);
* ``threads``: torch's intra-op and inter-op thread counts in the writing process;
* ``machine``: platform, CPU model and counts, and the names of the CUDA devices the run used (none for CPU);
* ``data``: one entry per data file used, with its sha256. A bundled dataset's files are read and verified by
  :mod:`fastfair.datasets` against ``provenance.json`` (the sha256 of the original, decompressed file); a user
  CSV is hashed as it is on disk now.

::

    from fastfair.experiments.manifest import run_manifest
    run_manifest(["adult"])["data"][0]["sha256"]    # sha256 of the original adult.data
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import FastfairError, require
from ..io import atomic_write_json

#: File name of the manifest inside a results directory.
MANIFEST_NAME = "manifest.json"
#: Format tag written into every manifest.
MANIFEST_FORMAT = "fastfair run manifest, version 1"
#: Distributions whose installed versions the manifest records (distribution name as pip knows it).
PACKAGES = ("fastfair", "torch", "numpy", "pandas", "scikit-learn", "fairlearn")
#: The bundled original files each bundled dataset reads (Unfair2D is generated and reads none).
BUNDLED_FILES: dict[str, tuple[str, ...]] = {
    "adult": ("adult.data", "adult.test"),
    "colored_digits": (),  # scikit-learn's own digits: bundled_data_files records their verified sha256
    "lsat": ("law.csv",),
    "unfair2d": (),
}
#: Seconds a git call may take before the commit is recorded as unknown.
GIT_TIMEOUT = 5.0

#: What :func:`run_manifest` accepts as one data source: a bundled dataset's name (``str``), a path to a user
#: file (``os.PathLike``), or a :class:`fastfair.experiments.DataSpec` (bundled or CSV).
DataSource = Any


def package_versions() -> dict[str, str | None]:
    """``{distribution: installed version or None}`` for :data:`PACKAGES`."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(args: list[str], cwd: Path) -> str | None:
    """stdout of ``git <args>`` run in ``cwd``, stripped; None if git is missing, fails or times out."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def git_commit(source: str | os.PathLike[str] | None = None) -> str | None:
    """The commit (40 hex digits) checked out in the git tree holding ``source`` (default: the fastfair
    package), or None when it is not in a git checkout, the package's files are not tracked there (e.g. an
    installed copy inside some other repository), or git is unavailable. Never raises."""
    where = Path(source) if source is not None else Path(__file__).resolve().parent.parent
    if not where.is_dir():
        return None
    if _git(["ls-files", "--error-unmatch", "__init__.py"], where) is None:
        return None
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None or len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit.lower()):
        return None
    return commit


def _cpu_model() -> str | None:
    """The CPU's model name: ``/proc/cpuinfo`` on Linux, else :func:`platform.processor`; None if unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info(devices: Iterable[str] = ("cpu",)) -> dict[str, Any]:
    """Platform, CPU model, logical CPU count (and how many this process may use), and the names of the CUDA
    devices among ``devices`` (device strings such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``)."""
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    cuda: list[dict[str, Any]] = []
    wanted = sorted({str(d) for d in devices if str(d).startswith("cuda")})
    if wanted:
        import torch

        for name in wanted:
            try:
                index = torch.device(name).index
                index = torch.cuda.current_device() if index is None else index
                cuda.append({"device": name, "name": torch.cuda.get_device_name(index)})
            except (RuntimeError, AssertionError, ValueError) as exc:  # no CUDA here: say so, do not fail
                cuda.append({"device": name, "name": None, "error": str(exc).splitlines()[0] if str(exc) else ""})
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "cuda_devices": cuda,
    }


def thread_info() -> dict[str, int]:
    """torch's intra-op and inter-op thread counts in this process."""
    import torch

    return {
        "torch_threads": int(torch.get_num_threads()),
        "torch_interop_threads": int(torch.get_num_interop_threads()),
    }


def bundled_data_files(dataset: str) -> list[dict[str, Any]]:
    """One entry per bundled file that dataset ``dataset`` reads: ``{"source": "bundled", "dataset", "file",
    "sha256"}``. The file is read through :func:`fastfair.datasets._bundled.read_bundled`, which verifies the
    sha256 of its decompressed bytes against ``provenance.json`` (FastfairError on a mismatch), so the recorded
    checksum is that of the bytes actually used."""
    from ..datasets._bundled import file_record, read_bundled

    require(
        dataset in BUNDLED_FILES,
        f"unknown bundled dataset {dataset!r}; choose one of {', '.join(sorted(BUNDLED_FILES))}",
    )
    entries = []
    if dataset == "colored_digits":  # data shipped inside scikit-learn, checked against its sha256 on load
        from ..datasets.colored_digits import DIGITS_SHA256, _digits

        _digits()  # raises if the installed digits are not the ones checksummed
        file = "sklearn.datasets.load_digits (pixels then targets, uint8)"
        entries.append({"source": "scikit-learn", "dataset": dataset, "file": file, "sha256": DIGITS_SHA256})
    for name in BUNDLED_FILES[dataset]:
        read_bundled(name)
        entries.append({"source": "bundled", "dataset": dataset, "file": name, "sha256": file_record(name)["sha256"]})
    return entries


def user_file(path: str | os.PathLike[str], *, label: str | None = None, expected: str | None = None) -> dict[str, Any]:
    """``{"source": "csv", "dataset", "file", "sha256"}`` of a user file, hashed as it is on disk now.

    If the file cannot be read any more (e.g. a resumed run whose CSV was moved), ``sha256`` is ``expected``
    (the checksum recorded when the run was planned, if any) and ``"missing": True`` says so."""
    from ..datasets.user_csv import file_sha256

    entry: dict[str, Any] = {"source": "csv", "dataset": label, "file": str(path)}
    try:
        entry["sha256"] = file_sha256(path)
    except (FastfairError, OSError):
        entry["sha256"] = expected
        entry["missing"] = True
    return entry


def checksummed_files(data: Iterable[DataSource]) -> list[dict[str, Any]]:
    """The checksummed data files behind ``data`` (see :data:`DataSource`), each file once, in first-use order."""
    entries: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for item in data:
        if isinstance(item, str):
            found = bundled_data_files(item)
        elif isinstance(item, os.PathLike):
            found = [user_file(item)]
        elif getattr(item, "csv", None) is not None:
            found = [user_file(item.csv, label=item.label, expected=getattr(item, "csv_sha256", None))]
        elif getattr(item, "name", None) is not None:
            found = bundled_data_files(str(item.name))
        else:
            raise FastfairError(f"cannot tell which data files {item!r} uses")
        for entry in found:
            key = (entry["source"], entry["file"])
            if key not in seen:
                seen.add(key)
                entries.append(entry)
    return entries


def run_manifest(
    data_files: Iterable[DataSource] = (),
    *,
    devices: Iterable[str] = ("cpu",),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a run that used ``data_files`` (bundled dataset names, paths, or DataSpecs) on
    ``devices``: a JSON-able dict with ``format``, ``created`` (UTC, ISO 8601), ``versions``, ``python``,
    ``git_commit``, ``threads``, ``machine``, ``data`` and, if given, ``extra`` (e.g. the executor)."""
    versions = package_versions()
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "git_commit": git_commit(),
        "threads": thread_info(),
        "machine": machine_info(devices),
        "data": checksummed_files(data_files),
    }
    if extra:
        manifest["run"] = dict(extra)
    return manifest


def write_manifest(
    out_dir: str | os.PathLike[str],
    data_files: Iterable[DataSource] = (),
    *,
    devices: Iterable[str] = ("cpu",),
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write :func:`run_manifest` atomically as ``out_dir/manifest.json`` (replacing an earlier one)."""
    manifest = run_manifest(data_files, devices=devices, extra=extra)
    return atomic_write_json(Path(out_dir) / MANIFEST_NAME, manifest)


__all__ = [
    "BUNDLED_FILES",
    "MANIFEST_NAME",
    "PACKAGES",
    "bundled_data_files",
    "checksummed_files",
    "git_commit",
    "machine_info",
    "package_versions",
    "run_manifest",
    "thread_info",
    "user_file",
    "write_manifest",
]
