"""Tests for labcode.kl against torch.distributions, by Monte Carlo and by property."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate
from torch.distributions import Independent, Normal, kl_divergence

import labcode as lc
from helpers import bimodal, mixtures
from labcode.gaussian import GaussianMixture1D
from labcode.kl import lattice_kl, monte_carlo_kl_curve, quadrature_kl

MEANS = st.floats(-10.0, 10.0)
LOG_SIGMAS = st.floats(-4.0, 4.0)   # sigma in [0.018, 55]: variance ratios up to e^16
LOGVARS = st.floats(-10.0, 10.0)

#: rounding slack for "KL >= 0": the closed form may land a few ulps below zero
KL_FLOAT_SLACK = 1e-6

#: the lab's two pairs of Gaussians, (mu1, sigma1, mu2, sigma2)
LAB_PAIRS = [pytest.param((0.0, 0.5, 1.0, 1.5), id="narrow-vs-wide"), pytest.param((1.0, 0.8, 0.0, 1.0), id="vs-standard")]


@st.composite
def normal_pairs(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """(mu1, sigma1, mu2, sigma2), float64 arrays of one common length."""
    n = draw(st.integers(1, 8))

    def array(elements: st.SearchStrategy[float]) -> np.ndarray:
        return draw(hnp.arrays(np.float64, n, elements=elements))

    return array(MEANS), np.exp(array(LOG_SIGMAS)), array(MEANS), np.exp(array(LOG_SIGMAS))


@st.composite
def diagonal_gaussians(draw: st.DrawFn, mu_bound: float = 10.0, logvar_bound: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar), float64 arrays of one common shape (..., latent_dim)."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
    mu = draw(hnp.arrays(np.float64, shape, elements=st.floats(-mu_bound, mu_bound)))
    logvar = draw(hnp.arrays(np.float64, shape, elements=st.floats(-logvar_bound, logvar_bound)))
    return mu, logvar


def as_tensors(arrays, dtype: torch.dtype, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    return [torch.as_tensor(a, dtype=dtype, device=device) for a in arrays]


def reference_standard_normal_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)) from torch.distributions, in float64."""
    mu, logvar = mu.double(), logvar.double()
    q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    return kl_divergence(q, p)


# --- closed forms against torch.distributions ------------------------------------------------

@given(params=normal_pairs())
def test_gaussian_kl_closed_form_matches_torch_distributions(dtype, tol, params):
    mu1, sigma1, mu2, sigma2 = as_tensors(params, dtype)
    expected = kl_divergence(Normal(mu1.double(), sigma1.double()), Normal(mu2.double(), sigma2.double()))
    got = lc.gaussian_kl_closed_form(mu1, sigma1, mu2, sigma2)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), expected, **tol)


@given(params=diagonal_gaussians())
def test_standard_normal_kl_matches_torch_distributions(dtype, tol, params):
    mu, logvar = as_tensors(params, dtype)
    got = lc.standard_normal_kl(mu, logvar)
    assert got.shape == mu.shape[:-1]
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), reference_standard_normal_kl(mu, logvar), **tol)


@given(params=diagonal_gaussians())
def test_standard_normal_kl_is_the_sum_of_elementwise_closed_forms(dtype, tol, params):
    mu, logvar = as_tensors(params, dtype)
    elementwise = lc.gaussian_kl_closed_form(mu, torch.exp(0.5 * logvar), 0.0, 1.0)
    torch.testing.assert_close(lc.standard_normal_kl(mu, logvar), elementwise.sum(-1), **tol)


def test_gaussian_kl_closed_form_lab_values_and_asymmetry():
    # KL(N(0, .5²) || N(1, 1.5²)) = log 3 + (.25 + 1) / 4.5 - 1/2; the reverse is -log 3 + 3.25/.5 - 1/2
    forward = lc.gaussian_kl_closed_form(0.0, 0.5, 1.0, 1.5)
    reverse = lc.gaussian_kl_closed_form(1.0, 1.5, 0.0, 0.5)
    assert forward.item() == pytest.approx(math.log(3) + 1.25 / 4.5 - 0.5, abs=1e-6)
    assert reverse.item() == pytest.approx(-math.log(3) + 6.5 - 0.5, abs=1e-5)


