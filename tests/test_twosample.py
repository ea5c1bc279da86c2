"""Tests of labcode.twosample against SciPy and a direct O(n^2) formula."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import energy_distance

from labcode.twosample import squared_energy_distance


def _direct(x: torch.Tensor, y: torch.Tensor) -> float:
    """The V-statistic written out pair by pair (Python floats)."""
    def mean_dist(a, b):
        return sum(math.dist(p, q) for p, q in itertools.product(a.tolist(), b.tolist())) / (len(a) * len(b))
    return 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)


@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), m=st.integers(1, 30), shift=st.floats(-2, 2))
def test_one_dimension_matches_scipy(seed, n, m, shift):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g, dtype=torch.float64)
    y = torch.randn(m, 1, generator=g, dtype=torch.float64) * 1.5 + shift
    expected = energy_distance(x[:, 0].numpy(), y[:, 0].numpy()) ** 2   # SciPy returns the square root
    assert squared_energy_distance(x, y) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_matches_direct_formula(dim, dtype):
    g = torch.Generator().manual_seed(dim)
    x = torch.randn(17, dim, generator=g).to(dtype)
    y = (torch.randn(11, dim, generator=g) + 0.3).to(dtype)
    assert squared_energy_distance(x, y) == pytest.approx(_direct(x.double(), y.double()), rel=1e-9, abs=1e-12)


@given(seed=st.integers(0, 10_000), n=st.integers(1, 25), m=st.integers(1, 25))
def test_properties(seed, n, m):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(m, 2, generator=g, dtype=torch.float64) + 0.5
    value = squared_energy_distance(x, y)
    assert value >= -1e-12                                                  # an energy distance of two measures
    assert value == pytest.approx(squared_energy_distance(y, x), abs=1e-12)  # symmetric
    assert squared_energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    perm = torch.randperm(n, generator=g)
    assert squared_energy_distance(x[perm], y) == pytest.approx(value, abs=1e-12)


def test_separates_laws_and_shrinks_with_sample_size():
    g = torch.Generator().manual_seed(0)
    same = [squared_energy_distance(torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g))
            for n in (50, 800)]
    shifted = squared_energy_distance(torch.randn(800, 2, generator=g), torch.randn(800, 2, generator=g) + 1.0)
    assert same[1] < same[0]
    assert shifted > 20 * same[1]


def test_device(device):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 2, generator=g), torch.randn(30, 2, generator=g)
    assert squared_energy_distance(x.to(device), y.to(device)) == pytest.approx(squared_energy_distance(x, y),
                                                                                 rel=1e-9)


def test_input_validation():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="y must have 2 columns"):
        squared_energy_distance(x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x must have shape"):
        squared_energy_distance(torch.zeros(3), x)
    with pytest.raises(ValueError, match="non-empty"):
        squared_energy_distance(torch.zeros(0, 2), x)
    with pytest.raises(ValueError, match="y must be finite"):
        squared_energy_distance(x, torch.full((2, 2), math.nan))
