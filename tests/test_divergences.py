"""Tests for labcode.divergences against torch.distributions, SciPy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special
from torch.distributions import Categorical, MixtureSameFamily, Normal

import labcode as lc
from labcode.divergences import (
    GaussianMixture1D,
    fit_gaussian_kl,
    gamma_jensen_gap,
    gaussian_kl_landscape,
    jensen_gap_stderr,
    lab_jensen_cases,
    lab_kl_checks,
    monte_carlo_kl_curve,
    quadrature_kl,
    two_point_jensen_gap,
    uniform_jensen_gap,
)


def bimodal(dtype: torch.dtype = torch.float32) -> GaussianMixture1D:
    """The chapter's target 0.6 N(-2, 0.6²) + 0.4 N(2, 0.6²)."""
    return GaussianMixture1D(torch.tensor([0.6, 0.4], dtype=dtype), torch.tensor([-2.0, 2.0], dtype=dtype),
                             torch.tensor([0.6, 0.6], dtype=dtype))


@st.composite
def mixtures(draw: st.DrawFn) -> GaussianMixture1D:
    """Mixtures of 1 to 3 components with means in [-3, 3] and sigmas in [0.3, 2] (float64)."""
    k = draw(st.integers(1, 3))
    raw = [draw(st.floats(0.1, 1.0)) for _ in range(k)]
    weights = torch.tensor(raw, dtype=torch.float64)
    weights = weights / weights.sum()
    means = torch.tensor([draw(st.floats(-3.0, 3.0)) for _ in range(k)], dtype=torch.float64)
    sigmas = torch.tensor([draw(st.floats(0.3, 2.0)) for _ in range(k)], dtype=torch.float64)
    return GaussianMixture1D(weights, means, sigmas)


# -- the mixture -----------------------------------------------------------------------------------

@given(mixtures())
def test_mixture_log_prob_matches_torch_distributions(mixture: GaussianMixture1D) -> None:
    reference = MixtureSameFamily(Categorical(probs=mixture.weights), Normal(mixture.means, mixture.sigmas))
    x = torch.linspace(-8.0, 8.0, 97, dtype=torch.float64)
    torch.testing.assert_close(mixture.log_prob(x), reference.log_prob(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(mixture.mean(), reference.mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(mixture.variance(), reference.variance, rtol=1e-10, atol=1e-10)


def test_mixture_log_prob_follows_device_and_dtype(device: torch.device, dtype: torch.dtype) -> None:
    x = torch.linspace(-3.0, 3.0, 7, device=device, dtype=dtype)
    out = bimodal().log_prob(x)
    assert out.device.type == device.type and out.dtype == dtype and out.shape == (7,)


def test_mixture_far_tail_is_finite() -> None:
    # log-sum-exp keeps the log-density finite where the density underflows
    assert torch.isfinite(bimodal().log_prob(torch.tensor([60.0, -60.0]))).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"weights": torch.tensor([0.5, 0.4]), "means": torch.zeros(2), "sigmas": torch.ones(2)}, "sum to 1"),
    ({"weights": torch.tensor([0.5, 0.5]), "means": torch.zeros(2), "sigmas": torch.tensor([1.0, -1.0])}, "sigmas must be > 0"),
    ({"weights": torch.tensor([1.0]), "means": torch.zeros(2), "sigmas": torch.ones(2)}, "same shape"),
    ({"weights": torch.tensor([1.5, -0.5]), "means": torch.zeros(2), "sigmas": torch.ones(2)}, "weights must be > 0"),
    ({"weights": torch.ones(1, 1), "means": torch.zeros(1, 1), "sigmas": torch.ones(1, 1)}, "shape \\(K,\\)"),
])
def test_mixture_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GaussianMixture1D(**kwargs)


# -- KL by quadrature ------------------------------------------------------------------------------

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


# -- Gaussian fits ---------------------------------------------------------------------------------