def test_python_float_arguments_keep_float64_precision():
    mu1 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    expected = kl_divergence(Normal(mu1, torch.tensor(0.1, dtype=torch.float64)), Normal(0.0, 1.0))
    torch.testing.assert_close(lc.gaussian_kl_closed_form(mu1, 0.1, 0.0, 1.0), expected, rtol=1e-12, atol=1e-12)


def test_gaussian_kl_closed_form_broadcasts():
    kl = lc.gaussian_kl_closed_form(torch.zeros(3, 1), torch.ones(1, 4), 0.0, torch.full((4,), 2.0))
    assert kl.shape == (3, 4)
    expected = kl_divergence(Normal(0.0, 1.0), Normal(0.0, 2.0))
    torch.testing.assert_close(kl, expected.expand(3, 4))


# --- properties --------------------------------------------------------------------------------

@given(params=normal_pairs())
def test_gaussian_kl_is_non_negative(dtype, params):
    kl = lc.gaussian_kl_closed_form(*as_tensors(params, dtype))
    assert (kl >= -KL_FLOAT_SLACK).all()


@given(params=diagonal_gaussians())
def test_standard_normal_kl_is_non_negative(dtype, params):
    assert (lc.standard_normal_kl(*as_tensors(params, dtype)) >= -KL_FLOAT_SLACK).all()


@given(params=normal_pairs())
def test_kl_of_a_distribution_with_itself_is_zero(dtype, params):
    mu, sigma, _, _ = as_tensors(params, dtype)
    assert torch.equal(lc.gaussian_kl_closed_form(mu, sigma, mu, sigma), torch.zeros_like(mu))


def test_standard_normal_kl_of_the_standard_normal_is_zero(dtype):
    zeros = torch.zeros(4, 3, dtype=dtype)
    assert torch.equal(lc.standard_normal_kl(zeros, zeros), torch.zeros(4, dtype=dtype))


@given(params=diagonal_gaussians(mu_bound=1e3, logvar_bound=30.0))
def test_standard_normal_kl_is_finite_for_extreme_inputs(dtype, params):
    mu, logvar = as_tensors(params, dtype)
    kl = lc.standard_normal_kl(mu, logvar)
    assert torch.isfinite(kl).all()
    torch.testing.assert_close(kl.double(), reference_standard_normal_kl(mu, logvar), rtol=1e-5, atol=1e-5)


# --- Monte Carlo ---------------------------------------------------------------------------------

@pytest.mark.parametrize("pair", LAB_PAIRS)
def test_monte_carlo_kl_agrees_with_closed_form(pair, device, dtype):
    mu1, sigma1, mu2, sigma2 = pair
    eps = torch.randn(100_000, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    samples = mu1 + sigma1 * eps
    p = Normal(torch.tensor(mu1, dtype=dtype, device=device), torch.tensor(sigma1, dtype=dtype, device=device))
    q = Normal(torch.tensor(mu2, dtype=dtype, device=device), torch.tensor(sigma2, dtype=dtype, device=device))
    estimate = lc.monte_carlo_kl(samples, p.log_prob, q.log_prob)
    assert estimate.shape == ()
    assert estimate.device == samples.device and estimate.dtype == dtype
    # standard error with 10^5 samples is about 0.002 (narrow-vs-wide) and 0.003 (vs-standard)
    assert abs(estimate.item() - lc.gaussian_kl_closed_form(mu1, sigma1, mu2, sigma2).item()) < 0.01


def test_monte_carlo_kl_of_p_against_itself_is_zero():
    p = Normal(0.3, 1.7)
    samples = 0.3 + 1.7 * torch.randn(1000, generator=torch.Generator().manual_seed(0))
    assert lc.monte_carlo_kl(samples, p.log_prob, p.log_prob).item() == 0.0


def test_monte_carlo_kl_sums_independent_coordinates_into_the_joint_kl():
    """Per-coordinate log-densities (N, d) are summed: the joint KL is the sum of the coordinates' KLs."""
    p, q = Normal(torch.zeros(2), torch.ones(2)), Normal(torch.ones(2), 2 * torch.ones(2))
    samples = torch.randn(100_000, 2, generator=torch.Generator().manual_seed(0))   # draws from p = N(0, I)
    estimate = lc.monte_carlo_kl(samples, p.log_prob, q.log_prob)
    joint = torch.distributions.kl_divergence(p, q).sum()
    assert abs(estimate.item() - joint.item()) < 0.01
    expected = (p.log_prob(samples) - q.log_prob(samples)).sum(dim=1).mean()
    torch.testing.assert_close(estimate, expected)


def test_monte_carlo_kl_rejects_log_probs_without_one_row_per_sample():
    samples = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="one row per sample"):
        lc.monte_carlo_kl(samples, lambda x: x.sum(), lambda x: x.sum())


