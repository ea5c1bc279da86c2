"""Tests of labcode.twosample against SciPy, a direct O(n^2) formula and the U-statistic's unbiasedness."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import energy_distance as scipy_energy_distance

from labcode.twosample import energy_distance


def _direct(x: torch.Tensor, y: torch.Tensor, unbiased: bool = False) -> float:
    """The V- or U-statistic written out pair by pair (Python floats)."""
    def mean_dist(a, b, within):
        pairs = [(p, q) for (i, p), (j, q) in itertools.product(enumerate(a.tolist()), enumerate(b.tolist()))
                 if not (within and unbiased and i == j)]
        return sum(math.dist(p, q) for p, q in pairs) / len(pairs)
    return 2 * mean_dist(x, y, False) - mean_dist(x, x, True) - mean_dist(y, y, True)


@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), m=st.integers(1, 30), shift=st.floats(-2, 2))
def test_one_dimension_matches_scipy(seed, n, m, shift):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g, dtype=torch.float64)
    y = torch.randn(m, 1, generator=g, dtype=torch.float64) * 1.5 + shift
    expected = scipy_energy_distance(x[:, 0].numpy(), y[:, 0].numpy()) ** 2   # SciPy returns the square root
    assert energy_distance(x, y) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("dim", [2, 3])
def test_matches_direct_formula(dim, unbiased, dtype):
    g = torch.Generator().manual_seed(dim)
    x = torch.randn(17, dim, generator=g).to(dtype)
    y = (torch.randn(11, dim, generator=g) + 0.3).to(dtype)
    expected = _direct(x.double(), y.double(), unbiased)
    assert energy_distance(x, y, unbiased=unbiased) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@given(seed=st.integers(0, 10_000), n=st.integers(2, 25), m=st.integers(2, 25))
def test_properties(seed, n, m):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(m, 2, generator=g, dtype=torch.float64) + 0.5
    value = energy_distance(x, y)
    assert value >= -1e-12                                                  # an energy distance of two measures
    assert value == pytest.approx(energy_distance(y, x), abs=1e-12)          # symmetric
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    perm = torch.randperm(n, generator=g)
    assert energy_distance(x[perm], y) == pytest.approx(value, abs=1e-12)
    # the U-statistic adds back each sample's mean distance over its own pairs divided by (size - 1)
    u = energy_distance(x, y, unbiased=True)
    own_x = torch.cdist(x, x).sum().item() / (n * n)
    own_y = torch.cdist(y, y).sum().item() / (m * m)
    assert u == pytest.approx(value - own_x / (n - 1) - own_y / (m - 1), rel=1e-9, abs=1e-9)


def test_u_statistic_is_unbiased_and_v_statistic_is_not():
    """For P = Q = N(0, I_2), E[U] = 0 and E[V] = (1/n + 1/m) E||X - X'|| with E||X - X'|| = sqrt(pi)."""
    g = torch.Generator().manual_seed(3)
    n, m, reps = 8, 5, 4000
    x = torch.randn(reps, n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(reps, m, 2, generator=g, dtype=torch.float64)
    u = torch.tensor([energy_distance(a, b, unbiased=True) for a, b in zip(x, y, strict=True)])
    v = torch.tensor([energy_distance(a, b) for a, b in zip(x, y, strict=True)])
    se_u, se_v = u.std().item() / math.sqrt(reps), v.std().item() / math.sqrt(reps)
    assert abs(u.mean().item()) < 4 * se_u
    assert v.mean().item() == pytest.approx((1 / n + 1 / m) * math.sqrt(math.pi), abs=4 * se_v)


def test_separates_laws_and_shrinks_with_sample_size():
    g = torch.Generator().manual_seed(0)
    same = [energy_distance(torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)) for n in (50, 800)]
    shifted = energy_distance(torch.randn(800, 2, generator=g), torch.randn(800, 2, generator=g) + 1.0)
    assert same[1] < same[0]
    assert shifted > 20 * same[1]


def test_device(device):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 2, generator=g), torch.randn(30, 2, generator=g)
    for unbiased in (False, True):
        assert energy_distance(x.to(device), y.to(device), unbiased=unbiased) == pytest.approx(
            energy_distance(x, y, unbiased=unbiased), rel=1e-9)


def test_input_validation():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="y must have 2 columns"):
        energy_distance(x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x must have shape"):
        energy_distance(torch.zeros(3), x)
    with pytest.raises(ValueError, match="at least 1 row,"):
        energy_distance(torch.zeros(0, 2), x)
    with pytest.raises(ValueError, match="at least 2 rows"):
        energy_distance(torch.zeros(1, 2), x, unbiased=True)
    with pytest.raises(TypeError, match="unbiased must be a bool"):
        energy_distance(x, x, unbiased=1)
    with pytest.raises(ValueError, match="y must be finite"):
        energy_distance(x, torch.full((2, 2), math.nan))
