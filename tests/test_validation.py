"""One semantics for user options (:mod:`fastfair.validation`), the same for the datasets and the inner solvers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastfair.datasets import load
from fastfair.errors import FastfairError
from fastfair.inner import make_inner
from fastfair.models import Affine
from fastfair.validation import (
    check_bool,
    check_nonnegative_int,
    check_optional_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_seed_value,
)


@pytest.mark.parametrize("value", [True, False, np.True_, np.False_])
def test_a_flag_is_a_boolean(value):
    out = check_bool("flag", value)
    assert type(out) is bool and out == bool(value)


@pytest.mark.parametrize("value", [0, 1, 1.0, np.int64(1), "true", "yes", None, [True]])
def test_anything_else_is_not_a_flag(value):
    with pytest.raises(FastfairError, match=r"^flag must be true or false, got ") as info:
        check_bool("flag", value)
    assert "\n" not in str(info.value)


def test_datasets_and_inner_solvers_agree_on_flags():
    """The same flag value gets the same answer from a dataset option and a solver option."""
    with pytest.raises(FastfairError, match="standardize must be true or false, got 1"):
        load("unfair2d", standardize=1)
    with pytest.raises(FastfairError, match="structured must be true or false, got 1"):
        make_inner("trs", structured=1)
    assert load("unfair2d", standardize=np.True_).standardized is True
    assert make_inner("trs", structured=np.False_).structured is False


def test_numbers():
    assert check_positive_int("k", 3.0) == 3 and check_nonnegative_int("k", np.int64(0)) == 0
    assert check_positive_float("t", np.float32(0.5)) == 0.5 and check_optional_nonnegative_float("t", None) is None
    for bad in (True, 0, 2.5, float("nan"), float("inf"), "3"):
        with pytest.raises(FastfairError, match="k must be a positive integer"):
            check_positive_int("k", bad)
    with pytest.raises(FastfairError, match="must be finite and greater than 1"):
        check_positive_float("shrink", 1.0, above=1.0)


@pytest.mark.parametrize("seed", [0, 2**63 - 1, np.int64(7)])
def test_seeds_in_range_work_end_to_end(seed):
    assert check_seed_value("seed", seed) == int(seed)
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    res = make_inner("random", seed=seed).perturb(Affine(3).double(), x, y, 0.5)
    assert torch.isfinite(res.x_adv).all()


@pytest.mark.parametrize("solver", ["pgd", "random"])
@pytest.mark.parametrize("seed", [-1, 2**63, 2**64 + 5, 3.0, True])
def test_seeds_out_of_range_are_refused_when_the_solver_is_built(solver, seed):
    with pytest.raises(FastfairError, match="seed must be an integer") as info:
        make_inner(solver, seed=seed)
    assert "\n" not in str(info.value)