# --- device and dtype --------------------------------------------------------------------------

def test_kl_functions_keep_device_and_dtype(device, dtype):
    def t(*values: float) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=device)

    closed = lc.gaussian_kl_closed_form(t(0.0, 1.0), t(0.5, 2.0), t(1.0, 1.0), t(1.5, 1.0))
    standard = lc.standard_normal_kl(t(0.5, -1.0), t(0.2, -0.3))
    for out in (closed, standard):
        assert out.device.type == device.type
        assert out.dtype == dtype
    expected = kl_divergence(Normal(t(0.0, 1.0), t(0.5, 2.0)), Normal(t(1.0, 1.0), t(1.5, 1.0)))
    torch.testing.assert_close(closed, expected)


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "match"), [
    ((0.0, 0.0, 0.0, 1.0), "sigma1 must be > 0"),
    ((0.0, -0.5, 0.0, 1.0), "sigma1 must be > 0, got -0.5"),
    ((0.0, 1.0, 0.0, 0.0), "sigma2 must be > 0"),
    ((0.0, 1.0, 0.0, torch.tensor([1.0, -2.0])), "sigma2 must be > 0, got -2.0"),
    ((0.0, float("nan"), 0.0, 1.0), "sigma1 must be finite"),
    ((0.0, 1.0, 0.0, float("inf")), "sigma2 must be finite"),
    ((float("nan"), 1.0, 0.0, 1.0), "mu1 must be finite"),
    ((0.0, 1.0, torch.tensor([0.0, float("inf")]), 1.0), "mu2 must be finite"),
])
def test_gaussian_kl_closed_form_rejects_bad_values(args, match):
    with pytest.raises(ValueError, match=match):
        lc.gaussian_kl_closed_form(*args)


@pytest.mark.parametrize(("args", "match"), [
    (("0", 1.0, 0.0, 1.0), "mu1"),
    ((0.0, torch.tensor([1, 2]), 0.0, 1.0), "sigma1 must be a floating-point tensor"),
    ((0.0, 1.0, None, 1.0), "mu2"),
    ((0.0, 1.0, 0.0, True), "sigma2"),
])
def test_gaussian_kl_closed_form_rejects_wrong_types(args, match):
    with pytest.raises(TypeError, match=match):
        lc.gaussian_kl_closed_form(*args)


def test_gaussian_kl_closed_form_rejects_non_broadcastable_shapes():
    with pytest.raises(ValueError, match="sigma1"):
        lc.gaussian_kl_closed_form(torch.zeros(3), torch.ones(3), torch.zeros(4), torch.ones(4))


@pytest.mark.parametrize(("mu", "logvar", "match"), [
    (torch.zeros(4, 2), torch.zeros(4, 3), "mu and logvar must have the same shape"),
    (torch.zeros(2), torch.zeros(4, 2), "mu and logvar must have the same shape"),
    (torch.tensor([0.0, float("nan")]), torch.zeros(2), "mu must be finite"),
    (torch.zeros(2), torch.tensor([float("-inf"), 0.0]), "logvar must be finite"),
    (torch.tensor(0.0), torch.tensor(0.0), "mu must have a latent dimension"),
])
def test_standard_normal_kl_rejects_bad_input(mu, logvar, match):
    with pytest.raises(ValueError, match=match):
        lc.standard_normal_kl(mu, logvar)


def test_standard_normal_kl_rejects_integer_tensors():
    with pytest.raises(TypeError, match="mu must be a floating-point tensor"):
        lc.standard_normal_kl(torch.zeros(2, dtype=torch.int64), torch.zeros(2))


