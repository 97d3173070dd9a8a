"""The shared validation (dropreg._checks) and random helpers (dropreg._random)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dropreg._checks import check_float_dtype, check_int, check_probability
from dropreg._random import bernoulli_keep, mean_and_stderr, rademacher, seed_from


def test_check_probability_accepts_the_range_and_names_the_argument():
    assert check_probability("p", 0) == 0.0 and check_probability("p", 1) == 1.0
    assert check_probability("p", np.float32(0.5)) == 0.5
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\], got 1.5"):
        check_probability("q", 1.5)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1.0"):
        check_probability("p", 1.0, allow_one=False)
    with pytest.raises(ValueError, match="p must be in"):
        check_probability("p", float("nan"))
    for bad in (True, "0.5", None):
        with pytest.raises(TypeError, match="p must be a real number"):
            check_probability("p", bad)


def test_check_int_refuses_bools_floats_and_small_values():
    assert check_int("n", np.int64(3)) == 3 and check_int("n", 0, minimum=0) == 0
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        check_int("n", 0)
    for bad in (True, 2.0, "2"):
        with pytest.raises(TypeError, match="n must be an int >= 1"):
            check_int("n", bad)


def test_check_float_dtype():
    assert check_float_dtype(torch.float64) is torch.float64
    with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype"):
        check_float_dtype(torch.int64)


def test_bernoulli_keep_frequency_within_five_standard_errors():
    n, keep = 200_000, 0.3
    z = bernoulli_keep((n,), keep, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)
    assert set(z.unique().tolist()) == {0.0, 1.0}
    assert abs(float(z.mean()) - keep) < 5 * math.sqrt(keep * (1 - keep) / n)


def test_rademacher_signs_are_balanced():
    n = 100_000
    s = rademacher((n,), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert set(s.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(s.mean())) < 5 / math.sqrt(n)


def test_seed_from_is_reproducible_and_in_range():
    a = [seed_from(torch.Generator().manual_seed(3)) for _ in range(2)]
    assert a[0] == a[1] and 0 <= a[0] < 2**62
    g = torch.Generator().manual_seed(3)
    assert seed_from(g) != seed_from(g)


def test_mean_and_stderr_matches_the_textbook_formula():
    x = torch.tensor([1.0, 4.0, 2.0, 7.0], dtype=torch.float64)
    m, se = mean_and_stderr(x)
    assert m == pytest.approx(3.5, abs=1e-15)
    assert se == pytest.approx(float(np.std(x.numpy(), ddof=1)) / 2.0, rel=1e-14)
    assert mean_and_stderr([2.0]) == (2.0, math.inf)
    with pytest.raises(ValueError, match="values must hold at least one number"):
        mean_and_stderr([])
