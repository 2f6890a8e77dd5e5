"""Test-suite settings shared by every module.

Hypothesis runs derandomized (a fixed example sequence per test) and without an example database, so that a
CI run is reproducible and a failure seen once is seen again. Set ``HYPOTHESIS_PROFILE=explore`` to draw fresh
random examples on every run instead.

``single_threaded_linear_algebra`` runs a module on one thread (``pytestmark =
pytest.mark.usefixtures("single_threaded_linear_algebra")``): for the tests that make many tiny per-sample
LAPACK calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import settings
from threadpoolctl import threadpool_limits

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def single_threaded_linear_algebra() -> Iterator[None]:
    """One thread for torch and for numpy/scipy's BLAS and LAPACK while a module runs, restored after it: tiny
    per-sample LAPACK calls are fastest on one thread, and multi-threaded BLAS and torch slow down by 10-50x on an
    oversubscribed machine (shared CI runners)."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(torch_threads)