@pytest.mark.parametrize(("samples", "error", "match"), [
    (torch.zeros(0), ValueError, "p_samples must have at least one sample"),
    (torch.tensor(1.0), ValueError, "p_samples must have at least one sample"),
    (torch.tensor([0.0, float("nan")]), ValueError, "p_samples must be finite"),
    ([0.0, 1.0], TypeError, "p_samples must be a tensor"),
])
def test_monte_carlo_kl_rejects_bad_samples(samples, error, match):
    p = Normal(0.0, 1.0)
    with pytest.raises(error, match=match):
        lc.monte_carlo_kl(samples, p.log_prob, p.log_prob)


def test_monte_carlo_kl_rejects_samples_outside_the_support_of_q():
    samples = torch.tensor([0.5, -0.5])
    p = Normal(0.0, 1.0)
    q = torch.distributions.Uniform(0.0, 1.0, validate_args=False)
    with pytest.raises(ValueError, match="log p - log q"):
        lc.monte_carlo_kl(samples, p.log_prob, q.log_prob)


@given(st.floats(-2.0, 2.0), st.floats(0.4, 2.0), st.floats(-2.0, 2.0), st.floats(0.4, 2.0))
def test_quadrature_kl_matches_closed_form(mu1: float, s1: float, mu2: float, s2: float) -> None:
    grid = torch.linspace(-20.0, 20.0, 4001, dtype=torch.float64)
    log_p = Normal(torch.tensor(mu1, dtype=torch.float64), s1).log_prob(grid)
    log_q = Normal(torch.tensor(mu2, dtype=torch.float64), s2).log_prob(grid)
    exact = lc.gaussian_kl_closed_form(torch.tensor(mu1, dtype=torch.float64), torch.tensor(s1, dtype=torch.float64),
                                       torch.tensor(mu2, dtype=torch.float64), torch.tensor(s2, dtype=torch.float64))
    torch.testing.assert_close(quadrature_kl(log_p, log_q, grid), exact, rtol=1e-8, atol=1e-8)


@settings(max_examples=25)
@given(mixtures(), st.floats(-2.0, 2.0), st.floats(0.5, 3.0))
def test_quadrature_kl_of_mixture_matches_scipy(mixture: GaussianMixture1D, mu: float, sigma: float) -> None:
    grid = torch.linspace(-25.0, 25.0, 5001, dtype=torch.float64)
    q = Normal(torch.tensor(mu, dtype=torch.float64), sigma)
    value = quadrature_kl(mixture.log_prob(grid), q.log_prob(grid), grid).item()

    w, m, s = (t.tolist() for t in (mixture.weights, mixture.means, mixture.sigmas))

    def integrand(x: float) -> float:   # plain floats, independent of labcode and torch
        logs = [math.log(wk) - 0.5 * ((x - mk) / sk) ** 2 - math.log(sk * math.sqrt(2 * math.pi))
                for wk, mk, sk in zip(w, m, s, strict=True)]
        top = max(logs)
        lp = top + math.log(sum(math.exp(v - top) for v in logs))
        lq = -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))
        return math.exp(lp) * (lp - lq)

    reference, _ = integrate.quad(integrand, -np.inf, np.inf, limit=200)
    assert value == pytest.approx(reference, rel=1e-6, abs=1e-7)
    assert value >= 0.0                                       # Gibbs' inequality
    assert quadrature_kl(mixture.log_prob(grid), mixture.log_prob(grid), grid).item() == 0.0


def test_quadrature_kl_broadcasts_over_leading_dims() -> None:
    grid = torch.linspace(-10.0, 10.0, 801, dtype=torch.float64)
    log_p = bimodal(torch.float64).log_prob(grid)
    log_q = torch.stack([Normal(m, 1.0).log_prob(grid) for m in (-1.0, 0.0, 1.0)])   # (3, M)
    both = quadrature_kl(log_p, log_q, grid)
    assert both.shape == (3,)
    torch.testing.assert_close(both[1], quadrature_kl(log_p, log_q[1], grid))


@pytest.mark.parametrize(("args", "match"), [
    ((torch.zeros(5), torch.zeros(5), torch.tensor([0.0, 1.0, 1.0, 2.0, 3.0])), "strictly increasing"),
    ((torch.zeros(5), torch.zeros(4), torch.linspace(0, 1, 5)), "log_q must have last dimension 5"),
    ((torch.tensor([0.0, -math.inf, 0.0]), torch.zeros(3), torch.linspace(0, 1, 3)), "log_p must be finite"),
    ((torch.zeros(1), torch.zeros(1), torch.zeros(1)), "grid must have shape"),
])
def test_quadrature_kl_rejects_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        quadrature_kl(*args)


