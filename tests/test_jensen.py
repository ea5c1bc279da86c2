"""Tests for labcode.jensen: the sample Jensen gap log(mean x) - mean(log x) >= 0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import labcode as lc

LOG_SAMPLES = st.floats(-7.0, 7.0)   # samples in [1e-3, 1e3]


def reference_gap(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """log(mean x) - mean(log x) in float64 numpy; scaling by the max keeps the mean finite."""
    x = np.asarray(x, dtype=np.float64)
    top = x.max(axis=axis, keepdims=True)
    log_mean = np.log(np.mean(x / top, axis=axis)) + np.log(np.squeeze(top, axis=axis))
    return log_mean - np.mean(np.log(x), axis=axis)


def gap_tolerance(samples: torch.Tensor, dim: int = 0) -> float:
    """Rounding allowance: a few ulps of the largest quantity summed, max |log x| + log n."""
    scale = samples.double().log().abs().max().item() + math.log(samples.shape[dim]) + 1.0
    return 16 * torch.finfo(samples.dtype).eps * scale


@st.composite
def positive_samples(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """((n, m) positive float64 samples, the dim to reduce)."""
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, max_side=40))
    log_x = draw(hnp.arrays(np.float64, shape, elements=LOG_SAMPLES))
    return np.exp(log_x), draw(st.sampled_from([0, 1]))


def lognormal(n: int, dtype: torch.dtype, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    """n samples of scale * exp(N(0, 1)) in ``dtype``, drawn in float64."""
    log_x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (math.log(scale) + log_x).exp().to(dtype)


# --- against an independent reference ----------------------------------------------------------

@given(case=positive_samples())
def test_jensen_gap_matches_numpy_float64(dtype, case):
    x, dim = case
    samples = torch.as_tensor(x, dtype=dtype)
    gap = lc.jensen_gap(samples, dim=dim)
    assert gap.dtype == dtype
    assert gap.shape == samples.shape[:dim] + samples.shape[dim + 1:]
    expected = reference_gap(samples.double().numpy(), axis=dim)
    np.testing.assert_allclose(gap.double().numpy(), expected, rtol=0, atol=gap_tolerance(samples, dim))


def test_jensen_gap_of_lognormal_samples_is_half_the_log_variance():
    # X = exp(N(0, 1)): log E[X] = 1/2 and E[log X] = 0, so the population gap is 1/2
    gap = lc.jensen_gap(lognormal(100_000, torch.float64))
    assert gap.item() == pytest.approx(0.5, abs=0.02)


def test_jensen_gap_reduces_along_the_given_dim():
    samples = lognormal(60, torch.float64).reshape(3, 4, 5)
    for dim in (0, 1, 2, -1):
        gap = lc.jensen_gap(samples, dim=dim)
        np.testing.assert_allclose(gap.numpy(), reference_gap(samples.numpy(), axis=dim), rtol=0, atol=1e-12)


# --- properties ----------------------------------------------------------------------------------

@given(case=positive_samples())
def test_jensen_gap_is_non_negative(dtype, case):
    x, dim = case
    samples = torch.as_tensor(x, dtype=dtype)
    # the exact sample gap is >= 0 (AM-GM); the computed one may round a few ulps below
    assert (lc.jensen_gap(samples, dim=dim) >= -gap_tolerance(samples, dim)).all()


@given(log_c=LOG_SAMPLES, n=st.integers(1, 1000))
def test_jensen_gap_of_constant_samples_is_zero(dtype, log_c, n):
    samples = torch.full((n,), math.exp(log_c), dtype=dtype)
    assert abs(lc.jensen_gap(samples).item()) <= gap_tolerance(samples)


def test_jensen_gap_of_a_single_sample_is_zero(dtype):
    assert abs(lc.jensen_gap(torch.tensor([3.7], dtype=dtype)).item()) <= 4 * torch.finfo(dtype).eps


@given(log_c=st.floats(-40.0, 40.0))
def test_jensen_gap_is_scale_invariant(log_c):
    samples = lognormal(100, torch.float64)
    torch.testing.assert_close(lc.jensen_gap(math.exp(log_c) * samples), lc.jensen_gap(samples), rtol=0, atol=1e-12)


# --- numerical stability -----------------------------------------------------------------------

@pytest.mark.parametrize(("dtype", "scale"), [
    (torch.float32, 1e30),
    (torch.float32, 1e-30),
    (torch.float32, 1e37),     # the plain sum of the samples overflows float32
    (torch.float64, 1e306),    # ... and float64
    (torch.float64, 1e-300),
])
def test_jensen_gap_is_stable_for_huge_and_tiny_samples(dtype, scale):
    samples = lognormal(1000, dtype, scale=scale)
    assert torch.isfinite(samples).all() and (samples > 0).all()
    gap = lc.jensen_gap(samples)
    assert torch.isfinite(gap)
    assert gap.item() == pytest.approx(reference_gap(samples.double().numpy()), abs=gap_tolerance(samples))
    # the gap does not depend on the scale of the samples
    assert gap.item() == pytest.approx(lc.jensen_gap(lognormal(1000, torch.float64)).item(), abs=gap_tolerance(samples))


@pytest.mark.parametrize("value", [1e30, 1e-30])
def test_jensen_gap_of_huge_or_tiny_constant_samples_is_zero(value):
    gap = lc.jensen_gap(torch.full((1000,), value, dtype=torch.float32)).item()
    assert 0.0 <= gap <= 1e-6


# --- device and dtype --------------------------------------------------------------------------

def test_jensen_gap_keeps_device_and_dtype(device, dtype):
    samples = lognormal(50, dtype).reshape(10, 5).to(device)
    gap = lc.jensen_gap(samples)
    assert gap.device.type == device.type
    assert gap.dtype == dtype
    assert gap.shape == (5,)
    np.testing.assert_allclose(gap.double().cpu().numpy(), reference_gap(samples.double().cpu().numpy()), atol=1e-5)


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("samples", "match"), [
    (torch.tensor([1.0, 0.0]), "samples must be > 0, got 0.0"),
    (torch.tensor([1.0, -2.0]), "samples must be > 0, got -2.0"),
    (torch.tensor([1.0, float("nan")]), "samples must be finite"),
    (torch.tensor([1.0, float("inf")]), "samples must be finite"),
    (torch.zeros(0), "samples must hold at least one sample"),
    (torch.tensor(1.0), "samples must hold at least one sample"),
])
def test_jensen_gap_rejects_bad_samples(samples, match):
    with pytest.raises(ValueError, match=match):
        lc.jensen_gap(samples)


@pytest.mark.parametrize("samples", [torch.tensor([1, 2, 3]), [1.0, 2.0], np.array([1.0, 2.0])])
def test_jensen_gap_rejects_non_float_tensors(samples):
    with pytest.raises(TypeError, match="samples must be a floating-point tensor"):
        lc.jensen_gap(samples)