def test_landscape_entries_are_kls() -> None:
    target = bimodal(torch.float64)
    grid = torch.linspace(-10.0, 10.0, 601, dtype=torch.float64)
    mus = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    log_sigmas = torch.tensor([-0.5, 0.5], dtype=torch.float64)
    for direction in ("forward", "reverse"):
        landscape = gaussian_kl_landscape(target.log_prob, grid, mus, log_sigmas, direction)
        assert landscape.shape == (2, 3)
        log_q = Normal(mus[2], math.exp(0.5)).log_prob(grid)
        log_p = target.log_prob(grid)
        expected = quadrature_kl(log_p, log_q, grid) if direction == "forward" else quadrature_kl(log_q, log_p, grid)
        torch.testing.assert_close(landscape[1, 2], expected, rtol=1e-10, atol=1e-10)


@settings(max_examples=5)
@given(mixtures())
def test_forward_fit_matches_moments(mixture: GaussianMixture1D) -> None:
    # the forward-KL optimum over Gaussians is moment matching (chapter "KL divergence")
    grid = torch.linspace(-16.0, 16.0, 801, dtype=torch.float64)
    start_sd = mixture.variance().sqrt().item()
    # Hessian at the optimum: diag(1/sd², 2) in (mu, log sigma); the step stays well below 2/λ_max
    lr = min(0.3, 0.5 * start_sd**2)
    fit = fit_gaussian_kl(mixture.log_prob, grid, "forward", [mixture.mean().item() + 1.0], [math.log(start_sd)],
                          steps=800, lr=lr)
    assert fit.mu.item() == pytest.approx(mixture.mean().item(), abs=1e-4)
    assert fit.sigma.item() == pytest.approx(start_sd, rel=1e-4)


def test_reverse_fits_lock_onto_modes() -> None:
    target = bimodal(torch.float64)
    grid = torch.linspace(-10.0, 10.0, 601, dtype=torch.float64)
    fit = fit_gaussian_kl(target.log_prob, grid, "reverse", [-1.0, 1.0], [0.0, 0.0])
    torch.testing.assert_close(fit.mu, torch.tensor([-2.0, 2.0], dtype=torch.float64), atol=0.01, rtol=0)
    torch.testing.assert_close(fit.sigma, torch.tensor([0.6, 0.6], dtype=torch.float64), atol=0.01, rtol=0)
    # KL(p_k || p) <= log(1/w_k), and the fits do at least as well as the component itself
    assert (fit.kl <= -torch.log(target.weights)).all()
    assert (fit.kl > 0).all()
    # a local minimum: the gradient vanishes at the end of the path
    assert (fit.path[-1] - fit.path[-2]).abs().max().item() < 1e-6


def test_fit_records_the_path_and_log_prob(device: torch.device) -> None:
    grid = torch.linspace(-10.0, 10.0, 601, device=device)
    fit = fit_gaussian_kl(bimodal().log_prob, grid, "reverse", [-1.0, 1.0, 0.5], [0.0, 0.0, 0.7], steps=7)
    assert fit.path.shape == (8, 3, 2)
    assert fit.mu.device.type == device.type
    torch.testing.assert_close(fit.path[0, :, 0], torch.tensor([-1.0, 1.0, 0.5], device=device))
    log_q = fit.log_prob(grid)
    assert log_q.shape == (3, 601)
    expected = Normal(fit.mu[1], fit.sigma[1]).log_prob(grid)
    torch.testing.assert_close(log_q[1], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"direction": "sideways"}, ValueError, "direction must be"),
    ({"steps": 0}, ValueError, "steps must be > 0"),
    ({"lr": -1.0}, ValueError, "lr must be > 0"),
    ({"mu0": [0.0, 1.0]}, ValueError, "same shape"),
])
def test_fit_rejects_bad_input(kwargs: dict, exc: type, match: str) -> None:
    args = {"target_log_prob": bimodal().log_prob, "grid": torch.linspace(-5, 5, 101), "direction": "forward",
            "mu0": [0.0], "log_sigma0": [0.0]} | kwargs
    with pytest.raises(exc, match=match):
        fit_gaussian_kl(**args)


# -- Monte Carlo curve -----------------------------------------------------------------------------

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


# -- Jensen gaps -----------------------------------------------------------------------------------

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


def test_lab_kl_checks_all_pass() -> None:
    rows = lab_kl_checks(generator=torch.Generator().manual_seed(1))
    assert len(rows) == 5
    assert all(row["pass"] for row in rows)
    assert rows[0]["expected"] == pytest.approx(0.5 * (0.64 + 1 - 1 - math.log(0.64)), abs=1e-6)
