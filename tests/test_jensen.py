"""Tests for labcode.jensen: the sample Jensen gap log(mean x) - mean(log x) >= 0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate, special

import labcode as lc
from labcode.gaussian import GaussianMixture1D
from labcode.jensen import (
    gamma_jensen_gap,
    jensen_gap_stderr,
    lab_jensen_cases,
    two_point_jensen_gap,
    uniform_jensen_gap,
)

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


def bimodal(dtype: torch.dtype = torch.float32) -> GaussianMixture1D:
    """The chapter's target 0.6 N(-2, 0.6²) + 0.4 N(2, 0.6²)."""
    return GaussianMixture1D(torch.tensor([0.6, 0.4], dtype=dtype), torch.tensor([-2.0, 2.0], dtype=dtype),
                             torch.tensor([0.6, 0.6], dtype=dtype))


def test_mixture_log_prob_follows_device_and_dtype(device: torch.device, dtype: torch.dtype) -> None:
    x = torch.linspace(-3.0, 3.0, 7, device=device, dtype=dtype)
    out = bimodal().log_prob(x)
    assert out.device.type == device.type and out.dtype == dtype and out.shape == (7,)


def test_mixture_far_tail_is_finite() -> None:
    # log-sum-exp keeps the log-density finite where the density underflows
    assert torch.isfinite(bimodal().log_prob(torch.tensor([60.0, -60.0]))).all()


def test_exact_gaps_against_scipy() -> None:
    mean_log, _ = integrate.quad(lambda x: math.log(x) / 3.0, 1.0, 4.0)
    assert uniform_jensen_gap(1.0, 4.0).item() == pytest.approx(math.log(2.5) - mean_log, rel=1e-12)
    assert uniform_jensen_gap(1.0, 4.0).item() == pytest.approx(math.log(2.5) - (4 * math.log(4) - 3) / 3, rel=1e-12)
    assert gamma_jensen_gap(1.0).item() == pytest.approx(np.euler_gamma, rel=1e-12)
    assert gamma_jensen_gap(2.0).item() == pytest.approx(math.log(2) - 1 + np.euler_gamma, rel=1e-12)
    for k in (0.3, 1.7, 25.0):
        assert gamma_jensen_gap(k).item() == pytest.approx(math.log(k) - special.digamma(k), rel=1e-12)


@settings(max_examples=25)
@given(st.floats(0.5, 3.0), st.floats(0.1, 5.0))
def test_gamma_gap_is_the_expectation_gap_by_quadrature(k: float, rate: float) -> None:
    # E[log X] under Gamma(k, rate) by SciPy quadrature in u = log x (smooth), independent of digamma
    def integrand(u: float) -> float:   # u times the density of log X at u
        return u * math.exp(k * math.log(rate) + k * u - rate * math.exp(u) - math.lgamma(k))

    centre = math.log(k / rate)
    # the density of log X is below e^-20 of its peak outside [centre - 40, centre + 6] for k >= 0.5
    mean_log = integrate.quad(integrand, centre - 40.0, centre)[0] + integrate.quad(integrand, centre, centre + 6.0)[0]
    assert gamma_jensen_gap(k).item() == pytest.approx(math.log(k / rate) - mean_log, rel=1e-6, abs=1e-9)


@given(st.floats(0.1, 10.0), st.floats(0.1, 10.0), st.floats(0.0, 1.0))
def test_two_point_gap_properties(x1: float, x2: float, lam: float) -> None:
    gap = two_point_jensen_gap(torch.tensor(x1, dtype=torch.float64), x2, lam).item()
    assert gap >= -1e-12
    assert two_point_jensen_gap(torch.tensor(x1, dtype=torch.float64), x1, lam).item() == pytest.approx(0.0, abs=1e-12)
    assert two_point_jensen_gap(torch.tensor(x1, dtype=torch.float64), x2, 1.0).item() == pytest.approx(0.0, abs=1e-12)


def test_two_point_gap_equals_sample_gap_for_equal_weights() -> None:
    values = torch.tensor([1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(two_point_jensen_gap(values[0], values[1], 0.5), lc.jensen_gap(values))
    with pytest.raises(ValueError, match="lam must lie in"):
        two_point_jensen_gap(1.0, 2.0, 1.5)


def test_jensen_stderr_matches_the_spread_of_repeated_gaps() -> None:
    # 400 independent samples of size 500 from Exponential(1): the spread of their gaps
    n, reps = 500, 400
    samples = torch.empty(reps, n, dtype=torch.float64).exponential_(generator=torch.Generator().manual_seed(3))
    gaps = lc.jensen_gap(samples, dim=1)
    predicted = torch.stack([jensen_gap_stderr(row) for row in samples]).mean()
    assert predicted.item() == pytest.approx(gaps.std().item(), rel=0.15)
    assert gaps.mean().item() == pytest.approx(np.euler_gamma, abs=4 * gaps.std().item() / math.sqrt(reps) + 0.005)


def test_lab_jensen_cases_are_reproducible_and_correct() -> None:
    cases = lab_jensen_cases(5000, generator=torch.Generator().manual_seed(0))
    again = lab_jensen_cases(5000, generator=torch.Generator().manual_seed(0))
    assert [c.name for c in cases] == ["Uniform[1, 4]", "Exponential(1)", "Gamma(2, 1)"]
    for case, twin, mean in zip(cases, again, (2.5, 1.0, 2.0), strict=True):
        assert torch.equal(case.samples, twin.samples)
        assert case.samples.shape == (5000,) and (case.samples > 0).all()
        assert case.samples.double().mean().item() == pytest.approx(mean, abs=4 * case.samples.double().std().item() / math.sqrt(5000))
        gap = lc.jensen_gap(case.samples.double()).item()
        assert abs(gap - case.exact_gap.item()) <= 4 * jensen_gap_stderr(case.samples.double()).item()
    assert cases[0].samples.min() >= 1.0 and cases[0].samples.max() <= 4.0


def test_uniform_gap_needs_an_interval_and_works_in_float64() -> None:
    with pytest.raises(ValueError, match="b must be > a"):
        uniform_jensen_gap(2.0, 2.0)
    from_tensor = uniform_jensen_gap(torch.tensor(0.3), 3.0)      # a float32 tensor: converted, not kept
    assert from_tensor.dtype == torch.float64
    torch.testing.assert_close(from_tensor, uniform_jensen_gap(float(torch.tensor(0.3)), 3.0), rtol=0, atol=0)