def test_monte_carlo_curve_matches_monte_carlo_kl_and_converges() -> None:
    p, q = Normal(0.0, 0.5), Normal(1.0, 1.5)
    x = 0.5 * torch.randn(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    curve = monte_carlo_kl_curve(x, p.log_prob, q.log_prob, [10, 1000, 100_000])
    # the last point is the plain estimator on all samples
    torch.testing.assert_close(curve.estimate[-1], lc.monte_carlo_kl(x, p.log_prob, q.log_prob))
    r = p.log_prob(x[:1000]) - q.log_prob(x[:1000])
    torch.testing.assert_close(curve.stderr[1], r.std() / math.sqrt(1000))
    # error within 4 standard errors at every N; standard error falls like 1/sqrt(N)
    exact = lc.gaussian_kl_closed_form(0.0, 0.5, 1.0, 1.5).double()
    assert ((curve.estimate - exact).abs() <= 4 * curve.stderr).all()
    assert curve.stderr[-1].item() == pytest.approx(curve.stderr[1].item() / 10, rel=0.2)


@pytest.mark.parametrize("sizes", [[], [1, 10], [10, 10], [10, 5], [10, 200]])
def test_monte_carlo_curve_rejects_bad_sizes(sizes: list[int]) -> None:
    with pytest.raises(ValueError, match="sizes must be increasing"):
        monte_carlo_kl_curve(torch.randn(100, generator=torch.Generator().manual_seed(0)),
                             Normal(0.0, 1.0).log_prob, Normal(0.0, 2.0).log_prob, sizes)


@pytest.mark.parametrize(("call", "name"), [
    (lambda: lc.standard_normal_kl(torch.zeros(2), "wide"), "logvar"),
    (lambda: lc.standard_normal_kl([0.0], torch.zeros(2)), "mu"),
    (lambda: lc.reparameterize("centre", torch.zeros(2)), "mu"),
    (lambda: quadrature_kl(torch.zeros(3), "q", torch.linspace(0, 1, 3)), "log_q"),
    (lambda: quadrature_kl(None, torch.zeros(3), torch.linspace(0, 1, 3)), "log_p"),
    (lambda: lattice_kl("p", torch.zeros(9), 1.0, 3), "log_p"),
    (lambda: lattice_kl(torch.zeros(9), "q", 1.0, 3), "log_q"),
    (lambda: GaussianMixture1D(torch.ones(1), torch.zeros(1), torch.ones(1)).log_prob("x"), "x"),
])
def test_an_argument_of_the_wrong_type_is_named(call, name: str) -> None:
    with pytest.raises(TypeError, match=rf"^{name} must be"):
        call()


@pytest.mark.parametrize("shapes", [((3,), (), (4,), ()), ((3,), (), (), (4,)), ((3,), (4,), (), ())])
def test_closed_form_kl_rejects_shapes_that_do_not_broadcast(shapes) -> None:
    mu1, sigma1, mu2, sigma2 = (torch.ones(s) for s in shapes)
    with pytest.raises(ValueError, match="broadcast"):
        lc.gaussian_kl_closed_form(mu1, sigma1, mu2, sigma2)


def test_lattice_kl_checks_the_lattice_size() -> None:
    with pytest.raises(ValueError, match="log_p must have last dimension 9"):
        lattice_kl(torch.zeros(8), torch.zeros(9), 1.0, 3)
    with pytest.raises(ValueError, match="log_q must have last dimension 9"):
        lattice_kl(torch.zeros(9), torch.zeros(2, 10), 1.0, 3)


def test_kl_curve_accepts_the_smallest_prefix_of_two() -> None:
    x = torch.randn(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    log_p = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)).log_prob
    log_q = Normal(torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)).log_prob
    curve = monte_carlo_kl_curve(x, log_p, log_q, [2, 5, 10])
    torch.testing.assert_close(curve.estimate[0], (log_p(x[:2]) - log_q(x[:2])).mean())
